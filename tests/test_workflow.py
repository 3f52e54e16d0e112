"""The Snakemake workflow as users run it: sheets checked before any job, a cohort with a bad
file completes, reruns recompute nothing, and the built-in demo matches its truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from antigen_profile.demo import SPLIT_TRUTH
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import demo_tube_events, demo_tube_spec, write_fcs

pytestmark = pytest.mark.workflow


def snakemake(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the repository's workflow from the repository, as the README does."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _channels_and_labels() -> tuple[list[str], list[str]]:
    spec, _ = demo_tube_spec("P02-R1")
    return [c.name for c in spec.channels], [c.label or "" for c in spec.channels]


def _sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture()
def small_cohort(demo_cohort: Path, tmp_path: Path) -> Path:
    """Three demo samples plus one unreadable file, in a folder of their own; sheet paths are
    relative to the sheet."""
    cohort = tmp_path / "cohort"
    (cohort / "tubes").mkdir(parents=True)
    rows = []
    for sid in ("P01-R1", "P05-R1", "P06-R1"):
        for name in (sid, f"{sid}_control"):
            shutil.copy(demo_cohort / "fcs" / f"{name}.fcs", cohort / "tubes" / f"{name}.fcs")
        rows.append(
            {
                "sample_id": sid,
                "patient_id": sid.split("-")[0],
                "fcs": f"tubes/{sid}.fcs",
                "control_fcs": f"tubes/{sid}_control.fcs",
                "timepoint": "relapse",
            }
        )
    (cohort / "tubes" / "X99-R1.fcs").write_bytes(b"not an FCS file")
    # A readable tube that fails acquisition QC: far too few events to analyse.
    events, _ = demo_tube_events("P02-R1")
    write_fcs(cohort / "tubes" / "Q98-R1.fcs", events[:800], *_channels_and_labels())
    rows.append(
        {"sample_id": "Q98-R1", "patient_id": "P02", "fcs": "tubes/Q98-R1.fcs",
         "control_fcs": "", "timepoint": ""}
    )  # fmt: skip
    rows.append(
        {"sample_id": "X99-R1", "patient_id": "P01", "fcs": "tubes/X99-R1.fcs",
         "control_fcs": "", "timepoint": ""}
    )  # fmt: skip
    _sheet(cohort / "samples.tsv", rows)
    shutil.copy(demo_cohort / "patients.tsv", cohort / "patients.tsv")
    return cohort


def test_cohort_with_an_unreadable_and_a_qc_failing_file_completes(
    small_cohort: Path, demo_truth: dict[str, Any], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    config = [
        "--config",
        f"samples={small_cohort / 'samples.tsv'}",
        f"patients={small_cohort / 'patients.tsv'}",
        f"results={results}",
    ]
    run = snakemake(*config)
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = table.set_index("sample_id")
    assert list(rows.index) == ["P01-R1", "P05-R1", "P06-R1", "Q98-R1", "X99-R1"]
    for sid in ("P01-R1", "P05-R1", "P06-R1"):
        truth = demo_truth[sid]
        assert rows.loc[sid, "eligible_targets"] == ",".join(truth["eligible_targets"])
        assert rows.loc[sid, "antigen_status"] == truth["antigen_status"]
        assert rows.loc[sid, "clinical_status"] == truth["clinical_status"]
        assert rows.loc[sid, "decision"] == truth["decision"]
        assert (results / sid / "report.html").stat().st_size > 10_000
    assert rows.loc["X99-R1", "antigen_status"] == "qc_failed"
    assert rows.loc["X99-R1", "eligible_targets"] == ""
    qc = json.loads((results / "X99-R1" / "qc.json").read_text())
    assert "X99-R1.fcs" in qc["reasons"][0]
    assert rows.loc["Q98-R1", "antigen_status"] == "qc_failed"
    assert rows.loc["Q98-R1", "decision"] == "needs_review"
    qc = json.loads((results / "Q98-R1" / "qc.json").read_text())
    assert qc["status"] == "fail" and "800 events" in qc["reasons"][0]
    index = (results / "report.html").read_text()
    for sid in rows.index:
        assert f'href="{sid}/report.html"' in index
    # one job per tube (issue 19), its log and benchmark under the tube's id
    assert (results / "logs" / "tube" / "P01-R1.log").exists()
    assert (results / "benchmarks" / "tube" / "P01-R1.tsv").exists()

    again = snakemake(*config, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr, "finished work is never redone"


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("missing_file", "fcs file tubes/NOPE.fcs not found"),
        ("duplicate", "sample_id repeats line 2"),
        ("bad_column", "unknown: tube"),
        ("bad_id", "'P 01' is not allowed"),
    ],
)
def test_bad_sample_sheet_stops_before_any_job(
    small_cohort: Path, tmp_path: Path, problem: str, expected: str
) -> None:
    sheet = pd.read_csv(small_cohort / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    if problem == "missing_file":
        sheet.loc[1, "fcs"] = "tubes/NOPE.fcs"
    elif problem == "duplicate":
        sheet.loc[1, "sample_id"] = sheet.loc[0, "sample_id"]
    elif problem == "bad_column":
        sheet = sheet.rename(columns={"timepoint": "tube"})
    else:
        sheet.loc[0, "sample_id"] = "P 01"
    sheet.to_csv(small_cohort / "bad.tsv", sep="\t", index=False)
    results = tmp_path / "results"
    run = snakemake(
        "--config",
        f"samples={small_cohort / 'bad.tsv'}",
        f"patients={small_cohort / 'patients.tsv'}",
        f"results={results}",
    )
    assert run.returncode != 0
    assert expected in run.stderr
    assert "bad.tsv line" in run.stderr or problem == "bad_column"
    assert not results.exists(), "no job may run when a sheet is rejected"


def test_default_run_is_the_demo_cohort(tmp_path: Path) -> None:
    """`snakemake --cores 2` with no other argument: the built-in demo, generated by the
    workflow itself, with every call matching the generator's truth."""
    results = tmp_path / "results"
    run = snakemake("--config", f"results={results}")
    assert run.returncode == 0, run.stderr[-3000:]
    demo = REPO_ROOT / "resources" / "demo"
    truth = json.loads((demo / "truth.json").read_text())
    split = json.loads((demo / SPLIT_TRUTH).read_text())  # the split-panel patient
    truth.update(split)
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert sorted(table["specimen_id"]) == sorted(truth)  # one row per specimen
    for row in table.itertuples():
        expected = truth[row.specimen_id]
        assert row.eligible_targets == ",".join(expected["eligible_targets"]), row.specimen_id
        assert row.antigen_status == expected["antigen_status"], row.specimen_id
        assert row.clinical_status == expected["clinical_status"], row.specimen_id
        assert row.decision == expected["decision"], row.specimen_id
        if row.decision == "needs_review":
            assert row.review_reasons, f"{row.specimen_id}: needs_review must say why"
    for specimen_id, expected in split.items():
        row = table.set_index("specimen_id").loc[specimen_id]
        assert row["sample_id"] == "" and row["tubes"] == ",".join(
            t["sample_id"] for t in expected["tubes"]
        )
        folder = results / "specimens" / specimen_id
        antigens = pd.read_csv(folder / "antigens.tsv", sep="\t").set_index("marker")
        for marker, value in expected["antigens"].items():
            assert antigens.loc[marker, "sample_id"] == value["sample_id"], marker
            assert abs(antigens.loc[marker, "pct_positive"] - value["pct_positive"]) <= 3.0
        assert (folder / "report.html").is_file()
        # its tubes' reports exist too, and the cohort index links the specimen's
        assert all((results / t["sample_id"] / "report.html").is_file() for t in expected["tubes"])
        assert f"specimens/{specimen_id}/report.html" in (results / "report.html").read_text()
    assert (results / "report.html").exists()
    decisions = json.loads((results / "decisions.json").read_text())
    assert [d["specimen_id"] for d in decisions] == sorted(truth)
    assert all(
        rule["outcome"] in {"pass", "fail", "unknown"} for d in decisions for rule in d["rules"]
    )
    patients = pd.read_csv(results / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert sorted(patients["patient_id"]) == sorted({t["patient_id"] for t in truth.values()})


def test_a_labs_flowjo_workspace_drives_the_workflow(
    small_cohort: Path, demo_cohort: Path, demo_truth: dict[str, Any], tmp_path: Path
) -> None:
    """A lab brings its B-ALL template as a FlowJo workspace (written here with FlowKit's
    workspace export), names it in config with its population names, and the workflow gates
    every sample with it."""
    import yaml

    from antigen_profile.ingest import read_tube
    from antigen_profile.lab_gating import template_workspace

    tube = read_tube(demo_cohort / "fcs" / "P01-R1.fcs", {"CD45": ["CD45"]}, {"FSC-A": ["FSC-A"]})
    names = {"cells": "Cells", "singlets": "Single Cells", "leukocytes": "CD45+",
             "blasts": "Blasts", "lymphocytes": "Lymphs"}  # fmt: skip
    wsp = template_workspace(
        REPO_ROOT / "resources" / "gates" / "b-all-blasts.xml",
        {"CD45": tube.markers["CD45"]},
        tmp_path / "lab-template.wsp",
        names=names,
        spillover=tube.spillover,
        channels=tube.channels,
    )
    extra = tmp_path / "lab.yaml"
    extra.write_text(
        yaml.safe_dump({"lab_gating": {"file": str(wsp), "sample": None, "populations": names}})
    )
    results = tmp_path / "results"
    run = snakemake(
        "--configfile",
        str(REPO_ROOT / "config" / "config.yaml"),
        str(extra),
        "--config",
        f"samples={small_cohort / 'samples.tsv'}",
        f"patients={small_cohort / 'patients.tsv'}",
        f"results={results}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = table.set_index("sample_id")
    for sid in ("P01-R1", "P05-R1"):
        truth = demo_truth[sid]
        assert rows.loc[sid, "eligible_targets"] == ",".join(truth["eligible_targets"])
        assert rows.loc[sid, "decision"] == truth["decision"]
        profile = json.loads((results / sid / "profile.json").read_text())
        assert profile["gating"]["engine"] == "lab" and profile["gating"]["kind"] == "flowjo"
        assert any(i["role"] == "lab_gating" for i in profile["inputs"])
        blasts = pd.read_csv(results / sid / "populations.tsv", sep="\t").set_index("population")
        assert (
            abs(blasts.loc["blasts", "events"] - truth["blast_events"])
            <= 0.01 * truth["blast_events"]
        )
    assert rows.loc["X99-R1", "antigen_status"] == "qc_failed"
