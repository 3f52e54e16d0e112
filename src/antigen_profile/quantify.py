"""Quantify: how many blasts carry each antigen, against a negative reference.

Pure functions on arrays of compensated intensities. A threshold comes from a reference
population known to be negative (the same gate in a control tube, else an internal negative
population); without a trustworthy reference, or with too few blasts, the row says so and
gives no number, because a wrong percentage is worse than none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile import orderstats
from antigen_profile.vocabulary import MEASURED_CALLS, Call, ReferenceSource

ANTIGEN_COLUMNS = [
    "sample_id",
    "population",
    "marker",
    "events",
    "positive_events",
    "pct_positive",
    "median",
    "rmfi",
    "threshold",
    "threshold_source",
    "call",
    "note",
    "pct_ci_low",
    "pct_ci_high",
    "intensity",
    "abc_median",
    "abc_q25",
    "abc_q75",
    "low_density",
]
#: Antigen density from calibration beads (molecules per blast), filled where calibrated.
DENSITY_COLUMNS = ["abc_median", "abc_q25", "abc_q75", "low_density"]


@dataclass(frozen=True)
class Reference:
    """Intensities of a population taken as negative for one marker, and where it came from
    (``control:blasts``, ``internal:lymphocytes``, ``mixture:blasts``). ``threshold`` is set
    when the cut-off comes from a model rather than from the values' percentile."""

    values: np.ndarray
    source: str
    threshold: float | None = None


@dataclass(frozen=True)
class PositivitySettings:
    """The numbers every call depends on; printed in every report."""

    percentile: float = 99.5
    partial: float = 20.0
    positive: float = 80.0
    detect_floor: int = 20
    quantify_floor: int = 50
    min_reference_events: int = 200
    bright_rmfi: float = 10.0
    confidence: float = 0.95
    #: Internal negative population per antigen (``None``: none is valid, e.g. CD38).
    internal_negative: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping) -> PositivitySettings:
        pos, floors = config["positivity"], config["floors"]
        return cls(
            percentile=float(pos["percentile"]),
            partial=float(pos["call_limits"]["partial"]),
            positive=float(pos["call_limits"]["positive"]),
            detect_floor=int(floors["detect"]),
            quantify_floor=int(floors["quantify"]),
            min_reference_events=int(pos["min_reference_events"]),
            bright_rmfi=float(pos["intensity"]["bright_rmfi"]),
            internal_negative=dict(pos.get("internal_negative") or {}),
        )


def call_from_pct(pct_positive: float, settings: PositivitySettings) -> Call:
    """Bethesda-style category for a share of positive blasts."""
    if pct_positive >= settings.positive:
        return Call.POSITIVE
    if pct_positive >= settings.partial:
        return Call.PARTIAL
    return Call.NEGATIVE


def quantify_marker(
    blasts: np.ndarray, reference: Reference | None, settings: PositivitySettings
) -> dict[str, object]:
    """One antigen on one population: the ``antigens.tsv`` fields after ``marker``."""
    values = np.asarray(blasts, dtype=np.float64)
    n = int(values.size)
    row: dict[str, object] = {
        "events": n,
        "positive_events": None,
        "pct_positive": None,
        "median": None,
        "rmfi": None,
        "threshold": None,
        "threshold_source": reference.source if reference is not None else ReferenceSource.NONE,
        "call": None,
        "note": "",
    }
    if n < settings.quantify_floor:
        detected = "detected" if n >= settings.detect_floor else "not detected"
        row["call"] = Call.INSUFFICIENT_EVENTS
        row["note"] = (
            f"{n} blast events: {detected}, below the quantification floor of "
            f"{settings.quantify_floor}"
        )
        return row
    ref = None if reference is None else np.asarray(reference.values, dtype=np.float64)
    if ref is None or ref.size < settings.min_reference_events:
        row["median"] = round(float(orderstats.median(values)), 2)
        if reference is None:
            row["call"] = Call.NO_REFERENCE
            row["note"] = (
                "no control tube and no valid internal negative population for this antigen"
            )
            return row
        row["call"] = Call.NO_REFERENCE
        row["note"] = (
            f"reference {reference.source} has {ref.size} events, fewer than the "
            f"{settings.min_reference_events} needed for a {settings.percentile}th percentile"
        )
        return row
    assert reference is not None
    threshold = reference_threshold(reference, settings.percentile)
    # the median, the positives and their median from one partition of the blasts
    whole, positive, upper = orderstats.median_and_median_above(values, threshold)
    median = float(whole)
    row["median"] = round(median, 2)
    # Call on the number that is written, so the table never shows 20.0% called negative.
    pct = round(100.0 * positive / n, 2)
    low, high = binomial_interval(positive, n, settings.confidence)
    ref_median = float(orderstats.median(ref))
    call = call_from_pct(pct, settings)
    row.update(
        positive_events=positive,
        pct_positive=pct,
        threshold=round(threshold, 2),
        call=call,
        pct_ci_low=round(low, 2),
        pct_ci_high=round(high, 2),
    )
    if ref_median > 0:
        rmfi = median / ref_median
        row["rmfi"] = round(rmfi, 2)
        if call != Call.NEGATIVE:
            # The positive blasts' own median against the reference says how much antigen
            # they carry; the whole-population median would mix in the negatives.
            # (none above a zero call limit: NaN, as NumPy's median of nothing, reads dim)
            bright = (float("nan") if upper is None else float(upper)) / ref_median
            row["intensity"] = "bright" if bright >= settings.bright_rmfi else "dim"
    else:
        row["note"] = "reference median is not above zero, so no rMFI"
    if reference.source == ReferenceSource.MIXTURE:
        row["note"] = (
            "threshold from a two-component mixture fit on the blasts themselves (no control "
            "tube, no valid internal negative): the weakest reference; confirm with a control"
        )
    return row


def reference_threshold(reference: Reference, percentile: float) -> float:
    """The positivity cut-off a reference gives: its model threshold when it carries one,
    else its ``percentile``. The one rule antigens.tsv and the coverage table both use."""
    if reference.threshold is not None:
        return float(reference.threshold)
    return float(orderstats.percentile(np.asarray(reference.values, dtype=np.float64), percentile))


def measured_thresholds(
    blasts: Mapping[str, np.ndarray],
    references: Mapping[str, Reference | None],
    settings: PositivitySettings,
    markers: Sequence[str],
) -> dict[str, float | None]:
    """Per marker, the threshold its :func:`antigen_table` row is called on, or None where
    the row carries no measurement (not in the panel, too few blasts, no reference or too
    small a one): what :func:`~antigen_profile.coverage.thresholds_from_references` reads
    back from that table, without computing the table (the blasts' medians)."""
    thresholds: dict[str, float | None] = {}
    for marker in markers:
        reference = references.get(marker)
        measured = (
            marker in blasts
            and np.asarray(blasts[marker]).size >= settings.quantify_floor
            and reference is not None
            and np.asarray(reference.values).size >= settings.min_reference_events
        )
        thresholds[marker] = (
            reference_threshold(reference, settings.percentile)
            if measured and reference is not None
            else None
        )
    return thresholds


def clopper_pearson(
    successes: np.ndarray | int, n: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided binomial interval (proportions) for each count in ``successes``.

    Exact rather than normal-approximate: shares near 0 or 100% (escape, negative antigens)
    are where the normal interval undercovers and leaves [0, 1].
    """
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def binomial_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """:func:`clopper_pearson` for one share, in %: how sure a percentage from ``n`` events
    can be (Poisson CV ~ 10% at 100 events, 22% at 20)."""
    low, high = clopper_pearson(successes, n, confidence)
    return 100 * float(low), 100 * float(high)


def mixture_reference(
    values: np.ndarray, logicle_params: Mapping[str, float], settings: PositivitySettings
) -> Reference | None:
    """A negative reference from the blasts themselves, when nothing better exists.

    A two-component Gaussian mixture on the logicle scale; the lower component is the
    negative one, and the threshold is its ``percentile`` (mean + z x sd) back on the linear
    scale. Returns ``None`` when the blasts are not clearly bimodal for this antigen: one
    population cannot say whether it is positive or negative.
    """
    from scipy.stats import norm
    from sklearn.mixture import GaussianMixture

    from antigen_profile.transforms import logicle, logicle_inverse

    values = np.asarray(values, dtype=np.float64)
    if values.size < settings.min_reference_events:
        return None
    rng = np.random.default_rng(20240611)
    # only the fitted sample is transformed: the same draw as choosing from every transformed
    # value (Generator.choice picks indices either way), at 20,000 values instead of millions
    picked = values if values.size <= 20_000 else values[rng.choice(values.size, 20_000, False)]
    sample = logicle(picked, logicle_params)
    model = GaussianMixture(2, random_state=0).fit(sample.reshape(-1, 1))
    means = model.means_.ravel()
    sds = np.sqrt(model.covariances_.ravel())
    lo, hi = int(np.argmin(means)), int(np.argmax(means))
    separated = means[hi] - means[lo] >= 2.5 * max(sds[lo], sds[hi])
    if not separated or model.weights_.min() < 0.02:
        return None
    z = float(norm.ppf(settings.percentile / 100))
    threshold = float(logicle_inverse(np.array([means[lo] + z * sds[lo]]), logicle_params)[0])
    negative = mixture_labels(values, model, logicle_params) == lo
    return Reference(values[negative], ReferenceSource.MIXTURE, threshold)


#: Half-width (logicle units, times the boundary's size when above 1) of the band around each
#: label boundary whose events :func:`mixture_labels` hands to the model itself: a million
#: times the transforms' round trip and the boundary's rounding, far narrower than any
#: population (the scale is about 0..1 over the data), so it holds a handful of events.
BOUNDARY_BAND = 1e-6
#: Events beyond this intensity are labelled by the model itself: flowutils' logicle gives -1
#: above about 1e150 (as for NaN and infinities), so it no longer rises there.
TRUSTED_INTENSITY = 1e100
#: Events labelled per step by :func:`mixture_labels`: bounds its temporaries (a few MiB).
LABEL_BLOCK = 1 << 16
#: Below this slope of the log-density ratio at the boundaries (``sqrt`` of the discriminant),
#: the two weighted densities nearly touch and the boundaries are ill-conditioned: every
#: event is then labelled by the model.
MIN_BOUNDARY_SLOPE = 1e-4


def _label_boundaries(model: Any) -> np.ndarray | None:
    """Where a fitted 1-D two-component mixture changes label: the real roots (sorted, at
    most two) of log(w0 N0(y)) - log(w1 N1(y)) = a y^2 + b y + c, or ``None`` when they
    cannot be trusted (the densities nearly touch)."""
    mean = model.means_.ravel()
    var = model.covariances_.ravel()
    weight = model.weights_.ravel()
    a = 0.5 / var[1] - 0.5 / var[0]
    b = mean[0] / var[0] - mean[1] / var[1]
    c = (
        0.5 * mean[1] ** 2 / var[1]
        - 0.5 * mean[0] ** 2 / var[0]
        + math.log(weight[0] / math.sqrt(var[0]))
        - math.log(weight[1] / math.sqrt(var[1]))
    )
    if a == 0.0:  # equal variances: one boundary (slope b), none when the means are equal too
        if b == 0.0:
            return np.empty(0)
        return None if abs(b) < MIN_BOUNDARY_SLOPE else np.array([-c / b])
    discriminant = b * b - 4.0 * a * c
    if abs(discriminant) < MIN_BOUNDARY_SLOPE**2:
        return None
    if discriminant < 0:
        return np.empty(0)
    q = -0.5 * (b + math.copysign(math.sqrt(discriminant), b))  # no cancellation
    roots = np.array([q / a, c / q])
    return np.sort(roots[np.isfinite(roots)])


def mixture_labels(values: np.ndarray, model: Any, params: Mapping[str, float]) -> np.ndarray:
    """``model.predict(logicle(values))`` of a 1-D two-component mixture fitted on the logicle
    scale, without transforming and scoring every event (0.47 s -> ~0.02 s for 2.9e6 blasts).

    Two weighted Gaussian densities are equal at most at two points, so the label changes
    only there. They are solved for once, mapped to linear intensities with
    :func:`logicle_inverse` (the logicle rises monotonically), and every event is labelled by
    comparison. Events within :data:`BOUNDARY_BAND` of a boundary, where rounding could tip
    the model either way, or beyond :data:`TRUSTED_INTENSITY` (and NaN), are labelled by
    ``model.predict`` itself, as are all events when the boundaries cannot be trusted: the
    labels are exactly the model's.
    """
    from antigen_profile.transforms import logicle, logicle_inverse

    x = np.asarray(values, dtype=np.float64).reshape(-1)

    def predict(y: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(y, dtype=np.float64).reshape(-1, 1)))

    roots = _label_boundaries(model)
    if roots is None:
        return predict(logicle(x, params))
    bands: list[list[float]] = []
    for root in roots:
        half = BOUNDARY_BAND * max(1.0, abs(float(root)))
        if bands and root - half <= bands[-1][1]:
            bands[-1][1] = root + half  # two boundaries closer than the band: one band
        else:
            bands.append([root - half, root + half])
    edges = np.array([y for band in bands for y in band], dtype=np.float64)
    outside = [edges[0] - 1.0] if bands else [0.0]  # a probe in each label-constant stretch
    outside += [(edges[i] + edges[i + 1]) / 2 for i in range(1, edges.size - 1, 2)]
    outside += [edges[-1] + 1.0] if bands else []
    stretch_labels = predict(np.array(outside))
    if not bands:
        return np.full(x.size, stretch_labels[0], dtype=stretch_labels.dtype)
    limit = 2 * TRUSTED_INTENSITY  # edges beyond it do not matter: those events ask the model
    linear = np.clip(logicle_inverse(edges, params), -limit, limit)
    if np.isnan(linear).any() or np.any(np.diff(linear) < 0):
        return predict(logicle(x, params))
    labels = np.empty(x.size, dtype=stretch_labels.dtype)
    asked: list[np.ndarray] = []
    for first in range(0, x.size, LABEL_BLOCK):  # bounded temporaries
        block = x[first : first + LABEL_BLOCK]
        # how many edges lie at or below each event: even between bands (label known),
        # odd inside a band (ask the model); a comparison per edge beats a binary search
        position = np.zeros(block.size, dtype=np.uint8)
        for edge in linear:
            position += block >= edge
        labels[first : first + LABEL_BLOCK] = stretch_labels[position >> 1]
        ask = (position & 1).astype(bool)
        ask |= ~(np.abs(block) <= TRUSTED_INTENSITY)
        asked.append(first + np.flatnonzero(ask))
    in_band = np.concatenate(asked) if asked else np.empty(0, dtype=np.intp)
    if in_band.size:
        labels[in_band] = predict(logicle(x[in_band], params))
    return labels


def antigen_table(
    sample_id: str,
    blasts: Mapping[str, np.ndarray],
    references: Mapping[str, Reference | None],
    settings: PositivitySettings,
    markers: Sequence[str],
    population: str = "blasts",
    not_measured: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The ``antigens.tsv`` table: one row per quantified marker, in ``markers`` order.

    A marker absent from the panel still gets a row (call ``not_in_panel``), so a reader
    never mistakes a missing stain for a negative one; one whose only detector it shares
    with another antigen (``not_measured``: marker -> why) gets call ``not_measured``.
    """
    rows = []
    not_measured = not_measured or {}
    for marker in markers:
        base = {"sample_id": sample_id, "population": population, "marker": marker}
        if marker not in blasts and marker in not_measured:
            rows.append(
                {
                    **base,
                    "events": None,
                    "threshold_source": ReferenceSource.NONE,
                    "call": Call.NOT_MEASURED,
                    "note": not_measured[marker],
                }
            )
            continue
        if marker not in blasts:
            rows.append(
                {
                    **base,
                    "events": None,
                    "threshold_source": ReferenceSource.NONE,
                    "call": Call.NOT_IN_PANEL,
                    "note": f"{marker} is not in this tube's panel",
                }
            )
            continue
        rows.append({**base, **quantify_marker(blasts[marker], references.get(marker), settings)})
    table = pd.DataFrame(rows, columns=ANTIGEN_COLUMNS)
    for column in ("events", "positive_events"):
        table[column] = table[column].astype("Int64")
    return table


def lineage_flags(table: pd.DataFrame, b_lineage: Sequence[str]) -> list[dict[str, str]]:
    """Flag blasts that carry none of the B-lineage markers measured: after CD19-directed
    therapy a lineage switch (to myeloid) is a known escape and must not be reported as a
    plain "no target"."""
    rows = table[table["marker"].isin(list(b_lineage))]
    measured = rows[rows["call"].isin(list(MEASURED_CALLS))]
    if measured.empty or (measured["call"] != Call.NEGATIVE).any():
        return []
    markers = ", ".join(measured["marker"])
    return [
        {
            "code": "possible_lineage_switch",
            "message": f"blasts are negative for every B-lineage marker measured ({markers}); "
            "consider a lineage switch and review the myeloid markers",
        }
    ]


POSITIVE_CONTROL_COLUMNS = [
    "target",
    "population",
    "expected",
    "events",
    "positive_events",
    "pct_positive",
    "threshold",
    "note",
]


def positive_controls(
    data: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float | None],
    carriers: Mapping[str, Mapping[str, str | None]],
) -> pd.DataFrame:
    """Normal populations known to carry a target, measured with the blasts' own threshold:
    if T/NK cells are not CD38-positive above it, or neutrophils not CD10-positive, the stain
    or the threshold is suspect, whatever the blasts show. ``carriers`` maps a target to
    ``{population, expected}`` (config ``positive_controls``)."""
    rows = []
    for target, spec in carriers.items():
        population = spec.get("population")
        row: dict[str, object] = {
            "target": target,
            "population": population or "",
            "expected": spec.get("expected", ""),
            "events": None,
            "positive_events": None,
            "pct_positive": None,
            "threshold": None,
            "note": "",
        }
        threshold = thresholds.get(target)
        if threshold is not None:
            row["threshold"] = round(float(threshold), 2)
        if not population or population not in masks:
            row["note"] = "no gated normal population carries this target in this panel"
        elif target not in data:
            row["note"] = f"{target} is not in this tube's panel"
        elif threshold is None:
            row["note"] = f"no threshold for {target}, so nothing to check"
        else:
            # counted over the population's mask, without taking its values out
            members = np.asarray(masks[population], dtype=bool)
            above = np.asarray(data[target]) > threshold
            above &= members
            size = int(np.count_nonzero(members))
            positive = int(np.count_nonzero(above))
            row.update(
                events=size,
                positive_events=positive,
                pct_positive=round(100.0 * positive / size, 2) if size else None,
            )
            if not size:
                row["note"] = f"no {population} events"
        rows.append(row)
    table = pd.DataFrame(rows, columns=POSITIVE_CONTROL_COLUMNS)
    for column in ("events", "positive_events"):
        table[column] = table[column].astype("Int64")
    return table
