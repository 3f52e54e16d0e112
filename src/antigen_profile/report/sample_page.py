"""The sample report: one self-contained HTML page per sample, from its result files.

The page is a reader, not an analyst: it shows what the profile and decide stages wrote and
computes nothing new, so a number in the report can always be traced to a result file
(docs/outputs.md). :func:`sample_context` turns the files into display values section by
section (the settings, escape and audit sections have their own modules); ``sample.html``
lays them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from antigen_profile import __version__
from antigen_profile.outputs import SPECIMEN_DIR
from antigen_profile.report import plots
from antigen_profile.report.audit_trail import audit_context
from antigen_profile.report.escape_section import escape_view
from antigen_profile.report.format import (
    CALL_CLASS,
    DASH,
    DECISION_CLASS,
    INTENSITY_CLASS,
    NOT_CALLED,
    OUTCOME_CLASS,
    QC_CLASS,
    RED_FLAGS,
    STATUS_CLASS,
    as_list,
    css_class,
    fmt_confidence,
    fmt_count,
    fmt_interval,
    fmt_num,
    fmt_pct,
    fmt_seconds,
    fmt_value,
    json_list,
    to_number,
    truthy,
    unique,
)
from antigen_profile.report.offtumour import off_tumour_note
from antigen_profile.report.page import content_security_policy, environment
from antigen_profile.report.result_files import SampleFiles, Table, read_sample
from antigen_profile.report.settings_table import settings_groups

#: The sample report runs no script at all.
SAMPLE_CSP = content_security_policy()

#: profile.json flags (``code``) in plain words; an unknown code is shown as written.
FLAG_TITLES = {
    "no_blast_population": "No blast population found",
    "blasts_not_detected": "Blasts not detected",
    "blasts_below_quantification_floor": "Blasts below the quantification floor",
    "possible_lineage_switch": "Possible lineage switch",
    "backbone_not_applied": "B-lineage backbone not applied",
    "gate_not_fitted": "Gate not fitted to this sample",
    "blast_share_disagrees": "Tubes disagree on the blast share",
    "tubes_disagree": "Tubes disagree on an antigen",
    "tube_not_analysed": "A tube was not analysed",
}

#: Plain words for the references a threshold can come from (antigens.tsv threshold_source).
SOURCE_TEXT = {
    "marker_control:blasts": "FMO for this antigen",
    "control:blasts": "control tube, same blast gate",
    "mixture:blasts": "mixture fit on the blasts themselves",
    "none": "no reference",
}
#: The weakest reference: no control, no valid internal negative. Gets a warning badge.
WEAKEST_SOURCES = frozenset({"mixture:blasts"})

#: Plain words for the reasons QC drops acquisition (qc.json ``dropped``).
DROP_REASON_TEXT = {
    "clog": "clog (flow rate well below the run's level)",
    "burst": "burst or bubble (flow rate spike)",
    "gap": "gap (no events)",
    "signal_shift": "signal shift",
}

#: Flags saying a template gate was used as drawn rather than fitted to the sample.
UNFITTED_FLAGS = frozenset({"no_blast_population", "gate_not_fitted"})


# --------------------------------------------------------------------------- gating, antigens


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
    return to_number(np.asarray(array, dtype=float).ravel()[0])


def _source_text(source: str) -> str:
    """A threshold_source in plain words (``internal:lymphocytes`` -> internal negative:
    lymphocytes); an unknown source is shown as written."""
    if source in SOURCE_TEXT:
        return SOURCE_TEXT[source]
    if source.startswith("internal:"):
        return f"internal negative: {source.split(':', 1)[1]}"
    return source or DASH


def _density_text(row: Mapping[str, str]) -> str:
    """ABC median and interquartile range as "ABC 4,120 (IQR 3,010-5,600)" (en dash), or ""."""
    median = to_number(row.get("abc_median"))
    if median is None:
        return ""
    q25, q75 = to_number(row.get("abc_q25")), to_number(row.get("abc_q75"))
    text = f"ABC {fmt_count(median)}"
    if q25 is not None and q75 is not None:
        text += f" (IQR {fmt_count(q25)}\u2013{fmt_count(q75)})"
    return text


def _antigen_views(files: SampleFiles, circular: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Table rows and histograms per quantified marker.

    Rows whose call is insufficient_events or no_reference show a dash for every number that
    depends on the call (and, for too few events, for the median too), and their plot carries
    no threshold line: no number is better than a wrong one. Markers in ``circular`` also
    defined the blast gate and are flagged in the table. The later antigens.tsv columns
    (interval, intensity, density) are shown when the file has them.
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
        pct = None if not_called else to_number(row.get("pct_positive"))
        source = row.get("threshold_source") or ""
        title = f"{marker}: {call}" if call else marker
        if pct is not None:
            title += f" ({pct:.1f}%)"
        image = plots.antigen_plot(
            marker,
            files.plotdata.get(f"blasts/{marker}"),
            files.plotdata.get(f"reference/{marker}"),
            None if not_called else _threshold(files.plotdata, marker),
            title=title,
            reference_label=f"reference ({_source_text(source) if source else 'none'})",
        )
        interval = "" if not_called else fmt_interval(row.get("pct_ci_low"), row.get("pct_ci_high"))
        intensity = "" if not_called else (row.get("intensity") or "").strip()
        views.append(
            {
                "marker": marker,
                "events": row.get("events"),
                "positive_events": DASH if not_called else fmt_count(row.get("positive_events")),
                "pct_positive": DASH if pct is None else f"{pct:.1f}%",
                "pct_interval": interval,
                "median": DASH if few else fmt_num(row.get("median")),
                "rmfi": DASH if not_called else fmt_num(row.get("rmfi")),
                "threshold": DASH if not_called else fmt_num(row.get("threshold")),
                "threshold_source": source or DASH,
                "source_text": _source_text(source),
                "weakest_reference": source in WEAKEST_SOURCES,
                "call": call or DASH,
                "call_class": css_class(CALL_CLASS, call),
                "intensity": intensity,
                "intensity_class": css_class(INTENSITY_CLASS, intensity),
                "density": (None if few else _density_text(row)) or DASH,
                "low_density": not few and truthy(row.get("low_density")) is True,
                "note": row.get("note") or "",
                "not_called": not_called,
                "circular": marker.upper() in gated_on,
                "image": image,
            }
        )
    return views


def _has_density(files: SampleFiles) -> bool:
    """Whether antigens.tsv carries the density columns (bead-calibrated runs)."""
    return any("abc_median" in row or "low_density" in row for row in files.antigens)


def _has_interval(files: SampleFiles) -> bool:
    """Whether antigens.tsv carries the confidence interval of % positive."""
    return any("pct_ci_low" in row for row in files.antigens)


def _interval_confidence(profile: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """The confidence level of antigens.tsv's interval, for its column header: the recorded
    setting when profile.json has one, else the level decision.json gives the coverage
    intervals (the profile stage uses one level for both), else the 95% default."""
    settings = profile.get("settings") if isinstance(profile.get("settings"), Mapping) else {}
    positivity = settings.get("positivity")
    positivity = positivity if isinstance(positivity, Mapping) else {}
    combination = decision.get("combination")
    for value in (
        settings.get("confidence"),
        positivity.get("confidence"),
        combination.get("confidence") if isinstance(combination, Mapping) else None,
    ):
        if to_number(value) is not None:
            return fmt_confidence(value)
    return fmt_confidence(None)


# --------------------------------------------------------------------------- QC, flags, rules


def _time_course_view(qc: Mapping[str, Any]) -> dict[str, Any]:
    """The QC section's time course: plot, summary, dropped periods and, when stability was
    not checked, why. Everything comes from qc.json; a file written before the time course
    existed (no ``time_course``, no ``dropped``) renders with a note instead."""
    metrics = qc.get("metrics") if isinstance(qc.get("metrics"), Mapping) else {}
    time = metrics.get("time") if isinstance(metrics.get("time"), Mapping) else {}
    dropped = [d for d in json_list(qc.get("dropped")) if isinstance(d, Mapping)]
    level = to_number(time.get("level_events_per_bin"))
    image = plots.time_course_plot(qc.get("time_course"), dropped, level)
    rows = [
        {
            "start": fmt_seconds(d.get("start_s")),
            "end": fmt_seconds(d.get("end_s")),
            "reason": DROP_REASON_TEXT.get(str(d.get("reason")), str(d.get("reason") or DASH)),
            "events": fmt_count(d.get("events")),
            "pct": fmt_pct(d.get("pct_events")),
            "detail": str(d.get("detail") or ""),
        }
        for d in dropped
    ]
    summary = []
    if time.get("checked"):
        stable = to_number(time.get("stable_time_fraction"))
        summary = [
            ("Time channel", str(time.get("channel") or DASH)),
            ("Acquisition", f"{fmt_seconds(time.get('duration_s'))} s"),
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
            ("Gaps", fmt_count(time.get("gap_count", len(json_list(time.get("gaps")))))),
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


def _mimics_view(files: SampleFiles) -> dict[str, Any] | None:
    """The look-alike screen (profile.json ``blast_mimics``) in words, each rule with its
    source, and the CD34 vs CD123 plot of what was taken out; None for a profile without it."""
    found = files.profile.get("blast_mimics")
    if not isinstance(found, Mapping):
        return None
    look = found.get("basophils_pdcs") or {}
    pattern = found.get("continuum") or {}
    low = found.get("low_blast_share") or {}
    rows: list[dict[str, str]] = []
    if look.get("assessed"):
        taken = "taken out of the blasts" if look.get("excluded") else "kept (see flags)"
        share = fmt_pct(100 * float(look.get("share_of_gate") or 0))
        what = (
            f"{fmt_count(look.get('events'))} events ({share}% of the gate), {taken}"
            if look.get("events")
            else "none found"
        )
        if look.get("note"):
            what += f"; {look['note']}"
    else:
        what = f"not assessed: {look.get('note') or 'no CD123'}"
    rows.append(
        {
            "rule": "Basophils and pDCs (CD123 bright, CD34 negative, no B-lineage antigen)",
            "found": what,
            "source": str(look.get("source") or DASH),
        }
    )
    if pattern.get("assessed"):
        what = (
            f"CD34+CD20- {fmt_pct(100 * float(pattern['cd34_pos_cd20_neg']))}%, CD34-CD20+ "
            f"{fmt_pct(100 * float(pattern['cd34_neg_cd20_pos']))}%, phi "
            f"{fmt_value(pattern.get('phi_cd34_cd20'))}: "
            + (
                "a maturation continuum (hematogone-like)"
                if pattern.get("hematogone_like")
                else "no continuum"
            )
        )
    else:
        what = f"not assessed: {pattern.get('note') or 'needs CD34 and CD20'}"
    rows.append(
        {
            "rule": "Hematogones (CD34+CD20- to CD34-CD20+ continuum)",
            "found": what,
            "source": str(pattern.get("source") or DASH),
        }
    )
    aberrant = as_list(low.get("aberrancies"))
    share = low.get("blast_pct_leukocytes")
    what = (
        f"blasts {fmt_pct(share)}% of leukocytes (limit {fmt_value(low.get('min_blast_pct'))}%); "
        + ("aberrant: " + "; ".join(aberrant) if aberrant else "no aberrancy the panel shows")
    )
    rows.append(
        {
            "rule": "Low blast share",
            "found": what,
            "source": f"{low.get('source') or DASH} Aberrancy: "
            f"{low.get('aberrancy_source') or DASH}",
        }
    )
    data = files.plotdata
    image = None
    if all(k in data for k in ("mimics/CD34", "mimics/CD123", "mimics/kept")):
        image = plots.mimic_plot(data["mimics/CD34"], data["mimics/CD123"], data["mimics/kept"])
    excluded = found.get("excluded") or {}
    return {
        "rows": rows,
        "image": image,
        "in_gate": fmt_count(found.get("events_in_gate")),
        "kept": fmt_count(found.get("blasts_kept")),
        "excluded": sum(int(v) for v in excluded.values()) if excluded else 0,
    }


def flag_views(profile: Mapping[str, Any]) -> tuple[list[dict[str, str]], bool]:
    """profile.json flags as title, code, message and colour (red for the flags that change
    what the whole report means), and whether profile.json records flags at all."""
    raw = profile.get("flags")
    views = []
    for flag in json_list(raw):
        if isinstance(flag, Mapping):
            code, message = str(flag.get("code") or ""), str(flag.get("message") or "")
        else:
            code, message = "", str(flag)
        views.append(
            {
                "code": code or DASH,
                "title": FLAG_TITLES.get(code, code.replace("_", " ") or "Flag"),
                "message": message or "no message recorded",
                "css": "bad" if code in RED_FLAGS else "warn",
            }
        )
    views.sort(key=lambda view: view["css"] != "bad")  # red first, else in file order
    return views, isinstance(raw, list | tuple)


def _gating_view(profile: Mapping[str, Any]) -> dict[str, Any]:
    """profile.json ``gating``: which engine gated (our fitted template, a lab's own gating,
    or gates a reviewer corrected), from which file, whether it was fitted to this sample,
    and a lab's mapping of its populations onto ours. A reviewer's correction is said on its
    own (``corrected``: file and SHA-256), since every number below follows from it. Empty
    rows when profile.json does not record it."""
    gating = profile.get("gating")
    if not isinstance(gating, Mapping):
        return {"rows": [], "populations": [], "notes": [], "corrected": None}
    engine = str(gating.get("engine") or "")
    corrected = None
    if engine == "template":
        engine_text = "antigen-profile Gating-ML template"
    elif engine == "lab":
        kind = gating.get("kind")
        engine_text = "the lab's own gating" + (f" ({kind})" if kind else "")
    elif engine == "corrected":
        engine_text = "gates corrected by a reviewer (this tube's gates.xml, edited)"
        corrected = {
            "file": str(gating.get("file") or DASH),
            "sha256": str(gating.get("sha256") or DASH),
        }
    else:
        engine_text = engine or DASH
    fitted = truthy(gating.get("fitted"))
    unfitted = [
        f
        for f in json_list(profile.get("flags"))
        if isinstance(f, Mapping) and f.get("code") in UNFITTED_FLAGS
    ]
    if fitted is True:
        fitted_text = "yes: the template's gates are fitted to this sample's populations"
        if unfitted:
            fitted_text += (
                f", except {len(unfitted)} gate(s) used as drawn because no population was "
                "found (see Flags)"
            )
    elif fitted is False and corrected:
        fitted_text = "no: the reviewer's gates were applied as given"
    elif fitted is False:
        fitted_text = "no: the gates were applied as drawn"
    else:
        fitted_text = DASH
    rows = [("Engine", engine_text), ("Gating file", str(gating.get("file") or DASH))]
    if corrected:
        rows.append(("SHA-256 of the corrected gates", corrected["sha256"]))
    if gating.get("sample"):
        rows.append(("Sample in the gating file", str(gating.get("sample"))))
    rows.append(("Fitted to this sample", fitted_text))
    known = {"engine", "kind", "file", "sample", "fitted", "populations", "notes"}
    known |= {"sha256", "corrected_by_reviewer"} if corrected else set()
    rows += [(str(k), fmt_value(v)) for k, v in gating.items() if k not in known]
    populations = gating.get("populations")
    mapping = (
        [(str(k), fmt_value(v)) for k, v in populations.items()]
        if isinstance(populations, Mapping)
        else []
    )
    if corrected and isinstance(populations, list):  # our own names: no mapping to show
        rows.append(("Our populations in the file", ", ".join(str(p) for p in populations)))
    return {
        "rows": rows,
        "populations": mapping,
        "notes": as_list(gating.get("notes")),
        "corrected": corrected,
    }


def rule_views(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
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
                "outcome_class": css_class(OUTCOME_CLASS, outcome),
            }
        )
    return views


# --------------------------------------------------------------------------- patient, controls


def _patient_views(sample_id: str, patient_samples: Sequence[str] | None) -> list[dict[str, Any]]:
    """The patient's samples (ids in timepoint order, as the workflow passes them), each
    linking to its report in the sibling folder; empty when the patient has this sample only
    or the caller gave none. Ids that could leave the results folder are shown unlinked."""
    samples = list(dict.fromkeys(str(s) for s in patient_samples or [] if str(s).strip()))
    if len(samples) < 2:
        return []
    return [
        {
            "sample_id": s,
            "href": f"../{quote(s, safe='')}/report.html" if s not in {".", ".."} else "",
            "current": s == sample_id,
        }
        for s in samples
    ]


def _positive_control_views(
    table: Table | None, settings: Mapping[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    """positive_controls.tsv by target and as rows, and a note when the file is absent.

    A carrier population mostly below the blasts' threshold (fewer than the configured
    ``partial`` share of its events above it) is marked for checking: the stain or the
    threshold is then suspect, whatever the blasts show. No other judgement is made here.
    """
    if table is None:
        return (
            {},
            [],
            (
                "positive_controls.tsv not found: this results folder predates the internal "
                "positive controls."
            ),
        )
    limits = (settings or {}).get("call_limits") if isinstance(settings, Mapping) else None
    low = to_number(limits.get("partial")) if isinstance(limits, Mapping) else None
    low = 20.0 if low is None else low
    by_target: dict[str, dict[str, Any]] = {}
    rows = []
    for row in table.rows:
        pct = to_number(row.get("pct_positive"))
        population = (row.get("population") or "").strip()
        check = pct is not None and pct < low
        view = {
            "target": row.get("target") or DASH,
            "population": population,
            "expected": row.get("expected") or "",
            "events": fmt_count(row.get("events")),
            "positive_events": fmt_count(row.get("positive_events")),
            "pct": DASH if pct is None else f"{pct:.1f}%",
            "threshold": fmt_num(row.get("threshold")),
            "note": row.get("note") or "",
            "measured": pct is not None,
            "check": check,
            "css": "warn" if check else ("good" if pct is not None else "neutral"),
            "low_limit": f"{low:g}",
        }
        rows.append(view)
        by_target.setdefault(str(row.get("target") or "").upper(), view)
    note = "" if rows else "positive_controls.tsv has no rows: QC failed or no target configured."
    return by_target, rows, note


# --------------------------------------------------------------------------- the page


def signoff_link(sample_id: str, decision: Mapping[str, Any]) -> str:
    """The specimen page's sign-off section, from the tube's folder: a tube that is its own
    specimen is signed there too ("" for an id that names no folder)."""
    specimen_id = str(decision.get("specimen_id") or sample_id)
    if specimen_id in {"", ".", "..", "?"}:
        return ""
    return f"../{SPECIMEN_DIR}/{quote(specimen_id, safe='')}/report.html#review"


def specimen_link(sample_id: str, decision: Mapping[str, Any]) -> dict[str, str] | None:
    """The specimen a tube belongs to when it is not its own (decision.json ``specimen_id``),
    with the link to its report from the tube's folder: the patient's recommendation is the
    specimen's, and a reader of the tube's page must not take the tube's for it."""
    specimen_id = str(decision.get("specimen_id") or "")
    if not specimen_id or specimen_id == sample_id:
        return None
    href = "" if specimen_id in {".", ".."} else quote(specimen_id, safe="")
    return {
        "id": specimen_id,
        "href": f"../{SPECIMEN_DIR}/{href}/report.html" if href else "",
    }


def sample_context(
    files: SampleFiles,
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything the sample template shows, already formatted for display.

    ``patient_samples``: the ids of the patient's samples in timepoint order, listed with
    links when there is more than this one.
    """
    qc, profile, decision = files.qc, files.profile, files.decision
    sample_id = decision.get("sample_id") or qc.get("sample_id") or profile.get("sample_id") or "?"
    qc_status = qc.get("status", "")
    antigen_status = decision.get("antigen_status", "")
    qc_failed = qc_status == "fail" or antigen_status == "qc_failed"
    quantified = as_list(profile.get("quantified")) or as_list(config.get("quantified"))
    defined_by = as_list(profile.get("blast_defined_by"))
    quantified_upper = {m.upper() for m in quantified}
    circular = [m for m in defined_by if m.upper() in quantified_upper]
    settings, settings_recorded = settings_groups(profile, config, decision)
    flags, flags_recorded = flag_views(profile)
    eligible = as_list(decision.get("eligible_targets"), ",")
    escape = escape_view(files, eligible, qc_failed)
    combination = escape["combination"]
    ids = unique(
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
    warnings = unique(as_list(qc.get("warnings")) + as_list(profile.get("warnings")))
    controls_by_target, control_rows, controls_note = _positive_control_views(
        files.positive_controls,
        profile.get("settings") if isinstance(profile.get("settings"), Mapping) else None,
    )
    return {
        "version": __version__,
        "sample_id": sample_id,
        "patient_id": decision.get("patient_id") or DASH,
        "timepoint": decision.get("timepoint") or DASH,
        "trial_name": trial.get("name") or "trial not recorded",
        "trial_version": trial.get("version") or DASH,
        "decision": decision_value or "not recorded",
        "decision_class": css_class(DECISION_CLASS, decision_value),
        "decision_reasons": as_list(decision.get("decision_reasons")),
        "eligible_targets": eligible,
        "off_tumour": [
            {
                "target": t,
                "note": off_tumour_note(t),
                "control": controls_by_target.get(t.upper()),
            }
            for t in eligible
        ],
        "positive_controls": control_rows,
        "positive_controls_note": controls_note,
        "positive_controls_recorded": files.positive_controls is not None,
        "patient_samples": _patient_views(str(sample_id), patient_samples),
        "specimen": specimen_link(str(sample_id), decision),
        "signoff": signoff_link(str(sample_id), decision),
        "csp": SAMPLE_CSP,
        "flags": flags,
        "flags_recorded": flags_recorded,
        "red_flags": sum(f["css"] == "bad" for f in flags),
        "combination": combination,
        "escape": escape,
        "gating_engine": _gating_view(profile),
        "blast_events": fmt_count(decision.get("blast_events")),
        "blast_pct": fmt_pct(decision.get("blast_pct_leukocytes")),
        "cd19_status": decision.get("cd19_status") or DASH,
        "antigen_status": antigen_status or DASH,
        "antigen_status_class": css_class(STATUS_CLASS, antigen_status),
        "antigen_reasons": as_list(decision.get("antigen_reasons")),
        "clinical_status": decision.get("clinical_status") or DASH,
        "clinical_status_class": css_class(STATUS_CLASS, decision.get("clinical_status")),
        "clinical_reasons": as_list(decision.get("clinical_reasons")),
        "id_mismatch": ids if len(ids) > 1 else [],
        "qc_failed": qc_failed,
        "failure_kind": qc.get("failure") or "",
        "failure_reasons": unique(
            as_list(qc.get("reasons")) + as_list(decision.get("antigen_reasons"))
        ),
        "qc_status": qc_status or DASH,
        "qc_class": css_class(QC_CLASS, qc_status),
        "qc_reasons": as_list(qc.get("reasons")),
        "qc_warnings": as_list(qc.get("warnings")),
        "profile_warnings": as_list(profile.get("warnings")),
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
        "mimics": _mimics_view(files),
        "defined_by": defined_by,
        "circular": circular,
        "quantified": quantified,
        "antigens": _antigen_views(files, circular),
        "has_density": _has_density(files),
        "has_interval": _has_interval(files),
        "confidence": _interval_confidence(profile, decision),
        "rules": rule_views(decision),
        "settings": settings,
        "settings_recorded": settings_recorded,
        "max_plot_events": fmt_count((config.get("report") or {}).get("max_plot_events")),
        **audit_context(profile),
    }


def render_sample_report(
    sample_dir: Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
) -> str:
    """Return the self-contained HTML report of one sample.

    Parameters
    ----------
    sample_dir
        ``results/{sample_id}/`` holding the files of docs/outputs.md, or those files by
        key (:data:`antigen_profile.outputs.REPORT_READS`) as a rule declared them.
    config
        The workflow configuration; only used to label plots and, when profile.json records
        no settings, to print the configured ones (marked as such).
    patient_samples
        The ids of every sample of this sample's patient, in timepoint order; with more than
        one, the report lists them with links to their reports (``../{id}/report.html``).
    """
    files = read_sample(sample_dir)
    context = sample_context(files, config, patient_samples)
    return environment().get_template("sample.html").render(**context)
