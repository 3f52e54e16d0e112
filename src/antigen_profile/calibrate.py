"""Calibrate: bead files turn a detector's intensities into molecules (MEF, or ABC for PE).

Why: an intensity depends on the instrument, its voltages and the day; a number of molecules
does not. Antigen density matters above all for CD22 (relapses after CD22 CAR-T came with lower
CD22 site density, Fry et al., Nat Med 2018), and no published cut-off exists, so the pipeline
shows density in molecules per cell and flags "low density" against a configured limit.

The steps, each a plain function:

1. :func:`find_bead_peaks` finds the bead populations of one bead file: singlet beads are the
   densest region of FSC/SSC; the populations are the modes of the fluorescence (optionally
   helped by further channels where the dim peaks separate better), refined by a Gaussian
   mixture on a log/asinh scale. Peaks at the top of the scale, at its floor, or with too few
   events are flagged and left out of the fit.
2. :func:`fit_standard_curve` fits log(intensity) against log(molecules), either as a straight
   line (``loglog``, the QuantiBRITE convention ``log10(MFI) = a + b log10(PE/bead)``) or with a
   bead autofluorescence term (``autofluorescence``: ``log10(MEF + A) = c + m log10(I)``, the
   bead model FlowCal uses for multi-peak MEF beads). Every peak's predicted value is compared
   with its stated value; a curve that misses a peak, fits badly or rests on too few peaks is
   refused (``ok=False`` and a one-line reason) and cannot convert anything.
3. :meth:`StandardCurve.to_molecules` converts a channel's intensities, and
   :func:`density_summary` gives median and quartiles (``abc_median``, ``abc_q25``,
   ``abc_q75`` in ``antigens.tsv``); :mod:`antigen_profile.density` applies the curves to a
   sample's blasts.

QuantiBRITE-style PE beads (four levels) state PE molecules per bead; the ABC (antibodies bound
per cell) of a cell is then its PE molecules per cell, which assumes one PE per antibody (true
for the 1:1 PE conjugates the method was designed for, not for tandem or multi-PE reagents).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from antigen_profile.errors import AntigenProfileError

__all__ = [
    "MODELS",
    "BeadPeaks",
    "CalibrationError",
    "CalibrationSettings",
    "Peak",
    "StandardCurve",
    "calibrate_file",
    "densest_region",
    "density_fields",
    "density_summary",
    "find_bead_peaks",
    "fit_standard_curve",
    "settings_mismatch",
]

#: Standard-curve models: a straight log-log line, or the bead model with autofluorescence.
MODELS = ("loglog", "autofluorescence")
#: Scatter detector names tried, in order, when a bead file's scatter channels are not given.
SCATTER_NAMES = {
    "FSC": ("FSC-A", "FSC", "FS INT", "FSC-INT", "FS-A", "FSC-H", "FS PEAK", "FSC-PEAK"),
    "SSC": ("SSC-A", "SSC", "SS INT", "SSC-INT", "SS-A", "SSC-H", "SS PEAK", "SSC-PEAK"),
}
_LN10 = math.log(10.0)
_EDGE_SD = 2.5  # a peak whose median + 2.5 robust SD reaches the scale top is not trusted
_CLIP_TOL = 1e-6


class CalibrationError(AntigenProfileError):
    """A bead file or standard curve that cannot be used; the message is one line."""


# --------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """log10 for strictly positive data (log-amplified detectors), else asinh in decades."""

    cofactor: float | None  # None: log10

    @classmethod
    def for_values(cls, values: np.ndarray, cofactor: float | None = None) -> _Scale:
        if cofactor is not None:
            return cls(float(cofactor))
        if values.size and float(np.min(values)) > 0:
            return cls(None)
        low = float(np.percentile(values, 0.5)) if values.size else 0.0
        return cls(max(1.0, abs(low)))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.cofactor is None:
            return np.log10(np.maximum(values, np.finfo(float).tiny))
        return np.arcsinh(values / self.cofactor) / _LN10

    def inverse(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.cofactor is None:
            return 10**values
        return np.sinh(values * _LN10) * self.cofactor

    def describe(self) -> str:
        return "log10" if self.cofactor is None else f"asinh(x/{self.cofactor:g})/ln10"


# --------------------------------------------------------------------------------------------
# Bead peaks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peak:
    """One bead population on the calibrated channel.

    ``rcv`` is the robust CV in percent (half the 15.87-84.13 percentile range over the
    median). ``excluded`` says why the peak cannot be used in a fit ("" when it can).
    """

    median: float
    rcv: float
    events: int
    clipped_share: float
    saturated: bool
    at_floor: bool
    too_few: bool
    excluded: str

    @property
    def usable(self) -> bool:
        return not self.excluded

    def to_json(self) -> dict[str, Any]:
        return {
            "median": _num(self.median),
            "rcv_pct": _num(self.rcv, 2),
            "events": self.events,
            "clipped_share": _num(self.clipped_share, 4),
            "saturated": self.saturated,
            "at_floor": self.at_floor,
            "too_few_events": self.too_few,
            "excluded": self.excluded,
        }


@dataclass
class BeadPeaks:
    """The bead populations of one channel, dimmest first, with how they were found.

    ``labels`` gives each input event its peak index (-1: outside the singlet gate, or not
    finite). ``found_modes`` is the number of distinct modes seen before the mixture was
    fitted; fewer than ``n_peaks`` means a population is missing or two merge, and the peaks
    cannot be matched to stated values with confidence.
    """

    peaks: list[Peak]
    n_events: int
    n_singlets: int
    found_modes: int
    scale: str
    labels: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def n_peaks(self) -> int:
        return len(self.peaks)

    @property
    def medians(self) -> np.ndarray:
        return np.array([p.median for p in self.peaks], dtype=np.float64)

    @property
    def usable(self) -> np.ndarray:
        return np.array([p.usable for p in self.peaks], dtype=bool)

    @property
    def missing_modes(self) -> bool:
        return self.found_modes < self.n_peaks

    def to_json(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_singlets": self.n_singlets,
            "found_modes": self.found_modes,
            "scale": self.scale,
            "peaks": [p.to_json() for p in self.peaks],
            "warnings": list(self.warnings),
        }


def densest_region(
    points: np.ndarray, fraction: float = 0.5, bins: int = 64, smooth: float = 1.5
) -> np.ndarray:
    """Events in the densest connected region of a 2-D scatter that holds ``fraction`` of them.

    Singlet beads are uniform and form the tightest cloud on FSC/SSC; debris, doublets and
    aggregates are sparse around it. A smoothed 2-D histogram ranks events by local density;
    the densest ``fraction`` are kept, restricted to the connected region around the highest
    density so a second cloud (doublets) is not taken along.
    """
    from scipy import ndimage

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError("points must be n x 2 (FSC, SSC)")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be within (0, 1], got {fraction}")
    finite = np.all(np.isfinite(pts), axis=1)
    keep = np.zeros(len(pts), dtype=bool)
    if finite.sum() < 10:
        return finite
    lo = np.percentile(pts[finite], 0.5, axis=0)
    hi = np.percentile(pts[finite], 99.5, axis=0)
    if np.any(hi <= lo):
        return finite
    inside = finite & np.all((pts >= lo) & (pts <= hi), axis=1)
    idx = np.clip(((pts[inside] - lo) / (hi - lo) * bins).astype(int), 0, bins - 1)
    hist = np.zeros((bins, bins))
    np.add.at(hist, (idx[:, 0], idx[:, 1]), 1.0)
    density = ndimage.gaussian_filter(hist, smooth, mode="constant")
    event_density = density[idx[:, 0], idx[:, 1]]
    n_keep = max(1, min(len(event_density), round(fraction * finite.sum())))
    threshold = np.sort(event_density)[::-1][n_keep - 1]
    regions, _ = ndimage.label(density >= threshold)
    top = np.unravel_index(int(np.argmax(density)), density.shape)
    chosen = (event_density >= threshold) & (regions[idx[:, 0], idx[:, 1]] == regions[top])
    keep[np.flatnonzero(inside)[chosen]] = True
    return keep


def _principal_axis(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit first principal axis of ``x``, oriented to increase with column 0.

    Bead levels lie on a line across channels (every dye scales with the bead's load), so the
    first axis orders them and separates the dim peaks that one channel alone may merge.
    """
    if x.shape[1] == 1:
        return np.ones(1)
    sample = x if len(x) <= 20_000 else x[rng.choice(len(x), 20_000, replace=False)]
    centred = sample - sample.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axis = vt[0]
    return -axis if axis[0] < 0 else axis


def _modes(proj: np.ndarray, n: int, min_prominence: float) -> tuple[np.ndarray, int]:
    """Up to ``n`` mode positions of a 1-D sample (ascending) and how many distinct modes exist.

    A histogram (bins of 0.005 log units, at most 2048) is smoothed and put on a square-root
    scale, where Poisson noise is about the same for large and small peaks, so a small bead
    population is not drowned by a big one; the ``n`` most prominent maxima win. Missing modes
    are filled at equal-count quantiles (the caller is told how many were real).
    """
    from scipy import ndimage, signal

    lo, hi = float(np.min(proj)), float(np.max(proj))
    span = max(hi - lo, 1e-9)
    n_bins = int(np.clip(math.ceil(span / 0.005), 64, 2048))
    hist, edges = np.histogram(proj, bins=n_bins, range=(lo, hi + 1e-12 * span))
    centres = 0.5 * (edges[:-1] + edges[1:])
    smooth = np.sqrt(ndimage.gaussian_filter1d(hist.astype(float), 2.0, mode="constant"))
    pad = 3
    padded = np.pad(smooth, pad)  # a pile at the scale's top or floor is a mode too
    found, props = signal.find_peaks(padded, prominence=min_prominence)
    found = found - pad
    prominence = props["prominences"]
    inside = (found >= 0) & (found < n_bins)
    found, prominence = found[inside], prominence[inside]
    n_found = len(found)
    best = np.sort(found[np.argsort(prominence)[::-1][:n]])
    positions = list(centres[best])
    if len(positions) < n:
        quantiles = np.quantile(proj, (np.arange(n) + 0.5) / n)
        for q in quantiles:
            if len(positions) >= n:
                break
            gap = min((abs(q - p) for p in positions), default=np.inf)
            if gap > 0.02:
                positions.append(float(q))
        while len(positions) < n:  # degenerate data: spread the rest evenly
            positions.append(lo + span * (len(positions) + 0.5) / n)
    return np.sort(np.asarray(positions)), n_found


def _mixture_labels(x: np.ndarray, axis: np.ndarray, centres: np.ndarray, seed: int) -> np.ndarray:
    """Refine the modes with a Gaussian mixture (full covariances) and label every event.

    Initialised from the modes (events split at the midpoints between them), so the fit is
    deterministic and keeps small populations that a random or equal-count start would lose.
    """
    from sklearn.mixture import GaussianMixture

    n, k = len(centres), x.shape[1]
    proj = x @ axis
    cuts = 0.5 * (centres[:-1] + centres[1:])
    groups = np.searchsorted(cuts, proj)
    global_cov = np.atleast_2d(np.cov(x, rowvar=False)) * 0.01 + np.eye(k) * 1e-4
    means, precisions, weights = [], [], []
    for i in range(n):
        member = x[groups == i]
        if len(member) >= max(5, k + 2):
            means.append(member.mean(axis=0))
            cov = np.atleast_2d(np.cov(member, rowvar=False)) + np.eye(k) * 1e-4
        else:
            means.append(x[np.argmin(np.abs(proj - centres[i]))])
            cov = global_cov
        precisions.append(np.linalg.inv(cov))
        weights.append(max(len(member), 1))
    weight = np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    fit_on = x if len(x) <= 60_000 else x[rng.choice(len(x), 60_000, replace=False)]
    try:
        model = GaussianMixture(
            n,
            covariance_type="full",
            weights_init=weight / weight.sum(),
            means_init=np.asarray(means),
            precisions_init=np.asarray(precisions),
            reg_covar=1e-4,
            max_iter=300,
            random_state=seed,
        ).fit(fit_on)
    except (ValueError, np.linalg.LinAlgError):
        return groups  # the mode split itself is a usable, if cruder, assignment
    rank = np.argsort(np.argsort(model.means_ @ axis))  # component -> position, dimmest first
    return rank[model.predict(x)]


def _grouped_median(t: np.ndarray) -> float:
    """Median of ``t``, interpolated within its level when the data are discrete.

    A 10-bit log amplifier records about 250 levels per decade, so a plain median snaps to a
    level (1% steps) and moves a whole step with one event; treating each level as a bin and
    interpolating inside the median's bin (the grouped-data median) removes that jitter.
    Continuous data (mostly distinct values) get the plain median.
    """
    levels, counts = np.unique(t, return_counts=True)
    if len(levels) < 2 or len(levels) > 0.5 * len(t):
        return float(np.median(t))
    cum = np.cumsum(counts)
    half = 0.5 * len(t)
    k = int(np.searchsorted(cum, half))
    low = 0.5 * (levels[k - 1] + levels[k]) if k > 0 else levels[0] - 0.5 * (levels[1] - levels[0])
    high = (
        0.5 * (levels[k] + levels[k + 1])
        if k < len(levels) - 1
        else levels[k] + 0.5 * (levels[k] - levels[k - 1])
    )
    below = float(cum[k - 1]) if k > 0 else 0.0
    return float(low + (half - below) / counts[k] * (high - low))


def _robust_cv(values: np.ndarray) -> float:
    if values.size < 2:
        return float("nan")
    p16, p50, p84 = np.percentile(values, [15.87, 50.0, 84.13])
    return float(100.0 * 0.5 * (p84 - p16) / p50) if p50 > 0 else float("nan")


def find_bead_peaks(
    values: np.ndarray,
    n_peaks: int,
    *,
    cluster_values: np.ndarray | None = None,
    scatter: np.ndarray | None = None,
    top: float | None = None,
    singlet_fraction: float = 0.5,
    min_events: int = 100,
    saturation_share: float = 0.01,
    edge_share: float = 0.015,
    min_prominence: float = 1.5,
    cofactor: float | None = None,
    seed: int = 0,
) -> BeadPeaks:
    """Find exactly ``n_peaks`` bead populations on one channel of a bead file.

    Parameters
    ----------
    values : numpy.ndarray
        The calibrated channel's intensities, one per event.
    n_peaks : int
        Number of bead populations (the lot's number of stated values, blank included).
    cluster_values : numpy.ndarray, optional
        ``n x k`` further channels used to tell the populations apart (not reported): rainbow
        beads separate their dim peaks better in some channels (FlowCal clusters on FL1 and
        FL3 to calibrate FL1).
    scatter : numpy.ndarray, optional
        ``n x 2`` FSC/SSC; singlet beads are its densest region (:func:`densest_region`).
    top : float, optional
        The top of the channel's scale (``FCSData.scale_tops``); events at it are clipped.
        Without it the largest value seen stands in, and only a pile-up of events at it
        flags a peak saturated.
    singlet_fraction : float
        Share of events kept by the singlet gate.
    min_events : int
        A peak with fewer events is flagged (its median would be too noisy) and not used.
    saturation_share : float
        A peak with at least this share of its events at ``top`` is flagged saturated.
    edge_share : float
        A peak whose median plus 2.5 robust SDs comes within this share of the scale's
        (transformed) span of ``top`` is flagged saturated too: near the top a detector or a
        log amplifier is no longer linear (FlowCal leaves such peaks out the same way).
    min_prominence : float
        Prominence (square-root count units of the smoothed histogram) a mode needs.
    cofactor : float, optional
        asinh cofactor for data with zeros or negatives; log10 is used for positive data.
    seed : int
        Seed of the mixture fit and subsampling (results repeat exactly).

    Returns
    -------
    BeadPeaks
        Peaks dimmest first; ``warnings`` lists anything a reviewer should see.
    """
    if n_peaks < 1:
        raise ValueError("n_peaks must be at least 1")
    v = np.asarray(values, dtype=np.float64).ravel()
    n_total = v.size
    extra = None
    if cluster_values is not None:
        extra = np.asarray(cluster_values, dtype=np.float64)
        extra = extra.reshape(n_total, -1)
    keep = np.isfinite(v)
    if extra is not None:
        keep &= np.all(np.isfinite(extra), axis=1)
    warnings: list[str] = []
    if scatter is not None:
        scat = np.asarray(scatter, dtype=np.float64).reshape(n_total, 2)
        keep &= densest_region(scat, singlet_fraction)
    n_singlets = int(keep.sum())
    if n_singlets < max(10, 2 * n_peaks):
        raise CalibrationError(
            f"only {n_singlets} bead events to find {n_peaks} peaks in; "
            "acquire more beads or check the bead file"
        )
    kept = v[keep]
    scale = _Scale.for_values(kept, cofactor)
    columns = [scale(kept)]
    if extra is not None:
        for j in range(extra.shape[1]):
            col = extra[keep, j]
            columns.append(_Scale.for_values(col, cofactor)(col))
    x = np.column_stack(columns)
    rng = np.random.default_rng(seed)
    axis = _principal_axis(x, rng)
    centres, n_found = _modes(x @ axis, n_peaks, min_prominence)
    if n_found < n_peaks:
        warnings.append(
            f"found {n_found} distinct bead populations where {n_peaks} are stated: a peak is "
            "missing, or two merge (list a channel where they separate in cluster_channels)"
        )
    if n_peaks > 1:
        labels_kept = _mixture_labels(x, axis, centres, seed)
    else:
        labels_kept = np.zeros(len(kept), dtype=int)
    known_top = top is not None and bool(np.isfinite(top))
    top_value = float(top) if known_top else float(np.max(kept))
    floor_value = float(np.min(kept))
    clipped = kept >= top_value * (1 - _CLIP_TOL) if top_value > 0 else kept >= top_value
    t_top = float(scale(np.array([top_value]))[0])
    t_floor = min(0.0, float(np.min(columns[0])))
    t_limit = t_top - edge_share * (t_top - t_floor)
    peaks: list[Peak] = []
    for i in range(n_peaks):
        member = kept[labels_kept == i]
        n_i = int(member.size)
        if n_i == 0:
            peaks.append(Peak(float("nan"), float("nan"), 0, 0.0, False, False, True, "no events"))
            continue
        share = float(np.mean(clipped[labels_kept == i]))
        t = columns[0][labels_kept == i]
        t50 = _grouped_median(t)
        median = float(scale.inverse(np.array([t50]))[0])
        t16, t84 = np.percentile(t, [15.87, 84.13])
        near_top = known_top and t50 + _EDGE_SD * 0.5 * (t84 - t16) >= t_limit
        saturated = share >= saturation_share or bool(near_top)
        at_floor = bool(np.mean(member <= floor_value) >= 0.5)
        too_few = n_i < min_events
        reasons = []
        if saturated:
            reasons.append(
                f"saturated ({100 * share:.1f}% of its events at the top of the scale)"
                if share >= saturation_share
                else "saturated (its spread reaches the top of the scale, where the detector "
                "is no longer linear)"
            )
        if at_floor:
            reasons.append("at the floor of the scale")
        if too_few:
            reasons.append(f"{n_i} events, fewer than {min_events}")
        peaks.append(
            Peak(
                median,
                _robust_cv(member),
                n_i,
                share,
                saturated,
                at_floor,
                too_few,
                "; ".join(reasons),
            )
        )
    medians = [p.median for p in peaks if p.events]
    if any(b <= a for a, b in itertools.pairwise(medians)):
        warnings.append("bead peak medians do not increase along the bead sequence")
    labels = np.full(n_total, -1, dtype=int)
    labels[keep] = labels_kept
    return BeadPeaks(peaks, n_total, n_singlets, n_found, scale.describe(), labels, warnings)


# --------------------------------------------------------------------------------------------
# Standard curve
# --------------------------------------------------------------------------------------------


@dataclass
class StandardCurve:
    """A fitted (or refused) standard curve from bead peaks to molecules.

    Both models convert with the same power law, ``molecules = scale * |I| ** exponent``
    (sign kept, so negative intensities of compensated or baseline-restored data stay
    negative rather than becoming NaN, and medians are preserved). For ``loglog``
    (``log10 I = a + b log10 M``) ``exponent = 1/b``; for ``autofluorescence``
    (``log10(M + A) = c + m log10 I``) ``exponent = m``, and the bead autofluorescence ``A`` is
    left out of the conversion because cells carry their own autofluorescence, not the
    beads' (subtract an unstained or FMO control's molecules for specific binding).

    Attributes
    ----------
    model : str
        ``"loglog"`` or ``"autofluorescence"``.
    params : dict of str to float
        Fitted parameters (empty when no fit was possible).
    medians, stated : list of float
        Each peak's median intensity and stated molecules, dimmest first.
    used : list of bool
        Whether each peak took part in the fit; ``excluded`` gives the reason when not.
    predicted : list of float or None
        Each peak's molecules predicted from its median by the bead model.
    error_pct : list of float or None
        ``100 * (predicted - stated) / stated`` (None for the blank peak, stated 0).
    r2 : float or None
        Coefficient of determination of the fitted log-log relation over the used peaks.
    ok : bool
        False when the curve is refused; ``reason`` then says why in one line.
    """

    model: str
    params: dict[str, float]
    medians: list[float]
    stated: list[float]
    used: list[bool]
    excluded: list[str]
    predicted: list[float | None]
    error_pct: list[float | None]
    r2: float | None
    ok: bool
    reason: str
    limits: dict[str, Any]
    units: str = "molecules"
    channel: str | None = None
    source: dict[str, Any] | None = None
    peaks: BeadPeaks | None = None
    warnings: list[str] = field(default_factory=list)
    bead_peaks_record: dict[str, Any] | None = None  # peaks of a curve read back from JSON

    @property
    def max_abs_error_pct(self) -> float | None:
        """Largest absolute % error over the used peaks with a stated value above 0."""
        errors = [
            abs(e) for e, u in zip(self.error_pct, self.used, strict=True) if u and e is not None
        ]
        return max(errors) if errors else None

    def to_molecules(self, values: np.ndarray, *, allow_refused: bool = False) -> np.ndarray:
        """Convert intensities of the calibrated channel to molecules (MEF or ABC).

        Only valid for data acquired with the bead file's instrument settings (same
        detector voltage and gain); see :func:`settings_mismatch`.

        Raises
        ------
        CalibrationError
            The curve was refused (unless ``allow_refused``, for diagnostic plots only).
        """
        if not self.ok and not allow_refused:
            raise CalibrationError(f"standard curve refused: {self.reason}")
        if "scale" not in self.params:
            raise CalibrationError(f"no standard curve could be fitted: {self.reason}")
        x = np.asarray(values, dtype=np.float64)
        scale, exponent = self.params["scale"], self.params["exponent"]
        with np.errstate(over="ignore", invalid="ignore"):
            return np.sign(x) * scale * np.abs(x) ** exponent

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable record of the curve (for ``calibration.json`` and the report)."""
        return {
            "model": self.model,
            "equation": _EQUATIONS[self.model],
            "units": self.units,
            "channel": self.channel,
            "source": self.source,
            "params": {k: _num(v) for k, v in self.params.items()},  # full precision
            "r2": _num(self.r2, 6),
            "max_abs_error_pct": _num(self.max_abs_error_pct, 2),
            "ok": self.ok,
            "reason": self.reason,
            "limits": dict(self.limits),
            "peaks": [
                {
                    "median": _num(m, 4),
                    "stated": _num(s, 4),
                    "used": u,
                    "excluded": e,
                    "predicted": _num(p, 2),
                    "error_pct": _num(err, 2),
                }
                for m, s, u, e, p, err in zip(
                    self.medians,
                    self.stated,
                    self.used,
                    self.excluded,
                    self.predicted,
                    self.error_pct,
                    strict=True,
                )
            ],
            "bead_peaks": (
                self.peaks.to_json() if self.peaks is not None else self.bead_peaks_record
            ),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> StandardCurve:
        """A curve back from :meth:`to_json` (e.g. ``calibration.json`` written by one job and
        read by another); it converts exactly as the original did."""

        def _float(value: Any) -> float:
            return float("nan") if value is None else float(value)

        peaks = record.get("peaks") or []
        return cls(
            model=str(record["model"]),
            params={k: float(v) for k, v in (record.get("params") or {}).items() if v is not None},
            medians=[_float(p.get("median")) for p in peaks],
            stated=[_float(p.get("stated")) for p in peaks],
            used=[bool(p.get("used")) for p in peaks],
            excluded=[str(p.get("excluded") or "") for p in peaks],
            predicted=[p.get("predicted") for p in peaks],
            error_pct=[p.get("error_pct") for p in peaks],
            r2=record.get("r2"),
            ok=bool(record.get("ok")),
            reason=str(record.get("reason") or ""),
            limits=dict(record.get("limits") or {}),
            units=str(record.get("units") or "molecules"),
            channel=record.get("channel"),
            source=record.get("source"),
            warnings=list(record.get("warnings") or []),
            bead_peaks_record=record.get("bead_peaks"),
        )


_EQUATIONS = {
    "loglog": "log10(I) = a + b * log10(M); M = 10**((log10(I) - a) / b)",
    "autofluorescence": "log10(M + A) = c + m * log10(I); M = 10**c * I**m (A: bead "
    "autofluorescence, not applied to cells)",
}


def _num(value: float | None, digits: int | None = None) -> float | None:
    """A float for JSON: NaN/inf become None, optionally rounded."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y = intercept + slope * x``: (slope, intercept, residual sum of squares)."""
    xm, ym = float(x.mean()), float(y.mean())
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym)) / sxx) if sxx > 0 else 0.0
    intercept = ym - slope * xm
    sse = float(np.sum((y - intercept - slope * x) ** 2))
    return slope, intercept, sse


def _r2(y: np.ndarray, sse: float) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - sse / sst if sst > 0 else float("nan")


def _fit_loglog(intensity: np.ndarray, molecules: np.ndarray) -> tuple[dict[str, float], float]:
    x, y = np.log10(molecules), np.log10(intensity)
    b, a, sse = _line(x, y)
    params = {"a": a, "b": b}
    if b != 0:  # a falling line is refused by the caller, but its residuals are still shown
        params.update(scale=10 ** (-a / b), exponent=1.0 / b)
    return params, _r2(y, sse)


def _fit_autofluorescence(
    intensity: np.ndarray, molecules: np.ndarray
) -> tuple[dict[str, float], float]:
    """Profile least squares: for a given bead autofluorescence ``A`` the model is a straight
    line in ``log10 I``, so only ``A`` needs a 1-D search (log-spaced grid, then Brent)."""
    from scipy.optimize import minimize_scalar

    x = np.log10(intensity)
    top = float(np.max(molecules))

    def sse(auto: float) -> float:
        return _line(x, np.log10(molecules + auto))[2]

    grid = 10 ** np.linspace(math.log10(top) - 9, math.log10(top), 361)
    candidates = [0.0, *grid] if np.all(molecules > 0) else list(grid)
    errors = [sse(a) for a in candidates]
    best = int(np.argmin(errors))
    auto = float(candidates[best])
    if auto > 0:
        lo = math.log10(grid[max(0, int(np.searchsorted(grid, auto)) - 1)])
        hi = math.log10(grid[min(len(grid) - 1, int(np.searchsorted(grid, auto)) + 1)])
        if hi > lo:
            res = minimize_scalar(
                lambda u: sse(10**u),
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-6},
            )
            if res.success and res.fun <= errors[best]:
                auto = float(10**res.x)
    y = np.log10(molecules + auto)
    m, c, err = _line(x, y)
    params = {"m": m, "c": c, "autofluorescence": auto}
    if m != 0:
        params.update(scale=10**c, exponent=m)
    return params, _r2(y, err)


def _predict(model: str, params: Mapping[str, float], intensity: np.ndarray) -> np.ndarray:
    """Bead molecules predicted from peak medians (the bead model, autofluorescence removed)."""
    if "scale" not in params:
        return np.full(intensity.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        converted = params["scale"] * np.abs(intensity) ** params["exponent"]
    if model == "autofluorescence":
        converted = converted - params["autofluorescence"]
    return np.where(intensity > 0, converted, np.nan)


def fit_standard_curve(
    peak_medians: Sequence[float] | np.ndarray,
    stated_values: Sequence[float] | np.ndarray,
    model: str = "autofluorescence",
    *,
    use: Sequence[bool] | np.ndarray | None = None,
    excluded: Sequence[str] | None = None,
    blank: str = "report",
    min_r2: float = 0.98,
    max_error_pct: float = 15.0,
    min_peaks: int = 3,
    units: str = "molecules",
) -> StandardCurve:
    """Fit log(intensity) against log(molecules) and check every peak against its stated value.

    Parameters
    ----------
    peak_medians : sequence of float
        Median intensity of each bead peak, dimmest first.
    stated_values : sequence of float
        The lot's molecules per bead for the same peaks (0 for a blank bead).
    model : {"autofluorescence", "loglog"}
        ``loglog``: ``log10 I = a + b log10 M`` (QuantiBRITE); the blank peak cannot be
        placed on it. ``autofluorescence``: ``log10(M + A) = c + m log10 I`` with bead
        autofluorescence ``A >= 0``, found from the curvature of the dim peaks: dim peaks of
        multi-peak MEF beads sit on the beads' own fluorescence, which a straight line cannot
        follow.
    use, excluded : optional
        Peaks not to use (e.g. saturated, from :class:`BeadPeaks`) and why.
    blank : {"report", "fit"}
        The blank bead (stated 0). ``report`` (default) leaves it out of the fit and reports
        what it reads as: it sits on the detector's noise floor, and as the only point at 0 it
        would pin the autofluorescence term alone (on FlowCal's 8-peak example the worst peak
        error then swings between 6% and 9% with the singlet gate, against a steady 5%
        without it). ``fit`` uses it as ``M = 0`` (FlowCal's choice; autofluorescence model
        only) and checks that it is predicted within ``max_error_pct`` of the dimmest stated
        value.
    min_r2, max_error_pct, min_peaks : float, float, int
        Refusal limits: R² of the fit, the largest % miss of a used peak (for the blank: of
        the dimmest stated value), and the fewest usable peaks. The autofluorescence model
        has three parameters and needs one more peak than ``min_peaks``'s floor of 3 to be
        checked at all.
    units : str
        Name of the molecules (``MEFL``, ``MEPE``, ``ABC``), carried into reports.

    Returns
    -------
    StandardCurve
        With ``ok=False`` and a one-line ``reason`` when refused; R² and per-peak errors are
        reported whenever a fit was possible.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if blank not in ("report", "fit"):
        raise ValueError(f"blank must be 'report' or 'fit', got {blank!r}")
    medians = np.asarray(peak_medians, dtype=np.float64).ravel()
    stated = np.asarray(stated_values, dtype=np.float64).ravel()
    if medians.size != stated.size:
        raise CalibrationError(
            f"{medians.size} bead peaks but {stated.size} stated values; give one lot value per "
            "bead population (the blank bead as 0)"
        )
    n = medians.size
    mask = np.ones(n, dtype=bool) if use is None else np.asarray(use, dtype=bool).copy()
    why = [""] * n if excluded is None else [str(e) for e in excluded]
    for i in range(n):
        if not mask[i] and not why[i]:
            why[i] = "excluded by the caller"
        if mask[i] and not (np.isfinite(medians[i]) and medians[i] > 0):
            mask[i], why[i] = False, "median intensity is not positive"
        elif mask[i] and not (np.isfinite(stated[i]) and stated[i] >= 0):
            mask[i], why[i] = False, "stated value is negative or missing"
        elif mask[i] and stated[i] == 0 and model == "loglog":
            mask[i], why[i] = False, "blank bead (0 molecules) has no place on a log-log line"
        elif mask[i] and stated[i] == 0 and blank != "fit":
            mask[i], why[i] = False, "blank bead: reported, not fitted"
    limits = {
        "min_r2": min_r2,
        "max_error_pct": max_error_pct,
        "min_peaks": min_peaks,
        "blank": blank,
    }
    problems: list[str] = []
    finite_stated = stated[np.isfinite(stated)]
    if np.any(np.diff(finite_stated) <= 0):
        problems.append(
            "stated values do not increase from the dimmest to the brightest peak "
            f"({', '.join(f'{s:g}' for s in stated)}); list the lot values in bead order"
        )
    if np.count_nonzero(stated[mask] == 0) > 1:
        problems.append("more than one blank (0) stated value")
    needed = max(min_peaks, 3) + (1 if model == "autofluorescence" else 0)
    n_used = int(mask.sum())
    params: dict[str, float] = {}
    r2: float | None = None
    if n_used >= (3 if model == "autofluorescence" else 2):
        fit = _fit_autofluorescence if model == "autofluorescence" else _fit_loglog
        params, r2_value = fit(medians[mask], stated[mask])
        r2 = None if math.isnan(r2_value) else r2_value
    predicted = _predict(model, params, medians)
    error = np.full(n, np.nan)
    positive = stated > 0
    error[positive] = 100.0 * (predicted[positive] - stated[positive]) / stated[positive]
    if n_used < needed:
        left_out = "; ".join(f"peak {i + 1}: {why[i]}" for i in range(n) if not mask[i])
        problems.append(
            f"only {n_used} usable bead peaks, {needed} needed for the {model} model"
            + (f" ({left_out})" if left_out else "")
        )
    slope = params.get("b", params.get("m"))
    if slope is not None and slope <= 0:
        problems.append("intensity does not increase with the stated molecules")
    if r2 is not None and r2 < min_r2:
        problems.append(f"R² {r2:.4f} is below the minimum {min_r2:g}")
    for i in np.flatnonzero(mask):
        if not params or "scale" not in params:
            break
        if stated[i] > 0 and abs(error[i]) > max_error_pct:
            problems.append(
                f"peak {i + 1} (stated {stated[i]:g}) is predicted at {predicted[i]:.4g} "
                f"({error[i]:+.1f}%), beyond the {max_error_pct:g}% limit"
            )
        elif stated[i] == 0 and positive.any():
            dimmest = float(stated[positive].min())
            if abs(predicted[i]) > max_error_pct / 100 * dimmest:
                problems.append(
                    f"blank peak {i + 1} is predicted at {predicted[i]:.4g}, more than "
                    f"{max_error_pct:g}% of the dimmest stated value {dimmest:g}"
                )
    return StandardCurve(
        model=model,
        params=params,
        medians=[float(m) for m in medians],
        stated=[float(s) for s in stated],
        used=[bool(u) for u in mask],
        excluded=why,
        predicted=[_num(p) for p in predicted],
        error_pct=[_num(e) for e in error],
        r2=r2,
        ok=not problems,
        reason="; ".join(problems),
        limits=limits,
        units=units,
    )


# --------------------------------------------------------------------------------------------
# Bead files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSettings:
    """The numbers a calibration depends on (config ``calibration``); printed in reports."""

    model: str = "autofluorescence"
    units: str = "MEF"
    cluster_channels: tuple[str, ...] = ()
    scatter_channels: tuple[str, str] | None = None
    singlet_fraction: float = 0.5
    min_peak_events: int = 100
    saturation_share: float = 0.01
    min_r2: float = 0.98
    max_error_pct: float = 15.0
    min_peaks: int = 3
    blank: str = "report"

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> CalibrationSettings:
        """From the config's ``calibration`` section (missing keys keep the defaults)."""
        scatter = section.get("scatter_channels")
        return cls(
            model=str(section.get("model", cls.model)),
            units=str(section.get("units", cls.units)),
            cluster_channels=tuple(section.get("cluster_channels") or ()),
            scatter_channels=tuple(scatter) if scatter else None,  # type: ignore[arg-type]
            singlet_fraction=float(section.get("singlet_fraction", cls.singlet_fraction)),
            min_peak_events=int(section.get("min_peak_events", cls.min_peak_events)),
            saturation_share=float(section.get("saturation_share", cls.saturation_share)),
            min_r2=float(section.get("min_r2", cls.min_r2)),
            max_error_pct=float(section.get("max_error_pct", cls.max_error_pct)),
            min_peaks=int(section.get("min_peaks", cls.min_peaks)),
            blank=str(section.get("blank", cls.blank)),
        )


def _scatter_pair(channels: Sequence[str]) -> tuple[str, str] | None:
    upper = {c.upper(): c for c in channels}
    found = []
    for kind in ("FSC", "SSC"):
        name = next((upper[n] for n in SCATTER_NAMES[kind] if n in upper), None)
        if name is None:
            return None
        found.append(name)
    return found[0], found[1]


def _detector_settings(
    keywords: Mapping[str, str], channels: Sequence[str], channel: str
) -> dict[str, str]:
    """The acquisition settings a standard curve is only valid for."""
    n = list(channels).index(channel) + 1
    wanted = {
        "$CYT": "$CYT",
        "$CYTSN": "$CYTSN",
        "$DATE": "$DATE",
        "voltage": f"$P{n}V",
        "gain": f"$P{n}G",
        "amplification": f"$P{n}E",
    }
    return {name: keywords[key] for name, key in wanted.items() if keywords.get(key)}


def settings_mismatch(
    curve: StandardCurve, keywords: Mapping[str, str], channels: Sequence[str], channel: str
) -> list[str]:
    """Warnings when a tube was not acquired like the bead file (other cytometer, voltage,
    gain, amplification or day): a standard curve only holds for the settings it was run at."""
    bead = (curve.source or {}).get("settings") or {}
    if channel not in channels:
        return [f"{channel} is not a detector of this tube"]
    tube = _detector_settings({k.upper(): v for k, v in keywords.items()}, channels, channel)
    notes = []
    for name, value in bead.items():
        other = tube.get(name)
        if other is not None and other.strip() != value.strip():
            notes.append(f"{name} differs from the bead file ({other} vs {value})")
    return notes


def calibrate_file(
    path: str | Path,
    channel: str,
    stated_values: Sequence[float],
    settings: CalibrationSettings | None = None,
    **overrides: Any,
) -> StandardCurve:
    """Read a bead FCS file, find its peaks on ``channel`` and fit a standard curve.

    Parameters
    ----------
    path : str or Path
        The bead file (read with :func:`antigen_profile.fcs.read_fcs`, never written to).
    channel : str
        Detector name (``$PnN``) to calibrate, e.g. ``"PE-A"`` or ``"FL1"``.
    stated_values : sequence of float
        The lot's molecules per bead, one per population in bead order (blank bead as 0).
        For QuantiBRITE-style PE beads these are PE molecules per bead, and with
        ``units="ABC"`` a cell's molecules are read as antibodies bound per cell: this
        assumes one PE per antibody (1:1 PE conjugates), not true of tandems or PE-polymers.
    settings : CalibrationSettings, optional
        Model and limits; keyword ``overrides`` replace single fields
        (``calibrate_file(p, "FL1", mef, model="loglog")``).

    Returns
    -------
    StandardCurve
        ``ok=False`` with a one-line reason when refused.

    Raises
    ------
    CalibrationError
        The file cannot be read, or lacks the channel; one line naming the file.
    """
    from dataclasses import replace

    from antigen_profile.fcs import FCSError, read_fcs
    from antigen_profile.ingest import sha256_file

    cfg = replace(settings or CalibrationSettings(), **overrides)
    path = Path(path)
    try:
        data = read_fcs(path)
    except FCSError as exc:
        raise CalibrationError(str(exc)) from None
    channels = list(data.channels)
    missing = [c for c in (channel, *cfg.cluster_channels) if c not in channels]
    if missing:
        raise CalibrationError(
            f"{path}: no detector {', '.join(missing)} in the bead file (it has "
            f"{', '.join(channels)}); set calibration channel names as $PnN"
        )
    j = channels.index(channel)
    scatter_names = cfg.scatter_channels or _scatter_pair(channels)
    warnings = list(data.warnings)
    scatter = None
    if scatter_names and all(s in channels for s in scatter_names):
        scatter = data.events[:, [channels.index(s) for s in scatter_names]]
    else:
        warnings.append("no FSC/SSC found: beads used without a singlet gate")
    cluster = None
    if cfg.cluster_channels:
        cluster = data.events[:, [channels.index(c) for c in cfg.cluster_channels]]
    try:
        peaks = find_bead_peaks(
            data.events[:, j],
            len(stated_values),
            cluster_values=cluster,
            scatter=scatter,
            top=data.scale_tops[j],
            singlet_fraction=cfg.singlet_fraction,
            min_events=cfg.min_peak_events,
            saturation_share=cfg.saturation_share,
        )
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from None
    curve = fit_standard_curve(
        peaks.medians,
        stated_values,
        cfg.model,
        use=peaks.usable,
        excluded=[p.excluded for p in peaks.peaks],
        blank=cfg.blank,
        min_r2=cfg.min_r2,
        max_error_pct=cfg.max_error_pct,
        min_peaks=cfg.min_peaks,
        units=cfg.units,
    )
    if peaks.missing_modes:
        curve.ok = False
        curve.reason = "; ".join(r for r in (peaks.warnings[0], curve.reason) if r)
    curve.channel = channel
    curve.peaks = peaks
    curve.warnings = warnings + peaks.warnings
    curve.source = {
        "file": str(path),
        "sha256": sha256_file(path),
        "scatter_channels": list(scatter_names) if scatter is not None else None,
        "cluster_channels": list(cfg.cluster_channels),
        "settings": _detector_settings(data.keywords, channels, channel),
    }
    return curve


# --------------------------------------------------------------------------------------------
# Density
# --------------------------------------------------------------------------------------------


def density_summary(
    molecules: np.ndarray, background: float = 0.0
) -> dict[str, float | int | None]:
    """Median and quartiles of molecules per cell (``abc_median``, ``abc_q25``, ``abc_q75``).

    ``background`` (e.g. the unstained or FMO control's median in the same units) is
    subtracted, so the numbers are specific sites rather than sites plus autofluorescence.
    Non-finite values are ignored; with no events every number is None.
    """
    values = np.asarray(molecules, dtype=np.float64).ravel()
    values = values[np.isfinite(values)] - float(background)
    if values.size == 0:
        return {"events": 0, "median": None, "q25": None, "q75": None}
    q25, q50, q75 = np.percentile(values, [25.0, 50.0, 75.0])
    return {
        "events": int(values.size),
        "median": round(float(q50), 1),
        "q25": round(float(q25), 1),
        "q75": round(float(q75), 1),
    }


def density_fields(
    molecules: np.ndarray, low_density_below: float | None = None, background: float = 0.0
) -> dict[str, float | bool | None]:
    """The ``antigens.tsv`` density columns: ``abc_median``, ``abc_q25``, ``abc_q75`` and
    ``low_density`` (median below the configured limit; None when no limit is configured,
    because no published cut-off exists and the report must not invent one)."""
    summary = density_summary(molecules, background)
    median = summary["median"]
    low = None
    if low_density_below is not None and median is not None:
        low = bool(median < float(low_density_below))
    return {
        "abc_median": median,
        "abc_q25": summary["q25"],
        "abc_q75": summary["q75"],
        "low_density": low,
    }
