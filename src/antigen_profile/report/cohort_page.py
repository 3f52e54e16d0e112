"""The cohort index: one page listing every sample with its decision, linked to its report.

Like the sample report it computes nothing: the rows come from recommendations.tsv, the trial
versions, flags and QC from each sample's decision.json, profile.json and qc.json, the heat
map from each sample's antigens.tsv, and the Patients section from patients.tsv and
patient_timeline.tsv. A sample file that is missing or unreadable is shown as such, never
guessed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from antigen_profile import __version__
from antigen_profile.outputs import COHORT_FILES, SAMPLE_FILES
from antigen_profile.report import plots
from antigen_profile.report.format import (
    CALL_CLASS,
    DASH,
    DECISION_CLASS,
    NOT_CALLED,
    QC_CLASS,
    RED_FLAGS,
    STATUS_CLASS,
    as_list,
    css_class,
    fmt_count,
    fmt_pct,
    fmt_pct2,
    json_list,
    to_number,
    truthy,
)
from antigen_profile.report.page import content_security_policy, environment
from antigen_profile.report.result_files import Table, read_json, read_table

#: The order of the decision tiles (a decision no file uses still gets its tile, with 0).
DECISION_ORDER = ("candidate", "needs_review", "not_candidate")
#: The one inline script (sorting and filtering), allowed by the page's policy through its hash.
COHORT_SCRIPT = "_cohort.js"


def _cell(value: Any) -> str:
    """A recommendations.tsv cell as text ('' for NaN/None, as pandas reads empty cells)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _sample_file(results_dir: Path, sample_id: str, name: str) -> Path | None:
    """``{results_dir}/{sample_id}/{name}``, or None when the sample id could point outside
    the results folder (an id from a file is not trusted as a path)."""
    if not sample_id or sample_id in {".", ".."} or "/" in sample_id or "\\" in sample_id:
        return None
    return Path(results_dir) / sample_id / name


def _sample_json(results_dir: Path, sample_id: str, name: str) -> dict[str, Any] | None:
    """``{results_dir}/{sample_id}/{name}`` as a JSON object, or None when it is missing,
    unreadable, not an object, or would lie outside the results folder."""
    path = _sample_file(results_dir, sample_id, name)
    if path is None:
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _trials(results_dir: Path, sample_ids: Sequence[str]) -> list[str]:
    """Distinct "name version" of the trial rules the samples were decided against.

    More than one means the cohort was decided against different rule versions, which the
    reader must see.
    """
    seen: list[str] = []
    for sample_id in sample_ids:
        decision = _sample_json(results_dir, sample_id, SAMPLE_FILES["decision"])
        if decision is None:
            continue
        trial = decision.get("trial") if isinstance(decision.get("trial"), Mapping) else {}
        label = f"{trial.get('name', '?')} {trial.get('version', '')}".strip()
        if label not in seen:
            seen.append(label)
    return seen


def _flag_count(results_dir: Path, sample_id: str) -> tuple[str, str]:
    """Number of flags in a sample's profile.json and its CSS class (red when one of them is
    a red flag); a dash when profile.json is missing or records no flags."""
    profile = _sample_json(results_dir, sample_id, SAMPLE_FILES["profile"])
    flags = None if profile is None else profile.get("flags")
    if not isinstance(flags, list):
        return DASH, "neutral"
    if not flags:
        return "0", "good"
    red = any(isinstance(f, Mapping) and f.get("code") in RED_FLAGS for f in flags)
    return str(len(flags)), "bad" if red else "warn"


def _sort_number(value: Any) -> str:
    """A cell's numeric sort key for the table script ("" when there is no number)."""
    number = to_number(value)
    return "" if number is None else repr(number)


def _script_hash(name: str) -> str:
    """CSP source of an inline script template: ``sha256-<base64>`` of its rendered text,
    exactly as ``{% include %}`` puts it between the script tags."""
    text = environment().get_template(name).render()
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _read_optional_tsv(path: Path | None) -> Table | None:
    """A TSV as text rows, or None when absent or unreadable (the cohort index says so)."""
    if path is None:
        return None
    try:
        return read_table(path)
    except (OSError, ValueError, csv.Error):
        return None


def _markers(config: Mapping[str, Any], tables: Iterable[Table | None]) -> list[str]:
    """Antigens for the heat map: the configured ``quantified`` order, then any other marker
    the samples' antigens.tsv list, in first-seen order."""
    markers = [str(m) for m in json_list(config.get("quantified"))]
    for table in tables:
        for row in table.rows if table is not None else []:
            marker = row.get("marker") or ""
            if marker and marker not in markers:
                markers.append(marker)
    return markers


def _heatmap_view(
    results_dir: Path, sample_ids: Sequence[str], config: Mapping[str, Any]
) -> dict[str, Any]:
    """% positive blasts per antigen and sample, from each sample's antigens.tsv: the heat map
    and its numbers. Calls without a trustworthy number (too few events, no reference) and
    samples without antigens.tsv rows are grey, never zero."""
    tables = {
        sid: _read_optional_tsv(_sample_file(results_dir, sid, SAMPLE_FILES["antigens"]))
        for sid in sample_ids
    }
    markers = _markers(config, tables.values())
    values = np.full((len(sample_ids), len(markers)), np.nan)
    rows = []
    for i, sid in enumerate(sample_ids):
        table = tables[sid]
        by_marker = {r.get("marker", ""): r for r in (table.rows if table else [])}
        cells = []
        for j, marker in enumerate(markers):
            row = by_marker.get(marker)
            call = (row or {}).get("call", "")
            pct = None if row is None or call in NOT_CALLED else to_number(row.get("pct_positive"))
            if pct is not None:
                values[i, j] = pct
            cells.append(
                {
                    "text": DASH if pct is None else f"{pct:.1f}",
                    "call": call or ("not in antigens.tsv" if table and table.rows else DASH),
                    "css": css_class(CALL_CLASS, call),
                }
            )
        rows.append({"sample_id": sid, "cells": cells, "missing": table is None})
    image = None
    if sample_ids and markers and np.isfinite(values).any():
        image = plots.cohort_heatmap_plot(list(sample_ids), markers, values)
    return {"image": image, "markers": markers, "rows": rows}


def _timeline_plots(timeline: Table | None) -> list[dict[str, Any]]:
    """One multi-line plot per patient with more than one sample: each antigen's % positive
    (and ABC median when calibrated) over the samples in the timeline's order, losses red."""
    if timeline is None:
        return []
    patients: dict[str, list[dict[str, str]]] = {}
    for row in timeline.rows:
        patients.setdefault(row.get("patient_id", ""), []).append(row)
    views = []
    for patient_id, rows in patients.items():
        samples: list[str] = []
        timepoints: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: to_number(r.get("order")) or 0):
            sid = row.get("sample_id", "")
            if sid not in timepoints:
                samples.append(sid)
                timepoints[sid] = row.get("timepoint") or ""
        if len(samples) < 2:
            continue
        markers = list(dict.fromkeys(r.get("marker", "") for r in rows))
        cell = {(r.get("sample_id", ""), r.get("marker", "")): r for r in rows}
        series = {m: [to_number((cell.get((s, m)) or {}).get("pct_positive")) for s in samples]
                  for m in markers}  # fmt: skip
        losses = {m: [truthy((cell.get((s, m)) or {}).get("loss")) is True for s in samples]
                  for m in markers}  # fmt: skip
        density = {m: [to_number((cell.get((s, m)) or {}).get("abc_median")) for s in samples]
                   for m in markers}  # fmt: skip
        labels = [f"{s}\n{timepoints[s]}" if timepoints[s] else s for s in samples]
        views.append(
            {
                "patient_id": patient_id,
                "samples": [{"sample_id": s, "timepoint": timepoints[s] or DASH} for s in samples],
                "image": plots.patient_timeline_plot(patient_id, labels, series, losses, density),
                "losses": [
                    f"{m} at {s}"
                    for m in markers
                    for s, lost in zip(samples, losses[m], strict=True)
                    if lost
                ],
            }
        )
    return views


def _patients_view(results_dir: Path) -> dict[str, Any]:
    """The Patients section: patients.tsv (antigen loss in red) and the timeline plots, or a
    note when the files are absent (a results folder older than the timeline)."""
    patients = _read_optional_tsv(Path(results_dir) / COHORT_FILES["patients"])
    timeline = _read_optional_tsv(Path(results_dir) / COHORT_FILES["timeline"])
    rows = []
    for row in patients.rows if patients else []:
        decision = row.get("decision") or ""
        rows.append(
            {
                "patient_id": row.get("patient_id") or DASH,
                "samples": [
                    {"sample_id": sid, "href": f"{quote(sid, safe='')}/report.html"}
                    for sid in as_list(row.get("samples"), ",")
                ],
                "timepoints": ", ".join(t or DASH for t in (row.get("timepoints") or "").split(","))
                or DASH,
                "latest": row.get("latest_sample_id") or DASH,
                "decision": decision or DASH,
                "decision_class": css_class(DECISION_CLASS, decision),
                "eligible_targets": as_list(row.get("eligible_targets"), ","),
                "combination": row.get("recommended_combination") or DASH,
                "antigen_loss": as_list(row.get("antigen_loss"), ";"),
                # one text: a reason may itself hold "; " (the separator of the column)
                "review_reasons": as_list(row.get("review_reasons")),
            }
        )
    notes = []
    if patients is None:
        notes.append("patients.tsv not found: this results folder predates the patient table.")
    if timeline is None:
        notes.append(
            "patient_timeline.tsv not found: antigens over each patient's samples cannot be shown."
        )
    plots_ = _timeline_plots(timeline)
    return {
        "rows": rows,
        "plots": plots_,
        "notes": notes,
        "losses": sum(bool(r["antigen_loss"]) for r in rows),
        "multi": len(plots_),
    }


def cohort_context(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Rows, counts by decision, trial versions, the % positive heat map and the patients'
    timelines for the cohort index."""
    missing = {"sample_id", "decision"} - set(recommendations.columns)
    if missing:
        raise KeyError(f"recommendations lack column(s) {', '.join(sorted(missing))}")
    results_dir = Path(results_dir)
    rows = []
    for record in recommendations.to_dict(orient="records"):
        sample_id = _cell(record.get("sample_id"))
        decision = _cell(record.get("decision"))
        antigen_status = _cell(record.get("antigen_status"))
        clinical_status = _cell(record.get("clinical_status"))
        flags, flags_class = _flag_count(results_dir, sample_id)
        qc = _sample_json(results_dir, sample_id, SAMPLE_FILES["qc"]) or {}
        qc_status = str(qc.get("status") or "")
        rows.append(
            {
                "sample_id": sample_id,
                "href": f"{quote(sample_id, safe='')}/report.html",
                "patient_id": _cell(record.get("patient_id")) or DASH,
                "decision": decision or DASH,
                "decision_key": decision,
                "decision_class": css_class(DECISION_CLASS, decision),
                "eligible_targets": as_list(_cell(record.get("eligible_targets")), ","),
                "blast_events": fmt_count(record.get("blast_events")),
                "blast_events_sort": _sort_number(record.get("blast_events")),
                "blast_pct": fmt_pct(record.get("blast_pct_leukocytes")),
                "blast_pct_sort": _sort_number(record.get("blast_pct_leukocytes")),
                "cd19_status": _cell(record.get("cd19_status")) or DASH,
                "antigen_status": antigen_status or DASH,
                "antigen_status_class": css_class(STATUS_CLASS, antigen_status),
                "clinical_status": clinical_status or DASH,
                "clinical_status_class": css_class(STATUS_CLASS, clinical_status),
                "clinical_reasons": as_list(_cell(record.get("clinical_reasons")), ";"),
                "combination": _cell(record.get("recommended_combination")) or DASH,
                "combination_pct": fmt_pct2(record.get("combination_coverage_pct")),
                "combination_pct_sort": _sort_number(record.get("combination_coverage_pct")),
                "flags": flags,
                "flags_sort": "" if flags == DASH else flags,
                "flags_class": flags_class,
                "qc_status": qc_status or DASH,
                "qc_class": css_class(QC_CLASS, qc_status),
                "qc_warnings": len(as_list(qc.get("warnings"))),
            }
        )
    tally: dict[str, int] = {name: 0 for name in DECISION_ORDER}
    for row in rows:
        key = row["decision"] if row["decision"] != DASH else "not recorded"
        tally[key] = tally.get(key, 0) + 1
    counts = [
        {"decision": k, "count": n, "css": css_class(DECISION_CLASS, k)} for k, n in tally.items()
    ]
    sample_ids = [r["sample_id"] for r in rows if r["sample_id"]]
    return {
        "version": __version__,
        "rows": rows,
        "counts": counts,
        "decisions": [c["decision"] for c in counts if c["decision"] != "not recorded"],
        "total": len(rows),
        "trials": _trials(results_dir, sample_ids),
        "heatmap": _heatmap_view(results_dir, sample_ids, config or {}),
        "patients": _patients_view(results_dir),
        "csp": content_security_policy(script=_script_hash(COHORT_SCRIPT)),
        "script": COHORT_SCRIPT,
    }


def render_cohort_report(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any]
) -> str:
    """Return the cohort index: every sample with its decision, linked to its own report.

    Parameters
    ----------
    results_dir
        The results folder; each sample's report is ``{sample_id}/report.html`` below it, its
        decision.json names the trial version, its antigens.tsv feeds the heat map and its
        qc.json the QC column; patients.tsv and patient_timeline.tsv feed the Patients section.
    recommendations
        recommendations.tsv as a DataFrame (one row per sample, contract columns).
    config
        The workflow configuration: only the order of the antigens (``quantified``) is used;
        nothing is recomputed from it.
    """
    context = cohort_context(Path(results_dir), recommendations, config)
    return environment().get_template("cohort.html").render(**context)
