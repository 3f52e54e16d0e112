"""The project's own files must install and describe it consistently."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
