"""What a cell of a sheet or a result table says, and how a value is written back out.

The trial rules, the decision and the cohort table read the same cells (``"NA"``, ``"yes"``,
``"90"``) and write the same numbers into sentences (20.0 as "20") and JSON (NaN as null):
one reading here, so a cell cannot be missing to one stage and a number to the next.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: Cell texts that mean "not known" in patients.tsv (compared case-insensitively).
MISSING_TOKENS: frozenset[str] = frozenset(
    {"", "na", "n/a", "nan", "none", "null", "unknown", "?", "-", "nd", "not done"}
)
_TRUE_TOKENS = frozenset({"yes", "y", "true", "t"})
_FALSE_TOKENS = frozenset({"no", "n", "false", "f"})


def is_number(value: Any) -> bool:
    """True for real numbers, excluding bools (which Python counts as ints)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_missing(value: Any) -> bool:
    """True for None, NaN and the texts patients.tsv uses for "not known"."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TOKENS
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def as_bool(value: Any) -> bool | None:
    """Read yes/no, true/false, y/n (any case) or a real bool; None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        token = value.strip().lower()
        if token in _TRUE_TOKENS:
            return True
        if token in _FALSE_TOKENS:
            return False
    return None


def as_number(value: Any) -> float | None:
    """Read a finite number from a number or its text; None when it is not one."""
    if isinstance(value, bool):
        return None
    if is_number(value):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def sentence_value(value: Any) -> str:
    """Numbers for sentences: 20.0 -> "20", 95.123 -> "95.12"; bools as yes/no."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if is_number(value):
        number = float(value)
        if math.isnan(number):
            return "missing"
        if number.is_integer():
            return str(int(number))
        return f"{round(number, 2):g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sentence_value(v) for v in value) + "]"
    return str(value)


def text_or_none(value: Any) -> str | None:
    """A cell as text, or None when empty/NaN (a call or status column, not a patient fact)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() != "nan" else None


def jsonable(value: Any) -> Any:
    """Make a value safe for json.dump with allow_nan=False: NaN/inf -> None, NumPy scalars ->
    Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # a vocabulary word as the plain str it equals
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if hasattr(value, "item"):  # NumPy bool_ and other 0-d scalars
        return jsonable(value.item())
    return value
