"""Patients over time: the latest sample decides, and antigen loss is flagged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from antigen_profile.cohort import (
    PATIENT_TABLE_COLUMNS,
    TIMELINE_COLUMNS,
    patient_table,
    patient_timeline,
    timepoint_rank,
)

ORDER = ["diagnosis", "relapse", "post-CAR", "follow-up"]


def _antigens(sample_id: str, **pct: float | None) -> pd.DataFrame:
    rows = []
    for marker, value in pct.items():
        call = (
            "insufficient_events" if value is None else ("positive" if value >= 80 else "partial")
        )
        rows.append({"sample_id": sample_id, "marker": marker, "pct_positive": value, "call": call})
    return pd.DataFrame(rows)


def _decision(sample_id: str, timepoint: str | None, decision: str = "candidate") -> dict:
    return {
        "sample_id": sample_id,
        "patient_id": "P09",
        "timepoint": timepoint,
        "decision": decision,
        "eligible_targets": ["CD22"],
        "combination": {"label": "CD22"},
        "review_reasons": [],
    }


def test_cd22_falling_from_95_to_30_over_three_timepoints_is_flagged() -> None:
    # The sheet lists the samples out of time order: the order comes from the timepoints.
    decisions = [
        _decision("P09-F", "follow-up", "needs_review"),
        _decision("P09-D", "diagnosis"),
        _decision("P09-R", "relapse"),
    ]
    antigens = {
        "P09-D": _antigens("P09-D", CD22=95.0, CD10=90.0),
        "P09-R": _antigens("P09-R", CD22=70.0, CD10=88.0),
        "P09-F": _antigens("P09-F", CD22=30.0, CD10=89.0),
    }
    timeline = patient_timeline(decisions, antigens, ORDER, loss_points=30)
    assert list(timeline.columns) == TIMELINE_COLUMNS
    cd22 = timeline[timeline["marker"] == "CD22"]
    assert list(cd22["sample_id"]) == ["P09-D", "P09-R", "P09-F"]
    assert list(cd22["change_points"].fillna(0)) == [0, -25.0, -40.0]
    assert list(cd22["loss"]) == [False, False, True]  # 25 points is within the 30 allowed
    assert not timeline[timeline["marker"] == "CD10"]["loss"].any()

    patients = patient_table(decisions, timeline, ORDER)
    assert list(patients.columns) == PATIENT_TABLE_COLUMNS
    row = patients.set_index("patient_id").loc["P09"]
    assert row["latest_sample_id"] == "P09-F" and row["latest_timepoint"] == "follow-up"
    assert row["decision"] == "needs_review"
    assert row["samples"] == "P09-D,P09-R,P09-F"
    assert row["antigen_loss"] == "CD22 fell 40 points to 30% (P09-F, follow-up)"


def test_an_unquantified_sample_does_not_hide_a_fall() -> None:
    decisions = [_decision("A", "diagnosis"), _decision("B", "relapse"), _decision("C", "post-CAR")]
    antigens = {
        "A": _antigens("A", CD22=95.0),
        "B": _antigens("B", CD22=None),  # too few blasts to quantify
        "C": _antigens("C", CD22=20.0),
    }
    timeline = patient_timeline(decisions, antigens, ORDER, loss_points=30)
    c = timeline.set_index("sample_id").loc["C"]
    assert c["change_points"] == -75.0 and bool(c["loss"])


@pytest.mark.parametrize(
    ("timepoint", "expected"),
    [("Diagnosis", (0, 5)), ("follow-up", (3, 5)), ("week 12", (4, 5)), (None, (4, 5))],
)
def test_timepoint_rank(timepoint: str | None, expected: tuple[int, int]) -> None:
    assert timepoint_rank(timepoint, ORDER, 5) == expected


def test_run_summary_counts_whole_reasons_even_with_semicolons(tmp_path: Path) -> None:
    """The closing summary counts each decision's reasons as listed in decisions.json: the
    table joins them with "; ", and a reason may hold "; " itself."""
    import json

    from antigen_profile.steps import run_summary

    reason = "Flag (possible_lineage_switch): no B marker; review the myeloid markers"
    decisions = [
        {"sample_id": "S1", "decision": "needs_review", "review_reasons": [reason],
         "clinical_reasons": []},
        {"sample_id": "S2", "decision": "needs_review", "review_reasons": [reason, "QC warning"],
         "clinical_reasons": []},
    ]  # fmt: skip
    (tmp_path / "decisions.json").write_text(json.dumps(decisions))
    table = pd.DataFrame(
        {"sample_id": ["S1", "S2"], "decision": ["needs_review"] * 2,
         "review_reasons": ["; ".join(d["review_reasons"]) for d in decisions]}
    )  # fmt: skip
    table.to_csv(tmp_path / "recommendations.tsv", sep="\t", index=False)
    text = run_summary(tmp_path, ["S1", "S2"])
    assert "2 specimen(s): 2 needs_review" in text
    assert f"most frequent reasons: {reason} (2); QC warning (1)" in text
