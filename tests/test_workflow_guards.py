"""Issue 14: what the workflow refuses when it is read, before any job, in one line each:
outputs that would land on a user's files or outside ``results=``, sample ids that are not
folder names, a mistyped config key, an invalid trial; and a config copied out of the
repository that still names the shipped template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import snakemake

from antigen_profile.outputs import COHORT_NAMES, layout_problems
from antigen_profile.paths import REPO_ROOT

pytestmark = pytest.mark.workflow

DEMO = REPO_ROOT / "resources" / "demo"


@pytest.fixture()
def sheets(tmp_path: Path, demo_cohort: Path) -> Path:
    """A one-sample cohort: the sheets and the tube in ``tmp_path/cohort``."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copy(demo_cohort / "fcs" / "P01-R1.fcs", cohort / "P01-R1.fcs")
    shutil.copy(demo_cohort / "patients.tsv", cohort / "patients.tsv")
    _samples(cohort, "P01-R1")
    return cohort


def _samples(cohort: Path, sample_id: str) -> Path:
    rows = [{"sample_id": sample_id, "patient_id": "P01", "fcs": "P01-R1.fcs"}]
    pd.DataFrame(rows).to_csv(cohort / "samples.tsv", sep="\t", index=False)
    return cohort / "samples.tsv"


def _refused(run: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line of the refusal; the run must have failed before any job."""
    assert run.returncode != 0
    text = run.stdout + run.stderr
    assert "Select jobs to execute" not in text
    assert "rule one_tube_specimen" not in text and "rule tube" not in text
    lines = [line for line in text.splitlines() if all(w in line for w in words)]
    assert lines, text[-2000:]
    return lines[0]


def _run(cohort: Path, results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return snakemake(
        "--config",
        f"samples={cohort / 'samples.tsv'}",
        f"patients={cohort / 'patients.tsv'}",
        f"results={results}",
        *extra,
    )


def test_results_in_the_sheets_folder_is_refused_and_the_sheet_kept(sheets: Path) -> None:
    before = (sheets / "patients.tsv").read_bytes()
    line = _refused(_run(sheets, sheets), "patients.tsv", "choose another results folder")
    assert "patient sheet" in line
    assert (sheets / "patients.tsv").read_bytes() == before
    assert not (sheets / "recommendations.tsv").exists()


@pytest.mark.parametrize("sample_id", ["..", "."])
def test_a_sample_id_that_is_not_a_folder_name_is_refused(
    sheets: Path, tmp_path: Path, sample_id: str
) -> None:
    _samples(sheets, sample_id)
    (tmp_path / "keep.txt").write_text("the user's file")
    results = tmp_path / "results"
    _refused(_run(sheets, results), repr(sample_id), "rename the sample")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "keep.txt"]


def test_a_sample_id_named_like_a_cohort_output_is_refused(sheets: Path, tmp_path: Path) -> None:
    _samples(sheets, "report.html")
    _refused(_run(sheets, tmp_path / "results"), "'report.html'", "cohort output")


def test_layout_problems_cover_every_cohort_name_and_a_tube_under_results(tmp_path: Path) -> None:
    """The parse-time check itself: each cohort name is refused as an id, and a tube kept
    where a sample's output would go is named."""
    for name in sorted(COHORT_NAMES):
        assert layout_problems(tmp_path, [name], {}), name
    tube = tmp_path / "S1" / "qc.json"
    problems = layout_problems(tmp_path, ["S1"], {"tube": [tube]})
    assert problems == [
        f"tube {tube} would be overwritten by the output S1/qc.json of results={tmp_path}; "
        "choose another results folder"
    ]
    assert layout_problems(tmp_path, ["S1", "S2"], {"tube": [tmp_path / "in.fcs"]}) == []
    # each kind of output place: the cohort's, a specimen's; a file of another name, or in a
    # folder that is no sample's or specimen's, is no output
    sheet, merged = (
        tmp_path / "recommendations.tsv",
        tmp_path / "specimens" / "P9" / "specimen.json",
    )
    problems = layout_problems(tmp_path, ["S1"], {"sheet": [sheet, merged]}, specimen_ids=["P9"])
    assert [
        p.split(" would be overwritten by the output ")[1].split(" of ")[0] for p in problems
    ] == [
        "recommendations.tsv",
        "specimens/P9/specimen.json",
    ]
    elsewhere = [
        tmp_path / "S1" / "notes.tsv",
        tmp_path / "S2" / "qc.json",
        tmp_path / "specimens" / "P8" / "specimen.json",
    ]
    assert layout_problems(tmp_path, ["S1"], {"sheet": elsewhere}, specimen_ids=["P9"]) == []


def test_a_linked_sample_folder_is_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (results / "S1").symlink_to(tmp_path / "elsewhere")
    [problem] = layout_problems(results, ["S1"], {})
    assert "is a link to" in problem and "remove the link" in problem


def test_a_mistyped_config_key_is_one_line_naming_the_nearest_key(sheets: Path) -> None:
    run = _run(sheets, sheets.parent / "results", "positivty=99")
    line = _refused(run, "unknown key 'positivty'")
    assert "did you mean 'positivity'?" in line
    assert "$schema" not in run.stderr and len(run.stderr.splitlines()) < 15


def test_an_invalid_trial_is_refused_before_any_job(sheets: Path, tmp_path: Path) -> None:
    trial = yaml.safe_load((REPO_ROOT / "config" / "trials" / "4scar.yaml").read_text())
    trial["targets"] = "CD22"  # a list in every valid trial
    bad = tmp_path / "trial.yaml"
    bad.write_text(yaml.safe_dump(trial))
    results = tmp_path / "results"
    _refused(_run(sheets, results, f"trial={bad}"), "trial rules rejected")
    assert not results.exists()


def test_a_missing_template_is_one_line(sheets: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.xml"
    run = _run(sheets, tmp_path / "results", f"gating_template={missing}")
    _refused(run, "gating_template", str(missing), "not found")


def test_a_config_copied_out_of_the_repository_still_finds_the_shipped_template(
    tmp_path: Path, demo_cohort: Path
) -> None:
    """``profile --config`` with a copy of config.yaml elsewhere: its relative template and
    trial paths (the repository's) are found, not a traceback."""
    shutil.copy(REPO_ROOT / "config" / "config.yaml", tmp_path / "my.yaml")
    shutil.copy(demo_cohort / "fcs" / "P01-R1.fcs", tmp_path / "P01-R1.fcs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        [sys.executable, "-m", "antigen_profile.cli", "profile", "P01-R1.fcs", "--config",
         "my.yaml", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "out" / "antigens.tsv").is_file()
    config = yaml.safe_load((tmp_path / "my.yaml").read_text())
    config["gating_template"] = "gates/mine.xml"  # neither here nor in the repository
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "antigen_profile.cli", "profile", "P01-R1.fcs", "--config",
         "my.yaml", "--out", "out2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"antigen-profile: my.yaml: gating_template {tmp_path / 'gates/mine.xml'} not found; "
        "give a path that exists, absolute or relative to the folder you run from"
    ]


def test_a_trial_that_is_a_fifo_is_refused_without_hanging(sheets: Path, tmp_path: Path) -> None:
    """The trial is read when the workflow is read: a FIFO there would hang the parse."""
    fifo = tmp_path / "trial.yaml"
    os.mkfifo(fifo)
    run = _run(sheets, tmp_path / "results", f"trial={fifo}")
    _refused(run, "trial", str(fifo), "is not a regular file (FIFO)")
