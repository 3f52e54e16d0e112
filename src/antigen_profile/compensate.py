"""Compensation: remove spillover between fluorescence detectors.

Pure functions on arrays. The FCS convention stores the spillover matrix ``S`` with source
dyes as rows and detectors as columns, so observed = true @ S and true = observed @ inv(S).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


class CompensationError(ValueError):
    """A spillover matrix that cannot be applied to the tube."""


def compensate(
    events: np.ndarray, channels: Sequence[str], spillover: pd.DataFrame | None
) -> np.ndarray:
    """Return compensated events (a new array); channels outside the matrix are unchanged.

    One matrix product with the inverse, rather than a linear solve per call: the inverse
    of a small (n <= 50) spillover matrix is exact to float64 precision and the product is
    several times faster on millions of events.
    """
    out = np.array(events, dtype=np.float64, copy=True)
    if spillover is None or spillover.empty:
        return out
    detectors = [str(c) for c in spillover.columns]
    if list(spillover.index) != detectors:
        raise CompensationError("spillover matrix rows and columns name different detectors")
    missing = [d for d in detectors if d not in channels]
    if missing:
        raise CompensationError(f"spillover names detectors not in the tube: {', '.join(missing)}")
    matrix = spillover.to_numpy(dtype=np.float64)
    if np.linalg.cond(matrix) > 1e8:
        raise CompensationError("spillover matrix is singular and cannot be inverted")
    columns = [list(channels).index(d) for d in detectors]
    out[:, columns] = out[:, columns] @ np.linalg.inv(matrix)
    return out
