"""The suite tells a user what it did not run, and lets them choose what to run.

Tests that need the real-file corpus say, at the start and the end of the run, where they
looked for it and how to point them at it (``ANTIGEN_PROFILE_CORPUS``); the Slurm and
benchmark tests carry markers (``slurm``, ``benchmark``) that ``-m`` can select or leave out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import CORPUS_ENV

from antigen_profile.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"
#: A cheap test that reads one corpus file and skips without it.
CORPUS_TEST = "tests/test_qc.py::test_saturation_on_log_amplified_channels"


def _pytest(*args: str, corpus: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CORPUS_ENV}
    if corpus is not None:
        env[CORPUS_ENV] = str(corpus)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_missing_corpus_is_announced_at_the_start_and_counted_at_the_end(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-corpus-here"
    run = _pytest("-rs", CORPUS_TEST, corpus=missing)
    assert run.returncode == 0, run.stdout[-3000:]
    header, _, rest = run.stdout.partition("collected")
    assert f"FCS corpus NOT FOUND at {missing}" in header
    assert f"set {CORPUS_ENV}=" in header
    assert f"1 test SKIPPED: real-file FCS corpus not found at {missing}" in rest
    assert re.search(r"SKIPPED \[1\] tests/test_qc.py:\d+: real-file FCS corpus not found", rest)


def test_a_corpus_without_the_file_names_the_file(tmp_path: Path) -> None:
    run = _pytest("-rs", CORPUS_TEST, corpus=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"FCS corpus: {tmp_path}" in run.stdout
    assert f"{tmp_path / 'flowcal' / 'Data001.fcs'} not found in the FCS corpus" in run.stdout


def test_every_corpus_test_finds_the_corpus_through_conftest() -> None:
    """One place decides where the corpus is, so the environment variable reaches every test."""
    own = [
        path.name
        for path in sorted(TESTS.glob("*.py"))
        if path.name != "conftest.py" and re.search(r"[\"']fcs-corpus[\"']", path.read_text())
    ]
    assert own == [], f"build the corpus path from conftest.CORPUS instead: {own}"


def _markers() -> dict[str, str]:
    pytest_options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    lines = pytest_options["ini_options"]["markers"]
    return dict(line.split(":", 1) for line in lines)


def test_slurm_and_benchmark_markers_are_registered_and_not_deselected_by_default() -> None:
    assert {"workflow", "slurm", "benchmark"} <= set(_markers())
    addopts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"
    ].get("addopts", "")
    assert "-m" not in addopts.split(), "a plain `pytest` must still run every test"


def _collected(marker: str) -> set[str]:
    files = ["tests/test_hpc.py", *sorted(f"tests/{p.name}" for p in TESTS.glob("test_bench_*"))]
    run = _pytest("--collect-only", "-q", "--strict-markers", "-m", marker, *files)
    assert run.returncode in (0, 5), run.stdout[-3000:] + run.stderr[-2000:]  # 5: none
    return {line for line in run.stdout.splitlines() if "::" in line}


def test_the_markers_select_the_slurm_and_the_benchmark_tests() -> None:
    slurm = _collected("slurm")
    assert {t.split("::")[0] for t in slurm} == {"tests/test_hpc.py"}
    assert "tests/test_hpc.py::test_demo_cohort_on_a_real_slurm" in slurm
    assert "tests/test_hpc.py::test_slurm_profile_dry_run" in slurm
    benchmark = _collected("benchmark")
    assert {t.split("::")[0] for t in benchmark} == {
        "tests/test_bench_agreement.py",
        "tests/test_bench_cohort.py",
    }
    assert not _collected("benchmark and slurm")
