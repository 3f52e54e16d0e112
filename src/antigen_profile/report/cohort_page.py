"""The cohort index: one page listing every specimen with its decision, linked to its report.

A specimen is one draw: one tube, or the tubes a split panel spreads over. Like the other
reports the index computes nothing: the rows come from recommendations.tsv (one per
specimen), the trial versions, flags and heat map from each specimen's decision.json,
specimen.json and antigens.tsv (``specimens/{specimen_id}/``; a results folder older than
specimens: the tube's own files), the QC from each tube's qc.json, and the Patients section
from patients.tsv and patient_timeline.tsv. A file that is missing or unreadable is shown as
such, never guessed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from antigen_profile import __version__
from antigen_profile.outputs import COHORT_FILES, SAMPLE_FILES, SPECIMEN_DIR, SPECIMEN_FILES
from antigen_profile.report import plots
from antigen_profile.report.format import (
    CALL_CLASS,
    DASH,
    DECISION_CLASS,
    NOT_CALLED,
    QC_CLASS,
    RED_FLAGS,
    REVIEW_CLASS,
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
from antigen_profile.vocabulary import ReviewStatus

#: The order of the decision tiles (a decision no file uses still gets its tile, with 0).
DECISION_ORDER = ("candidate", "needs_review", "not_candidate")
#: The one inline script (sorting and filtering), allowed by the page's policy through its hash.
COHORT_SCRIPT = "_cohort.js"
#: QC statuses from best to worst: a specimen shows its worst tube's.
QC_ORDER = ("pass", "warn", "fail")


def _cell(value: Any) -> str:
    """A recommendations.tsv cell as text ('' for NaN/None, as pandas reads empty cells)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _safe_id(identifier: str) -> bool:
    """Whether an id from a file can name a folder below the results folder (it is not
    trusted as a path)."""
    return bool(identifier) and identifier not in {".", ".."} and not {"/", "\\"} & set(identifier)


def _sample_file(results_dir: Path, sample_id: str, name: str) -> Path | None:
    """``{results_dir}/{sample_id}/{name}``, or None when the sample id could point outside
    the results folder."""
    return Path(results_dir) / sample_id / name if _safe_id(sample_id) else None


def _specimen_file(results_dir: Path, specimen_id: str, name: str) -> Path | None:
    """``{results_dir}/specimens/{specimen_id}/{name}``, or None for an unsafe id."""
    if not _safe_id(specimen_id):
        return None
    return Path(results_dir) / SPECIMEN_DIR / specimen_id / name


def _json_file(path: Path | None) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing, unreadable or not an object."""
    if path is None:
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sample_json(results_dir: Path, sample_id: str, name: str) -> dict[str, Any] | None:
    """``{results_dir}/{sample_id}/{name}`` as a JSON object (see :func:`_json_file`)."""
    return _json_file(_sample_file(results_dir, sample_id, name))


@dataclass(frozen=True)
class _Specimen:
    """One row of the index: the specimen, its tubes, and the tube whose own files stand in
    for the specimen's in a results folder older than specimens (``fallback``)."""

    specimen_id: str
    sample_id: str
    tubes: list[str]

    @property
    def fallback(self) -> str:
        return self.sample_id or (self.tubes[0] if len(self.tubes) == 1 else "")

    def specimen_path(self, results_dir: Path, key: str) -> Path | None:
        return _specimen_file(results_dir, self.specimen_id, SPECIMEN_FILES[key])

    def read_json(self, results_dir: Path, key: str) -> dict[str, Any] | None:
        """The specimen's file ``key`` (decision, specimen), else the tube's own."""
        found = _json_file(self.specimen_path(results_dir, key))
        if found is None and key in SAMPLE_FILES:
            found = _sample_json(results_dir, self.fallback, SAMPLE_FILES[key])
        return found


def _trials(results_dir: Path, specimens: Sequence[_Specimen]) -> list[str]:
    """Distinct "name version" of the trial rules the specimens were decided against.

    More than one means the cohort was decided against different rule versions, which the
    reader must see.
    """
    seen: list[str] = []
    for specimen in specimens:
        decision = specimen.read_json(results_dir, "decision")
        if decision is None:
            continue
        trial = decision.get("trial") if isinstance(decision.get("trial"), Mapping) else {}
        label = f"{trial.get('name', '?')} {trial.get('version', '')}".strip()
        if label not in seen:
            seen.append(label)
    return seen


def _flag_count(results_dir: Path, specimen: _Specimen) -> tuple[str, str]:
    """Number of flags of a specimen (its specimen.json; without one, its tube's profile.json)
    and their CSS class (red when one of them is a red flag); a dash when neither file is
    there or records flags."""
    document = _json_file(specimen.specimen_path(results_dir, "specimen"))
    if document is None:
        document = _sample_json(results_dir, specimen.fallback, SAMPLE_FILES["profile"])
    flags = None if document is None else document.get("flags")
    if not isinstance(flags, list):
        return DASH, "neutral"
    if not flags:
        return "0", "good"
    red = any(isinstance(f, Mapping) and f.get("code") in RED_FLAGS for f in flags)
    return str(len(flags)), "bad" if red else "warn"


def _qc_view(results_dir: Path, tubes: Sequence[str]) -> dict[str, Any]:
    """The worst QC status of a specimen's tubes (their qc.json), its warnings summed, and
    each tube's status when they differ; a dash when no tube has a readable qc.json."""
    statuses, warnings, per_tube = [], 0, []
    for tube in tubes:
        qc = _sample_json(results_dir, tube, SAMPLE_FILES["qc"])
        status = str((qc or {}).get("status") or "")
        statuses.append(status)
        warnings += len(as_list((qc or {}).get("warnings")))
        per_tube.append(f"{tube}: {status or 'no qc.json'}")
    known = [s for s in statuses if s in QC_ORDER]
    worst = max(known, key=QC_ORDER.index) if known else next((s for s in statuses if s), "")
    return {
        "qc_status": worst or DASH,
        "qc_class": css_class(QC_CLASS, worst),
        "qc_warnings": warnings,
        "qc_tubes": ", ".join(per_tube) if len(set(statuses)) > 1 else "",
    }


def _sort_number(value: Any) -> str:
    """A cell's numeric sort key for the table script ("" when there is no number)."""
    number = to_number(value)
    return "" if number is None else repr(number)


def _review_cells(record: Mapping[str, Any]) -> dict[str, Any]:
    """The Review column: the status, and for a signed review the final decision and targets
    and who signed (a table older than reviews: ``unreviewed``)."""
    status = _cell(record.get("review_status")) or ReviewStatus.UNREVIEWED
    return {
        "review_status": status,
        "review_class": REVIEW_CLASS.get(status, "neutral"),
        "final_decision": _cell(record.get("final_decision")),
        "final_targets": _cell(record.get("final_targets")),
        "reviewed_by": _cell(record.get("reviewed_by")),
    }


def script_hash(name: str) -> str:
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


def _antigen_table(results_dir: Path, specimen: _Specimen) -> Table | None:
    """The specimen's antigens.tsv, else (a results folder older than specimens) its tube's."""
    table = _read_optional_tsv(specimen.specimen_path(results_dir, "antigens"))
    if table is None:
        path = _sample_file(results_dir, specimen.fallback, SAMPLE_FILES["antigens"])
        table = _read_optional_tsv(path)
    return table


def _heatmap_view(
    results_dir: Path, specimens: Sequence[_Specimen], config: Mapping[str, Any]
) -> dict[str, Any]:
    """% positive blasts per antigen and specimen, from each specimen's antigens.tsv: the heat
    map and its numbers. Calls without a trustworthy number (too few events, no reference)
    and specimens without antigens.tsv rows are grey, never zero."""
    sample_ids = [s.specimen_id for s in specimens]
    tables = {s.specimen_id: _antigen_table(results_dir, s) for s in specimens}
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


def _timeline_key(row: Mapping[str, str]) -> str:
    """The specimen a timeline row is of: its numbers may come from different tubes
    (``sample_id``), one point per specimen; a timeline older than specimens names the
    sample only."""
    return row.get("specimen_id") or row.get("sample_id") or ""


def _timeline_plots(timeline: Table | None) -> list[dict[str, Any]]:
    """One multi-line plot per patient with more than one specimen: each antigen's % positive
    (and ABC median when calibrated) over the specimens in the timeline's order, losses red."""
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
            sid = _timeline_key(row)
            if sid not in timepoints:
                samples.append(sid)
                timepoints[sid] = row.get("timepoint") or ""
        if len(samples) < 2:
            continue
        markers = list(dict.fromkeys(r.get("marker", "") for r in rows))
        cell = {(_timeline_key(r), r.get("marker", "")): r for r in rows}
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


def _patients_view(results_dir: Path, links: Mapping[str, str]) -> dict[str, Any]:
    """The Patients section: patients.tsv (antigen loss in red) and the timeline plots, or a
    note when the files are absent (a results folder older than the timeline). Each patient's
    specimens link as the index rows do (``links``: specimen id -> href); a patients.tsv older
    than specimens lists samples, each its own."""
    patients = _read_optional_tsv(Path(results_dir) / COHORT_FILES["patients"])
    timeline = _read_optional_tsv(Path(results_dir) / COHORT_FILES["timeline"])
    rows = []
    for row in patients.rows if patients else []:
        decision = row.get("decision") or ""
        specimens = as_list(row.get("specimens"), ",")
        listed = specimens or as_list(row.get("samples"), ",")
        rows.append(
            {
                "patient_id": row.get("patient_id") or DASH,
                "samples": [
                    {"sample_id": sid, "href": links.get(sid) or _default_href(sid, specimens)}
                    for sid in listed
                ],
                "timepoints": ", ".join(t or DASH for t in (row.get("timepoints") or "").split(","))
                or DASH,
                "latest": row.get("latest_specimen_id") or row.get("latest_sample_id") or DASH,
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


def _href(identifier: str, folder: str = "") -> str:
    """``[folder/]{identifier}/report.html`` with the id quoted (a "/" in it stays in its
    path segment), or "" for an id that names no folder below ("", ".", "..")."""
    if identifier in {"", ".", ".."}:
        return ""
    return f"{folder}{quote(identifier, safe='')}/report.html"


def _default_href(identifier: str, specimens: Sequence[str]) -> str:
    """A specimen's report when the row names specimens, else the sample's."""
    return _href(identifier, f"{SPECIMEN_DIR}/" if specimens else "")


def _specimen_of(record: Mapping[str, Any]) -> _Specimen:
    """The specimen a recommendations.tsv row is for; a table older than specimens has no
    ``specimen_id``/``tubes``: the sample was its own specimen."""
    sample_id = _cell(record.get("sample_id"))
    specimen_id = _cell(record.get("specimen_id")) or sample_id
    tubes = as_list(_cell(record.get("tubes")), ",") or ([sample_id] if sample_id else [])
    return _Specimen(specimen_id, sample_id, tubes)


def _specimen_href(specimen: _Specimen) -> str:
    """A one-tube specimen links to its tube's full report, a split one to the specimen's."""
    if specimen.sample_id:
        return _href(specimen.sample_id)
    return _href(specimen.specimen_id, f"{SPECIMEN_DIR}/")


def cohort_context(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Rows, counts by decision, trial versions, the % positive heat map and the patients'
    timelines for the cohort index."""
    missing = {"sample_id", "decision"} - set(recommendations.columns)
    if missing:
        raise KeyError(f"recommendations lack column(s) {', '.join(sorted(missing))}")
    results_dir = Path(results_dir)
    rows, specimens = [], []
    for record in recommendations.to_dict(orient="records"):
        specimen = _specimen_of(record)
        specimens.append(specimen)
        decision = _cell(record.get("decision"))
        antigen_status = _cell(record.get("antigen_status"))
        clinical_status = _cell(record.get("clinical_status"))
        flags, flags_class = _flag_count(results_dir, specimen)
        rows.append(
            {
                "specimen_id": specimen.specimen_id,
                "sample_id": specimen.sample_id,
                "href": _specimen_href(specimen),
                # the sign-off form lives on the specimen's page, a one-tube specimen's too
                "signoff_href": _href(specimen.specimen_id, f"{SPECIMEN_DIR}/"),
                "tubes": [{"sample_id": t, "href": _href(t)} for t in specimen.tubes],
                "split": not specimen.sample_id and len(specimen.tubes) > 1,
                # a tube that is its own specimen is the row's link already
                "tubes_shown": specimen.tubes != [specimen.specimen_id],
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
                **_qc_view(results_dir, specimen.tubes),
                **_review_cells(record),
            }
        )
    tally: dict[str, int] = {name: 0 for name in DECISION_ORDER}
    for row in rows:
        key = row["decision"] if row["decision"] != DASH else "not recorded"
        tally[key] = tally.get(key, 0) + 1
    counts = [
        {"decision": k, "count": n, "css": css_class(DECISION_CLASS, k)} for k, n in tally.items()
    ]
    listed = [s for s in specimens if s.specimen_id]
    return {
        "version": __version__,
        "rows": rows,
        "counts": counts,
        "decisions": [c["decision"] for c in counts if c["decision"] != "not recorded"],
        "total": len(rows),
        "trials": _trials(results_dir, listed),
        "heatmap": _heatmap_view(results_dir, listed, config or {}),
        "patients": _patients_view(
            results_dir, {r["specimen_id"]: r["href"] for r in rows if r["href"]}
        ),
        "csp": content_security_policy(script=script_hash(COHORT_SCRIPT)),
        "script": COHORT_SCRIPT,
    }


def render_cohort_report(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any]
) -> str:
    """Return the cohort index: every specimen with its decision, linked to its report.

    Parameters
    ----------
    results_dir
        The results folder. A one-tube specimen links to its tube's report
        (``{sample_id}/report.html``), a split one to ``specimens/{specimen_id}/report.html``;
        the specimen's decision.json names the trial version, its specimen.json the flags, its
        antigens.tsv feeds the heat map, and its tubes' qc.json the QC column; patients.tsv and
        patient_timeline.tsv feed the Patients section.
    recommendations
        recommendations.tsv as a DataFrame (one row per specimen, contract columns; without
        ``specimen_id``/``tubes`` each sample is its own specimen).
    config
        The workflow configuration: only the order of the antigens (``quantified``) is used;
        nothing is recomputed from it.
    """
    context = cohort_context(Path(results_dir), recommendations, config)
    return environment().get_template("cohort.html").render(**context)
