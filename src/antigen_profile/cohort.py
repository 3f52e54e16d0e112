"""Cohort: every sample's decision together, and each patient's samples over time.

A patient may have several samples (diagnosis, relapse after CD19 therapy, post-CAR
follow-up). Antigen loss between them is how the next relapse starts, so the timeline and any
fall larger than the configured amount are reported per patient, and the patient's row is
taken from the latest sample. Reads only the per-sample outputs; computes nothing per event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

PATIENT_COLUMNS = [
    "patient_id",
    "samples",
    "timepoints",
    "latest_sample_id",
    "latest_timepoint",
    "decision",
    "eligible_targets",
    "recommended_combination",
    "antigen_loss",
    "review_reasons",
]
TIMELINE_COLUMNS = [
    "patient_id",
    "sample_id",
    "timepoint",
    "order",
    "marker",
    "pct_positive",
    "call",
    "abc_median",
    "change_points",
    "loss",
]


def timepoint_rank(timepoint: str | None, order: Sequence[str], position: int) -> tuple[int, int]:
    """Sort key: the timepoint's place in ``order`` (case-insensitive); timepoints not in the
    order (or empty) come after every known one, in sheet order."""
    known = [t.lower() for t in order]
    label = (timepoint or "").strip().lower()
    return (known.index(label), position) if label in known else (len(known), position)


def patient_timeline(
    decisions: Sequence[Mapping[str, Any]],
    antigens: Mapping[str, pd.DataFrame],
    order: Sequence[str],
    loss_points: float,
) -> pd.DataFrame:
    """One row per patient, sample and marker, in time order, with the change in % positive
    blasts from the patient's previous sample and ``loss`` when it fell by more than
    ``loss_points``."""
    rows = []
    for position, decision in enumerate(decisions):
        sample_id = str(decision["sample_id"])
        table = antigens.get(sample_id)
        if table is None or table.empty:
            continue
        rank = timepoint_rank(decision.get("timepoint"), order, position)
        for record in table.to_dict("records"):
            rows.append(
                {
                    "patient_id": str(decision["patient_id"]),
                    "sample_id": sample_id,
                    "timepoint": decision.get("timepoint") or "",
                    "_rank": rank,
                    "marker": record["marker"],
                    "pct_positive": record.get("pct_positive"),
                    "call": record.get("call"),
                    "abc_median": record.get("abc_median"),
                }
            )
    if not rows:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    frame = pd.DataFrame(rows).sort_values(["patient_id", "_rank", "marker"], kind="stable")
    frame["order"] = frame.groupby(["patient_id", "marker"]).cumcount() + 1
    pct = pd.to_numeric(frame["pct_positive"], errors="coerce")
    # The previous *measured* share: a sample that could not be quantified is skipped over.
    previous = pct.groupby([frame["patient_id"], frame["marker"]]).transform(
        lambda s: s.ffill().shift(1)
    )
    frame["change_points"] = (pct - previous).round(2)
    frame["loss"] = frame["change_points"] < -float(loss_points)
    return frame.sort_values(["patient_id", "order", "marker"], kind="stable")[TIMELINE_COLUMNS]


def patient_table(
    decisions: Sequence[Mapping[str, Any]], timeline: pd.DataFrame, order: Sequence[str]
) -> pd.DataFrame:
    """``patients.tsv``: each patient's latest sample (by timepoint order) and every antigen
    that fell by more than the configured amount along the way."""
    by_patient: dict[str, list[tuple[tuple[int, int], Mapping[str, Any]]]] = {}
    for position, decision in enumerate(decisions):
        rank = timepoint_rank(decision.get("timepoint"), order, position)
        by_patient.setdefault(str(decision["patient_id"]), []).append((rank, decision))
    rows = []
    for patient_id in sorted(by_patient):
        samples = [d for _, d in sorted(by_patient[patient_id], key=lambda item: item[0])]
        latest = samples[-1]
        losses = timeline[(timeline["patient_id"] == patient_id) & timeline["loss"]]
        loss_text = [
            f"{r.marker} fell {abs(r.change_points):g} points to {r.pct_positive:g}% "
            f"({r.sample_id}, {r.timepoint or 'no timepoint'})"
            for r in losses.itertuples()
        ]
        combination = latest.get("combination") or {}
        rows.append(
            {
                "patient_id": patient_id,
                "samples": ",".join(str(d["sample_id"]) for d in samples),
                "timepoints": ",".join(str(d.get("timepoint") or "") for d in samples),
                "latest_sample_id": latest["sample_id"],
                "latest_timepoint": latest.get("timepoint") or "",
                "decision": latest.get("decision"),
                "eligible_targets": ",".join(latest.get("eligible_targets") or []),
                "recommended_combination": combination.get("label") or "",
                "antigen_loss": "; ".join(loss_text),
                "review_reasons": "; ".join(latest.get("review_reasons") or []),
            }
        )
    return pd.DataFrame(rows, columns=PATIENT_COLUMNS)
