"""The ``populations.tsv`` table, written the same way by both gating routes, and the values
of a population's events.

Our template and a lab's own gating name different gates but report the same columns
(docs/outputs.md), so the table is built once here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

POPULATION_COLUMNS = ["population", "parent", "events", "pct_parent", "pct_total"]


def percent(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole`` (4 decimals); NaN for an empty ``whole``."""
    return round(100.0 * part / whole, 4) if whole else float("nan")


def population_table(
    rows: Iterable[tuple[str, str | None, int, int]], n_total: int
) -> pd.DataFrame:
    """``populations.tsv`` from ``(population, parent, events, parent_events)`` rows, in
    gating order; ``n_total`` is every event the gating saw."""
    return pd.DataFrame(
        [
            {
                "population": name,
                "parent": parent or "",
                "events": events,
                "pct_parent": percent(events, parent_events),
                "pct_total": percent(events, n_total),
            }
            for name, parent, events, parent_events in rows
        ],
        columns=POPULATION_COLUMNS,
    )


#: Above this share of members :func:`masked` indexes by the mask itself.
DENSE_MASK = 0.85
#: :func:`kept` copies the stretches between dropped events when there are at most this many.
FEW_DROPPED = 4096


def masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` for a boolean ``mask`` as long as ``values`` (a population's events):
    the same values in the same order, taken through the events' indices unless nearly all
    are wanted (NumPy's boolean indexing mispredicts a branch per event when members and
    others mix; measured on 5 million events: half the time at 58% members, level at 80%,
    faster from about 85%)."""
    values, mask = np.asarray(values), np.asarray(mask, dtype=bool)
    if values.ndim != 1 or mask.shape != values.shape:
        return values[mask]
    if np.count_nonzero(mask) > DENSE_MASK * mask.size:
        return values[mask]
    return values.take(np.flatnonzero(mask))


def kept(values: np.ndarray, keep: np.ndarray, dropped: np.ndarray | None = None) -> np.ndarray:
    """``values[keep]`` for a boolean ``keep`` as long as ``values``; when only a few events
    are dropped, the stretches between them are copied as blocks instead of testing every
    event (the same values in the same order). ``dropped`` (``np.flatnonzero(~keep)``) saves
    finding them again for each of several arrays."""
    values, keep = np.asarray(values), np.asarray(keep, dtype=bool)
    if values.ndim != 1 or keep.shape != values.shape:
        return values[keep]
    if dropped is None:
        dropped = np.flatnonzero(~keep)
    if dropped.size > FEW_DROPPED:
        return values[keep]
    out = np.empty(values.size - dropped.size, dtype=values.dtype)
    start = done = 0
    for stop in [*dropped.tolist(), values.size]:
        out[done : done + stop - start] = values[start:stop]
        done += stop - start
        start = stop + 1
    return out
