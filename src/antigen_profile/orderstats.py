"""Medians and percentiles equal to NumPy's, from one partition with a single ``kth``.

``np.median`` and ``np.percentile`` partition a copy of the values at two or more positions
at once (the two middle values, the two neighbours of a percentile, and the last value to
find NaN), and NumPy's partition at several positions costs about five times one at a single
position (2.9 million float64: 24 ms against 5 ms). The values are the same order statistics
either way, so here each is found by partitioning at one position and taking the next one up
as the smallest value above it; later positions are partitioned only among the values above
the earlier ones. The arithmetic on the order statistics is NumPy's own (the mean of the two
middle values, the ``linear`` interpolation of :func:`numpy.percentile`), so the results are
equal to NumPy's to the last bit; ``tests/test_orderstats.py`` checks them against NumPy.
(One case is left to chance, as it is between NumPy versions: when the middle values are
zeros of both signs, which zero a partition leaves in place decides the sign of a zero
result.)

Arrays holding NaN are handed to NumPy itself (its result is NaN either way), as are empty
ones and any but float64 (NumPy averages float32 in float32). Several order statistics of one
array (the median of the blasts and the median of their positive events) come from one call
of :func:`order_statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def order_statistics(
    values: np.ndarray, positions: Sequence[int], overwrite_input: bool = False
) -> np.ndarray | None:
    """The values at ``positions`` of ``sorted(values)`` (0-based, each in ``[0, n)``), as
    float64, or ``None`` when ``values`` hold NaN (whose place in an order NumPy defines by
    sorting it last, so the caller asks NumPy). ``values`` is not modified unless
    ``overwrite_input`` (a contiguous float64 array is then partitioned in place, as
    NumPy's ``overwrite_input``; its values stay, their order does not)."""
    x = np.asarray(values)
    if overwrite_input and x.dtype == np.float64 and x.ndim == 1 and x.flags.c_contiguous:
        work = x
    else:
        work = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    wanted = sorted(set(int(p) for p in positions))
    out: dict[int, float] = {}
    first: int | None = None
    lo = 0  # every value before lo is in its sorted place or below every value from lo on
    for k in wanted:
        if not 0 <= k < work.size:
            raise IndexError(f"order statistic {k} of {work.size} values")
        if first is not None and k == lo:
            # the smallest of the values above the last partition: moved into its place so
            # that later partitions start after it
            j = lo + int(np.argmin(work[lo:]))
            work[lo], work[j] = work[j], work[lo]
        else:
            work[lo:].partition(k - lo)
            if first is None:
                first = k
        out[k] = float(work[k])
        lo = k + 1
    # NaN sorts last, so after the first partition any NaN lies at or after ``first`` (the
    # later steps only rearrange values from there on)
    if first is not None and np.isnan(work[first:]).any():
        return None
    return np.array([out[int(p)] for p in positions], dtype=np.float64)


def _middle(n: int) -> list[int]:
    """Sorted positions whose mean is NumPy's median of ``n`` values."""
    return [n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2]


def median(values: np.ndarray, overwrite_input: bool = False) -> np.float64:
    """``np.median(values)`` of a 1-D array (flattened otherwise), to the last bit; with
    ``overwrite_input`` the values may be reordered (not changed), as NumPy's option."""
    x = np.asarray(values)
    n = x.size
    if n == 0 or x.dtype != np.float64:
        return np.median(x)
    middle = order_statistics(x, _middle(n), overwrite_input)
    if middle is None:  # NaN sorts last wherever it was: NumPy says NaN too
        return np.median(x)
    return np.mean(middle)


def median_and_median_above(
    values: np.ndarray, threshold: float
) -> tuple[np.float64, int, np.float64 | None]:
    """``np.median(values)``, the number of values above ``threshold`` and the median of
    those (``np.median(values[values > threshold])``, ``None`` when none is above), to the
    last bit, from one copy of ``values``: the values above the threshold are the last ones
    in sorted order, so their median is an order statistic of all the values."""
    x = np.asarray(values)
    n = x.size
    above = int(np.count_nonzero(x > threshold))
    if n == 0 or x.dtype != np.float64:
        upper = x[x > threshold]
        return np.median(x), above, np.median(upper) if above else None
    low = _middle(n)
    high = [n - above + k for k in _middle(above)] if above else []
    found = order_statistics(x, low + high)
    if found is None:
        upper = x[x > threshold]
        return np.median(x), above, np.median(upper) if above else None
    return (
        np.mean(found[: len(low)]),
        above,
        np.mean(found[len(low) :]) if above else None,
    )


def _percentile_positions(n: int, q: float) -> tuple[int, int, float]:
    """NumPy's ``linear`` percentile of ``n`` values: the two sorted positions interpolated
    between and the weight, computed as :func:`numpy.percentile` does."""
    quantile = np.true_divide(q, 100)
    virtual = (n - 1) * quantile
    if virtual >= n - 1:  # NumPy takes the last value twice, weighted from index -1
        return n - 1, n - 1, float(virtual - (-1))
    previous = math.floor(virtual)
    return previous, previous + 1, float(virtual - previous)


def _lerp(a: float, b: float, t: float) -> np.float64:
    """NumPy's interpolation between two order statistics (``numpy.lib`` ``_lerp``): from
    the lower one below half way, from the upper one from half way on."""
    low, high = np.float64(a), np.float64(b)
    diff = high - low
    if t >= 0.5:
        return np.float64(high - diff * (1 - t))
    return np.float64(low + diff * t)


def percentile(values: np.ndarray, q: float) -> np.float64:
    """``np.percentile(values, q)`` (method ``linear``, ``q`` a number in [0, 100]) of a 1-D
    array (flattened otherwise), to the last bit."""
    x = np.asarray(values)
    n = x.size
    if n == 0 or x.dtype != np.float64 or not 0 <= q <= 100:
        return np.percentile(x, q)
    below, above, weight = _percentile_positions(n, q)
    pair = order_statistics(x, [below, above])
    if pair is None:
        return np.percentile(x, q)
    return _lerp(pair[0], pair[1], weight)


def percentiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, qs)`` for a list of percentiles, to the last bit."""
    x = np.asarray(values)
    n = x.size
    if n == 0 or x.dtype != np.float64 or not all(0 <= q <= 100 for q in qs):
        return np.percentile(x, qs)
    spots = [_percentile_positions(n, q) for q in qs]
    found = order_statistics(x, [p for below, above, _ in spots for p in (below, above)])
    if found is None:
        return np.percentile(x, qs)
    return np.array(
        [_lerp(found[2 * i], found[2 * i + 1], w) for i, (_, _, w) in enumerate(spots)],
        dtype=np.float64,
    )
