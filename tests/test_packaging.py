"""The project's own files must install and describe it consistently."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from antigen_profile.paths import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\s\[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _name(r): r.replace(" ", "")
        for r in project["dependencies"] + project["optional-dependencies"]["test"]
    }
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda = {_name(d): d.replace(" ", "") for d in env["dependencies"] if isinstance(d, str)}
    conda.pop("python"), conda.pop("pip")
    assert conda == wanted, "environment.yml and pyproject.toml list different dependencies"


def _declared() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def test_everything_snakemake_report_needs_is_a_dependency() -> None:
    """`snakemake --report` imports some packages only when it runs and stops with "Python
    package X must be installed"; those are not Snakemake's own dependencies, so a user who
    installed only ours (pytest brings pygments, so the test venv hides it) could not report."""
    import snakemake.report

    sources = Path(snakemake.report.__file__).parent.rglob("*.py")
    needed = {
        name.lower()
        for source in sources
        for name in re.findall(
            r"Python package (\w+) must be installed", source.read_text(encoding="utf-8")
        )
    }
    assert "pygments" in needed, "Snakemake's report no longer names pygments: check this test"
    assert needed <= _declared(), f"declare in pyproject.toml and environment.yml: {needed}"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    assert commands[0].endswith("snakemake --cores 2")
    assert commands[1].endswith("pytest")
    assert commands[1] in (REPO_ROOT / ".ci" / "run").read_text()


def test_console_script_is_installed() -> None:
    script = shutil.which("antigen-profile", path=str(REPO_ROOT / ".venv" / "bin")) or (
        shutil.which("antigen-profile")
    )
    if script is None:
        pytest.skip("antigen-profile is not on PATH (package not installed as a script)")
    run = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert run.returncode == 0
    assert "profile" in run.stdout and "demo" in run.stdout


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_clean(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


# --- the wheel: what a `pip install .` user gets ------------------------------------------------


def _setuptools_config() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _shipped(relative: str) -> bool:
    """Whether pyproject.toml maps the repository file ``relative`` into the package."""
    setuptools = _setuptools_config()
    folder, name = os.path.split(relative)
    return any(
        folder == source
        and any(fnmatch.fnmatch(name, g) for g in setuptools["package-data"].get(package, []))
        for package, source in setuptools["package-dir"].items()
    )


def test_every_package_under_src_is_listed() -> None:
    """The package list is explicit (pyproject maps repository folders into it), so a new
    subpackage must be added there or the wheel would lack it."""
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT / "src").parts)
        for init in (REPO_ROOT / "src").rglob("__init__.py")
    }
    assert found <= set(_setuptools_config()["packages"])


def test_the_files_the_package_reads_are_shipped_once() -> None:
    """Every repository file the code reads through ``repo_path`` (schemas, the default config
    and what it names) is package data, mapped from its one copy in the repository."""
    from antigen_profile import config, sheets

    defaults = config.load_yaml(REPO_ROOT / config.DEFAULT_CONFIG)
    needed = [
        config.CONFIG_SCHEMA,
        config.DEFAULT_CONFIG,
        sheets.SAMPLE_SCHEMA,
        sheets.PATIENT_SCHEMA,
        "workflow/schemas/trial.schema.yaml",
        defaults["trial"],
        defaults["gating_template"],
    ]
    assert [f for f in needed if not _shipped(f)] == []
    assert not (REPO_ROOT / "src" / "antigen_profile" / "_repo").exists(), "a second copy"


def _source_tree(destination: Path) -> Path:
    """The project as a fresh clone has it (tracked and new files, nothing ignored), so the
    build neither writes into the checkout nor sees its build/, results/ or egg-info."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the project's files from local ones")
    for relative in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel --no-deps`, without build isolation when this environment's setuptools is
    new enough for pyproject.toml (no network), else in pip's isolated build environment."""
    wanted = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]["requires"]
    minimum = re.search(r"setuptools>=(\d+)", " ".join(wanted))
    try:
        have = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        have = 0
    isolation = ["--no-build-isolation"] if minimum and have >= int(minimum.group(1)) else []
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0 and "No matching distribution found for setuptools" in run.stderr:
        pytest.skip("no setuptools new enough to build the wheel, and no index to fetch it")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = out.glob("antigen_profile-*.whl")
    return wheel


@pytest.mark.install
def test_the_wheel_runs_profile_outside_the_repository(tmp_path: Path) -> None:
    """Build the wheel, install it alone into a fresh venv and run `antigen-profile profile`
    on a demo tube from a folder outside the repository: it must read its schemas, default
    config, trial and template from the installed package, not from a checkout. The
    dependencies come from this environment through a .pth (no download); that folder's own
    .pth files, the editable install of this checkout among them, are not processed."""
    started = time.monotonic()
    wheel = _build_wheel(_source_tree(tmp_path / "clone"), tmp_path / "dist")
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    subprocess.run(
        [*install, "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = (
        "import antigen_profile, antigen_profile.paths as p; "
        "from antigen_profile.simulate import write_demo_tube; "
        "print(antigen_profile.__file__); print(p.REPO_ROOT); "
        "print(write_demo_tube('P01-R1', '.'))"
    )
    where = subprocess.run(
        [str(python), "-c", probe], cwd=user, capture_output=True, text=True, env=env, check=False
    )
    assert where.returncode == 0, where.stderr[-3000:]
    module, root, tube = where.stdout.split()
    assert Path(module).is_relative_to(purelib), f"imported {module}, not the installed wheel"
    assert not Path(root).is_relative_to(REPO_ROOT) and Path(root).is_relative_to(purelib)

    shutil.copy(REPO_ROOT / "resources" / "demo" / "patients.tsv", user / "patients.tsv")
    cli = [str(fresh / "bin" / "antigen-profile"), "profile", tube, "--out", "out"]
    run = subprocess.run(
        [*cli, "--patients", "patients.tsv", "--patient-id", "P01"],
        cwd=user,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for name in ("profile.json", "antigens.tsv", "decision.json", "report.html"):
        assert (user / "out" / name).is_file(), name
    profile = (user / "out" / "profile.json").read_text()
    assert str(Path(root) / "resources" / "gates" / "b-all-blasts.xml") in profile
    assert str(REPO_ROOT) not in profile
    assert time.monotonic() - started < 120, "the install test should stay well under a minute"
