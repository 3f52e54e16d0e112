"""Real tubes from other cytometers through the whole workflow, with the default config.

Every tube of ``../shared/fcs-corpus`` that carries CD45 and light scatter (a panel the blast
gate can use) is run by Snakemake as a lab would run it: each gets an analysed profile or, where
its data cannot support one, outputs whose flags and reasons say why. Tubes that lack what the
gate needs are refused with a line naming the missing role and what the tube has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import CORPUS, NO_CORPUS
from test_workflow import snakemake  # the workflow run the README way, shared

from antigen_profile.config import load_config
from antigen_profile.ingest import IngestError, read_tube
from antigen_profile.paths import REPO_ROOT

pytestmark = pytest.mark.workflow

DIVA = "fcsparser/FACS_Diva/facs_diva_test.fcs"


def _corpus_tubes() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(NO_CORPUS)
    return sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() in (".fcs", ".lmd"))


def _gateable(config: dict[str, Any]) -> list[Path]:
    """Corpus tubes with CD45 and forward and side scatter."""
    tubes = []
    for path in _corpus_tubes():
        try:
            tube = read_tube(path, config["markers"], config["scatter"])
        except IngestError:
            continue
        if {"CD45", "FSC-A", "SSC-A"} <= set(tube.markers):
            tubes.append(path)
    return tubes


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    config = load_config()
    tubes = _gateable(config)
    assert CORPUS / DIVA in tubes, "the BD FACSDiva tube (CD45, FSC-A, FSC-W, SSC-A) is gateable"
    folder = tmp_path_factory.mktemp("corpus")
    rows = [
        {"sample_id": f"R{i:02d}", "patient_id": "P01", "fcs": str(p), "control_fcs": "",
         "timepoint": "relapse"}
        for i, p in enumerate(tubes, start=1)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "samples.tsv", sep="\t", index=False)
    patients = config["patients"]
    (folder / "patients.tsv").write_text((REPO_ROOT / patients).read_text())
    before = {p: p.stat().st_mtime_ns for p in tubes}
    result = snakemake(
        "--config",
        f"samples={folder / 'samples.tsv'}",
        f"patients={folder / 'patients.tsv'}",
        f"results={folder / 'results'}",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert before == {p: p.stat().st_mtime_ns for p in tubes}, "input files are never modified"
    return folder / "results", [r["sample_id"] for r in rows]


def _read(results: Path, sample_id: str, name: str) -> Any:
    return json.loads((results / sample_id / name).read_text())


def test_every_gateable_corpus_tube_gets_a_profile_or_says_why(
    corpus_run: tuple[Path, list[str]],
) -> None:
    results, samples = corpus_run
    assert len(samples) >= 2, "DIVA and the Navios LMD at least"
    for sample_id in samples:
        qc = _read(results, sample_id, "qc.json")
        profile = _read(results, sample_id, "profile.json")
        decision = _read(results, sample_id, "decision.json")
        assert (results / sample_id / "report.html").stat().st_size > 0
        assert decision["decision_reasons"], sample_id
        if qc["status"] == "fail":
            # not analysed: a reason that names the problem, and no number
            assert qc["reasons"] and decision["antigen_status"] == "qc_failed", sample_id
            antigens = pd.read_csv(results / sample_id / "antigens.tsv", sep="\t")
            assert antigens.empty
        else:
            populations = pd.read_csv(results / sample_id / "populations.tsv", sep="\t")
            assert "blasts" in set(populations["population"]), sample_id
            assert profile["gating"]["registration"]["source"] in ("lymphocytes", "scale")
            if decision["decision"] == "needs_review":
                assert len(decision["decision_reasons"]) > 1, sample_id


def test_the_bd_diva_tube_is_analysed_with_width_singlets(
    corpus_run: tuple[Path, list[str]],
) -> None:
    results, samples = corpus_run
    sample_id = next(
        s for s in samples if _read(results, s, "qc.json")["file"].endswith("facs_diva_test.fcs")
    )
    qc = _read(results, sample_id, "qc.json")
    profile = _read(results, sample_id, "profile.json")
    assert qc["status"] in ("pass", "warn") and qc["events_total"] == 83411
    assert profile["gating"]["registration"]["singlets"] == "FSC-A vs FSC-W"
    assert profile["markers"]["CD45"] == "PerCP-A"
    populations = pd.read_csv(results / sample_id / "populations.tsv", sep="\t")
    counts = populations.set_index("population")["events"]
    assert counts["singlets"] < counts["cells"], "width singlets drop some doublets"
    assert counts["lymphocytes"] > 1000 and counts["blasts"] > 0
    antigens = pd.read_csv(results / sample_id / "antigens.tsv", sep="\t").set_index("marker")
    assert antigens.loc["CD22", "call"] == "not_in_panel"
    assert antigens.loc["CD19", "call"] in ("negative", "partial", "positive")


def test_the_constant_navios_file_is_refused_for_its_data_not_its_names(
    corpus_run: tuple[Path, list[str]],
) -> None:
    """The Navios LMD of the corpus is anonymised: every event holds the same value. Its
    channels (FS INT LIN, SS INT LIN, FL5 INT LOG = CD45-PC7) are all recognised, and the
    refusal says there is no signal, not that a name is missing."""
    results, samples = corpus_run
    sample_id = next(
        s for s in samples if _read(results, s, "qc.json")["file"].endswith("fcs1_cleaned.lmd")
    )
    qc = _read(results, sample_id, "qc.json")
    profile = _read(results, sample_id, "profile.json")
    assert profile["markers"]["FSC-A"] == "FS INT LIN"
    assert profile["markers"]["SSC-A"] == "SS INT LIN"
    assert qc["status"] == "fail" and qc["events_total"] == 50000
    assert any("no signal to gate on" in r for r in qc["reasons"]), qc["reasons"]
    html = (results / sample_id / "report.html").read_text()
    assert "50,000" in html or "50000" in html
