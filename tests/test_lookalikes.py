"""Marrows whose blast gate holds normal look-alikes (issue 17, the test data): the generator's
own truth. Basophils and pDCs are CD123 bright and CD34 negative, the hematogones a maturation
continuum without a gap under one truth label, the files read back with their markers and the
same bytes on a rerun, and truth.json agrees with the per-event truth it summarises. (Whether
the workflow keeps its recommendations off these cells is the detection work's test.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from antigen_profile.config import load_config
from antigen_profile.ingest import read_tube
from antigen_profile.lookalikes import (
    BASOPHILS,
    HEMATOGONE_SIGMA,
    HEMATOGONE_STAGES,
    HEMATOGONES,
    LOOKALIKE_MARROWS,
    LOOKALIKE_POPULATIONS,
    MYELOID_PROGENITORS,
    NO_LEUKAEMIA_REASON,
    PDCS,
    LookalikeFiles,
    load_stages,
    lookalike_marrow,
    lookalike_names,
    lookalike_truth,
    write_lookalike_marrow,
    write_lookalike_sheets,
    write_lookalike_tube,
)
from antigen_profile.simulate import BACKGROUND, DEMO_PANEL, QUANTIFIED, Truth, load_truth

SCENARIOS = [m.sample_id for m in LOOKALIKE_MARROWS]
#: Detector of each marker in the demo panel (the truth's fluorescence columns).
DETECTOR = {c.marker: c.name for c in DEMO_PANEL if c.marker}
#: Events per stained tube: leukocytes are 93% of them (4% debris, 3% doublets).
LEUKOCYTES = 46_500


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, LookalikeFiles]]:
    """Every scenario written once for the module."""
    out = tmp_path_factory.mktemp("lookalikes")
    return out, {s: write_lookalike_marrow(s, out) for s in SCENARIOS}


def _truth(out: Path, name: str) -> tuple[Truth, np.ndarray]:
    path = out / "fcs" / f"{name}.truth.npz"
    return load_truth(path), load_stages(path)


def _document(files: LookalikeFiles) -> dict[str, Any]:
    return json.loads(files.truth.read_text())


def _signal(truth: Truth, marker: str) -> np.ndarray:
    """True fluorescence (autofluorescence + stain) of every event in ``marker``'s detector."""
    return truth.fluorescence[:, truth.detectors.index(DETECTOR[marker])]


def test_every_scenario_writes_its_tubes_and_truth(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    out, files = written
    assert SCENARIOS == [
        "regenerating", "low_cd123_negative", "high_cd123_negative", "high_cd123_positive"
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "fcs").glob("*.fcs")) == sorted(
        f"{n}.fcs" for n in lookalike_names()
    )
    for sid, f in files.items():
        assert f.fcs == out / "fcs" / f"{sid}.fcs"
        assert f.control == out / "fcs" / f"{sid}_control.fcs"
        assert f.truth == out / "lookalikes" / sid / "truth.json"
    with pytest.raises(KeyError, match="no look-alike marrow"):
        lookalike_marrow("P01-R1")


def test_population_counts_follow_the_scenarios(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    """Shares are exact (largest remainder), so counts are the scenario's percentages."""
    out, _ = written
    for marrow in LOOKALIKE_MARROWS:
        truth, _ = _truth(out, marrow.sample_id)
        counts = truth.counts()
        assert int(truth.leukocytes().sum()) == LEUKOCYTES
        expected = {
            "blasts": marrow.blast_pct,
            BASOPHILS: marrow.basophil_pct,
            PDCS: marrow.pdc_pct,
            HEMATOGONES: marrow.hematogone_pct,
            MYELOID_PROGENITORS: marrow.myeloid_pct,
        }
        for label, pct in expected.items():
            assert abs(counts.get(label, 0) - LEUKOCYTES * pct / 100) <= HEMATOGONE_STAGES, label
        assert set(truth.nucleated) >= {BASOPHILS, PDCS, MYELOID_PROGENITORS}
    regenerating, _ = _truth(out, "regenerating")
    assert "blasts" not in regenerating.population_names  # no leukaemia at all
    assert 0.03 <= regenerating.counts()[HEMATOGONES] / LEUKOCYTES <= 0.08
    low, _ = _truth(out, "low_cd123_negative")
    look = low.counts()[BASOPHILS] + low.counts()[PDCS]
    assert look / len(low.population) < 0.02  # basophils and pDCs under 2% of events


def test_basophils_and_pdcs_are_cd123_bright_and_cd34_negative(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    out, _ = written
    truth, _ = _truth(out, "low_cd123_negative")
    blasts = truth.mask("blasts")
    lymphocytes = truth.mask("lymphocytes")
    for label in (BASOPHILS, PDCS):
        cells = truth.mask(label)
        cd123 = np.median(_signal(truth, "CD123")[cells]) / BACKGROUND.median
        assert 30 <= cd123 <= 70, (label, cd123)  # very bright: 30-60x background
        assert truth.is_positive("CD123")[cells].all()
        assert not truth.is_positive("CD34")[cells].any()
        assert not truth.is_positive("CD19")[cells].any()
        assert not truth.is_positive("CD10")[cells].any()
        assert truth.is_positive("CD38")[cells].mean() > 0.85
        # CD45 dim: at or above the blasts', well under the lymphocytes'
        cd45 = np.median(_signal(truth, "CD45")[cells])
        assert np.median(_signal(truth, "CD45")[blasts]) < cd45
        assert cd45 < np.median(_signal(truth, "CD45")[lymphocytes]) / 5
    # the true blasts are CD123-negative in this scenario
    assert truth.is_positive("CD123")[blasts].mean() < 0.06


def test_hematogones_are_one_truth_label_with_stages_beside_it(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    out, _ = written
    truth, stage = _truth(out, "regenerating")
    assert truth.population_names.count(HEMATOGONES) == 1
    assert not any(":" in n for n in truth.population_names)
    mask = truth.mask(HEMATOGONES)
    assert np.array_equal(mask, stage >= 0)
    per_stage = np.bincount(stage[mask], minlength=HEMATOGONE_STAGES)
    assert len(per_stage) == HEMATOGONE_STAGES and per_stage.min() > 100  # every stage present
    assert HEMATOGONES in truth.nucleated


def _stage_medians(truth: Truth, stage: np.ndarray, marker: str) -> np.ndarray:
    signal = _signal(truth, marker)
    return np.array([np.median(signal[stage == k]) for k in range(HEMATOGONE_STAGES)])


def test_the_hematogones_are_a_continuum_without_a_gap(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    """Stage I CD34+ CD10 bright CD20-, stage III CD34- CD20 bright CD10 dim, CD45 rising;
    medians move monotonically and neighbouring stages lie within two log spreads (a
    unimodal pair: no gap a gate could cut along)."""
    out, _ = written
    truth, stage = _truth(out, "regenerating")
    # direction and least overall change (fold) along maturation
    trend = {"CD34": (-1, 8), "CD10": (-1, 8), "CD20": (+1, 8), "CD45": (+1, 8), "CD22": (+1, 3)}
    for marker, (sign, fold) in trend.items():
        medians = np.log(_stage_medians(truth, stage, marker))
        steps = np.diff(medians)
        moving = np.abs(steps) > 0.1  # flat stretches (a negative marker) wobble by noise
        assert (np.sign(steps[moving]) == sign).all(), (marker, steps)
        assert np.abs(steps).max() < 2 * HEMATOGONE_SIGMA, (marker, steps)
        assert sign * (medians[-1] - medians[0]) > np.log(fold), marker
    first, last = stage == 0, stage == HEMATOGONE_STAGES - 1
    assert truth.is_positive("CD34")[first].all() and not truth.is_positive("CD34")[last].any()
    assert not truth.is_positive("CD20")[first].any() and truth.is_positive("CD20")[last].all()
    assert truth.is_positive("CD22")[first].all()  # CD22 dim+ from stage I
    # CD38 bright throughout, brighter than the blasts' of the other scenarios
    cd38 = _stage_medians(truth, stage, "CD38") / BACKGROUND.median
    assert cd38.min() > 20
    # after CD19 CAR-T: CD34+CD19-CD22+ progenitors, CD19 negative on every stage
    assert not truth.is_positive("CD19")[truth.mask(HEMATOGONES)].any()
    early = (stage >= 0) & truth.is_positive("CD34") & truth.is_positive("CD22")
    assert early.sum() > 500


def test_the_control_tube_holds_the_same_cells_unstained(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    out, _ = written
    for sid in SCENARIOS:
        stained, _ = _truth(out, sid)
        control, stage = _truth(out, f"{sid}_control")
        assert set(control.population_names) == set(stained.population_names)
        quantified = [i for i, m in enumerate(control.markers) if m in QUANTIFIED]
        assert not control.positive[:, quantified].any()
        assert control.is_positive("CD45")[control.leukocytes()].all()  # backbone stained
        if HEMATOGONES in control.population_names:
            assert control.is_positive("CD34")[stage == 0].all()


def test_files_read_back_with_the_demo_panel(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    _, files = written
    config = load_config()
    for f in files.values():
        tube = read_tube(f.fcs, config["markers"], config["scatter"])
        assert {m for m in tube.markers if m in config["markers"]} == {
            c.marker for c in DEMO_PANEL if c.marker
        }
        assert tube.n_events == 50_000
        control = read_tube(f.control, config["markers"], config["scatter"])
        assert control.n_events == 20_000


def test_a_rewrite_gives_the_same_bytes(
    written: tuple[Path, dict[str, LookalikeFiles]], tmp_path: Path
) -> None:
    out, _ = written

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    name = "low_cd123_negative"
    again = write_lookalike_marrow(name, tmp_path)
    for path in (again.fcs, again.control, again.truth):
        rel = path.relative_to(tmp_path)
        assert digest(path) == digest(out / rel), rel
    for suffix in (".fcs", ".truth.npz"):
        tube = write_lookalike_tube("regenerating", tmp_path)
        rel = tube.relative_to(tmp_path).with_suffix(suffix)
        assert digest(tmp_path / rel) == digest(out / rel)
    assert lookalike_truth(name) == json.loads(again.truth.read_text())


def test_truth_json_agrees_with_the_per_event_truth(
    written: tuple[Path, dict[str, LookalikeFiles]],
) -> None:
    out, files = written
    for sid, f in files.items():
        doc = _document(f)
        truth, stage = _truth(out, sid)
        counts = truth.counts()
        assert doc["population_events"] == counts
        blasts = truth.mask("blasts")
        leukocytes = int(truth.leukocytes().sum())
        assert doc["blast_events"] == int(blasts.sum())
        assert doc["blast_pct_leukocytes"] == pytest.approx(100 * blasts.sum() / leukocytes)
        for label in LOOKALIKE_POPULATIONS:
            assert doc["lookalikes"][label]["events"] == counts.get(label, 0)
        gate = doc["naive_blast_gate"]
        assert gate["blast_events"] == int(blasts.sum())
        assert gate["events"] == sum(gate["by_population"].values())
        assert gate["lookalike_events"] == gate["events"] - gate["blast_events"]
        assert gate["lookalike_share"] == pytest.approx(gate["lookalike_events"] / gate["events"])
        in_gate = blasts.copy()
        for label in LOOKALIKE_POPULATIONS:
            mask = truth.mask(label)
            if label == HEMATOGONES:
                mask &= np.isin(stage, gate["hematogone_stages_in_gate"])
            in_gate |= mask
        assert int(in_gate.sum()) == gate["events"]
        for marker, pct in gate["pct_positive"].items():
            assert pct == pytest.approx(100 * truth.is_positive(marker)[in_gate].mean())
        if doc["antigens"] is None:
            continue
        for marker, row in doc["antigens"].items():
            k = int((truth.is_positive(marker) & blasts).sum())
            assert row["positive_events"] == k
            assert row["pct_positive"] == pytest.approx(100 * k / blasts.sum())
        eligible = [t for t in doc["trial"]["targets"] if doc["antigens"][t]["pct_positive"] >= 20]
        assert doc["eligible_targets"] == sorted(eligible)


def test_the_expected_answers(written: tuple[Path, dict[str, LookalikeFiles]]) -> None:
    """Per scenario: eligible targets, the targets never to recommend, the decision."""
    docs = {sid: _document(f) for sid, f in written[1].items()}
    regenerating = docs["regenerating"]
    assert regenerating["antigens"] is None and "undefined" in regenerating["antigens_note"]
    assert regenerating["blast_events"] == 0 and regenerating["eligible_targets"] == []
    assert regenerating["decision"] == "needs_review"
    assert regenerating["decision_reasons"] == [NO_LEUKAEMIA_REASON]
    assert set(regenerating["never_recommend"]) == set(regenerating["trial"]["targets"])
    assert regenerating["naive_blast_gate"]["lookalike_share"] == 1.0
    assert regenerating["hematogone_stages"]["cd19"] is False

    low = docs["low_cd123_negative"]
    assert low["blast_pct_leukocytes"] == pytest.approx(3.0, abs=0.05)
    assert low["antigens"]["CD123"]["pct_positive"] <= 5.0
    assert "CD123" not in low["eligible_targets"] and low["never_recommend"] == ["CD123"]
    assert low["eligible_targets"] == ["CD10", "CD22", "CD38"]
    assert low["low_blast_share"] and low["decision"] == "needs_review"
    # the trap: a naive gate is over a third look-alikes and "CD123-positive" past the cut-off
    assert low["naive_blast_gate"]["lookalike_share"] > 0.3
    assert low["naive_blast_gate"]["pct_positive"]["CD123"] > 20

    high_negative = docs["high_cd123_negative"]
    assert high_negative["eligible_targets"] == ["CD10", "CD22", "CD38"]
    assert high_negative["decision"] == "candidate"
    assert high_negative["antigens"]["CD123"]["pct_positive"] <= 6.0

    high_positive = docs["high_cd123_positive"]
    assert "CD123" in high_positive["eligible_targets"]
    assert high_positive["antigens"]["CD123"]["pct_positive"] == pytest.approx(75, abs=2)
    assert high_positive["decision"] == "candidate"
    for doc in (high_negative, high_positive):
        assert doc["blast_pct_leukocytes"] == pytest.approx(30.0, abs=0.05)
        assert doc["naive_blast_gate"]["lookalike_share"] < 0.1


def test_sheets_list_every_scenario(tmp_path: Path) -> None:
    samples, patients = write_lookalike_sheets(tmp_path)
    rows = [line.split("\t") for line in samples.read_text().splitlines()]
    assert rows[0] == ["sample_id", "patient_id", "fcs", "control_fcs", "timepoint"]
    assert [r[0] for r in rows[1:]] == SCENARIOS
    assert rows[1][4] == "post-CAR"
    assert len(patients.read_text().splitlines()) == 1 + len(SCENARIOS)
