"""The specimen report: one page per specimen (one marrow draw), from what the specimen step
wrote (``results/specimens/{specimen_id}/``).

A lab may split its panel over several tubes; each tube has its own report (QC, gating,
histograms), and this page shows what the tubes give together: the decision the patient's
recommendation rests on, which tube each antigen's number comes from (and every tube's value
where several measured it), and the coverage of each combination of targets, exact when its
targets were stained in one tube and only bounded when they were not. Like the other pages it
computes nothing: every number is read from antigens.tsv, coverage.tsv, specimen.json or
decision.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from antigen_profile import __version__
from antigen_profile.report.cohort_page import script_hash
from antigen_profile.report.escape_section import DEFAULT_COMBINATION_SIZE, combination_view
from antigen_profile.report.format import (
    CALL_CLASS,
    DASH,
    DECISION_CLASS,
    INTENSITY_CLASS,
    NOT_CALLED,
    OUTCOME_CLASS,
    QC_CLASS,
    REVIEW_CLASS,
    STATUS_CLASS,
    as_list,
    css_class,
    fmt_confidence,
    fmt_count,
    fmt_interval,
    fmt_pct,
    fmt_pct2,
    json_list,
    json_object,
    to_number,
    truthy,
    unique,
)
from antigen_profile.report.page import content_security_policy, environment
from antigen_profile.report.result_files import SpecimenFiles, Table, read_specimen
from antigen_profile.report.sample_page import flag_views, rule_views
from antigen_profile.vocabulary import ReviewStatus

#: The specimen report without a sign-off section runs no script at all.
SPECIMEN_CSP = content_security_policy()
#: The sign-off form's one inline script, allowed by the page's policy through its hash.
SIGNOFF_SCRIPT = "_signoff.js"
#: The rule choosing one tube's value, when specimen.json predates saying it.
DEFAULT_VALUE_RULE = "not recorded"


def tube_href(sample_id: str, prefix: str = "../../") -> str:
    """The link to a tube's own report from a specimen's folder (``results/specimens/X/``),
    or "" for an id that could leave the results folder (an id from a file is not trusted as
    a path)."""
    if not sample_id or sample_id in {".", ".."}:
        return ""
    return f"{prefix}{quote(sample_id, safe='')}/report.html"


def _tube_views(specimen: Mapping[str, Any], decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """specimen.json's tubes in sheet order: QC, analysed or why not, blasts, what each
    measured. A specimen.json without tubes falls back to decision.json's ids, shown with
    dashes."""
    raw = [json_object(t) for t in json_list(specimen.get("tubes"))]
    if not raw:
        raw = [{"sample_id": t} for t in as_list(decision.get("tubes"))]
    views = []
    for tube in raw:
        sample_id = str(tube.get("sample_id") or "")
        status = str(tube.get("qc_status") or "")
        analysed = truthy(tube.get("analysed"))
        views.append(
            {
                "sample_id": sample_id or DASH,
                "href": tube_href(sample_id),
                "qc_status": status or DASH,
                "qc_class": css_class(QC_CLASS, status),
                "analysed": analysed,
                "failure": str(tube.get("failure") or "no reason recorded"),
                "blast_events": fmt_count(tube.get("blast_events")),
                "leukocyte_events": fmt_count(tube.get("leukocyte_events")),
                "blast_pct": fmt_pct(tube.get("blast_pct_leukocytes")),
                "measured": as_list(tube.get("measured")),
            }
        )
    return views


def _pct_text(row: Mapping[str, Any]) -> tuple[str, str]:
    """% positive and its interval as shown, dashes for a call that carries no number."""
    if str(row.get("call") or "") in NOT_CALLED:
        return DASH, ""
    pct = to_number(row.get("pct_positive"))
    if pct is None:
        return DASH, ""
    return f"{pct:.1f}%", fmt_interval(row.get("pct_ci_low"), row.get("pct_ci_high"))


def _disagreeing(flags: Sequence[Mapping[str, Any]]) -> set[str]:
    """Markers a ``tubes_disagree`` flag names (its message starts with "CD22: ...")."""
    return {
        str(f.get("message") or "").split(":", 1)[0]
        for f in flags
        if f.get("code") == "tubes_disagree"
    }


def _antigen_views(
    antigens: Table, specimen: Mapping[str, Any], flags: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The specimen's antigens.tsv, one row per marker: the number and the tube it comes from,
    every tube's value where more than one measured it (specimen.json ``measurements``), and
    for an unmeasured marker its call and why (the row's note, else specimen.json
    ``unmeasured``)."""
    measurements: dict[str, list[Mapping[str, Any]]] = {}
    for row in json_list(specimen.get("measurements")):
        if isinstance(row, Mapping):
            measurements.setdefault(str(row.get("marker") or ""), []).append(row)
    unmeasured = json_object(specimen.get("unmeasured"))
    rows: list[Mapping[str, Any]] = list(antigens.rows)
    listed = {str(r.get("marker") or "") for r in rows}
    rows += [
        {"marker": str(m), "call": "", "note": str(why)}
        for m, why in unmeasured.items()
        if str(m) not in listed
    ]
    disagree = _disagreeing(flags)
    views = []
    for row in rows:
        marker = str(row.get("marker") or "")
        call = str(row.get("call") or "")
        source = str(row.get("sample_id") or "")
        pct, interval = _pct_text(row)
        measured = pct != DASH
        intensity = str(row.get("intensity") or "").strip() if measured else ""
        note = str(row.get("note") or "") or str(unmeasured.get(marker) or "")
        tubes = measurements.get(marker, [])
        others = []
        if len(tubes) > 1:
            for m in tubes:
                value, ci = _pct_text(m)
                tube = str(m.get("sample_id") or "")
                others.append(
                    {
                        "tube": tube or DASH,
                        "href": tube_href(tube),
                        "pct": value,
                        "interval": ci,
                        "events": fmt_count(m.get("events")),
                        "call": str(m.get("call") or "") or DASH,
                        "call_class": css_class(CALL_CLASS, m.get("call")),
                        "chosen": bool(tube) and tube == source,
                    }
                )
        views.append(
            {
                "marker": marker or DASH,
                "source": source,
                "source_href": tube_href(source),
                "measured": measured,
                "events": fmt_count(row.get("events")) if measured else DASH,
                "positive_events": fmt_count(row.get("positive_events")) if measured else DASH,
                "pct_positive": pct,
                "pct_interval": interval,
                "call": call or DASH,
                "call_class": css_class(CALL_CLASS, call),
                "intensity": intensity,
                "intensity_class": css_class(INTENSITY_CLASS, intensity),
                "note": note,
                "others": others,
                "disagree": marker in disagree,
            }
        )
    return views


def _target_views(
    decision: Mapping[str, Any], antigens: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per trial target rule: eligible, unknown (and why: the rule's note) or not
    eligible, with the value and the tube it comes from."""
    eligible = set(as_list(decision.get("eligible_targets")))
    unknown = set(as_list(decision.get("unknown_targets")))
    source = {a["marker"]: a for a in antigens}
    views = []
    for rule in json_list(decision.get("rules")):
        if not isinstance(rule, Mapping) or rule.get("kind") != "antigen":
            continue
        target = str(rule.get("target") or "")
        outcome = str(rule.get("outcome") or "")
        if target in eligible:
            status, css = "eligible", "pos"
        elif target in unknown:
            status, css = "unknown", "warn"
        else:
            status, css = "not eligible", "neutral"
        row = source.get(target, {})
        views.append(
            {
                "target": target or DASH,
                "status": status,
                "status_class": css,
                "text": str(rule.get("text") or ""),
                "value": row.get("pct_positive", DASH),
                "interval": row.get("pct_interval", ""),
                "source": row.get("source", ""),
                "source_href": row.get("source_href", ""),
                "outcome": outcome or DASH,
                "outcome_class": css_class(OUTCOME_CLASS, outcome),
                "note": str(rule.get("note") or ""),
                "near_cutoff": truthy(rule.get("near_cutoff")) is True,
            }
        )
    return views


def _coverage_views(
    table: Table | None, eligible: Sequence[str], recommended: str
) -> dict[str, Any]:
    """coverage.tsv of the specimen: per combination its lower and upper bound and how it is
    known, per cell in one tube (``measured_together``: the tube) or bounded across tubes."""
    if table is None:
        return {"rows": [], "short": [], "hidden": 0, "note": "coverage.tsv not found."}
    eligible_set = {t.upper() for t in eligible}
    has_together = "measured_together" in table.columns
    rows = []
    for row in table.rows:
        label = row.get("combination") or ""
        n = to_number(row.get("n_products"))
        together = (row.get("measured_together") or "").strip()
        low = fmt_pct2(row.get("covered_pct"))
        high = fmt_pct2(row.get("covered_pct_high") or row.get("covered_pct"))
        rows.append(
            {
                "label": label or DASH,
                "targets": [
                    {"name": t, "css": "pos" if t.upper() in eligible_set else "neutral"}
                    for t in label.split("+")
                    if t
                ],
                "n_products": DASH if n is None else f"{n:g}",
                "short": n is not None and n <= DEFAULT_COMBINATION_SIZE,
                "covered_low": low,
                "covered_high": high,
                "uncovered_pct": fmt_pct2(row.get("uncovered_pct")),
                "uncovered_ci": fmt_interval(
                    row.get("uncovered_ci_low"), row.get("uncovered_ci_high"), digits=2
                ),
                "together": together,
                "together_href": tube_href(together),
                "known": "together" if together else ("apart" if has_together else ""),
                "recommended": bool(recommended) and label == recommended,
            }
        )
    note = "" if rows else "coverage.tsv has no rows: no trial target was measured per cell."
    return {
        "rows": rows,
        "short": [r for r in rows if r["short"]],
        "hidden": sum(not r["short"] for r in rows),
        "note": note,
    }


def _id_mismatch(files: SpecimenFiles, tubes: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the specimen's files disagree on (its id, its tubes): a mix-up must be seen."""
    problems = []
    ids = unique(
        str(i) for i in (files.specimen.get("specimen_id"), files.decision.get("specimen_id")) if i
    )
    if len(ids) > 1:
        problems.append(f"specimen {' vs '.join(ids)}")
    named = as_list(files.decision.get("tubes"))
    listed = [str(t["sample_id"]) for t in tubes]
    if named and listed != named:
        problems.append(f"tubes {', '.join(listed)} vs {', '.join(named)}")
    return problems


def specimen_context(files: SpecimenFiles, config: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the specimen template shows, already formatted for display. ``config`` is
    accepted for symmetry with the other pages; the page reads nothing from it."""
    del config  # every value comes from the specimen's files
    decision, specimen = files.decision, files.specimen
    specimen_id = str(specimen.get("specimen_id") or decision.get("specimen_id") or "?")
    tubes = _tube_views(specimen, decision)
    flag_list = [f for f in json_list(specimen.get("flags")) if isinstance(f, Mapping)]
    flags, flags_recorded = flag_views({"flags": specimen.get("flags")})
    antigens = _antigen_views(files.antigens, specimen, flag_list)
    eligible = as_list(decision.get("eligible_targets"))
    combination = combination_view(decision)
    recommended = combination.get("label", "") if combination["status"] == "chosen" else ""
    coverage = _coverage_views(files.coverage, eligible, recommended)
    chosen = next((r for r in coverage["rows"] if r["recommended"]), None)
    targets = _target_views(decision, antigens)
    trial = json_object(decision.get("trial"))
    decision_value = str(decision.get("decision") or "")
    qc_status = str(decision.get("qc_status") or "")
    clinical = str(decision.get("clinical_status") or "")
    antigen_status = str(decision.get("antigen_status") or "")
    return {
        "version": __version__,
        "csp": SPECIMEN_CSP,
        "specimen_id": specimen_id,
        "one_tube": len(tubes) == 1,
        "tubes": tubes,
        "patient_id": str(decision.get("patient_id") or DASH),
        "timepoint": str(decision.get("timepoint") or DASH),
        "trial_name": str(trial.get("name") or "trial not recorded"),
        "trial_version": str(trial.get("version") or DASH),
        "decision": decision_value or "not recorded",
        "decision_class": css_class(DECISION_CLASS, decision_value),
        "decision_reasons": as_list(decision.get("decision_reasons")),
        "review_reasons": as_list(decision.get("review_reasons")),
        "antigen_reasons": as_list(decision.get("antigen_reasons")),
        "clinical_reasons": as_list(decision.get("clinical_reasons")),
        "eligible_targets": eligible,
        "unknown_targets": [t for t in targets if t["status"] == "unknown"],
        "targets": targets,
        "blast_events": fmt_count(decision.get("blast_events")),
        "blast_pct": fmt_pct(decision.get("blast_pct_leukocytes")),
        "cd19_status": str(decision.get("cd19_status") or DASH),
        "antigen_status": antigen_status or DASH,
        "antigen_status_class": css_class(STATUS_CLASS, antigen_status),
        "clinical_status": clinical or DASH,
        "clinical_status_class": css_class(STATUS_CLASS, clinical),
        "qc_status": qc_status or DASH,
        "qc_class": css_class(QC_CLASS, qc_status),
        "flags": flags,
        "flags_recorded": flags_recorded,
        "red_flags": sum(f["css"] == "bad" for f in flags),
        "value_rule": str(specimen.get("value_rule") or DEFAULT_VALUE_RULE),
        "antigens": antigens,
        "multi_measured": [a["marker"] for a in antigens if a["others"]],
        "coverage": coverage,
        "combination": combination,
        "combination_row": chosen,
        "confidence": fmt_confidence(json_object(decision.get("combination")).get("confidence")),
        "rules": rule_views(decision),
        "id_mismatch": _id_mismatch(files, tubes),
    }


def _review_view(review: Mapping[str, Any], targets: Sequence[str]) -> dict[str, Any]:
    """The sign-off section: the status (and what changed, when stale), the review's verdict
    beside the computed decision, the hash to copy, and the form's target choices."""
    status = str(review.get("status") or ReviewStatus.UNREVIEWED)
    return {
        "status": status,
        "status_class": REVIEW_CLASS.get(status, "neutral"),
        "result_hash": str(review.get("result_hash") or ""),
        "signed_hash": str(review.get("signed_hash") or ""),
        "message": str(review.get("message") or ""),
        "final_decision": str(review.get("final_decision") or ""),
        "final_targets": [str(t) for t in review.get("final_targets") or []],
        "reviewed_by": str(review.get("reviewed_by") or ""),
        "verdict": str(review.get("verdict") or ""),
        "reason": str(review.get("reason") or ""),
        "date": str(review.get("date") or ""),
        "targets": [str(t) for t in targets],
    }


def render_specimen_report(
    files: Mapping[str, Path],
    config: Mapping[str, Any],
    review: Mapping[str, Any] | None = None,
    targets: Sequence[str] | None = None,
) -> str:
    """Return the self-contained HTML report of one specimen.

    Parameters
    ----------
    files
        The specimen's files by key (``antigens``, ``coverage``, ``specimen``, ``decision``;
        :data:`antigen_profile.outputs.SPECIMEN_WRITES`), in ``results/specimens/{id}/``:
        the page links to each tube's report as ``../../{sample_id}/report.html``.
    config
        The workflow configuration; nothing on the page is recomputed from it.
    review
        The specimen's ``review`` object (:func:`antigen_profile.review.review_status`):
        adds the sign-off section (status, result hash, the form that fills in the
        review.tsv row) and its one script, allowed by its hash. ``None``: no section and
        no script.
    targets
        The form's target choices (default: the trial's targets in decision.json).
    """
    specimen_files = read_specimen(files)
    context = {**specimen_context(specimen_files, config), "review": None, "script": None}
    if review is not None:
        trial = json_object(specimen_files.decision.get("trial"))
        choices = targets if targets is not None else as_list(trial.get("targets"))
        context["review"] = _review_view(review, choices)
        context["script"] = SIGNOFF_SCRIPT
        context["csp"] = content_security_policy(script=script_hash(SIGNOFF_SCRIPT))
    return environment().get_template("specimen.html").render(**context)
