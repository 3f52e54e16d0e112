"""Issue 18, corrected gates: a reviewer moves a gate of one tube's ``gates.xml`` in a
Gating-ML editor (FlowKit here), the sheet's ``gates`` column names the saved file, and a
rerun recomputes only that tube and its specimen, with the blasts FlowKit counts on the
same file; every other output stays as it was. A file that does not fit the tube fails that
tube in one line; a missing one stops the run before any job."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_reruns import COHORT, PER_SAMPLE, _jobs
from test_workflow import snakemake

from antigen_profile.outputs import COHORT_FILES
from antigen_profile.paths import REPO_ROOT
from antigen_profile.pipeline import compute_profile
from antigen_profile.settings import Settings
from antigen_profile.sheets import SheetError, read_samples

pytestmark = pytest.mark.workflow

CORRECTED, OTHER = "P01-R1", "P02-R1"


@dataclass
class Cohort:
    """A finished run of two demo tubes, each its own specimen."""

    folder: Path
    config: Path
    results: Path
    #: ``gates.xml`` of the corrected tube as the first run wrote it (before any correction).
    exported: Path


def _sheet(folder: Path, gates: dict[str, str] | None = None) -> Path:
    rows = [
        {"sample_id": s, "patient_id": s.split("-")[0], "fcs": f"{s}.fcs", "timepoint": "relapse"}
        for s in (CORRECTED, OTHER)
    ]
    if gates is not None:
        for row in rows:
            row["gates"] = gates.get(row["sample_id"], "")
    path = folder / "samples.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="module")
def cohort(demo_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    folder = tmp_path_factory.mktemp("corrected")
    for sid in (CORRECTED, OTHER):
        shutil.copy(demo_cohort / "fcs" / f"{sid}.fcs", folder / f"{sid}.fcs")
    _sheet(folder)
    shutil.copy(demo_cohort / "patients.tsv", folder / "patients.tsv")
    config = yaml.safe_load((REPO_ROOT / "config/config.yaml").read_text())
    config.update(
        samples=str(folder / "samples.tsv"),
        patients=str(folder / "patients.tsv"),
        results=str(folder / "results"),
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    done = Cohort(folder, folder / "config.yaml", folder / "results", folder / "exported.xml")
    first = snakemake("--configfile", str(done.config))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copy(done.results / CORRECTED / "gates.xml", done.exported)
    return done


def _move_blast_gate(exported: Path, out: Path) -> None:
    """What a reviewer does in FlowKit: load the tube's gates, shrink the blast polygon to
    70% about its centre and nudge it to dimmer CD45, save the Gating-ML."""
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = fk.parse_gating_xml(str(exported))
        gate = strategy.get_gate("blasts")
        vertices = np.asarray(gate.vertices, dtype=float)
        centre = vertices.mean(axis=0)
        moved = centre + 0.7 * (vertices - centre) - [0.01, 0.0]
        gate.vertices = [[float(x), float(y)] for x, y in moved]
        with open(out, "wb") as handle:
            fk.export_gatingml(strategy, handle)


def _flowkit_counts(gates: Path, fcs: Path) -> dict[str, int]:
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = fk.parse_gating_xml(str(gates)).gate_sample(fk.Sample(str(fcs))).report
    return {str(k): int(v) for k, v in report.set_index("gate_name")["count"].items()}


def _files(results: Path) -> dict[str, bytes]:
    """Every output of the run but the corrected tube's and the cohort's, by relative path."""
    cohort = {*COHORT_FILES.values(), "report.html"}
    out = {}
    for path in sorted(results.rglob("*")):
        relative = path.relative_to(results)
        if not path.is_file() or relative.parts[0] == ".snakemake" or str(relative) in cohort:
            continue
        if any(CORRECTED in part for part in relative.parts):
            continue
        if relative.parts[0] in ("logs", "benchmarks") and len(relative.parts) == 2:
            continue  # the cohort jobs' own log and benchmark
        out[str(relative)] = path.read_bytes()
    return out


def _other_rows(results: Path) -> dict[str, pd.DataFrame]:
    """The cohort tables' rows of every tube but the corrected one."""
    rows = {}
    for name in COHORT_FILES.values():
        if not name.endswith(".tsv"):
            continue
        table = pd.read_csv(results / name, sep="\t", dtype=str, keep_default_na=False)
        mask = table.apply(lambda row: CORRECTED not in "\t".join(row), axis=1)
        rows[name] = table[mask].reset_index(drop=True)
    return rows


def test_a_reviewers_moved_blast_gate_reruns_only_that_tube(cohort: Cohort) -> None:
    before = _files(cohort.results)
    before_rows = _other_rows(cohort.results)
    corrected = cohort.folder / "P01-R1 blasts corrected.xml"
    _move_blast_gate(cohort.exported, corrected)
    fcs = cohort.folder / f"{CORRECTED}.fcs"
    expected = _flowkit_counts(corrected, fcs)
    assert expected["blasts"] != _flowkit_counts(cohort.exported, fcs)["blasts"]

    _sheet(cohort.folder, {CORRECTED: corrected.name})
    dry = snakemake("-n", "--configfile", str(cohort.config))
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert _jobs(dry.stdout + dry.stderr) == {(r, CORRECTED) for r in PER_SAMPLE} | COHORT
    rerun = snakemake("--configfile", str(cohort.config))
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    tube = cohort.results / CORRECTED
    qc = json.loads((tube / "qc.json").read_text())
    assert qc["events_kept"] == qc["events_total"], "QC dropped events: FlowKit saw more"
    ours = pd.read_csv(tube / "populations.tsv", sep="\t").set_index("population")["events"]
    assert ours.to_dict() == expected  # every population, blasts moved, exactly FlowKit's
    decision = json.loads((tube / "decision.json").read_text())
    assert decision["blast_events"] == expected["blasts"]

    digest = hashlib.sha256(corrected.read_bytes()).hexdigest()
    profile = json.loads((tube / "profile.json").read_text())
    gating = profile["gating"]
    assert gating["engine"] == "corrected" and gating["corrected_by_reviewer"] is True
    assert gating["sha256"] == digest and gating["fitted"] is False
    assert Path(gating["file"]) == corrected
    assert {"role": "corrected_gates", "path": str(corrected), "sha256": digest} in (
        profile["inputs"]
    )
    report = (tube / "report.html").read_text()
    assert 'id="gates-corrected"' in report and digest in report
    # the applied gates are written back, so a second correction starts from this one
    assert _flowkit_counts(tube / "gates.xml", fcs) == expected

    assert _files(cohort.results) == before, "another tube's outputs changed"
    after_rows = _other_rows(cohort.results)
    for name, table in before_rows.items():
        pd.testing.assert_frame_equal(after_rows[name], table, obj=name)
    assert _jobs(snakemake("-n", "--configfile", str(cohort.config)).stdout) == set()


# --------------------------------------------------------------------------------------------
# Files that do not fit: that tube fails, in one line
# --------------------------------------------------------------------------------------------


def _refused(cohort: Cohort, tmp_path: Path, text: str) -> str:
    bad = tmp_path / "corrected.xml"
    bad.write_text(text, encoding="utf-8")
    settings = Settings.from_config(yaml.safe_load(cohort.config.read_text()))
    fcs = cohort.folder / f"{OTHER}.fcs"
    profile = compute_profile(OTHER, fcs, settings, gates=bad)
    assert profile.status == "fail"
    assert all("\n" not in r for r in profile.qc.reasons)
    (reason,) = profile.qc.reasons
    assert reason.startswith(f"{OTHER}: ") and str(bad) in reason
    return reason


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda t: t.replace('gating:id="blasts"', 'gating:id="my_blasts"'),
            "lack our population(s) blasts",
        ),
        (lambda t: t.replace("V500-C-A", "CD99-A"), "needs CD99-A, not in this tube"),
        (lambda t: "<html><body>gates</body></html>", "neither Gating-ML 2.0"),
    ],
    ids=["no blasts", "unknown dimension", "not Gating-ML"],
)
def test_corrected_gates_that_do_not_fit_fail_that_tube(
    cohort: Cohort, tmp_path: Path, edit: Callable[[str], str], says: str
) -> None:
    text = (cohort.exported).read_text(encoding="utf-8")
    reason = _refused(cohort, tmp_path, edit(text))
    assert says in reason
    assert "; " in reason  # ... and then the fix


def test_a_missing_gates_file_stops_the_sheet(tmp_path: Path) -> None:
    (tmp_path / "S1.fcs").write_bytes(b"FCS3.1")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tpatient_id\tfcs\tgates\nS1\tP01\tS1.fcs\tS1-gates.xml\n")
    with pytest.raises(SheetError) as info:
        read_samples(sheet)
    (line,) = str(info.value).splitlines()
    assert "line 2 (sample_id=S1): gates file S1-gates.xml not found" in line
    assert "relative to the sheet's folder" in line
    (tmp_path / "S1-gates.xml").write_text("<x/>")
    assert read_samples(sheet).loc["S1", "gates"] == str(tmp_path / "S1-gates.xml")
