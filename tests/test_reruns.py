"""Issue 14: results follow their inputs. After a finished run, changing one thing that
changes a number (a config value, the gating template, the trial, the compensation matrix, a
lab's gating, one patient's row) makes Snakemake rerun exactly the jobs it affects; an
interrupted run resumes with a plain ``snakemake``; outputs never land on inputs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import snakemake

from antigen_profile.ingest import read_tube
from antigen_profile.paths import REPO_ROOT

pytestmark = pytest.mark.workflow

SAMPLES = ("P01-R1", "P02-R1")
#: Jobs per tube: each tube here is its own specimen, so one job does the tube and the
#: specimen (rule one_tube_specimen; issue 19).
PER_SAMPLE = ("one_tube_specimen",)


@dataclass
class Run:
    """A finished two-sample run and the files it was configured with (private copies)."""

    folder: Path
    config: Path
    results: Path
    template: Path
    trial: Path
    matrix: Path
    patients: Path

    def config_with(self, **changes: object) -> Path:
        """A copy of the run's config file with ``changes`` (``a__b`` sets ``a.b``)."""
        config = yaml.safe_load(self.config.read_text())
        for key, value in changes.items():
            *sections, last = key.split("__")
            holder = config
            for section in sections:
                holder = holder[section]
            holder[last] = value
        path = self.folder / f"config-{len(list(self.folder.glob('config-*')))}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path


def _jobs(output: str) -> set[tuple[str, str]]:
    """(rule, sample) of every job a dry run lists ("" for cohort jobs)."""
    jobs: set[tuple[str, str]] = set()
    rule = None
    for line in output.splitlines():
        start = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if start:
            rule = start.group(1)
            jobs.add((rule, ""))
            continue
        sample = re.match(r"^\s+wildcards: (?:sample|specimen)=(\S+)$", line)
        if sample and rule:
            jobs.discard((rule, ""))
            jobs.add((rule, sample.group(1)))
    return jobs


def _planned(run: Run, config: Path | None = None) -> set[tuple[str, str]]:
    dry = snakemake("-n", "--configfile", str(config or run.config))
    assert dry.returncode == 0, dry.stderr[-2000:]
    return _jobs(dry.stdout + dry.stderr)


COHORT = {("recommendations", ""), ("cohort_report", ""), ("all", "")}


def _everything_for(*samples: str) -> set[tuple[str, str]]:
    return {(rule, s) for s in samples for rule in PER_SAMPLE} | COHORT


@pytest.fixture(scope="module")
def run(demo_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("reruns")
    for sid in SAMPLES:
        for name in (sid, f"{sid}_control"):
            shutil.copy(demo_cohort / "fcs" / f"{name}.fcs", folder / f"{name}.fcs")
    rows = [
        {"sample_id": s, "patient_id": s.split("-")[0], "fcs": f"{s}.fcs",
         "control_fcs": f"{s}_control.fcs", "timepoint": "relapse"}
        for s in SAMPLES
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "samples.tsv", sep="\t", index=False)
    shutil.copy(demo_cohort / "patients.tsv", folder / "patients.tsv")
    template = shutil.copy(REPO_ROOT / "resources/gates/b-all-blasts.xml", folder / "gates.xml")
    trial = shutil.copy(REPO_ROOT / "config/trials/4scar.yaml", folder / "trial.yaml")
    tube = read_tube(folder / "P01-R1.fcs", {"CD45": ["CD45"]}, {"FSC-A": ["FSC-A"]})
    assert tube.spillover is not None
    matrix = folder / "spillover.csv"
    tube.spillover.to_csv(matrix)
    config = yaml.safe_load((REPO_ROOT / "config/config.yaml").read_text())
    config.update(
        samples=str(folder / "samples.tsv"),
        patients=str(folder / "patients.tsv"),
        results=str(folder / "results"),
        trial=str(trial),
        gating_template=str(template),
    )
    config["compensation"]["matrix"] = str(matrix)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    done = Run(
        folder, folder / "config.yaml", folder / "results", Path(template), Path(trial),
        matrix, folder / "patients.tsv",
    )  # fmt: skip
    first = snakemake("--configfile", str(done.config))
    assert first.returncode == 0, first.stderr[-3000:]
    assert _planned(done) == set(), "a finished run must have nothing left to do"
    return done


@pytest.fixture()
def edited(run: Run) -> Iterator[None]:
    """Put back every file a test edits, with its old times, so the next test starts from a
    finished run."""
    files = [run.template, run.trial, run.matrix, run.patients]
    saved = {f: (f.read_bytes(), os.stat(f)) for f in files}
    yield
    for f, (data, stat) in saved.items():
        f.write_bytes(data)
        os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_a_changed_positivity_setting_reruns_every_profile(run: Run) -> None:
    changed = run.config_with(positivity__percentile=99.0)
    assert _planned(run, changed) == _everything_for(*SAMPLES)


def test_a_changed_cohort_setting_reruns_only_the_cohort_table(run: Run) -> None:
    loss = yaml.safe_load(run.config.read_text())["timepoints"]["loss_points"]
    changed = run.config_with(timepoints__loss_points=loss + 5)
    assert _planned(run, changed) == {("recommendations", ""), ("cohort_report", ""), ("all", "")}


@pytest.mark.usefixtures("edited")
@pytest.mark.parametrize("which", ["template", "trial", "matrix"])
def test_an_edited_config_file_reruns_every_sample(run: Run, which: str) -> None:
    path: Path = getattr(run, which)
    _append(path, "\n" if which != "template" else "<!-- edited -->\n")
    assert _planned(run) == _everything_for(*SAMPLES)


@pytest.mark.usefixtures("edited")
def test_one_patients_edited_row_reruns_that_patients_samples_only(run: Run) -> None:
    """The patient's row is a param of the patient's per-sample jobs: those rerun (analysis,
    decision and reports are one job since issue 19), the other patient's do not."""
    sheet = pd.read_csv(run.patients, sep="\t", dtype=str, keep_default_na=False)
    column = next(c for c in sheet.columns if c not in ("patient_id",))
    row = sheet.index[sheet["patient_id"] == "P02"][0]
    sheet.loc[row, column] = "" if sheet.loc[row, column] else "unknown"
    sheet.to_csv(run.patients, sep="\t", index=False)
    assert _planned(run) == {("one_tube_specimen", "P02-R1")} | COHORT


def test_a_labs_gating_file_is_an_input_of_every_profile(run: Run, tmp_path: Path) -> None:
    from antigen_profile.lab_gating import template_workspace

    tube = read_tube(run.folder / "P01-R1.fcs", {"CD45": ["CD45"]}, {"FSC-A": ["FSC-A"]})
    names = {"cells": "Cells", "singlets": "Single Cells", "leukocytes": "CD45+",
             "blasts": "Blasts", "lymphocytes": "Lymphs"}  # fmt: skip
    wsp = template_workspace(
        run.template, {"CD45": tube.markers["CD45"]}, tmp_path / "lab.wsp", names=names,
        spillover=tube.spillover, channels=tube.channels,
    )  # fmt: skip
    config = run.config_with(
        results=str(tmp_path / "results"),
        lab_gating={"file": str(wsp), "sample": None, "populations": names},
    )
    target = str(tmp_path / "results" / "P01-R1" / "profile.json")
    first = snakemake(target, "--configfile", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    _append(wsp, "\n")
    dry = snakemake(target, "-n", "--configfile", str(config))
    assert _jobs(dry.stdout + dry.stderr) == {("one_tube_specimen", "P01-R1")}


def test_a_plain_rerun_after_an_interrupted_run_finishes_it(run: Run, tmp_path: Path) -> None:
    """Ctrl-C while a sample's outputs are half written, then plain ``snakemake``: without the
    workflow's default profile Snakemake stops with IncompleteFilesException; with it (it
    sets rerun-incomplete) the unfinished sample is redone and the run completes."""
    results = tmp_path / "results"
    config = run.config_with(results=str(results))
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(config)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    half: list[Path] = []
    while not half and process.poll() is None and time.monotonic() < deadline:
        written = results.glob("*/coverage.tsv")
        half = [p for p in written if not p.with_name("profile.json").exists()]
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    process.wait(timeout=120)
    assert half, "no sample was caught half written (both profile jobs finished unseen)"
    without = snakemake("--workflow-profile", "none", "--configfile", str(config))
    assert without.returncode != 0 and "IncompleteFilesException" in without.stderr, (
        "the interruption left nothing incomplete: this test no longer tests the rerun"
    )
    again = snakemake("--configfile", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (results / "report.html").is_file()


def test_the_run_ends_with_a_summary(run: Run) -> None:
    """The last lines say how many samples got which decision and where the report is."""
    final = snakemake("--configfile", str(run.config), "--forcerun", "cohort_report")
    assert final.returncode == 0, final.stderr[-2000:]
    text = final.stdout + final.stderr
    assert re.search(r"antigen-profile: 2 specimen\(s\): \d+ \w+", text), text[-2000:]
    assert f"report: {run.results / 'report.html'}" in text


def test_a_changed_specimen_grouping_reruns_that_tube_and_its_new_specimen(
    run: Run, tmp_path: Path
) -> None:
    """Giving P02-R1 a specimen_id regroups it: the tube's job (its decision names the
    specimen) and the new specimen's job run, P01-R1 is untouched."""
    sheet = pd.read_csv(run.folder / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet["specimen_id"] = ["", "P02-draw1"]
    for column in ("fcs", "control_fcs"):
        sheet[column] = [str(run.folder / f) for f in sheet[column]]
    regrouped = tmp_path / "samples.tsv"
    sheet.to_csv(regrouped, sep="\t", index=False)
    config = yaml.safe_load(run.config.read_text())
    config["samples"] = str(regrouped)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    planned = _planned(run, path)
    assert planned == {("tube", "P02-R1"), ("specimen", "P02-draw1")} | COHORT
