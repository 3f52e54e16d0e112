"""The "Co-expression and escape" section of the sample report.

Which trial targets the blasts carry together (coexpression.tsv, drawn as an UpSet chart), how
much of the blasts each combination of products covers (coverage.tsv) and the combination the
decision named (decision.json ``combination``). The share of blasts negative for every target
escapes every product, so it is shown in red whatever its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from antigen_profile.report import plots
from antigen_profile.report.format import (
    DASH,
    as_list,
    fmt_confidence,
    fmt_count,
    fmt_interval,
    fmt_pct2,
    fmt_value,
    to_number,
    truthy,
)
from antigen_profile.report.result_files import SampleFiles, Table

#: Leading columns of coexpression.tsv; one boolean column per target follows.
COEXPRESSION_LEADING = ("pattern", "n_targets", "events", "pct_blasts")
#: coexpression.tsv's pattern for blasts negative for every target (escape from all products).
ESCAPE_PATTERN = "none"
#: Combinations of at most this many products are shown by default (4SCAR2.0 gave up to two
#: products together); the full coverage table is folded away below them.
DEFAULT_COMBINATION_SIZE = 2


def _table_note(table: Table | None, name: str, qc_failed: bool) -> str:
    """Why an optional table shows nothing: absent, header only, or QC failed."""
    if table is None:
        return f"{name} not found: this results folder predates the co-expression analysis."
    if not table.rows:
        if qc_failed:
            return f"{name} has no rows: QC failed, no blast was gated."
        return f"{name} has no rows: no blasts, or no target with a threshold, to assess per cell."
    return ""


def _patterns_view(
    table: Table | None, qc_failed: bool
) -> tuple[list[str], list[dict[str, Any]], str | None, str]:
    """coexpression.tsv as targets, pattern rows, the UpSet chart and a note.

    A cell of a target column that is not a boolean makes the chart undrawable (a wrong dot
    is worse than no chart); the table still lists the rows.
    """
    note = _table_note(table, "coexpression.tsv", qc_failed)
    if table is None or not table.rows:
        return [], [], None, note
    targets = [c for c in table.columns if c not in COEXPRESSION_LEADING]
    rows, drawable = [], True
    for row in table.rows:
        members = [truthy(row.get(t)) for t in targets]
        drawable = drawable and all(m is not None for m in members)
        pattern = row.get("pattern") or ""
        escape = pattern == ESCAPE_PATTERN
        pct = fmt_pct2(row.get("pct_blasts"))
        text = DASH if pct == DASH else f"{pct}%"
        if escape:
            text += f"\n({fmt_count(row.get('events'))} events)"
        rows.append(
            {
                "label": pattern or DASH,
                "n_targets": row.get("n_targets") or DASH,
                "events": fmt_count(row.get("events")),
                "pct": pct,
                "text": text,
                "members": [m is True for m in members],
                "escape": escape,
            }
        )
    image = None
    if drawable and targets:
        image = plots.upset_plot(
            [{**r, "pct": row.get("pct_blasts")} for r, row in zip(rows, table.rows, strict=True)],
            targets,
            escape_label="negative for every target: escapes every product",
        )
    elif targets:
        note = "coexpression.tsv has a target cell that is not true/false: no chart drawn."
    else:
        note = "coexpression.tsv lists no target column: no chart drawn."
    return targets, rows, image, note


def _coverage_view(
    table: Table | None, eligible: Sequence[str], recommended: str, qc_failed: bool
) -> dict[str, Any]:
    """coverage.tsv rows for display: each combination's targets (eligible ones marked), its
    coverage and its uncovered share with the interval, the recommended one highlighted."""
    note = _table_note(table, "coverage.tsv", qc_failed)
    eligible_set = {t.upper() for t in eligible}
    rows = []
    for row in table.rows if table is not None else []:
        label = row.get("combination") or ""
        targets = [t for t in label.split("+") if t]
        n = to_number(row.get("n_products"))
        rows.append(
            {
                "label": label or DASH,
                "targets": [
                    {"name": t, "css": "pos" if t.upper() in eligible_set else "neutral"}
                    for t in targets
                ],
                "n_products": DASH if n is None else f"{n:g}",
                "short": n is not None and n <= DEFAULT_COMBINATION_SIZE,
                "covered_pct": fmt_pct2(row.get("covered_pct")),
                "uncovered_events": fmt_count(row.get("uncovered_events")),
                "uncovered_pct": fmt_pct2(row.get("uncovered_pct")),
                "uncovered_ci": fmt_interval(
                    row.get("uncovered_ci_low"), row.get("uncovered_ci_high"), digits=2
                ),
                "recommended": bool(recommended) and label == recommended,
            }
        )
    return {
        "rows": rows,
        "short": [r for r in rows if r["short"]],
        "hidden": sum(not r["short"] for r in rows),
        "note": note,
        "blasts": fmt_count(table.rows[0].get("blasts")) if table and table.rows else DASH,
    }


def combination_view(decision: Mapping[str, Any]) -> dict[str, Any]:
    """decision.json ``combination``: the recommended products with their coverage and escape
    interval, or why none was named (none qualifies; not assessed; not recorded)."""
    if "combination" not in decision:
        return {
            "status": "not_recorded",
            "note": "decision.json records no combination: it predates the coverage analysis.",
        }
    combination = decision.get("combination")
    if not isinstance(combination, Mapping):
        status = decision.get("antigen_status") or DASH
        eligible = as_list(decision.get("eligible_targets"), ",")
        return {
            "status": "not_assessed",
            "note": (
                "No combination was assessed: that needs a usable antigen profile (antigen "
                f"status: {status}), per-cell coverage and at least one eligible target "
                f"(eligible: {', '.join(eligible) or 'none'})."
            ),
        }
    label = str(combination.get("label") or "")
    best = as_list(combination.get("best_combination"))
    view = {
        "status": "chosen" if label else "none_qualifies",
        "label": label or "none",
        "targets": as_list(combination.get("combination")) or [t for t in label.split("+") if t],
        "n_products": fmt_value(combination.get("n_products")),
        "coverage_pct": fmt_pct2(combination.get("coverage_pct")),
        "uncovered_pct": fmt_pct2(combination.get("uncovered_pct")),
        "uncovered_ci": fmt_interval(
            combination.get("uncovered_ci_low"), combination.get("uncovered_ci_high"), digits=2
        ),
        "confidence": fmt_confidence(combination.get("confidence")),
        "reason": str(combination.get("reason") or "no reason recorded"),
        "best": "+".join(best),
        "best_coverage_pct": fmt_pct2(combination.get("best_coverage_pct")),
        "max_products": fmt_value(combination.get("max_products")),
        "min_coverage_pct": fmt_value(combination.get("min_coverage_pct")),
        "note": "",
    }
    view["best_differs"] = bool(view["best"]) and view["best"] != label
    return view


def escape_view(files: SampleFiles, eligible: Sequence[str], qc_failed: bool) -> dict[str, Any]:
    """Everything the "Co-expression and escape" section shows."""
    combination = combination_view(files.decision)
    recommended = combination.get("label", "") if combination["status"] == "chosen" else ""
    targets, patterns, image, pattern_note = _patterns_view(files.coexpression, qc_failed)
    trial = files.decision.get("trial")
    trial_targets = as_list(trial.get("targets")) if isinstance(trial, Mapping) else []
    escape = next((p for p in patterns if p["escape"]), None)
    return {
        "targets": targets,
        "not_assessable": [t for t in trial_targets if targets and t not in targets],
        "patterns": patterns,
        "image": image,
        "pattern_note": pattern_note,
        "escape": escape,
        "coverage": _coverage_view(files.coverage, eligible, recommended, qc_failed),
        "combination": combination,
    }
