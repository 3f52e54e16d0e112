"""Render the per-sample and cohort HTML reports from the files described in docs/outputs.md.

The report is a reader, not an analyst: it shows what the profile and decide stages wrote and
computes nothing new, so a number in the report can always be traced to a result file. Every
string that comes from a file is escaped by Jinja2's autoescaping; nothing is marked safe.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from antigen_profile import __version__
from antigen_profile.files import write_text
from antigen_profile.report import plots

DASH = plots.DASH

#: Antigen calls that carry no trustworthy percentage (outputs.md: "no number is better than a
#: wrong one"); their numbers are replaced by a dash whatever the file holds.
NOT_CALLED = frozenset({"insufficient_events", "no_reference"})

#: CSS classes for values from files; anything else gets the neutral class, so a file value
#: never lands in a class attribute.
DECISION_CLASS = {"candidate": "good", "not_candidate": "bad", "needs_review": "warn"}
DECISION_ORDER = ("candidate", "needs_review", "not_candidate")
OUTCOME_CLASS = {"pass": "good", "fail": "bad", "unknown": "warn"}
QC_CLASS = {"pass": "good", "warn": "warn", "fail": "bad"}
CALL_CLASS = {
    "positive": "pos",
    "partial": "partial",
    "negative": "neg",
    "insufficient_events": "warn",
    "no_reference": "warn",
}
STATUS_CLASS = {
    "ok": "good",
    "eligible": "good",
    "excluded": "bad",
    "qc_failed": "bad",
    "insufficient_blasts": "warn",
    "undetermined": "warn",
}

SAMPLE_FILES = (
    "qc.json",
    "populations.tsv",
    "antigens.tsv",
    "gates.json",
    "plotdata.npz",
    "profile.json",
    "decision.json",
)


# --------------------------------------------------------------------------- formatting


def _number(value: Any) -> float | None:
    """A finite float, or None for anything empty, non-numeric or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_count(value: Any) -> str:
    """An event count with thousands separators, or a dash."""
    number = _number(value)
    return DASH if number is None else f"{round(number):,}"


def fmt_pct(value: Any) -> str:
    """A percentage with one decimal (the precision Poisson counting supports), or a dash."""
    number = _number(value)
    return DASH if number is None else f"{number:.1f}"


def fmt_num(value: Any) -> str:
    """An intensity or ratio: integers above 1000, three significant digits below."""
    number = _number(value)
    if number is None:
        return DASH
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def fmt_value(value: Any) -> str:
    """Any JSON value as plain text for a table cell (lists joined, missing as a dash)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_num(value) if isinstance(value, float) else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value) or DASH
    return str(value)


def _css(mapping: Mapping[str, str], value: Any) -> str:
    """The whitelisted CSS class for a file value, or the neutral one."""
    return mapping.get(str(value), "neutral")


def _as_list(value: Any, separator: str | None = None) -> list[str]:
    """A list of strings from a JSON list, a separated string (TSV cells), or nothing.

    Without a separator a string is one item: a reason may itself contain commas.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        parts = value.split(separator) if separator else [value]
        return [part.strip() for part in parts if part.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order without repeats (QC and decision often repeat a reason)."""
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SampleFiles:
    """Everything the profile and decide stages wrote for one sample."""

    qc: dict[str, Any]
    populations: list[dict[str, str]]
    antigens: list[dict[str, str]]
    gates: list[dict[str, Any]]
    plotdata: dict[str, np.ndarray]
    profile: dict[str, Any]
    decision: dict[str, Any]


def _read_json(path: Path) -> Any:
    """Parse a JSON result file."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a TSV as strings, exactly as written (header-only gives no rows).

    Read as text, not numbers, so that an empty cell stays empty and is shown as a dash rather
    than becoming NaN or 0 on the way.
    """
    with path.open(encoding="utf-8", newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle, delimiter="\t")]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of plotdata.npz, loaded eagerly so the file is closed (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_sample(sample_dir: Path) -> SampleFiles:
    """Read the seven result files of a sample, failing loudly when one is missing.

    A report silently missing its decision or its gates would look complete to a clinician;
    an error in the workflow log is the safer outcome.
    """
    sample_dir = Path(sample_dir)
    missing = [name for name in SAMPLE_FILES if not (sample_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{sample_dir}: missing result file(s) {', '.join(missing)}")
    gates = _read_json(sample_dir / "gates.json")
    if not isinstance(gates, list):
        raise ValueError(f"{sample_dir / 'gates.json'}: expected a list of gates")
    return SampleFiles(
        qc=_read_json(sample_dir / "qc.json"),
        populations=_read_tsv(sample_dir / "populations.tsv"),
        antigens=_read_tsv(sample_dir / "antigens.tsv"),
        gates=gates,
        plotdata=_read_npz(sample_dir / "plotdata.npz"),
        profile=_read_json(sample_dir / "profile.json"),
        decision=_read_json(sample_dir / "decision.json"),
    )


# --------------------------------------------------------------------------- templates


def _environment() -> Environment:
    """Jinja2 environment with autoescaping on for every template and for strings."""
    env = Environment(
        loader=PackageLoader("antigen_profile.report", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count_fmt=fmt_count, pct_fmt=fmt_pct, num_fmt=fmt_num, value_fmt=fmt_value)
    return env


_ENV: Environment | None = None


def environment() -> Environment:
    """The shared environment (templates are compiled once per process)."""
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


# --------------------------------------------------------------------------- sample report


def _gate_views(files: SampleFiles) -> list[dict[str, Any]]:
    """One entry per gate in gates.json order, with its plot when plotdata holds its events."""
    views = []
    for gate in files.gates:
        gate_id = str(gate.get("id", "?"))
        x = files.plotdata.get(f"gate/{gate_id}/x")
        y = files.plotdata.get(f"gate/{gate_id}/y")
        image = None
        if x is not None:
            image = plots.gate_plot(gate, x, y, files.plotdata.get(f"gate/{gate_id}/inside"))
        views.append(
            {
                "id": gate_id,
                "parent": gate.get("parent") or "",
                "type": gate.get("type") or "",
                "x": plots.axis_label(gate.get("x")),
                "y": plots.axis_label(gate.get("y")) if gate.get("y") else "",
                "events": gate.get("events"),
                "pct_parent": gate.get("pct_parent"),
                "plotted": None if x is None else int(np.asarray(x).size),
                "image": image,
            }
        )
    return views


def _threshold(plotdata: Mapping[str, np.ndarray], marker: str) -> float | None:
    """The display-scale threshold of a marker (a one-element array), if written."""
    array = plotdata.get(f"threshold/{marker}")
    if array is None or np.asarray(array).size == 0:
        return None
    return _number(np.asarray(array, dtype=float).ravel()[0])


def _antigen_views(files: SampleFiles, circular: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Table rows and histograms per quantified marker.

    Rows whose call is insufficient_events or no_reference show a dash for every number that
    depends on the call (and, for too few events, for the median too), and their plot carries
    no threshold line: no number is better than a wrong one. Markers in ``circular`` also
    defined the blast gate and are flagged in the table.
    """
    gated_on = {marker.upper() for marker in circular}
    rows = list(files.antigens)
    listed = {row.get("marker", "") for row in rows}
    extra = sorted(
        key.split("/", 1)[1]
        for key in files.plotdata
        if key.startswith("blasts/") and key.split("/", 1)[1] not in listed
    )
    rows += [{"marker": marker, "call": "", "note": "not in antigens.tsv"} for marker in extra]
    views = []
    for row in rows:
        marker = row.get("marker", "")
        call = row.get("call", "")
        not_called = call in NOT_CALLED
        few = call == "insufficient_events"
        pct = None if not_called else _number(row.get("pct_positive"))
        title = f"{marker}: {call}" if call else marker
        if pct is not None:
            title += f" ({pct:.1f}%)"
        image = plots.antigen_plot(
            marker,
            files.plotdata.get(f"blasts/{marker}"),
            files.plotdata.get(f"reference/{marker}"),
            None if not_called else _threshold(files.plotdata, marker),
            title=title,
            reference_label=f"reference ({row.get('threshold_source') or 'none'})",
        )
        views.append(
            {
                "marker": marker,
                "events": row.get("events"),
                "positive_events": DASH if not_called else fmt_count(row.get("positive_events")),
                "pct_positive": DASH if not_called else fmt_pct(row.get("pct_positive")),
                "median": DASH if few else fmt_num(row.get("median")),
                "rmfi": DASH if not_called else fmt_num(row.get("rmfi")),
                "threshold": DASH if not_called else fmt_num(row.get("threshold")),
                "threshold_source": row.get("threshold_source") or DASH,
                "call": call or DASH,
                "call_class": _css(CALL_CLASS, call),
                "note": row.get("note") or "",
                "not_called": not_called,
                "circular": marker.upper() in gated_on,
                "image": image,
            }
        )
    return views


#: Plain-language names of the settings profile.json records (unknown keys are shown as is).
SETTING_LABELS = {
    "percentile": "Positivity threshold: percentile of the reference population",
    "call_limits": "Call limits (% positive blasts)",
    "floors": "Blast event floors",
    "internal_negative": "Internal negative reference per antigen (without a control tube)",
    "logicle": "Logicle display transform",
}


def _setting_text(key: str, value: Any) -> str:
    """A setting's value, with the call limits spelled out as the categories they define."""
    if (
        key == "call_limits"
        and isinstance(value, Mapping)
        and {"partial", "positive"} <= set(value)
    ):
        partial, positive = fmt_value(value["partial"]), fmt_value(value["positive"])
        return f"negative < {partial}% \u2264 partial < {positive}% \u2264 positive"
    if key == "internal_negative" and isinstance(value, Mapping):
        return (
            ", ".join(f"{marker}: {population or 'none'}" for marker, population in value.items())
            or DASH
        )
    return fmt_value(value)


def _settings_rows(
    profile: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[list[dict[str, str]], bool]:
    """Settings to print, from profile.json (what the run used) or, failing that, the config.

    Returns the rows and whether they came from the run itself.
    """
    settings = profile.get("settings")
    recorded = isinstance(settings, Mapping) and bool(settings)
    if not recorded:
        positivity = config.get("positivity") or {}
        settings = {
            "percentile": positivity.get("percentile"),
            "call_limits": positivity.get("call_limits"),
            "floors": config.get("floors"),
            "logicle": config.get("logicle"),
        }
    known = [k for k in SETTING_LABELS if k in settings]
    ordered = known + [str(k) for k in settings if k not in SETTING_LABELS]
    rows = [
        {"key": k, "label": SETTING_LABELS.get(k, k), "value": _setting_text(k, settings[k])}
        for k in ordered
    ]
    return rows, recorded


def _rule_views(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The decision rules with their inputs and outcome, as decide wrote them."""
    views = []
    for rule in decision.get("rules") or []:
        outcome = rule.get("outcome", "")
        views.append(
            {
                "id": rule.get("id", ""),
                "kind": rule.get("kind", ""),
                "text": rule.get("text", ""),
                "source": rule.get("source", ""),
                "value": fmt_value(rule.get("value")),
                "op": fmt_value(rule.get("op")),
                "threshold": fmt_value(rule.get("threshold")),
                "outcome": outcome or DASH,
                "outcome_class": _css(OUTCOME_CLASS, outcome),
            }
        )
    return views


#: Plain words for the reasons QC drops acquisition (qc.json ``dropped``).
DROP_REASON_TEXT = {
    "clog": "clog (flow rate well below the run's level)",
    "burst": "burst or bubble (flow rate spike)",
    "gap": "gap (no events)",
    "signal_shift": "signal shift",
}


def _seconds(value: Any) -> str:
    """A time in seconds for a table cell (one decimal, or a dash)."""
    number = _number(value)
    return DASH if number is None else f"{number:,.1f}"


def _time_course_view(qc: Mapping[str, Any]) -> dict[str, Any]:
    """The QC section's time course: plot, summary, dropped periods and, when stability was
    not checked, why. Everything comes from qc.json; a file written before the time course
    existed (no ``time_course``, no ``dropped``) renders with a note instead."""
    metrics = qc.get("metrics") if isinstance(qc.get("metrics"), Mapping) else {}
    time = metrics.get("time") if isinstance(metrics.get("time"), Mapping) else {}
    dropped = [d for d in _list(qc.get("dropped")) if isinstance(d, Mapping)]
    level = _number(time.get("level_events_per_bin"))
    image = plots.time_course_plot(qc.get("time_course"), dropped, level)
    rows = [
        {
            "start": _seconds(d.get("start_s")),
            "end": _seconds(d.get("end_s")),
            "reason": DROP_REASON_TEXT.get(str(d.get("reason")), str(d.get("reason") or DASH)),
            "events": fmt_count(d.get("events")),
            "pct": fmt_pct(d.get("pct_events")),
            "detail": str(d.get("detail") or ""),
        }
        for d in dropped
    ]
    summary = []
    if time.get("checked"):
        stable = _number(time.get("stable_time_fraction"))
        summary = [
            ("Time channel", str(time.get("channel") or DASH)),
            ("Acquisition", f"{_seconds(time.get('duration_s'))} s"),
            ("Bins", f"{fmt_count(time.get('bins'))} of {fmt_num(time.get('bin_seconds'))} s"),
            (
                "Level (median event's flow rate)",
                f"{fmt_num(time.get('level_events_per_s'))} events/s",
            ),
            (
                "Events dropped",
                f"{fmt_count(time.get('events_dropped'))} "
                f"({fmt_pct(time.get('pct_events_dropped'))}%)",
            ),
            ("Stable acquisition time", DASH if stable is None else f"{100 * stable:.1f}%"),
            ("Gaps", fmt_count(time.get("gap_count", len(_list(time.get("gaps")))))),
        ]
    if time and not time.get("checked"):
        note = str(time.get("note") or "acquisition stability not checked")
    elif not time:
        note = "qc.json records no time course (acquisition stability not checked)"
    elif image is None:
        note = "the time course in qc.json cannot be drawn"
    else:
        note = ""
    return {"image": image, "rows": rows, "summary": summary, "note": note}


def _list(value: Any) -> list[Any]:
    """A JSON list, or an empty one for anything else."""
    return list(value) if isinstance(value, list | tuple) else []


def sample_context(files: SampleFiles, config: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the sample template shows, already formatted for display."""
    qc, profile, decision = files.qc, files.profile, files.decision
    sample_id = decision.get("sample_id") or qc.get("sample_id") or profile.get("sample_id") or "?"
    qc_status = qc.get("status", "")
    antigen_status = decision.get("antigen_status", "")
    qc_failed = qc_status == "fail" or antigen_status == "qc_failed"
    quantified = _as_list(profile.get("quantified")) or _as_list(config.get("quantified"))
    defined_by = _as_list(profile.get("blast_defined_by"))
    quantified_upper = {m.upper() for m in quantified}
    circular = [m for m in defined_by if m.upper() in quantified_upper]
    settings, settings_recorded = _settings_rows(profile, config)
    ids = _unique(
        str(i)
        for i in [
            qc.get("sample_id"),
            profile.get("sample_id"),
            decision.get("sample_id"),
            *(row.get("sample_id") for row in files.antigens),
        ]
        if i
    )
    trial = decision.get("trial") or {}
    decision_value = decision.get("decision", "")
    saturated = (qc.get("metrics") or {}).get("saturated_fraction") or {}
    warnings = _unique(_as_list(qc.get("warnings")) + _as_list(profile.get("warnings")))
    return {
        "version": __version__,
        "sample_id": sample_id,
        "patient_id": decision.get("patient_id") or DASH,
        "timepoint": decision.get("timepoint") or DASH,
        "trial_name": trial.get("name") or "trial not recorded",
        "trial_version": trial.get("version") or DASH,
        "decision": decision_value or "not recorded",
        "decision_class": _css(DECISION_CLASS, decision_value),
        "decision_reasons": _as_list(decision.get("decision_reasons")),
        "eligible_targets": _as_list(decision.get("eligible_targets"), ","),
        "blast_events": fmt_count(decision.get("blast_events")),
        "blast_pct": fmt_pct(decision.get("blast_pct_leukocytes")),
        "cd19_status": decision.get("cd19_status") or DASH,
        "antigen_status": antigen_status or DASH,
        "antigen_status_class": _css(STATUS_CLASS, antigen_status),
        "antigen_reasons": _as_list(decision.get("antigen_reasons")),
        "clinical_status": decision.get("clinical_status") or DASH,
        "clinical_status_class": _css(STATUS_CLASS, decision.get("clinical_status")),
        "clinical_reasons": _as_list(decision.get("clinical_reasons")),
        "id_mismatch": ids if len(ids) > 1 else [],
        "qc_failed": qc_failed,
        "failure_reasons": _unique(
            _as_list(qc.get("reasons")) + _as_list(decision.get("antigen_reasons"))
        ),
        "qc_status": qc_status or DASH,
        "qc_class": _css(QC_CLASS, qc_status),
        "qc_reasons": _as_list(qc.get("reasons")),
        "qc_warnings": _as_list(qc.get("warnings")),
        "profile_warnings": _as_list(profile.get("warnings")),
        "warning_count": len(warnings),
        "qc_file": qc.get("file") or DASH,
        "events_total": fmt_count(qc.get("events_total", profile.get("events"))),
        "events_kept": fmt_count(qc.get("events_kept")),
        "saturated": [(str(k), fmt_value(v)) for k, v in saturated.items()],
        "time_course": _time_course_view(qc),
        "spillover_source": (qc.get("metrics") or {}).get("spillover_source")
        or profile.get("spillover_source")
        or DASH,
        "populations": files.populations,
        "gates": _gate_views(files),
        "defined_by": defined_by,
        "circular": circular,
        "quantified": quantified,
        "antigens": _antigen_views(files, circular),
        "rules": _rule_views(decision),
        "settings": settings,
        "settings_recorded": settings_recorded,
        "max_plot_events": fmt_count((config.get("report") or {}).get("max_plot_events")),
        "inputs": [
            {"role": i.get("role", ""), "path": i.get("path", ""), "sha256": i.get("sha256", "")}
            for i in profile.get("inputs") or []
            if isinstance(i, Mapping)
        ],
        "fcs_version": profile.get("fcs_version") or DASH,
        "cytometer": profile.get("cytometer") or DASH,
        "markers": [(str(k), str(v)) for k, v in (profile.get("markers") or {}).items()],
        "control_markers": _as_list(profile.get("control_markers")),
        "control_note": profile.get("control_note") or "",
        "software": [(str(k), str(v)) for k, v in (profile.get("software") or {}).items()],
        "created": profile.get("created") or DASH,
    }


def render_sample_report(sample_dir: Path, config: Mapping[str, Any]) -> str:
    """Return the self-contained HTML report of one sample.

    Parameters
    ----------
    sample_dir
        ``results/{sample_id}/`` holding the files of docs/outputs.md.
    config
        The workflow configuration; only used to label plots and, when profile.json records
        no settings, to print the configured ones (marked as such).
    """
    files = read_sample(Path(sample_dir))
    return environment().get_template("sample.html").render(**sample_context(files, config))


# --------------------------------------------------------------------------- cohort report


def _cell(value: Any) -> str:
    """A recommendations.tsv cell as text ('' for NaN/None, as pandas reads empty cells)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _trials(results_dir: Path, sample_ids: Sequence[str]) -> list[str]:
    """Distinct "name version" of the trial rules the samples were decided against.

    More than one means the cohort was decided against different rule versions, which the
    reader must see.
    """
    seen: list[str] = []
    for sample_id in sample_ids:
        path = results_dir / sample_id / "decision.json"
        try:
            trial = _read_json(path).get("trial") or {}
        except (OSError, ValueError, AttributeError):
            continue
        label = f"{trial.get('name', '?')} {trial.get('version', '')}".strip()
        if label not in seen:
            seen.append(label)
    return seen


def cohort_context(results_dir: Path, recommendations: pd.DataFrame) -> dict[str, Any]:
    """Rows, counts by decision and trial versions for the cohort index."""
    missing = {"sample_id", "decision"} - set(recommendations.columns)
    if missing:
        raise KeyError(f"recommendations lack column(s) {', '.join(sorted(missing))}")
    rows = []
    for record in recommendations.to_dict(orient="records"):
        sample_id = _cell(record.get("sample_id"))
        decision = _cell(record.get("decision"))
        antigen_status = _cell(record.get("antigen_status"))
        clinical_status = _cell(record.get("clinical_status"))
        rows.append(
            {
                "sample_id": sample_id,
                "href": f"{quote(sample_id, safe='')}/report.html",
                "patient_id": _cell(record.get("patient_id")) or DASH,
                "decision": decision or DASH,
                "decision_class": _css(DECISION_CLASS, decision),
                "eligible_targets": _as_list(_cell(record.get("eligible_targets")), ","),
                "blast_events": fmt_count(record.get("blast_events")),
                "blast_pct": fmt_pct(record.get("blast_pct_leukocytes")),
                "cd19_status": _cell(record.get("cd19_status")) or DASH,
                "antigen_status": antigen_status or DASH,
                "antigen_status_class": _css(STATUS_CLASS, antigen_status),
                "clinical_status": clinical_status or DASH,
                "clinical_status_class": _css(STATUS_CLASS, clinical_status),
                "clinical_reasons": _as_list(_cell(record.get("clinical_reasons")), ";"),
            }
        )
    tally: dict[str, int] = {name: 0 for name in DECISION_ORDER}
    for row in rows:
        key = row["decision"] if row["decision"] != DASH else "not recorded"
        tally[key] = tally.get(key, 0) + 1
    counts = [{"decision": k, "count": n, "css": _css(DECISION_CLASS, k)} for k, n in tally.items()]
    return {
        "version": __version__,
        "rows": rows,
        "counts": counts,
        "total": len(rows),
        "trials": _trials(Path(results_dir), [r["sample_id"] for r in rows if r["sample_id"]]),
    }


def render_cohort_report(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any]
) -> str:
    """Return the cohort index: every sample with its decision, linked to its own report.

    Parameters
    ----------
    results_dir
        The results folder; each sample's report is ``{sample_id}/report.html`` below it, and
        its decision.json names the trial version the sample was decided against.
    recommendations
        recommendations.tsv as a DataFrame (one row per sample, contract columns).
    config
        The workflow configuration (accepted for a uniform API; nothing is recomputed from it).
    """
    del config  # the cohort index shows results only
    context = cohort_context(Path(results_dir), recommendations)
    return environment().get_template("cohort.html").render(**context)


# --------------------------------------------------------------------------- writing


def write_html(html: str, path: Path) -> None:
    """Write ``html`` atomically: a reader opening the report while the workflow runs, or
    after a crash, sees either the old report or the new one, never half a file."""
    write_text(path, html)
