"""Acquisition QC: can this tube support an analysis at all? Never gates.

A failed tube still produces a ``qc.json`` with its reasons, so the cohort goes on and the
sample is reported as ``qc_failed`` rather than silently missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from antigen_profile.ingest import Tube


@dataclass(frozen=True)
class QCSettings:
    """Limits from the config's ``qc`` section."""

    min_events: int = 5000
    max_saturated_fraction: float = 0.02

    @classmethod
    def from_config(cls, config: Mapping) -> QCSettings:
        qc = config["qc"]
        return cls(
            min_events=int(qc["min_events"]),
            max_saturated_fraction=float(qc["max_saturated_fraction"]),
        )


@dataclass
class QCResult:
    """Outcome of acquisition QC for one tube.

    Attributes
    ----------
    status : str
        ``pass``, ``warn`` (analysed, but a reviewer should look) or ``fail`` (not analysed).
    keep : numpy.ndarray
        Boolean mask of the events passed on to gating.
    """

    status: str
    events_total: int
    keep: np.ndarray
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def events_kept(self) -> int:
        return int(self.keep.sum())

    def to_json(self, sample_id: str, file: str) -> dict[str, Any]:
        """The ``qc.json`` document (see docs/outputs.md)."""
        return {
            "sample_id": sample_id,
            "file": file,
            "status": self.status,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "events_total": self.events_total,
            "events_kept": self.events_kept,
            "metrics": self.metrics,
        }


def failed_qc(reason: str) -> QCResult:
    """A QC result for a tube that could not be read or analysed."""
    return QCResult(status="fail", events_total=0, keep=np.zeros(0, dtype=bool), reasons=[reason])


def check_acquisition(tube: Tube, settings: QCSettings) -> QCResult:
    """Check event count, saturation and the presence of a spillover matrix."""
    n = tube.n_events
    reasons: list[str] = []
    notes: list[str] = []
    if n < settings.min_events:
        reasons.append(f"{n} events acquired, fewer than the minimum of {settings.min_events}")

    saturated: dict[str, float] = {}
    for i, channel in enumerate(tube.channels):
        top = tube.ranges.get(channel, float("nan"))
        if not np.isfinite(top) or top <= 0 or channel == tube.markers.get("Time"):
            continue
        # ranges hold the top of the scale in event units; allow float rounding below it
        share = float(np.count_nonzero(tube.events[:, i] >= top * (1 - 1e-7)) / n) if n else 0.0
        saturated[channel] = round(share, 6)
        if share > settings.max_saturated_fraction:
            notes.append(
                f"{channel}: {100 * share:.1f}% of events at the top of the scale (saturated)"
            )
    if tube.spillover is None:
        notes.append(
            "no spillover matrix in the file or config: fluorescence analysed uncompensated"
        )
    status = "fail" if reasons else ("warn" if notes else "pass")
    return QCResult(
        status=status,
        events_total=n,
        keep=np.ones(n, dtype=bool),
        reasons=reasons,
        warnings=notes + list(tube.warnings),
        metrics={"saturated_fraction": saturated, "spillover_source": tube.spillover_source},
    )
