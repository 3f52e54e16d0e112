"""`antigen-profile profile` and `antigen-profile demo` outside Snakemake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from antigen_profile.cli import main


def test_profile_writes_the_same_outputs_as_the_workflow(
    demo_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "profile",
            str(demo_cohort / "fcs" / "P03-R1.fcs"),
            "--control",
            str(demo_cohort / "fcs" / "P03-R1_control.fcs"),
            "--out",
            str(tmp_path / "P03-R1"),
            "--patients",
            str(demo_cohort / "patients.tsv"),
            "--patient-id",
            "P03",
        ]
    )
    assert code == 0
    out = tmp_path / "P03-R1"
    for name in ("qc.json", "antigens.tsv", "populations.tsv", "decision.json", "report.html"):
        assert (out / name).is_file(), name
    decision = json.loads((out / "decision.json").read_text())
    assert decision["decision"] == "candidate"
    assert decision["eligible_targets"] == ["CD10", "CD20", "CD22"]
    assert "P03-R1: candidate" in capsys.readouterr().out


def test_profile_without_patient_is_undetermined(demo_cohort: Path, tmp_path: Path) -> None:
    assert main(["profile", str(demo_cohort / "fcs" / "P01-R1.fcs"), "--out", str(tmp_path)]) == 0
    decision = json.loads((tmp_path / "decision.json").read_text())
    assert decision["clinical_status"] == "undetermined"
    assert decision["decision"] == "needs_review"


def test_profile_of_an_unreadable_file_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.fcs"
    bad.write_bytes(b"\x00" * 20)
    assert main(["profile", str(bad), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.fcs" in err[0]


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, so that a call that blocks is killed at the timeout and
    fails the test instead of hanging the suite (only a hang comes near the limit)."""
    return subprocess.run(
        [sys.executable, "-m", "antigen_profile.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_profile_of_a_fifo_or_dev_zero_exits_1_with_one_line(tmp_path: Path, kind: str) -> None:
    """Issue 14: the input used to be hashed before anything checked it, and hung."""
    if kind == "fifo":
        path = tmp_path / "tube.fcs"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    try:
        done = _run_cli(
            "profile", str(path), "--sample-id", "S1", "--out", str(tmp_path / "out"),
            cwd=tmp_path,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"antigen-profile profile {path} still ran after 300 s: it blocks")
    assert done.returncode == 1, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and "is not a regular file" in err[0]
    assert ("FIFO" if kind == "fifo" else "character device") in err[0]
    assert (tmp_path / "out" / "report.html").is_file()


def test_profile_refuses_a_patient_sheet_that_is_a_fifo(tmp_path: Path) -> None:
    """The patient sheet is read after the analysis: refused before it, in one line."""
    sheet = tmp_path / "patients.tsv"
    os.mkfifo(sheet)
    tube = tmp_path / "tube.fcs"
    tube.write_bytes(b"not an FCS file")
    args = ["profile", str(tube), "--out", str(tmp_path / "out"), "--patients", str(sheet)]
    try:
        done = _run_cli(*args, "--patient-id", "P01", cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("antigen-profile profile --patients FIFO still ran after 300 s: it blocks")
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and str(sheet) in err[0] and "is not a regular file (FIFO)" in err[0]
    assert not (tmp_path / "out").exists()


def test_demo_writes_cohort_and_sheets(tmp_path: Path) -> None:
    assert main(["demo", str(tmp_path)]) == 0
    samples = pd.read_csv(tmp_path / "samples.tsv", sep="\t")
    assert len(samples) >= 6
    assert all((tmp_path / f).is_file() for f in samples["fcs"])
    assert (tmp_path / "patients.tsv").is_file()


def test_committed_demo_sheets_match_the_generator(tmp_path: Path) -> None:
    from antigen_profile.demo import SPLIT_TRUTH, write_sheets
    from antigen_profile.paths import REPO_ROOT

    write_sheets(tmp_path)
    for name in ("samples.tsv", "patients.tsv", "truth.json", SPLIT_TRUTH):
        committed = (REPO_ROOT / "resources" / "demo" / name).read_bytes()
        assert committed == (tmp_path / name).read_bytes(), f"resources/demo/{name} is stale"


INSPECT_KEYS = {
    "file", "ok", "error", "version", "cytometer", "events", "parameters", "markers",
    "spillover", "unmatched", "shared", "gating", "warnings",
}  # fmt: skip


def test_inspect_json_describes_each_file_and_exits_1_on_a_bad_one(
    demo_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.fcs"
    bad.write_bytes(b"FCS3.1" + b"\x00" * 100)
    good = demo_cohort / "fcs" / "P01-R1.fcs"
    assert main(["inspect", "--json", str(good), str(bad)]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [set(r) for r in records] == [INSPECT_KEYS, INSPECT_KEYS]
    ok, failed = records
    assert ok["ok"] and ok["error"] is None
    assert ok["version"] == "3.1" and ok["events"] == 50_000 and ok["parameters"] == 12
    assert ok["markers"]["CD22"] == "PE-A" and ok["markers"]["CD19"] == "PE-Cy7-A"
    assert ok["spillover"] == "$SPILLOVER"
    assert not failed["ok"] and "broken.fcs" in failed["error"]
    assert failed["events"] is None


def test_inspect_text_exits_0_when_every_file_reads(
    demo_cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control = demo_cohort / "fcs" / "P01-R1_control.fcs"
    assert main(["inspect", str(control)]) == 0
    out = capsys.readouterr().out
    assert "50000 events" not in out and "20000 events" in out
    assert "spillover: $SPILLOVER" in out


def test_patient_id_without_patients_warns_in_one_line(
    demo_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fcs = str(demo_cohort / "fcs" / "P01-R1.fcs")
    assert main(["profile", fcs, "--out", str(tmp_path), "--patient-id", "P01"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--patients" in line]
    assert len(warnings) == 1
    assert "--patient-id P01 without --patients" in warnings[0]
    assert "clinical facts are unknown" in warnings[0] and "undetermined" in warnings[0]
    decision = json.loads((tmp_path / "decision.json").read_text())
    assert decision["clinical_status"] == "undetermined"
