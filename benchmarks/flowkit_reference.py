"""A reference per-sample analysis written only with FlowKit's public API.

It answers the same questions as ``antigen_profile.pipeline.profile_sample`` for one tube, the
way a FlowKit user would: load the FCS file as a :class:`flowkit.Sample`, gate it with a
Gating-ML 2.0 file (the sample's exported ``gates.xml``, whose dimensions name the file's
detectors with ``compensation-ref="FCS"``: FlowKit compensates with the file's own
``$SPILLOVER`` and applies the logicle transform itself), compensate the events for the
statistics with the same spillover, then count every population and, per quantified marker on
the blasts, take the median and the events above a threshold.

Thresholds follow the pipeline's rule: the ``percentile`` (99.5) of the marker on its internal
negative population (config ``positivity.internal_negative``). A marker without one (CD38:
T/NK cells carry it) gets its threshold from a mixture model in the pipeline; the reference is
given that number (``model_thresholds``) instead of refitting the model, so both apply the
same threshold and the reference is, if anything, slightly cheaper than a full re-analysis.

Used by ``benchmarks/bench_sample.py`` (timing and memory) and
``tests/test_bench_agreement.py`` (the two analyses agree), so both share one reference.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The population the antigens are quantified on.
BLASTS = "blasts"


@dataclass
class MarkerStats:
    """One quantified marker on the blasts, as ``antigens.tsv`` reports it (unrounded)."""

    events: int
    median: float
    threshold: float | None
    threshold_source: str
    positive_events: int | None
    pct_positive: float | None


@dataclass
class ReferenceResult:
    """What the reference computed, and how long each step took (seconds)."""

    counts: dict[str, int]
    markers: dict[str, MarkerStats]
    #: Blasts negative for every assessable target: the all-targets row of coverage.tsv.
    uncovered_all: int | None
    assessed_targets: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (floats keep full precision through ``json``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReferenceResult:
        """The inverse of :meth:`to_json`."""
        markers = {m: MarkerStats(**s) for m, s in doc["markers"].items()}
        return cls(
            counts={str(k): int(v) for k, v in doc["counts"].items()},
            markers=markers,
            uncovered_all=doc["uncovered_all"],
            assessed_targets=list(doc["assessed_targets"]),
            seconds=dict(doc.get("seconds", {})),
        )


def _spillover_text(metadata: Mapping[str, str]) -> str:
    """The file's spillover keyword as FlowIO exposes it (lower case, no ``$``)."""
    for key in ("spillover", "spill", "comp"):
        if metadata.get(key, "").strip():
            return metadata[key]
    raise ValueError("the FCS file carries no spillover matrix ($SPILLOVER/SPILL/$COMP)")


def reference_profile(
    fcs: str | Path,
    gates_xml: str | Path,
    detectors: Mapping[str, str],
    quantified: Sequence[str],
    internal_negative: Mapping[str, str | None],
    percentile: float = 99.5,
    model_thresholds: Mapping[str, float] | None = None,
    targets: Sequence[str] = (),
) -> ReferenceResult:
    """Gate and quantify one FCS file with FlowKit.

    Parameters
    ----------
    fcs
        The stained tube.
    gates_xml
        Gating-ML 2.0 on the file's detectors (``gates.xml`` written by ``profile_sample``).
    detectors
        Marker -> ``$PnN`` detector (e.g. ``{"CD22": "PE-A"}``), taken from the panel
        description rather than from the pipeline's marker finder.
    quantified
        Markers to quantify on the blasts, in output order.
    internal_negative
        Marker -> population whose ``percentile`` sets the marker's threshold (``None``: no
        internal reference).
    percentile
        Reference percentile (config ``positivity.percentile``).
    model_thresholds
        Thresholds for markers whose cut-off comes from a model rather than a percentile.
    targets
        The trial's targets, for the blasts that no target covers.
    """
    import flowkit as fk

    model_thresholds = dict(model_thresholds or {})
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = fk.Sample(str(fcs), sample_id="reference")
        seconds["load"] = time.perf_counter() - start

        mark = time.perf_counter()
        strategy = fk.parse_gating_xml(str(gates_xml))
        results = strategy.gate_sample(sample)  # compensates ("FCS"), logicle, every gate
        seconds["gate"] = time.perf_counter() - mark

        mark = time.perf_counter()
        sample.apply_compensation(_spillover_text(sample.metadata))
        events = sample.get_events(source="comp")
        seconds["compensate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    report = results.report
    counts = {str(g): int(c) for g, c in zip(report["gate_name"], report["count"], strict=True)}
    blasts = np.asarray(results.get_gate_membership(BLASTS), dtype=bool)
    pnn = list(sample.pnn_labels)
    markers: dict[str, MarkerStats] = {}
    positive: dict[str, np.ndarray] = {}
    for marker in quantified:
        if marker not in detectors or detectors[marker] not in pnn:
            continue
        column = events[:, pnn.index(detectors[marker])]
        values = column[blasts]
        threshold: float | None = None
        source = "none"
        population = internal_negative.get(marker)
        if marker in model_thresholds:
            threshold, source = float(model_thresholds[marker]), "model"
        elif population:
            inside = np.asarray(results.get_gate_membership(population), dtype=bool)
            threshold = float(np.percentile(column[inside], percentile))
            source = f"internal:{population}"
        n = int(values.size)
        above = None if threshold is None else values > threshold
        count = None if above is None else int(np.count_nonzero(above))
        markers[marker] = MarkerStats(
            events=n,
            median=float(np.median(values)) if n else float("nan"),
            threshold=threshold,
            threshold_source=source,
            positive_events=count,
            pct_positive=None if count is None or not n else 100.0 * count / n,
        )
        if above is not None:
            positive[marker] = above
    assessed = [t for t in targets if t in positive]
    uncovered = None
    if assessed:
        covered = np.zeros(int(blasts.sum()), dtype=bool)
        for target in assessed:
            covered |= positive[target]
        uncovered = int(np.count_nonzero(~covered))
    seconds["statistics"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - start
    return ReferenceResult(counts, markers, uncovered, assessed, seconds)
