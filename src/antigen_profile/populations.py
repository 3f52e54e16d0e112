"""The ``populations.tsv`` table, written the same way by both gating routes.

Our template and a lab's own gating name different gates but report the same columns
(docs/outputs.md), so the table is built once here.
"""

from __future__ import annotations

from collections.abc import Iterable

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
