"""Fitting a template's gates to one sample: pure numerics on arrays, no Gating-ML.

Fixed template gates break on the next instrument, the next day's voltages or the next
patient's biology. Each template gate says where its population is expected; these
functions find where it actually is in this sample: a density valley for a threshold, the
FSC-H/FSC-A ratio for singlets, and a Gaussian mixture for clustered populations (blasts,
lymphocytes), from which a polygon is traced along the mixture's decision boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from antigen_profile import orderstats
from antigen_profile.populations import masked

#: Events used to fit a mixture; more adds time, not accuracy.
MAX_FIT_EVENTS = 5_000
#: Outer limit of a traced cluster in Mahalanobis units (99.9% of a 2-D Gaussian).
MAX_RADIUS = 3.72
RAYS = 72
SEED = 20240611
#: A mixture component holding fewer fitted events than this is no population to trace: its
#: shape is mostly the covariance floor. (A start at a template centre keeps such a component
#: where a handful of events lie, 3 of 5,000 for 0.05% blasts.)
MIN_COMPONENT_EVENTS = 20


def density_valley(
    values: np.ndarray, window: tuple[float, float], bins: int = 200
) -> float | None:
    """The deepest density minimum inside ``window`` that separates two populations.

    Returns ``None`` when the window holds no valley (one population only, or too few
    events): the caller then keeps the template's position rather than inventing one.
    """
    lo, hi = window
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():  # (no copy when every value is finite)
        x = x[finite]
    if x.size < 200:
        return None
    span = hi - lo
    if not span > 0:
        return None
    edges = np.linspace(lo - span, hi + span, 3 * bins + 1)
    # Equal bins given as a range: NumPy counts them without sorting the values, into the
    # same bins as ``edges`` (it builds them with the same linspace).
    counts, _ = np.histogram(x, 3 * bins, (edges[0], edges[-1]))
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
    smooth = np.convolve(counts, kernel / kernel.sum(), mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    inside = np.flatnonzero((centres >= lo) & (centres <= hi))
    best, best_depth = None, 0.0
    for i in inside[1:-1]:
        if not (smooth[i] <= smooth[i - 1] and smooth[i] <= smooth[i + 1]):
            continue
        left, right = smooth[: i + 1].max(), smooth[i:].max()
        # A real valley: both sides rise to a peak well above it.
        depth = min(left, right) - smooth[i]
        if depth > 0.5 * min(left, right) and depth > best_depth and min(left, right) > 5:
            best, best_depth = float(centres[i]), depth
    return best


def ratio_mode(numerator: np.ndarray, denominator: np.ndarray) -> float | None:
    """Median of ``numerator / denominator`` over events with a positive denominator: where
    singlets sit on an FSC-H vs FSC-A plot (doublets are a minority below it)."""
    d = np.asarray(denominator, dtype=np.float64)
    n = np.asarray(numerator, dtype=np.float64)
    ok = d > 0
    count = np.count_nonzero(ok)
    if count < 100:
        return None
    if count == d.size:  # the caller kept only positive denominators
        ratio = n / d
    else:
        ratio = masked(n, ok)
        ratio /= masked(d, ok)
    return float(orderstats.median(ratio, overwrite_input=True))


def median_width(width: np.ndarray) -> float | None:
    """Median pulse width (FSC-W or SSC-W) of positive events: where singlets sit on a width
    axis (doublets, two cells in one pulse, are a minority above it)."""
    w = np.asarray(width, dtype=np.float64)
    w = w[np.isfinite(w) & (w > 0)]
    if w.size < 100:
        return None
    return float(orderstats.median(w, overwrite_input=True))


@dataclass(frozen=True)
class ClusterTarget:
    """Where a clustered population is expected (fit space) and how far it may move."""

    centre: tuple[float, float]
    shift: tuple[float, float]


@dataclass(frozen=True)
class ClusterFit:
    """A traced population: its polygon in fit space, the mixture components it merges and
    its share of the fitted events."""

    polygon: np.ndarray | None
    components: tuple[int, ...]
    share: float


def fit_rows(finite: np.ndarray, seed: int = SEED) -> np.ndarray:
    """The rows :func:`fit_clusters` fits, given which rows of its points are finite: all of
    them, or :data:`MAX_FIT_EVENTS` drawn with ``seed``. A caller with millions of events
    builds just these rows and gets the same fit; the draw depends only on how many rows
    are finite, so ``finite`` may also mark a population's finite events among all events
    (the rows are then the events' own indices)."""
    rows = np.flatnonzero(finite)
    if rows.size > MAX_FIT_EVENTS:
        rng = np.random.default_rng(seed)
        rows = rows[rng.choice(rows.size, MAX_FIT_EVENTS, replace=False)]
    return rows


def fit_clusters(
    points: np.ndarray, targets: Mapping[str, ClusterTarget], seed: int = SEED
) -> dict[str, ClusterFit]:
    """Find each target population among ``points`` (n x 2, fit space).

    A Gaussian mixture (components chosen by BIC) describes the events; every component whose
    mean lies within a target's allowed shift belongs to that target (a large population may
    need several components). The target's polygon is traced from its merged centre along
    rays, out to where the target's posterior falls below one half or to ``MAX_RADIUS``, so
    it follows the boundary with neighbouring populations.

    BLAS runs single-threaded here: on 5,000 points threads only add overhead, and when other
    jobs share the cores they made the fit several times slower (1.6 s against 0.24 s).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_clusters(points, targets, seed)


def _fit_clusters(
    points: np.ndarray, targets: Mapping[str, ClusterTarget], seed: int
) -> dict[str, ClusterFit]:
    from sklearn.mixture import GaussianMixture

    data = np.asarray(points, dtype=np.float64)
    data = data[fit_rows(np.all(np.isfinite(data), axis=1), seed)]
    empty = {name: ClusterFit(None, (), 0.0) for name in targets}
    if data.shape[0] < 50:
        return empty
    scale = data.std(axis=0)
    scale[scale == 0] = 1.0
    z = data / scale
    # Candidates: k-means++ starts for 2..6 components, and one start with a component at
    # each target's centre. k-means++ spends extra components splitting the largest
    # population, so a small one next to a big neighbour (3% monocytes beside granulocytes)
    # is merged into it; started on the template the mixture keeps it, and BIC, the same
    # criterion for every candidate, says which description of the events is better.
    starts: list[dict[str, object]] = [
        {"n_components": k, "init_params": "k-means++"} for k in range(2, 7) if k * 20 <= z.shape[0]
    ]
    centres = np.array([t.centre for t in targets.values()], dtype=np.float64) / scale
    if len(centres) >= 2 and len(centres) * 20 <= z.shape[0]:
        starts.append({"n_components": len(centres), "means_init": centres})
    best = None
    for start in starts:
        model = GaussianMixture(
            covariance_type="full", reg_covar=1e-4, tol=1e-3, random_state=seed, **start
        ).fit(z)
        bic = model.bic(z)
        if best is None or bic < best[0]:
            best = (bic, model)
    if best is None:
        return empty
    model = best[1]
    means = model.means_ * scale
    supported = model.weights_ * z.shape[0] >= MIN_COMPONENT_EVENTS
    fits: dict[str, ClusterFit] = {}
    for name, target in targets.items():
        offset = np.abs(means - np.asarray(target.centre))
        near = np.all(offset <= np.asarray(target.shift), axis=1) & supported
        # Pieces of the same population may lie a little further out, never far away.
        within = np.all(offset <= 2 * np.asarray(target.shift), axis=1) & supported
        allowed = set(np.flatnonzero(within))
        components = _whole_population(model, set(np.flatnonzero(near).tolist()), allowed)
        if not components:
            fits[name] = ClusterFit(None, (), 0.0)
            continue
        fits[name] = ClusterFit(
            _trace(model, components, scale),
            components,
            float(model.weights_[list(components)].sum()),
        )
    return fits


#: Components whose means lie this close (Mahalanobis, either component's covariance) are
#: pieces of one population that the mixture split, not neighbours.
SAME_POPULATION = 2.0


def _whole_population(model: object, seeds: set[int], allowed: set[int]) -> tuple[int, ...]:
    """The seed components plus every component that is a piece of the same population: a
    large or skewed population is often split by the mixture, and tracing only the piece
    whose mean sits near the template would cut the population in half."""
    means = model.means_  # type: ignore[attr-defined]
    precisions = model.precisions_  # type: ignore[attr-defined]
    chosen = set(seeds)
    grew = bool(chosen)
    while grew:
        grew = False
        for j in range(len(means)):
            if j in chosen or j not in allowed:
                continue
            for i in list(chosen):
                d = means[j] - means[i]
                near_i = float(d @ precisions[i] @ d) <= SAME_POPULATION**2
                near_j = float(d @ precisions[j] @ d) <= SAME_POPULATION**2
                if near_i or near_j:
                    chosen.add(j)
                    grew = True
                    break
    return tuple(sorted(chosen))


def _trace(model: object, components: tuple[int, ...], scale: np.ndarray) -> np.ndarray:
    """Polygon (fit space) around the merged components, cut where their posterior < 0.5."""
    weights = model.weights_[list(components)]  # type: ignore[attr-defined]
    means = model.means_[list(components)]  # type: ignore[attr-defined]
    covs = model.covariances_[list(components)]  # type: ignore[attr-defined]
    w = weights / weights.sum()
    mean = (w[:, None] * means).sum(axis=0)
    cov = sum(
        wi * (ci + np.outer(mi - mean, mi - mean))
        for wi, ci, mi in zip(w, covs, means, strict=True)
    )
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(2))
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    radii = np.arange(0.05, MAX_RADIUS + 1e-9, 0.05)
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # rays x 2
    grid = mean + (radii[None, :, None] * (unit @ chol.T)[:, None, :])  # rays x radii x 2
    posterior = model.predict_proba(grid.reshape(-1, 2))[:, list(components)].sum(axis=1)  # type: ignore[attr-defined]
    inside = posterior.reshape(len(angles), len(radii)) >= 0.5
    # Stop each ray at its first exit: a polygon must not jump over a neighbour.
    first_out = np.where(inside.all(axis=1), len(radii), np.argmin(inside, axis=1))
    reach = radii[np.maximum(first_out - 1, 0)]
    vertices = mean + reach[:, None] * (unit @ chol.T)
    return vertices * scale
