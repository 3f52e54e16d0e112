"""Split-panel specimens with known truth (issue 16, "Done when", first bullet).

Demo patients are written as tubes that share a CD45/CD34 backbone and divide the six
quantified antigens (:data:`antigen_profile.split_panel.TWO_TUBES`, and one specimen in
:data:`~antigen_profile.split_panel.THREE_TUBES`); every tube is profiled as the workflow
profiles one (:func:`antigen_profile.pipeline.profile_sample`, default config), the tubes are
merged (:func:`antigen_profile.specimen.merge_specimen`) and the specimen is held to the
generator's truth: % positive, eligible targets, and the coverage bounds of every
combination, including patients whose best combination spans the tubes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from antigen_profile.config import load_config, resolve_paths
from antigen_profile.ingest import read_tube
from antigen_profile.paths import REPO_ROOT
from antigen_profile.pipeline import profile_sample
from antigen_profile.quantify import ANTIGEN_COLUMNS
from antigen_profile.sheets import patient_record, read_patients
from antigen_profile.simulate import QUANTIFIED, load_truth
from antigen_profile.specimen import SpecimenProfile, TubeResult, merge_specimen, tube_from_outputs
from antigen_profile.split_panel import (
    BACKBONE,
    THREE_TUBES,
    TWO_TUBES,
    SplitSpecimen,
    SplitTube,
    check_split,
    specimen_truth,
    split_tube_spec,
    write_split_specimen,
    write_split_tube,
)
from antigen_profile.steps import decide_sample, decide_specimen
from antigen_profile.trial import Trial, load_trial

#: specimen_id -> (demo sample, split). Best pairs: P01 CD22 + CD10 (both tube A), P04
#: CD123 + CD38 (both tube B), P08 CD22 (A) + CD20 (B) and P03 CD22 (A) + CD10 (C): the last
#: two span their tubes.
CASES: dict[str, tuple[str, tuple[SplitTube, ...]]] = {
    "P01-R1-split": ("P01-R1", TWO_TUBES),
    "P04-R1-split": ("P04-R1", TWO_TUBES),
    "P08-R1-split": ("P08-R1", TWO_TUBES),
    "P03-R1-split3": ("P03-R1", THREE_TUBES),
}
SPANNING = {"P08-R1-split": "CD22+CD20", "P03-R1-split3": "CD22+CD10"}
#: The issue's accuracy bar for % positive, and for a coverage measured per cell in one tube.
PCT_POINTS = 3.0
#: Cross-tube bounds come from one aliquot while the true coverage is counted on another draw
#: of the same specimen: a tube's share of ~10,000 blasts has a sampling SD of up to 0.5
#: point (p = 0.5), and a 99.5th-percentile threshold calls ~0.5% of truly negative blasts
#: positive by design (a 0% target measures ~0.5%), so 3 SD plus that is 1.5 points. A bound
#: that misses the truth by more is wrong, not noisy.
BOUND_ALLOWANCE = 1.5
TRIAL_FILE = REPO_ROOT / "config" / "trials" / "4scar.yaml"


@dataclass(frozen=True)
class Specimen:
    """One generated specimen: its truth, its tubes as profiled, and their merge."""

    truth: dict[str, Any]
    tubes: list[TubeResult]
    profile: SpecimenProfile
    decision: dict[str, Any]
    folder: Path


PATIENTS = REPO_ROOT / "resources" / "demo" / "patients.tsv"


def _tube_result(sample_id: str, folder: Path) -> TubeResult:
    """A :class:`TubeResult` from a tube's written outputs, as the specimen step reads them."""
    return tube_from_outputs(sample_id, folder, floor=100)


def _profile(sample_id: str, fcs: Path, control: Path, out: Path, config: dict[str, Any]) -> Path:
    """Profile one tube as the workflow's rule does; returns its results folder."""
    folder = out / "results" / sample_id
    profile_sample(sample_id, fcs, folder, config, control=control)
    return folder


def _merge(
    specimen_id: str, tubes: Sequence[TubeResult], config: dict[str, Any], trial: Trial
) -> SpecimenProfile:
    return merge_specimen(
        specimen_id, tubes, config["quantified"], trial.targets, config["b_lineage_markers"]
    )


def _decide(
    specimen_id: str, truth: dict[str, Any], folders: dict[str, Path], config: dict[str, Any],
    out: Path,
) -> dict[str, Any]:  # fmt: skip
    """The specimen step as the workflow runs it, with the demo patient's clinical row."""
    record = patient_record(read_patients(PATIENTS), truth["patient_id"])
    return decide_specimen(
        specimen_id, folders, truth["patient_id"], json.dumps(record), TRIAL_FILE, config,
        out / "specimens" / specimen_id, timepoint=truth["timepoint"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The default configuration, its paths made absolute as a workflow job's are."""
    return resolve_paths(load_config(), REPO_ROOT)


@pytest.fixture(scope="module")
def trial() -> Trial:
    return load_trial(TRIAL_FILE)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SplitSpecimen]:
    """Every case written once (FCS, per-event truth, truth.json) into one folder."""
    out = tmp_path_factory.mktemp("split")
    return {
        specimen_id: write_split_specimen(sample_id, out, split, specimen_id=specimen_id)
        for specimen_id, (sample_id, split) in CASES.items()
    }


@pytest.fixture(scope="module")
def generated(written: dict[str, SplitSpecimen]) -> Path:
    """The folder the specimens were written to (``fcs/``, ``specimens/``)."""
    return next(iter(written.values())).truth.parents[2]


@pytest.fixture(scope="module")
def specimens(
    written: dict[str, SplitSpecimen], generated: Path, config: dict[str, Any], trial: Trial
) -> dict[str, Specimen]:
    """Every tube profiled with the default config, then merged per specimen."""
    out: dict[str, Specimen] = {}
    for specimen_id, specimen in written.items():
        truth = json.loads(specimen.truth.read_text())
        folders = {
            name: _profile(name, fcs, control, generated, config)
            for name, fcs, control in specimen.tubes
        }
        tubes = [_tube_result(name, folder) for name, folder in folders.items()]
        decision = _decide(specimen_id, truth, folders, config, generated)
        folder = generated / "specimens" / specimen_id
        out[specimen_id] = Specimen(
            truth, tubes, _merge(specimen_id, tubes, config, trial), decision, folder
        )
    return out


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def test_each_tube_carries_only_the_backbone_and_its_own_antigens(
    generated: Path, config: dict[str, Any]
) -> None:
    for tube in TWO_TUBES:
        name = f"P08-R1-split-{tube.name}"
        fcs = generated / "fcs" / f"{name}.fcs"
        found = read_tube(fcs, config["markers"], config["scatter"]).markers
        assert {m for m in found if m in config["markers"]} == {*BACKBONE, *tube.antigens}
        truth = load_truth(generated / "fcs" / f"{name}.truth.npz")
        assert set(truth.markers) == {*BACKBONE, *tube.antigens}
        control = load_truth(generated / "fcs" / f"{name}_control.truth.npz")
        antigens = [i for i, m in enumerate(control.markers) if m in QUANTIFIED]
        assert not control.positive[:, antigens].any()  # the control's antigens are unstained
        assert control.is_positive("CD45").any()  # ... its backbone is stained
    # the full-panel draw serves the truth only: no third stained tube
    assert sorted(p.name for p in (generated / "fcs").glob("P08-R1-*.fcs")) == [
        "P08-R1-split-A.fcs", "P08-R1-split-A_control.fcs",
        "P08-R1-split-B.fcs", "P08-R1-split-B_control.fcs",
    ]  # fmt: skip


def test_tubes_are_separate_aliquots_of_one_specimen(generated: Path) -> None:
    """Different draws (not the same cells re-stained), same blast share within counting."""
    draws = [load_truth(generated / "fcs" / f"P08-R1-split-{t.name}.truth.npz") for t in TWO_TUBES]
    assert not np.array_equal(draws[0].population, draws[1].population)
    counts = [d.counts() for d in draws]
    assert counts[0]["blasts"] != counts[1]["blasts"]  # aliquots differ by counting error
    truth = json.loads((generated / "specimens" / "P08-R1-split" / "truth.json").read_text())
    a, b = truth["tubes"]
    assert a["blast_pct_leukocytes"] == pytest.approx(b["blast_pct_leukocytes"], abs=1.5)
    assert a["blast_pct_leukocytes"] == pytest.approx(35.0, abs=1.5)


def test_truth_json_is_what_the_events_say(written: dict[str, SplitSpecimen], trial: Trial) -> None:
    truth = json.loads(written["P01-R1-split"].truth.read_text())
    assert truth == json.loads(json.dumps(specimen_truth("P01-R1")))  # regenerated, no files
    assert truth["split"] == {"A": ["CD19", "CD22", "CD10"], "B": ["CD123", "CD38", "CD20"]}
    assert [t["sample_id"] for t in truth["tubes"]] == ["P01-R1-split-A", "P01-R1-split-B"]
    assert set(truth["antigens"]) == set(QUANTIFIED)
    assert len(truth["coverage"]) == 2 ** len(trial.targets) - 1
    for name, row in truth["coverage"].items():  # the full draw agrees with the model
        assert row["covered_pct"] == pytest.approx(row["model_pct"], abs=1.0), name
    for marker, row in truth["antigens"].items():
        assert row["pct_positive"] == pytest.approx(row["model_pct"], abs=2.0), marker


def test_the_spanning_patients_have_their_two_best_targets_in_different_tubes(
    written: dict[str, SplitSpecimen], trial: Trial
) -> None:
    assert trial.max_products == 2
    for specimen_id, specimen in written.items():
        truth = json.loads(specimen.truth.read_text())
        best = truth["best_combination"]
        pairs = {c: r for c, r in truth["coverage"].items() if r["n_products"] == 2}
        assert best["combination"] == max(pairs, key=lambda c: pairs[c]["covered_pct"])
        assert best["spans_tubes"] is (specimen_id in SPANNING), specimen_id
        if specimen_id in SPANNING:
            assert best["combination"] == SPANNING[specimen_id]
            homes = {truth["antigens"][t]["sample_id"] for t in best["combination"].split("+")}
            assert len(homes) == 2 and sorted(homes) == best["tubes"]
    # it matters: P08's CD22 + CD20 reaches the trial's coverage, neither target alone does
    truth = json.loads(written["P08-R1-split"].truth.read_text())
    minimum = trial.min_coverage_pct or 95.0
    assert truth["coverage"]["CD22+CD20"]["covered_pct"] >= minimum
    assert max(truth["coverage"][t]["covered_pct"] for t in ("CD22", "CD20")) < minimum


def test_a_split_must_place_every_antigen_once() -> None:
    check_split(THREE_TUBES)
    with pytest.raises(ValueError, match="exactly one tube"):
        check_split((SplitTube("A", ("CD19", "CD22")), SplitTube("B", ("CD22", "CD38"))))
    with pytest.raises(ValueError, match="backbone"):
        check_split((*TWO_TUBES[:1], SplitTube("B", ("CD123", "CD38", "CD20", "CD34"))))
    spec = split_tube_spec("P04-R1", THREE_TUBES[2])
    assert set(spec.markers) == {"CD10", "CD20", *BACKBONE}
    assert len(spec.spillover_matrix()) == len(spec.fluorescence)


# --------------------------------------------------------------------------------------------
# The merged specimen against the truth
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("specimen_id", CASES)
def test_every_antigen_within_3_points_from_the_tube_that_measured_it(
    specimens: dict[str, Specimen], specimen_id: str
) -> None:
    spec = specimens[specimen_id]
    table = spec.profile.antigens.set_index("marker")
    assert set(table.index) == set(QUANTIFIED)
    for marker, truth in spec.truth["antigens"].items():
        assert table.loc[marker, "sample_id"] == truth["sample_id"], marker
        error = abs(float(table.loc[marker, "pct_positive"]) - truth["pct_positive"])
        assert error <= PCT_POINTS, f"{specimen_id} {marker}: off by {error:.2f} points"


@pytest.mark.parametrize("specimen_id", CASES)
def test_coverage_bounds_contain_the_true_coverage_of_every_combination(
    specimens: dict[str, Specimen], specimen_id: str, trial: Trial
) -> None:
    spec = specimens[specimen_id]
    coverage = spec.profile.coverage.set_index("combination")
    every = {"+".join(c) for n in range(1, 6) for c in combinations(trial.targets, n)}
    assert set(coverage.index) == every == set(spec.truth["coverage"])
    for name, truth in spec.truth["coverage"].items():
        row = coverage.loc[name]
        true_pct = truth["covered_pct"]
        low, high = float(row["covered_pct"]), float(row["covered_pct_high"])
        assert low - BOUND_ALLOWANCE <= true_pct <= high + BOUND_ALLOWANCE, (name, low, high)
        assert low <= high <= 100.0
        assert row["measured_together"] == truth["measured_together"], name
        if truth["measured_together"]:  # exact: one tube's per-cell count
            assert low == high
            assert abs(low - true_pct) <= PCT_POINTS, (name, low, true_pct)


@pytest.mark.parametrize("specimen_id", SPANNING)
def test_the_spanning_combination_is_bounded_not_measured(
    specimens: dict[str, Specimen], specimen_id: str
) -> None:
    """The best pair has no per-cell count: its lower bound is its best single target's,
    and that figure (the one a recommendation may use) stays below the truth."""
    spec = specimens[specimen_id]
    coverage = spec.profile.coverage.set_index("combination")
    name = SPANNING[specimen_id]
    row = coverage.loc[name]
    assert row["measured_together"] == ""
    assert row["covered_pct"] == max(coverage.loc[t, "covered_pct"] for t in name.split("+"))
    assert row["covered_pct"] < spec.truth["coverage"][name]["covered_pct"] - 3
    assert row["covered_pct_high"] == 100.0


@pytest.mark.parametrize("specimen_id", CASES)
def test_eligible_targets_match_the_truth(
    specimens: dict[str, Specimen], specimen_id: str, trial: Trial
) -> None:
    spec = specimens[specimen_id]
    table = spec.profile.antigens.set_index("marker")
    eligible = sorted(
        t
        for t in trial.targets
        if t in table.index
        and float(table.loc[t, "pct_positive"]) >= trial.target_rule(t).min_pct_positive
    )
    assert eligible == spec.truth["eligible_targets"]
    assert spec.truth["eligible_targets"], "each case has at least one target"


@pytest.mark.parametrize("specimen_id", CASES)
def test_clean_specimens_raise_no_flag(specimens: dict[str, Specimen], specimen_id: str) -> None:
    spec = specimens[specimen_id]
    assert all(t.failure is None for t in spec.tubes)
    assert not [f for f in spec.profile.flags if f["code"] == "blast_share_disagrees"]
    assert spec.profile.flags == [] and spec.profile.unmeasured == {}


def test_a_failed_tube_leaves_its_antigens_unmeasured_with_the_reason(
    specimens: dict[str, Specimen], config: dict[str, Any], trial: Trial, tmp_path: Path
) -> None:
    """Tube B acquired short (3,000 events, under QC's 5,000): its antigens are unknown and
    say why; tube A's still count, and only their combinations are reported."""
    good = specimens["P08-R1-split"].tubes[0]
    tube_b = TWO_TUBES[1]
    fcs, _ = write_split_tube("P08-R1", tube_b, tmp_path, events=3000)
    control, _ = write_split_tube("P08-R1", tube_b, tmp_path, control=True)
    name = "P08-R1-split-B"
    failed = _tube_result(name, _profile(name, fcs, control, tmp_path, config))
    assert failed.failure is not None and "fewer than the minimum" in failed.failure
    profile = _merge("P08-R1-split", [good, failed], config, trial)
    assert sorted(profile.antigens["marker"]) == sorted(TWO_TUBES[0].antigens)
    assert set(profile.unmeasured) == set(tube_b.antigens)
    for marker in tube_b.antigens:
        assert profile.unmeasured[marker] == f"{name} not analysed: {failed.failure}"
    assert set(profile.coverage["combination"]) == {"CD22", "CD10", "CD22+CD10"}
    # no blast share to disagree with; the failed tube is named for the reviewer
    assert [f["code"] for f in profile.flags] == ["tube_not_analysed"]
    assert name in profile.flags[0]["message"]
    # ... and the decision: tube A's targets decided, tube B's unknown with the reason
    truth = specimens["P08-R1-split"].truth
    results = specimens["P08-R1-split"].folder.parents[1] / "results"
    folders = {good.sample_id: results / good.sample_id, name: tmp_path / "results" / name}
    decision = _decide("P08-R1-split", truth, folders, config, tmp_path)
    assert decision["decision"] == "needs_review"
    in_a = [t for t in truth["eligible_targets"] if t in TWO_TUBES[0].antigens]
    assert decision["eligible_targets"] == sorted(in_a) and in_a
    assert set(decision["unknown_targets"]) == {t for t in tube_b.antigens if t in trial.targets}
    notes = {r["target"]: r["note"] for r in decision["rules"] if r.get("target")}
    for target in decision["unknown_targets"]:
        assert f"{name} not analysed" in notes[target] and "fewer than the minimum" in notes[target]
    assert any(name in r for r in decision["review_reasons"])


@pytest.mark.parametrize("specimen_id", CASES)
def test_the_specimen_decision_matches_the_truth(
    specimens: dict[str, Specimen], specimen_id: str, trial: Trial
) -> None:
    spec = specimens[specimen_id]
    decision = spec.decision
    assert decision["specimen_id"] == specimen_id and decision["sample_id"] is None
    assert decision["tubes"] == [t["sample_id"] for t in spec.truth["tubes"]]
    assert decision["eligible_targets"] == spec.truth["eligible_targets"]
    assert decision["antigen_status"] == spec.truth["antigen_status"]
    assert decision["clinical_status"] == spec.truth["clinical_status"]
    assert decision["decision"] == spec.truth["decision"], decision["decision_reasons"]
    assert decision["unknown_targets"] == []
    # the written tables: one antigens.tsv row per quantified marker, with its tube
    antigens = pd.read_csv(spec.folder / "antigens.tsv", sep="\t").set_index("marker")
    assert list(antigens.index) == list(QUANTIFIED)
    for marker, truth in spec.truth["antigens"].items():
        assert antigens.loc[marker, "sample_id"] == truth["sample_id"]
    coverage = pd.read_csv(spec.folder / "coverage.tsv", sep="\t", keep_default_na=False)
    assert {"covered_pct_high", "measured_together"} <= set(coverage.columns)
    document = json.loads((spec.folder / "specimen.json").read_text())
    assert [t["sample_id"] for t in document["tubes"]] == decision["tubes"]
    assert len(document["measurements"]) == len(QUANTIFIED)


@pytest.mark.parametrize("specimen_id", SPANNING)
def test_a_spanning_pair_that_may_reach_the_goal_is_named_for_staining_together(
    specimens: dict[str, Specimen], specimen_id: str, trial: Trial
) -> None:
    """No recommendation rests on an upper bound: the pair is not recommended on coverage it
    may not have, and the reviewer is told which tube to stain to know."""
    decision = specimens[specimen_id].decision
    pair = SPANNING[specimen_id]
    combination = decision["combination"]
    named = [r for r in decision["review_reasons"] if r.startswith(f"{pair} may cover")]
    assert combination is not None and combination["label"] != pair
    if specimen_id == "P08-R1-split":
        # the pair truly covers >= 95%, no single target does: nothing measured qualifies,
        # and the reviewer is told to stain CD22 and CD20 together
        assert combination["label"] == "" and len(named) == 1
    else:
        # P03: CD10 + CD20, both in tube C and counted per cell, qualifies: it is chosen over
        # the cross-tube pair, and no staining advice is needed
        assert combination["label"] == "CD10+CD20" and named == []


def test_a_one_tube_specimen_gets_its_tubes_decision(
    specimens: dict[str, Specimen], config: dict[str, Any], tmp_path: Path
) -> None:
    """Without specimen_id every tube is its own specimen: the decision is the tube's."""
    spec = specimens["P04-R1-split"]
    name, folder = spec.truth["tubes"][1]["sample_id"], spec.folder.parents[1] / "results"
    record = json.dumps(patient_record(read_patients(PATIENTS), spec.truth["patient_id"]))
    tube = decide_sample(
        folder / name, name, spec.truth["patient_id"], None, TRIAL_FILE, config,
        timepoint="relapse", out=tmp_path / "tube.json", patient_record=record,
    )  # fmt: skip
    alone = decide_specimen(
        name, {name: folder / name}, spec.truth["patient_id"], record, TRIAL_FILE, config,
        tmp_path / "specimen", timepoint="relapse",
    )  # fmt: skip
    assert alone["tubes"] == [name] and alone["specimen_id"] == name
    assert tube["specimen_id"] == name and tube["tubes"] == [name]
    assert alone == tube
    assert alone["unknown_targets"]  # tube B alone cannot assess CD22 and CD10


def test_a_sheet_without_specimen_id_keeps_its_cohort_tables_plus_the_new_columns(
    demo_cohort: Path, config: dict[str, Any], tmp_path: Path
) -> None:
    """Without specimen_id every tube is its own specimen: the cohort tables made from the
    specimens equal those made from the tubes' own decisions (the tables before specimens
    existed), column for column, plus specimen_id/tubes (and the patients' specimens)."""
    from antigen_profile.cohort import (
        PATIENT_TABLE_COLUMNS,
        RECOMMENDATION_COLUMNS,
        TIMELINE_COLUMNS,
    )
    from antigen_profile.steps import write_cohort_table

    patients = read_patients(demo_cohort / "patients.tsv")
    tube_decisions, specimen_decisions = [], []
    for sample_id in ("P01-R1", "P05-R1", "P06-R1", "P08-R1"):  # candidate, lineage, thin, unknown
        patient_id = sample_id.split("-")[0]
        record = json.dumps(patient_record(patients, patient_id))
        folder = tmp_path / sample_id
        profile_sample(
            sample_id, demo_cohort / "fcs" / f"{sample_id}.fcs", folder, config,
            control=demo_cohort / "fcs" / f"{sample_id}_control.fcs",
        )  # fmt: skip
        tube = decide_sample(
            folder, sample_id, patient_id, None, TRIAL_FILE, config, timepoint="relapse",
            patient_record=record,
        )  # fmt: skip
        specimen = decide_specimen(
            sample_id, {sample_id: folder}, patient_id, record, TRIAL_FILE, config,
            tmp_path / "specimens" / sample_id, timepoint="relapse",
        )  # fmt: skip
        assert specimen == tube, sample_id
        tube_decisions.append(folder / "decision.json")
        specimen_decisions.append(tmp_path / "specimens" / sample_id / "decision.json")
        antigens = pd.read_csv(folder / "antigens.tsv", sep="\t", dtype=str)
        merged = pd.read_csv(
            tmp_path / "specimens" / sample_id / "antigens.tsv", sep="\t", dtype=str
        )
        pd.testing.assert_frame_equal(merged[antigens.columns], antigens)
    before = write_cohort_table(tube_decisions, tmp_path / "before", config)
    after = write_cohort_table(specimen_decisions, tmp_path / "after", config)
    new = {
        "recommendations": RECOMMENDATION_COLUMNS[-2:],
        "patients": PATIENT_TABLE_COLUMNS[-3:],
        "timeline": TIMELINE_COLUMNS[-2:],
    }
    for key, added in new.items():
        old = pd.read_csv(before[key], sep="\t", dtype=str, keep_default_na=False)
        ours = pd.read_csv(after[key], sep="\t", dtype=str, keep_default_na=False)
        assert list(ours.columns) == [*[c for c in old.columns if c not in added], *added]
        kept = [c for c in old.columns if c not in added]
        pd.testing.assert_frame_equal(ours[kept], old[kept])
    table = pd.read_csv(after["recommendations"], sep="\t", dtype=str, keep_default_na=False)
    assert list(table["specimen_id"]) == list(table["sample_id"]) == list(table["tubes"])


def test_a_mislabelled_tube_is_flagged_for_review(
    specimens: dict[str, Specimen], config: dict[str, Any], tmp_path: Path
) -> None:
    """Tube B of another patient's marrow (62% blasts) filed with P08's tube A (35%): the
    blasts' shares disagree far beyond counting error, so the specimen goes to review and
    says which tubes to check; matching tubes (every clean case above) raise nothing."""
    p08, p01 = specimens["P08-R1-split"], specimens["P01-R1-split"]
    results = p08.folder.parents[1] / "results"
    a, b = p08.truth["tubes"][0]["sample_id"], p01.truth["tubes"][1]["sample_id"]
    decision = _decide(
        "P08-R1-split", p08.truth, {a: results / a, b: results / b}, config, tmp_path
    )
    assert decision["decision"] == "needs_review"
    flagged = [r for r in decision["review_reasons"] if "blast_share_disagrees" in r]
    assert len(flagged) == 1 and a in flagged[0] and b in flagged[0], decision["review_reasons"]
    for spec in specimens.values():
        assert not any("blast_share_disagrees" in r for r in spec.decision["review_reasons"])


def test_a_specimen_whose_every_tube_failed_is_qc_failed_with_each_reason(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """Nothing measured: antigens.tsv keeps the contract's columns, every target is unknown
    and the decision names each tube's failure."""
    broken = tmp_path / "broken.fcs"
    broken.write_bytes(b"not an FCS file")
    folders = {}
    for name in ("T-A", "T-B"):
        profile_sample(name, broken, tmp_path / name, config)
        folders[name] = tmp_path / name
    decision = decide_specimen(
        "T", folders, "P01", None, TRIAL_FILE, config, tmp_path / "specimen", timepoint=None
    )
    assert decision["antigen_status"] == "qc_failed" and decision["decision"] == "needs_review"
    assert decision["eligible_targets"] == []
    assert all(f"{name}: " in decision["review_reasons"][0] for name in folders)
    antigens = pd.read_csv(tmp_path / "specimen" / "antigens.tsv", sep="\t")
    assert list(antigens.columns) == ANTIGEN_COLUMNS
    assert list(antigens["marker"]) == list(config["quantified"])
    assert antigens["pct_positive"].isna().all()
