"""Co-expression and antigen escape: which combinations of CAR products cover the blasts.

Antigen escape is the failure mode a multi-target trial such as 4SCAR exists for, and it is a
per-cell question: a share of positive blasts per antigen (``antigens.tsv``) cannot say whether
the CD22-negative blasts are the CD10-positive ones. So this module works on single cells.

*Covered*: a blast is covered by a combination of targets when it is positive for at least one
target of the combination; it *escapes* the combination when it is negative for every one.
Positivity per cell uses the same per-antigen thresholds as ``antigens.tsv`` (the reference
population's percentile, see :func:`thresholds_from_references`), so a single-target row of the
coverage table counts exactly the ``positive_events`` of that antigen.

For every non-empty combination of the assessable targets, :func:`coverage_table` gives the
covered share and the uncovered event count with an exact (Clopper-Pearson) interval: the
blasts in a tube are a sample of the patient's disease, and a 2% escape measured on 300 blasts
is a much weaker statement than on 30,000. :func:`recommend_combination` names the smallest
combination that covers the configured share of blasts within the trial's product limit.
Pure functions on arrays; knows nothing of FCS.

Known bias: a threshold at the reference's 99.5th percentile calls ~0.5% of truly negative
blasts positive for each target, so an escape share ``u`` over ``k`` targets reads about
``u * (1 - 0.995**k)`` low (0.02 percentage points for 2.5% escape over two targets, well inside
its interval; 0.8 points for a pair that leaves 77% uncovered, which at 30,000 blasts is wider
than the interval). Dim targets lose a few positives below the threshold, which pulls the other
way. The interval covers sampling error only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile.quantify import clopper_pearson, reference_threshold
from antigen_profile.vocabulary import MEASURED_CALLS

#: coverage.tsv columns, in contract order: append, never reorder.
COVERAGE_COLUMNS: list[str] = [
    "sample_id",
    "combination",
    "n_products",
    "blasts",
    "covered_events",
    "covered_pct",
    "uncovered_events",
    "uncovered_pct",
    "uncovered_ci_low",
    "uncovered_ci_high",
]

#: Leading columns of :func:`upset_data`; one boolean column per target follows.
UPSET_COLUMNS: list[str] = ["pattern", "n_targets", "events", "pct_blasts"]

#: Pattern label of blasts negative for every assessed target.
NEGATIVE_FOR_ALL = "none"

#: Joins the targets of a combination ("CD22+CD10").
SEPARATOR = "+"

#: Decimals of every percentage written (as in antigens.tsv).
DECIMALS = 2


# --------------------------------------------------------------------------------------------
# Per-cell positivity
# --------------------------------------------------------------------------------------------


def thresholds_from_references(
    antigens: pd.DataFrame, references: Mapping[str, Any], percentile: float
) -> dict[str, float | None]:
    """Per marker, the unrounded threshold behind its ``antigens.tsv`` row, or None.

    antigens.tsv writes thresholds rounded to 2 decimals; re-applying the rounded value could
    move an event sitting between the two, so the threshold is recomputed from the same
    reference exactly as quantify does (a model threshold when the reference carries one, else
    the reference's ``percentile``). Only markers whose call is a measurement get one: no
    threshold where antigens.tsv gives no number.

    Raises
    ------
    ValueError
        When a recomputed threshold disagrees with the written one, i.e. ``references`` are
        not the ones antigens.tsv was computed from.
    """
    thresholds: dict[str, float | None] = {}
    for row in antigens.to_dict("records"):
        marker = str(row["marker"])
        reference = references.get(marker)
        if str(row.get("call")) not in MEASURED_CALLS or reference is None:
            thresholds[marker] = None
            continue
        threshold = reference_threshold(reference, percentile)
        written = row.get("threshold")
        known = written is not None and not pd.isna(written)
        if known and abs(round(threshold, 2) - float(written)) > 0.011:
            raise ValueError(
                f"{marker}: threshold {threshold:.2f} from the reference differs from "
                f"antigens.tsv's {float(written):.2f}"
            )
        thresholds[marker] = threshold
    return thresholds


def positive_matrix(
    blasts: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float | None],
    targets: Sequence[str],
) -> pd.DataFrame:
    """Which blast is positive for which target: a bool ``blasts x targets`` frame.

    Columns keep ``targets`` order (the trial's, which is the canonical order of every
    combination). A blast is positive when its intensity is above the threshold, the rule of
    antigens.tsv. A target without a threshold, or not in the panel, gets no column: it is
    listed in ``attrs["not_assessable"]`` instead, because "not measured" must never count as
    "negative" (nor as covering anything).
    """
    columns: dict[str, np.ndarray] = {}
    not_assessable: list[str] = []
    n: int | None = None
    for target in targets:
        threshold = thresholds.get(target)
        missing = threshold is None or pd.isna(threshold) or not math.isfinite(float(threshold))
        if target not in blasts or missing:
            not_assessable.append(target)
            continue
        values = np.asarray(blasts[target], dtype=np.float64)
        if n is not None and values.size != n:
            raise ValueError(
                f"{target}: {values.size} blast events, but other targets have {n}; every "
                "target must be measured on the same blasts"
            )
        n = values.size
        columns[target] = values > float(threshold)
    if n is None:  # nothing assessable: still say how many blasts there were
        n = next((np.asarray(v).size for t, v in blasts.items() if t in targets), 0)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n), dtype=bool)
    frame.attrs["not_assessable"] = not_assessable
    return frame


#: Blasts counted per :func:`np.bincount` call in :func:`_pattern_counts`.
COUNT_BLOCK = 1 << 16


def _pattern_counts(positive: pd.DataFrame) -> np.ndarray:
    """Blasts per positive/negative pattern: entry ``p`` counts the blasts positive exactly for
    the targets whose column bit is set in ``p`` (bit j = column j). Every combination's
    coverage is a sum over these 2^k counts, so each blast is looked at once. The pattern is
    built column by column in the smallest unsigned type that holds it (one byte per blast up
    to 8 targets), not as an int64 matrix product: 12x less memory, several times faster."""
    k = positive.shape[1]
    if k == 0:
        return np.array([len(positive)], dtype=np.int64)
    dtype = np.min_scalar_type((1 << k) - 1)
    bits = np.zeros(len(positive), dtype=dtype)
    for j in range(k):
        column = positive.iloc[:, j].to_numpy(dtype=bool)
        bits |= column.astype(dtype) << dtype.type(j)
    # bincount works on a platform-integer copy of its input: counted a block at a time, so
    # that copy is a block, not eight bytes per blast
    counts = np.zeros(1 << k, dtype=np.int64)
    for first in range(0, bits.size, COUNT_BLOCK):
        counts += np.bincount(bits[first : first + COUNT_BLOCK], minlength=1 << k)
    return counts


# --------------------------------------------------------------------------------------------
# Coverage of every combination
# --------------------------------------------------------------------------------------------


def coverage_table(
    positive: pd.DataFrame, sample_id: str, confidence: float = 0.95
) -> pd.DataFrame:
    """The coverage.tsv table: every non-empty combination of the assessable targets.

    Per combination: blasts covered (positive for at least one of its targets) and uncovered,
    in events and %, and the exact ``confidence`` interval of the uncovered share in %. Sorted
    by number of products, then coverage (highest first), then canonical order (the columns'
    order, i.e. the trial's). Header only when there are no blasts or no assessable target.
    ``attrs`` carries ``confidence`` and ``not_assessable``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    targets = [str(c) for c in positive.columns]
    n = len(positive)
    if n == 0 or not targets:
        table = pd.DataFrame(columns=COVERAGE_COLUMNS)
    else:
        counts = _pattern_counts(positive)
        patterns = np.arange(counts.size)
        combos = [
            c for r in range(1, len(targets) + 1) for c in combinations(range(len(targets)), r)
        ]
        masks = [sum(1 << j for j in combo) for combo in combos]
        uncovered = np.array([counts[(patterns & m) == 0].sum() for m in masks], dtype=np.int64)
        low, high = clopper_pearson(uncovered, n, confidence)
        table = pd.DataFrame(
            {
                "sample_id": str(sample_id),
                "combination": [SEPARATOR.join(targets[j] for j in c) for c in combos],
                "n_products": [len(c) for c in combos],
                "blasts": n,
                "covered_events": n - uncovered,
                "covered_pct": np.round(100.0 * (n - uncovered) / n, DECIMALS),
                "uncovered_events": uncovered,
                "uncovered_pct": np.round(100.0 * uncovered / n, DECIMALS),
                "uncovered_ci_low": np.round(100.0 * low, DECIMALS),
                "uncovered_ci_high": np.round(100.0 * high, DECIMALS),
                "_rank": np.arange(len(combos)),
            }
        )
        table = (
            table.sort_values(["n_products", "covered_pct", "_rank"], ascending=[True, False, True])
            .drop(columns="_rank")
            .reset_index(drop=True)
        )
    table.attrs["confidence"] = confidence
    table.attrs["not_assessable"] = list(positive.attrs.get("not_assessable", []))
    return table


def upset_data(positive: pd.DataFrame) -> pd.DataFrame:
    """Co-expression patterns for an UpSet-style chart: one row per observed pattern.

    ``pattern`` names the targets a blast is positive for (``CD22+CD10``), ``none`` for
    blasts negative for every target (always present, even with 0 events: it is the escape
    that no combination can fix). One boolean column per target marks the pattern for the
    chart's dot matrix. Sorted by events (most first), then fewer targets, then canonical
    order. Header only when there are no blasts or no assessable target.
    """
    targets = [str(c) for c in positive.columns]
    columns = UPSET_COLUMNS + targets
    n = len(positive)
    if n == 0 or not targets:
        return pd.DataFrame(columns=columns)
    counts = _pattern_counts(positive)
    rows = []
    for code in np.flatnonzero(counts).tolist() + ([0] if counts[0] == 0 else []):
        members = [t for j, t in enumerate(targets) if code >> j & 1]
        rows.append(
            {
                "pattern": SEPARATOR.join(members) or NEGATIVE_FOR_ALL,
                "n_targets": len(members),
                "events": int(counts[code]),
                "pct_blasts": round(100.0 * counts[code] / n, DECIMALS),
                **{t: bool(code >> j & 1) for j, t in enumerate(targets)},
                "_rank": tuple(j for j in range(len(targets)) if code >> j & 1),
            }
        )
    rows.sort(key=lambda r: (-r["events"], r["n_targets"], r["_rank"]))
    return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)


# --------------------------------------------------------------------------------------------
# Recommendation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CombinationChoice:
    """The recommended combination of products, or None with the reason and the best found.

    ``coverage_pct``, ``uncovered_pct`` and the interval are the chosen combination's (None
    when none qualifies); ``best_combination``/``best_coverage_pct`` hold the highest coverage
    within the limits either way, so a report can show how close the sample came.
    """

    combination: tuple[str, ...] | None
    coverage_pct: float | None
    uncovered_ci_high: float | None
    reason: str
    uncovered_pct: float | None = None
    uncovered_ci_low: float | None = None
    best_combination: tuple[str, ...] | None = None
    best_coverage_pct: float | None = None
    min_coverage_pct: float | None = None
    max_products: int | None = None
    confidence: float = 0.95

    @property
    def label(self) -> str:
        """The combination as written in tables ("CD22+CD10"); empty when there is none."""
        return SEPARATOR.join(self.combination) if self.combination else ""

    @property
    def n_products(self) -> int:
        """Products in the recommended combination (0 when there is none)."""
        return len(self.combination) if self.combination else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for decision.json (tuples as lists)."""
        return {
            "combination": list(self.combination) if self.combination else None,
            "label": self.label,
            "n_products": self.n_products,
            "coverage_pct": self.coverage_pct,
            "uncovered_pct": self.uncovered_pct,
            "uncovered_ci_low": self.uncovered_ci_low,
            "uncovered_ci_high": self.uncovered_ci_high,
            "confidence": self.confidence,
            "best_combination": list(self.best_combination) if self.best_combination else None,
            "best_coverage_pct": self.best_coverage_pct,
            "min_coverage_pct": self.min_coverage_pct,
            "max_products": self.max_products,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Row:
    targets: tuple[str, ...]
    covered_pct: float
    uncovered_pct: float
    ci_low: float
    ci_high: float
    rank: tuple[int, ...]
    #: False for a specimen's combination stained in different tubes: bounded, not counted.
    together: bool = True

    @property
    def n(self) -> int:
        return len(self.targets)

    @property
    def label(self) -> str:
        return SEPARATOR.join(self.targets)


def _rows(table: pd.DataFrame) -> list[_Row]:
    """Table rows with their canonical rank. The canonical target order is read from the
    largest combination (all assessable targets, in trial order), so the ranking survives a
    round trip through coverage.tsv and does not depend on the row order."""
    split = [tuple(str(c).split(SEPARATOR)) for c in table["combination"]]
    order = {t: i for i, t in enumerate(max(split, key=len))}
    for targets in split:  # a table cut short of its full combination: first appearance
        for target in targets:
            order.setdefault(target, len(order))
    rows = []
    for targets, record in zip(split, table.to_dict("records"), strict=True):
        rows.append(
            _Row(
                targets=targets,
                covered_pct=float(record["covered_pct"]),
                uncovered_pct=float(record["uncovered_pct"]),
                ci_low=float(record["uncovered_ci_low"]),
                ci_high=float(record["uncovered_ci_high"]),
                rank=tuple(order[t] for t in targets),
                together=_together(record),
            )
        )
    return rows


def _together(record: Mapping[str, Any]) -> bool:
    """Whether a row's blasts were counted per cell: always for a tube's coverage.tsv; for a
    specimen's, only where ``measured_together`` names the tube."""
    if "measured_together" not in record:
        return True
    value = record["measured_together"]
    return isinstance(value, str) and value != ""


def _num(value: float) -> str:
    """Percent for sentences: 95.0 -> "95", 91.304 -> "91.3", 0.01 -> "0.01"."""
    return f"{round(float(value), DECIMALS):g}"


def _products(n: int, qualifier: str = "") -> str:
    """Count and noun for sentences: 1 product, 2 eligible products."""
    return f"{n} {qualifier}product" + ("" if n == 1 else "s")


def _interval(row: _Row, confidence: float) -> str:
    return (
        f"uncovered {_num(row.uncovered_pct)}%, {_num(100 * confidence)}% CI "
        f"{_num(row.ci_low)}-{_num(row.ci_high)}%"
    )


def recommend_combination(
    table: pd.DataFrame,
    max_products: int,
    min_coverage_pct: float,
    allowed: Sequence[str] | None = None,
) -> CombinationChoice:
    """The smallest combination that covers ``min_coverage_pct`` of blasts, with confidence:
    the upper bound of its uncovered share must be at most ``100 - min_coverage_pct``.

    Fewest products first, because each added product adds toxicity and manufacturing;
    among combinations of that size, the highest coverage, then the lower upper confidence
    bound on escape, then canonical order. Only combinations of at most ``max_products`` made
    of ``allowed`` targets (those eligible by the trial's per-target rule; None: any) count.
    Decides on the numbers as written in coverage.tsv. When none qualifies the combination is
    None and the reason names the best one within the limits.
    """
    if max_products < 1:
        raise ValueError(f"max_products must be at least 1, got {max_products}")
    confidence = float(table.attrs.get("confidence", 0.95))
    common: dict[str, Any] = {
        "min_coverage_pct": float(min_coverage_pct),
        "max_products": int(max_products),
        "confidence": confidence,
    }
    if table.empty:
        reason = "no combination could be assessed: no blasts, or no target with a threshold"
        return CombinationChoice(None, None, None, reason, **common)
    rows = _rows(table)
    assessed = {t for row in rows for t in row.targets}
    qualifier = "" if allowed is None else "eligible "
    if allowed is not None:
        allowed_set = {str(t) for t in allowed}
        rows = [r for r in rows if set(r.targets) <= allowed_set]
        if not rows:
            if not allowed_set:
                reason = "no eligible target to combine"
            else:
                missing = ", ".join(sorted(allowed_set - assessed))
                reason = f"no eligible target could be assessed per cell ({missing})"
            return CombinationChoice(None, None, None, reason, **common)
    pool = [r for r in rows if r.n <= max_products]
    best = min(pool, key=lambda r: (-r.covered_pct, r.ci_high, r.n, r.rank))
    common.update(best_combination=best.targets, best_coverage_pct=best.covered_pct)
    # Qualifies only if the target share is met with confidence: the upper bound of the
    # uncovered share must stay within 100 - min_coverage_pct. A point estimate of 95.2%
    # from 30,000 blasts can still mean 5.1% escape; the next product is cheaper than that.
    reaching = [r for r in pool if r.ci_high <= 100.0 - min_coverage_pct]
    if not reaching:
        reason = (
            f"no combination of at most {_products(max_products, qualifier)} "
            f"covers {_num(min_coverage_pct)}% of blasts with {_num(100 * confidence)}% "
            f"confidence; the best, {best.label}, covers {_num(best.covered_pct)}% "
            f"({_interval(best, confidence)})"
        )
        return CombinationChoice(None, None, None, reason, **common)

    # Fewest products, then one whose coverage was counted per cell over one that is a bound.
    chosen = min(reaching, key=lambda r: (r.n, not r.together, -r.covered_pct, r.ci_high, r.rank))
    reason = (
        f"{chosen.label} ({_products(chosen.n)}) covers {_num(chosen.covered_pct)}% of blasts, "
        f"at least {_num(min_coverage_pct)}% with {_num(100 * confidence)}% confidence "
        f"({_interval(chosen, confidence)})"
    )
    if not chosen.together:
        reason += "; its targets were stained in different tubes: that is its lower bound"
    fewer = [r for r in pool if r.n < chosen.n]
    if fewer:
        runner = min(fewer, key=lambda r: (-r.covered_pct, r.ci_high, r.n, r.rank))
        fewer_text = (
            f"single {qualifier}product"
            if chosen.n == 2
            else f"combination of fewer {qualifier}products"
        )
        reason += f"; no {fewer_text} does (best {runner.label}, {_num(runner.covered_pct)}%)"
    tied = [
        r
        for r in reaching
        if r is not chosen and r.n == chosen.n and r.covered_pct == chosen.covered_pct
    ]
    if tied:
        why = (
            "a lower upper bound on escape"
            if all(r.ci_high > chosen.ci_high for r in tied)
            else "the trial's target order"
        )
        others = ", ".join(r.label for r in sorted(tied, key=lambda r: r.rank))
        reason += f"; equal coverage with {others}, chosen for {why}"
    return CombinationChoice(
        chosen.targets,
        chosen.covered_pct,
        chosen.ci_high,
        reason,
        uncovered_pct=chosen.uncovered_pct,
        uncovered_ci_low=chosen.ci_low,
        **common,
    )


def stain_together(
    table: pd.DataFrame, max_products: int, min_coverage_pct: float, allowed: Sequence[str]
) -> list[str]:
    """Sentences for a specimen's combinations that might reach ``min_coverage_pct`` but
    were stained in different tubes: their lower bound does not reach it, their upper bound
    does. Only staining them in one tube can tell, so a reviewer is told which."""
    if table.empty or "covered_pct_high" not in table:
        return []
    out = []
    for record in table.to_dict("records"):
        targets = str(record["combination"]).split(SEPARATOR)
        if (
            _together(record)
            or len(targets) > max_products
            or not set(targets) <= {str(t) for t in allowed}
        ):
            continue
        low, high = float(record["covered_pct"]), float(record["covered_pct_high"])
        if low < min_coverage_pct <= high:
            out.append(
                f"{record['combination']} may cover {_num(min_coverage_pct)}% of blasts "
                f"(between {_num(low)}% and {_num(high)}%) but its targets were stained in "
                "different tubes: stain them in one tube to know"
            )
    return out
