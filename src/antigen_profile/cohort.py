"""Cohort tables: every specimen's decision together, and each patient's specimens over time.

``recommendations.tsv`` is one row per specimen (one draw: one tube, or the tubes its panel
was split over) from its decision.json. A patient may have
several samples (diagnosis, relapse after CD19 therapy, post-CAR follow-up). Antigen loss
between them is how the next relapse starts, so the timeline and any fall larger than the
configured amount are reported per patient, and the patient's row is taken from the latest
sample. Reads only the per-sample outputs; computes nothing per event.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from antigen_profile.cells import as_number, is_missing
from antigen_profile.files import atomic_write
from antigen_profile.review import review_columns

#: recommendations.tsv columns, in contract order (docs/outputs.md): append, never reorder.
RECOMMENDATION_COLUMNS: list[str] = [
    "sample_id",
    "patient_id",
    "blast_events",
    "blast_pct_leukocytes",
    "cd19_status",
    "eligible_targets",
    "antigen_status",
    "clinical_status",
    "clinical_reasons",
    "decision",
    "recommended_combination",
    "combination_coverage_pct",
    "review_reasons",
    "specimen_id",
    "tubes",
    "review_status",
    "final_decision",
    "final_targets",
    "reviewed_by",
]

#: patients.tsv columns of the cohort (one row per patient: its samples and latest decision);
#: not the patient sheet's columns (:data:`antigen_profile.sheets.PATIENT_COLUMNS`).
PATIENT_TABLE_COLUMNS = [
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
    "specimens",
    "latest_specimen_id",
    "tubes",
]
#: patient_timeline.tsv columns: one row per patient, sample and marker, in time order.
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
    "specimen_id",
    "tubes",
]


def specimen_key(decision: Mapping[str, Any]) -> str:
    """The specimen a decision is for; a decision.json older than specimens names only its
    sample, which was then its own specimen."""
    return str(decision.get("specimen_id") or decision.get("sample_id"))


def _tubes(decision: Mapping[str, Any]) -> list[str]:
    return [str(t) for t in decision.get("tubes") or [decision.get("sample_id")]]


def recommendation_row(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One recommendations.tsv row from a decision.json dict.

    Lists are joined (targets by ",", reasons by "; "), percentages rounded to 2 decimals,
    counts kept as integers, unknown values left empty. The review columns come from the
    decision's ``review`` object (added by the cohort step; absent: ``unreviewed``).
    """
    events = decision.get("blast_events")
    pct = as_number(decision.get("blast_pct_leukocytes"))
    combo = decision.get("combination") or {}
    return {
        "sample_id": decision.get("sample_id"),
        "patient_id": decision.get("patient_id"),
        "blast_events": None if is_missing(events) else int(events),
        "blast_pct_leukocytes": None if pct is None else round(pct, 2),
        "cd19_status": decision.get("cd19_status"),
        "eligible_targets": ",".join(decision.get("eligible_targets") or []),
        "antigen_status": decision.get("antigen_status"),
        "clinical_status": decision.get("clinical_status"),
        "clinical_reasons": "; ".join(decision.get("clinical_reasons") or []),
        "decision": decision.get("decision"),
        "recommended_combination": combo.get("label") or "",
        "combination_coverage_pct": combo.get("coverage_pct") if combo.get("label") else None,
        "review_reasons": "; ".join(decision.get("review_reasons") or []),
        "specimen_id": specimen_key(decision),
        "tubes": ",".join(_tubes(decision)),
        **review_columns(decision.get("review")),
    }


def write_recommendations(decisions: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write recommendations.tsv (contract columns, one row per specimen, sorted by
    specimen_id)."""
    rows = sorted((recommendation_row(d) for d in decisions), key=lambda r: r["specimen_id"])

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(
            handle, fieldnames=RECOMMENDATION_COLUMNS, delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in RECOMMENDATION_COLUMNS})

    return atomic_write(path, write)


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
    """One row per patient, specimen and marker, in time order, with the change in %
    positive blasts from the patient's previous specimen and ``loss`` when it fell by more
    than ``loss_points``. ``antigens`` is keyed by specimen_id; ``sample_id`` is the tube the
    number comes from (the specimen's antigens.tsv says which)."""
    rows = []
    for position, decision in enumerate(decisions):
        specimen_id = specimen_key(decision)
        table = antigens.get(specimen_id)
        if table is None or table.empty:
            continue
        rank = timepoint_rank(decision.get("timepoint"), order, position)
        tubes = _tubes(decision)
        for record in table.to_dict("records"):
            source = record.get("sample_id")
            rows.append(
                {
                    "patient_id": str(decision["patient_id"]),
                    "sample_id": source if not is_missing(source) else "",
                    "timepoint": decision.get("timepoint") or "",
                    "_rank": rank,
                    "marker": record["marker"],
                    "pct_positive": record.get("pct_positive"),
                    "call": record.get("call"),
                    "abc_median": record.get("abc_median"),
                    "specimen_id": specimen_id,
                    "tubes": ",".join(tubes),
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
    """``patients.tsv``: each patient's latest specimen (by timepoint order) and every antigen
    that fell by more than the configured amount along the way. ``samples`` lists every
    tube, ``specimens`` every specimen, in time order."""
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
            f"({r.specimen_id}, {r.timepoint or 'no timepoint'})"
            for r in losses.itertuples()
        ]
        combination = latest.get("combination") or {}
        rows.append(
            {
                "patient_id": patient_id,
                "samples": ",".join(t for d in samples for t in _tubes(d)),
                "timepoints": ",".join(str(d.get("timepoint") or "") for d in samples),
                "latest_sample_id": latest.get("sample_id") or "",
                "latest_timepoint": latest.get("timepoint") or "",
                "decision": latest.get("decision"),
                "eligible_targets": ",".join(latest.get("eligible_targets") or []),
                "recommended_combination": combination.get("label") or "",
                "antigen_loss": "; ".join(loss_text),
                "review_reasons": "; ".join(latest.get("review_reasons") or []),
                "specimens": ",".join(specimen_key(d) for d in samples),
                "latest_specimen_id": specimen_key(latest),
                "tubes": ",".join(_tubes(latest)),
            }
        )
    return pd.DataFrame(rows, columns=PATIENT_TABLE_COLUMNS)
