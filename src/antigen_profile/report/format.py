"""How a file value is shown in a report: numbers, intervals, lists, and the CSS class words.

Both pages and the plots format through here, so a percentage, a count or a missing value
reads the same everywhere. A missing or non-numeric value becomes a dash, never 0 or "nan":
no number is better than a wrong one. CSS classes come only from the whitelists below, so a
value from a file never lands in a class attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Shown instead of an absent number, in the HTML tables and the plots' annotations.
DASH = "\u2014"

#: Antigen calls that carry no trustworthy percentage (outputs.md: "no number is better than a
#: wrong one"); their numbers are replaced by a dash whatever the file holds.
NOT_CALLED = frozenset({"insufficient_events", "no_reference"})

#: CSS classes for values from files; anything else gets the neutral class (:func:`css_class`).
DECISION_CLASS = {"candidate": "good", "not_candidate": "bad", "needs_review": "warn"}
OUTCOME_CLASS = {"pass": "good", "fail": "bad", "unknown": "warn"}
QC_CLASS = {"pass": "good", "warn": "warn", "fail": "bad"}
#: Badge class of each review status (recommendations.tsv ``review_status``).
REVIEW_CLASS = {"signed": "pos", "stale": "bad", "unreviewed": "neutral"}
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
#: Dim/bright intensity words of antigens.tsv (anything else is shown neutral).
INTENSITY_CLASS = {"bright": "pos", "dim": "warn"}
#: Flags that change what the whole report means are red; every other is amber. Two tubes of
#: one specimen whose blast shares disagree point at a mislabelled tube or a wrong gate.
RED_FLAGS = frozenset({"possible_lineage_switch", "no_blast_population", "blast_share_disagrees"})


def css_class(mapping: Mapping[str, str], value: Any) -> str:
    """The whitelisted CSS class for a file value, or the neutral one."""
    return mapping.get(str(value), "neutral")


# --------------------------------------------------------------------------- numbers


def to_number(value: Any) -> float | None:
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
    number = to_number(value)
    return DASH if number is None else f"{round(number):,}"


def fmt_pct(value: Any) -> str:
    """A percentage with one decimal (the precision Poisson counting supports), or a dash."""
    number = to_number(value)
    return DASH if number is None else f"{number:.1f}"


def fmt_num(value: Any) -> str:
    """An intensity or ratio: integers above 1000, three significant digits below."""
    number = to_number(value)
    if number is None:
        return DASH
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def fmt_pct2(value: Any) -> str:
    """A percentage with two decimals, as coverage.tsv and coexpression.tsv write them.

    Escape shares are small (0.07% of 28,000 blasts is 21 cells); one decimal would print
    0.07 and 0.12 alike.
    """
    number = to_number(value)
    return DASH if number is None else f"{number:.2f}"


def fmt_seconds(value: Any) -> str:
    """A time in seconds for a table cell (one decimal, or a dash)."""
    number = to_number(value)
    return DASH if number is None else f"{number:,.1f}"


def fmt_interval(low: Any, high: Any, digits: int = 1) -> str:
    """A confidence interval in brackets, bounds joined by an en dash: "(94.9\u201395.5)".

    Parameters
    ----------
    low, high
        The bounds as written in a result file (numbers or numeric strings).
    digits
        Decimals to print.

    Returns
    -------
    str
        The interval, or "" when either bound is missing or not a number (the value is
        then shown alone, never with a made-up interval).
    """
    lo, hi = to_number(low), to_number(high)
    if lo is None or hi is None:
        return ""
    return f"({lo:.{digits}f}\u2013{hi:.{digits}f})"


def fmt_confidence(value: Any) -> str:
    """A confidence level (0.95) as "95%", or "95%" when it is not recorded (the default)."""
    number = to_number(value)
    if number is None or not 0 < number < 1:
        return "95%"
    return f"{100 * number:g}%"


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


# --------------------------------------------------------------------------- cells and lists


def truthy(value: Any) -> bool | None:
    """A boolean TSV/JSON cell: True, False, or None when empty or not a boolean word."""
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    return None


def as_list(value: Any, separator: str | None = None) -> list[str]:
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


def unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order without repeats (QC and decision often repeat a reason)."""
    return list(dict.fromkeys(items))


def json_list(value: Any) -> list[Any]:
    """A JSON list, or an empty one for anything else (a file may hold the wrong type)."""
    return list(value) if isinstance(value, list | tuple) else []


def json_object(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (a file may hold the wrong type)."""
    return value if isinstance(value, Mapping) else {}
