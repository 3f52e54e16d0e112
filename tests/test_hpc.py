"""Running on a cluster: `snakemake --lint` is clean, every rule leaves a log and a benchmark,
the Slurm profile is sized to cover a tube measured here, and (where Slurm can be brought up)
the demo cohort runs through a real Slurm with the same results as a local run.

The tests about Slurm itself (its profile, its groups, the real-cluster run) carry the
``slurm`` marker: ``pytest -m slurm`` runs only them, ``-m "not slurm"`` leaves them out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from antigen_profile.paths import REPO_ROOT

PROFILE = REPO_ROOT / "profiles" / "slurm" / "config.v9+.yaml"
E2E = REPO_ROOT / "tests" / "hpc" / "slurm_e2e.sh"
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "munged")
SKIPPED = 77  # slurm_e2e.sh's exit status for "cannot run here"


def _snakemake(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


#: The rules that run once per tube or specimen (one Slurm job each).
PER_SAMPLE_RULES = ("tube", "one_tube_specimen", "specimen")
#: (input MB, peak MB) of the per-sample job on larger tubes, from benchmarks/RESULTS.md.
MEASURED_PEAKS = ((64.1, 383), (640.9, 1788))


def _rules() -> dict[str, str]:
    """Each rule's text in workflow/rules/*.smk and the Snakefile, by rule name."""
    rules = {}
    for path in [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow/rules").glob("*.smk"))]:
        blocks = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        rules.update(dict(zip(blocks[1::2], blocks[2::2], strict=True)))
    return rules


def _profile() -> dict[str, Any]:
    return yaml.safe_load(PROFILE.read_text())


def test_lint_is_clean() -> None:
    run = _snakemake("--lint")
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "Lints for" not in output, output[-4000:]


def test_every_rule_has_a_log_and_a_benchmark() -> None:
    rules = _rules()
    assert {
        "demo_tube", "tube", "one_tube_specimen", "specimen", "recommendations", "cohort_report"
    } <= set(rules)  # fmt: skip
    for name, body in rules.items():
        if name == "all":  # input only: runs nothing
            continue
        assert re.search(r"^    log:", body, re.MULTILINE), f"rule {name} has no log:"
        assert re.search(r"^    benchmark:", body, re.MULTILINE), f"rule {name} has no benchmark:"
        assert re.search(r"^    conda:", body, re.MULTILINE), f"rule {name} has no conda:"


@pytest.mark.slurm
def test_cheap_rules_are_local_and_per_sample_rules_are_one_group() -> None:
    rules = _rules()
    for name in ("demo_tube", "recommendations", "cohort_report"):
        assert "localrule: True" in rules[name], f"{name} should be a localrule"
    for name in PER_SAMPLE_RULES:
        assert re.search(r'group:\s*\n\s*"sample"', rules[name]), f"{name} not in group sample"


@pytest.mark.slurm
def test_slurm_profile_leaves_partition_and_account_to_the_user() -> None:
    profile = _profile()
    assert profile["executor"] == "slurm"
    assert profile["keep-going"] is True
    assert profile["retries"] >= 1
    assert profile["rerun-incomplete"] is True
    assert "sample" in profile["group-components"]
    # A workflow profile's default-resources would replace the user's (partition, account).
    assert "default-resources" not in profile
    settings = json.dumps(profile)  # comments aside
    assert "slurm_partition" not in settings and "slurm_account" not in settings
    for rule in PER_SAMPLE_RULES:
        assert profile["set-threads"][rule] >= 1
        assert {"mem_mb", "runtime"} <= set(profile["set-resources"][rule]), rule


def _resource(rule: str, name: str, size_mb: float, attempt: int = 1) -> int:
    """A set-resources expression of the profile, evaluated as Snakemake evaluates it."""
    expression = str(_profile()["set-resources"][rule][name])
    namespace = {"input": SimpleNamespace(size_mb=size_mb), "attempt": attempt, "threads": 1}
    return int(eval(expression, namespace))


@pytest.mark.slurm
def test_profile_memory_covers_the_largest_demo_tube_with_a_margin(demo_cohort: Path) -> None:
    """Peak memory of the whole per-sample sequence (profile, decide, report, in one process:
    `antigen-profile profile`) on the largest demo tube, measured here, against what the
    profile asks Slurm for."""
    tubes = sorted(
        (p for p in (demo_cohort / "fcs").glob("*.fcs") if not p.stem.endswith("_control")),
        key=lambda p: p.stat().st_size,
    )
    stained = tubes[-1]
    control = stained.with_name(f"{stained.stem}_control.fcs")
    size_mb = (stained.stat().st_size + control.stat().st_size) / 2**20
    out = demo_cohort.parent / "hpc-peak" / stained.stem
    cli = [str(Path(sys.executable).parent / "antigen-profile")]
    if not Path(cli[0]).exists():
        cli = [sys.executable, "-m", "antigen_profile.cli"]
    cmd = [*cli, "profile", str(stained), "--control", str(control), "--out", str(out)]
    # A fresh parent process, so that RUSAGE_CHILDREN sees this one command only (Linux: KiB).
    probe = (
        "import resource, subprocess, sys; "
        f"rc = subprocess.run({cmd!r}, capture_output=True).returncode; "
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    rc, peak_kib = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    assert rc == "0", f"antigen-profile profile failed on {stained.name}"
    peak_mb = int(peak_kib) / 1024
    for rule in ("tube", "one_tube_specimen"):
        asked = _resource(rule, "mem_mb", size_mb)
        assert asked >= 1.5 * peak_mb, (
            f"{rule} asks {asked} MB; {stained.name} peaked at {peak_mb:.0f}"
        )
        # The larger tubes measured in benchmarks/RESULTS.md (peak MB by input MB), 25% margin.
        for measured_size_mb, measured_peak_mb in MEASURED_PEAKS:
            assert _resource(rule, "mem_mb", measured_size_mb) >= 1.25 * measured_peak_mb
        # A retry asks for more.
        assert _resource(rule, "mem_mb", size_mb, attempt=2) > asked


@pytest.mark.slurm
def test_slurm_profile_dry_run() -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[hpc]'")
    run = _snakemake("--workflow-profile", "profiles/slurm", "--dry-run", "--quiet")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def _e2e_reason_to_skip() -> str | None:
    wanted = os.environ.get("ANTIGEN_PROFILE_SLURM_E2E")
    if wanted == "1":
        return None
    if wanted == "0":
        return "ANTIGEN_PROFILE_SLURM_E2E=0"
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        return (
            f"Slurm is not installed here ({', '.join(missing)} missing); set "
            "ANTIGEN_PROFILE_SLURM_E2E=1 to install it and run tests/hpc/slurm_e2e.sh "
            "(Debian/Ubuntu, root; .ci/run does)"
        )
    return None


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_cohort_on_a_real_slurm() -> None:
    """tests/hpc/slurm_e2e.sh: a single-node Slurm on 127.0.0.1, three samples through
    `snakemake --executor slurm` with profiles/slurm, results equal to a local run's."""
    reason = _e2e_reason_to_skip()
    if reason:
        pytest.skip(reason)
    run = subprocess.run(
        ["bash", str(E2E)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": sys.executable},
    )
    output = run.stdout + run.stderr
    if run.returncode == SKIPPED and os.environ.get("ANTIGEN_PROFILE_SLURM_E2E") != "1":
        lines = [line for line in output.splitlines() if "SKIP:" in line] or [output[-300:]]
        pytest.skip(lines[-1].split("SKIP:", 1)[-1].strip())
    assert run.returncode == 0, output[-6000:]
    assert "PASS:" in output
