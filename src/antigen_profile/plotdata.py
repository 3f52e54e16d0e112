"""What ``plotdata.npz`` holds: seeded subsamples of events in display scale.

The report draws each gate over its parent's events and each antigen's blasts against their
reference; a tube can hold millions of events, so both are drawn from at most
``report.max_plot_events`` of them, with fixed seeds so that a rerun draws the same picture
(see docs/outputs.md, ``plotdata.npz``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from antigen_profile.transforms import logicle

if TYPE_CHECKING:
    from antigen_profile.quantify import Reference

#: Seed of the gate plots' draws; the antigen plots draw with the next one.
PLOT_SEED = 20240611


def subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` events (seeded: reports repeat)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def add_gate_arrays(
    plot: dict[str, np.ndarray],
    gate_id: str,
    parent: np.ndarray,
    inside: np.ndarray,
    draw: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    limit: int,
    rng: np.random.Generator,
) -> None:
    """Add ``gate/{gate_id}/x``, ``/y`` and ``/inside`` to ``plot``: a draw of the gate's
    ``parent`` events, their display values from ``draw(index)`` (``y`` ``None`` for a 1-D
    gate) and whether each is ``inside`` the gate."""
    index = np.flatnonzero(parent)
    index = index[subsample(index.size, limit, rng)]
    x, y = draw(index)
    plot[f"gate/{gate_id}/x"] = x.astype(np.float32)
    if y is not None:
        plot[f"gate/{gate_id}/y"] = y.astype(np.float32)
    plot[f"gate/{gate_id}/inside"] = inside[index]


def antigen_plot_data(
    blasts: Mapping[str, np.ndarray],
    references: Mapping[str, Reference | None],
    table: pd.DataFrame,
    display: Mapping[str, Mapping[str, float]],
    limit: int,
) -> dict[str, np.ndarray]:
    """Subsampled antigen intensities (``blasts/``, ``reference/``, ``threshold/`` per
    marker) in display scale, each marker on its own logicle (``display``)."""
    rng = np.random.default_rng(PLOT_SEED + 1)
    arrays: dict[str, np.ndarray] = {}
    thresholds = table.set_index("marker")["threshold"]
    for marker, values in blasts.items():
        params = display[marker]
        arrays[f"blasts/{marker}"] = logicle(
            values[subsample(values.size, limit, rng)], params
        ).astype(np.float32)
        reference = references.get(marker)
        if reference is not None:
            ref = reference.values[subsample(reference.values.size, limit, rng)]
            arrays[f"reference/{marker}"] = logicle(ref, params).astype(np.float32)
        threshold = thresholds.get(marker)
        if threshold is not None and pd.notna(threshold):
            arrays[f"threshold/{marker}"] = logicle(np.array([float(threshold)]), params).astype(
                np.float32
            )
    return arrays


def mimic_plot_data(
    gate: Mapping[str, np.ndarray],
    kept: np.ndarray,
    display: Mapping[str, Mapping[str, float]],
    limit: int,
) -> dict[str, np.ndarray]:
    """The blast gate's events on CD34 (x) and CD123 (y) in display scale, and whether each
    stayed a blast (``mimics/``): the report's picture of the basophils and pDCs taken out."""
    if not {"CD34", "CD123"} <= set(gate) or not {"CD34", "CD123"} <= set(display):
        return {}
    index = subsample(kept.size, limit, np.random.default_rng(PLOT_SEED + 2))
    return {
        "mimics/CD34": logicle(gate["CD34"][index], display["CD34"]).astype(np.float32),
        "mimics/CD123": logicle(gate["CD123"][index], display["CD123"]).astype(np.float32),
        "mimics/kept": kept[index],
    }
