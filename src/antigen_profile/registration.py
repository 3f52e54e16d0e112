"""Registration: the gating template placed on one tube's own scale and channel set.

A template is drawn once, on one instrument's numbers (ours: an 18-bit BD scale). The next
lab's cytometer writes scatter on a 20-bit (Beckman), 22-bit (Cytek) or 23-bit (CytoFLEX)
scale, runs other PMT voltages, or stores log-amplified channels; fixed coordinates then miss
every population. Gain multiplies a channel's values, so it shifts a population by a constant
on a log scale, and one landmark per channel fixes that constant. The landmark is the
lymphocyte cluster (CD45 bright, side scatter low), which every leukocyte sample has: the
template says where its lymphocytes sit (``<landmark>`` in the lymphocyte gate), the tube says
where its own do, and their ratio is the channel's gain. Every linear coordinate of the
template is multiplied by its channel's gain and each logicle's ``T`` by its channel's gain,
which is exactly the template applied to rescaled data (``logicle(x / g; T) = logicle(x; g T)``)
while the gates stay in the file's own units, so the exported Gating-ML re-gates the original
file. Where no lymphocyte cluster can be found, the channel's range (``$PnR``) gives the gain
and the tube is flagged.

The channel set is matched here too: a gate with ``<alternatives>`` (the singlet gate) moves to
the first channel pair the tube has (FSC-A vs FSC-H, FSC-A vs FSC-W, SSC-A vs SSC-H, ...) and,
when it is optional and none is there, is skipped with a flag, its children re-parented.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from antigen_profile.gating import Axis, FitSpec, GateShape, GatingTemplate
from antigen_profile.transforms import auto_logicle

#: Events the landmark mixture is fitted on: enough for a cluster of 1% of leukocytes.
LANDMARK_EVENTS = 8000
#: Smallest lymphocyte cluster trusted as a landmark (events in the fitted sample).
MIN_LANDMARK_EVENTS = 40
#: A mixture component smaller than this share is too small to be the lymphocytes.
MIN_LANDMARK_SHARE = 0.005
SEED = 20240611


@dataclass(frozen=True)
class Registration:
    """How the template was placed on one tube (recorded in ``profile.json``).

    ``gains`` maps a dimension to the tube's units per template unit; ``source`` is
    ``lymphocytes`` (the landmark was found) or ``scale`` (gains from ``$PnR``, flagged);
    ``landmark`` holds the lymphocyte medians in the tube's units; ``flags`` are what a
    reviewer must know (``{"code", "message"}``).
    """

    gains: dict[str, float]
    source: str
    landmark: dict[str, float] = field(default_factory=dict)
    singlets: str | None = None
    flags: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "gains": {k: round(v, 6) for k, v in self.gains.items()},
            "landmark": {k: round(v, 3) for k, v in self.landmark.items()},
            "singlets": self.singlets,
        }


def _landmark_spec(template: GatingTemplate) -> tuple[str, dict[str, float]] | None:
    """(population, {dimension: template value}) of the template's ``<landmark>``."""
    for gate_id, extra in template.extras.items():
        spec = extra.get("landmark")
        if spec:
            return gate_id, {k: float(v) for k, v in spec.items()}
    return None


def lymphocyte_landmark(cd45: np.ndarray, ssc: np.ndarray, seed: int = SEED) -> np.ndarray | None:
    """Which events are the lymphocytes, found without knowing the instrument's scale.

    On log scales a gain is a shift, so a Gaussian mixture of log10 CD45 and log10 SSC (the
    number of components by BIC) finds the same clusters on every instrument. Lymphocytes are
    the cluster with the brightest CD45 for the lowest side scatter (the largest
    ``log CD45 - log SSC``): blasts are CD45 dim, monocytes and granulocytes scatter more,
    debris and red cells carry no CD45. Returns a mask over the events given, ``None`` when no
    cluster of at least :data:`MIN_LANDMARK_EVENTS` is found.
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    cd45 = np.asarray(cd45, dtype=np.float64)
    ssc = np.asarray(ssc, dtype=np.float64)
    rows = np.flatnonzero((cd45 > 0) & (ssc > 0) & np.isfinite(cd45) & np.isfinite(ssc))
    if rows.size < 200:
        return None
    if rows.size > LANDMARK_EVENTS:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, LANDMARK_EVENTS, replace=False))
    points = np.column_stack([np.log10(cd45[rows]), np.log10(ssc[rows])])
    scale = points.std(axis=0)
    scale[scale == 0] = 1.0
    z = (points - points.mean(axis=0)) / scale
    best = None
    with threadpool_limits(limits=1):
        for k in range(3, 9):
            model = GaussianMixture(
                n_components=k, covariance_type="full", reg_covar=1e-4, random_state=seed
            ).fit(z)
            bic = model.bic(z)
            if best is None or bic < best[0]:
                best = (bic, model)
    assert best is not None
    model = best[1]
    means = model.means_ * scale + points.mean(axis=0)
    labels = model.predict(z)
    order = np.argsort(-(means[:, 0] - means[:, 1]))
    for component in order:
        members = labels == component
        if members.sum() >= MIN_LANDMARK_EVENTS and model.weights_[component] >= MIN_LANDMARK_SHARE:
            mask = np.zeros(cd45.size, dtype=bool)
            mask[rows[members]] = True
            return mask
    return None


def _gains(
    template: GatingTemplate,
    data: Mapping[str, np.ndarray],
    tops: Mapping[str, float],
) -> tuple[dict[str, float], str, dict[str, float], list[dict[str, str]]]:
    """Per-dimension gains from the lymphocyte landmark, else from the channels' ranges."""
    spec = _landmark_spec(template)
    reference_top = float(next(iter(template.transforms.values()), {"T": 262144.0})["T"])
    flags: list[dict[str, str]] = []
    landmark: dict[str, float] = {}
    gains: dict[str, float] = {}
    if spec is not None:
        _, wanted = spec
        dims = [d for d in wanted if d in data]
        if "CD45" in data and "SSC-A" in data:
            mask = lymphocyte_landmark(data["CD45"], data["SSC-A"])
            if mask is not None:
                for dim in dims:
                    value = float(np.median(data[dim][mask]))
                    if value > 0:
                        landmark[dim] = value
                        gains[dim] = value / wanted[dim]
    source = "lymphocytes"
    if not gains:
        source = "scale"
        flags.append(
            {
                "code": "gates_placed_by_scale",
                "message": "no lymphocyte cluster (CD45 bright, SSC low) was found to place the "
                "gates on this tube's own scale; they were scaled by the channels' ranges "
                "($PnR) instead: check the gating plots",
            }
        )
    for dim in template.dimensions:
        if dim not in gains and dim in data:
            top = tops.get(dim, reference_top)
            gains[dim] = (top / reference_top) if top and top > 0 else 1.0
    # Heights and widths share their area channel's gain (the singlet fits are ratios).
    for area in ("FSC-A", "SSC-A"):
        for other in (area[:3] + "-H", area[:3] + "-W"):
            if area in gains and other in data:
                gains[other] = gains[area]
    return gains, source, landmark, flags


def _alternative_pairs(extra: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = str(extra.get("pairs", "")).split()
    return [tuple(p.split(":", 1)) for p in pairs if ":" in p]  # type: ignore[misc]


def _slopes(gate: GateShape) -> tuple[float, float]:
    """Lowest and highest y/x of a ratio band's vertices (its singlet band)."""
    ratios = [vy / vx for vx, vy in gate.vertices if vx > 0]
    return min(ratios), max(ratios)


def _match_channels(
    template: GatingTemplate, available: set[str]
) -> tuple[list[GateShape], dict[str, FitSpec], str | None, list[dict[str, str]]]:
    """Gates on the channel pairs this tube has: alternatives taken, optional gates dropped."""
    gates = list(template.gates)
    fits = dict(template.fits)
    chosen: str | None = None
    flags: list[dict[str, str]] = []
    for gate_id, extra in template.extras.items():
        alternatives = extra.get("alternatives")
        if not alternatives:
            continue
        index = next(i for i, g in enumerate(gates) if g.id == gate_id)
        gate = gates[index]
        assert gate.y is not None
        pairs = [(gate.x.dimension, gate.y.dimension), *_alternative_pairs(alternatives)]
        pair = next((p for p in pairs if p[0] in available and p[1] in available), None)
        if pair is None:
            if alternatives.get("optional") != "true":
                continue  # required: apply() names the missing channel
            names = ", ".join(f"{x} vs {y}" for x, y in pairs)
            flags.append(
                {
                    "code": f"{gate_id}_gate_skipped",
                    "message": f"no channel pair for the {gate_id} gate ({names}): doublets were "
                    "not excluded, and a doublet can pair a blast with a normal cell's antigens",
                }
            )
            gates = [
                replace(g, parent=gate.parent) if g.parent == gate_id else g
                for g in gates
                if g.id != gate_id
            ]
            fits.pop(gate_id, None)
            for other, spec in list(fits.items()):  # mixtures fitted on it use its parent's
                if spec.attrs.get("fit_on") == gate_id:
                    attrs = {**spec.attrs, "fit_on": gate.parent or ""}
                    fits[other] = FitSpec(spec.method, attrs)
            continue
        chosen = f"{pair[0]} vs {pair[1]}"
        if pair == (gate.x.dimension, gate.y.dimension):
            continue
        moved = replace(gate, x=Axis(pair[0], gate.x.transform), y=Axis(pair[1], gate.y.transform))
        spec = fits.get(gate_id)
        if pair[1].endswith("-W") and spec is not None and spec.method == "ratio":
            # Width = area / height (times a constant): a height band [lo, hi] around the
            # expected ratio is a width band [e/hi, e/lo] around the median width.
            low, high = _slopes(gate)
            expected = float(spec.attrs["expected"])
            band = f"{expected / high:.6g} {expected / low:.6g}"
            fits[gate_id] = FitSpec("width", {"method": "width", "band": band})
            xs = [v[0] for v in gate.vertices]
            moved = replace(
                moved, vertices=((min(xs), 0.5), (max(xs), 0.5), (max(xs), 2.0), (min(xs), 2.0))
            )
        gates[index] = moved
    return gates, fits, chosen, flags


#: Template coordinates at or above this share of the reference scale's top mean "the top of
#: the scale": they move to the tube's own top, never below it.
TOP_SHARE = 0.999


def register(
    template: GatingTemplate,
    data: Mapping[str, np.ndarray],
    tops: Mapping[str, float],
    backbone: Mapping[str, str] | None = None,
) -> tuple[GatingTemplate, Registration]:
    """The template placed on this tube: its channel pairs, its gains, its transforms.

    Parameters
    ----------
    template
        The gating template as read.
    data
        The tube's compensated events by marker (QC-kept).
    tops
        Each marker's top of scale (``$PnR`` in event units), by marker name.
    backbone
        Backbone markers (config ``blast_definition.require``): each gets a logicle of its
        own, ``T`` from its range and ``W`` from its negative spread, as FlowJo sets them.
    """
    gates, fits, singlets, flags = _match_channels(template, set(data))
    gains, source, landmark, more = _gains(template, data, tops)
    flags += more
    reference_top = float(next(iter(template.transforms.values()), {"T": 262144.0})["T"])

    def scaled(dim: str, value: float) -> float:
        gain = gains.get(dim, 1.0)
        if value >= TOP_SHARE * reference_top:
            return max(value * gain, float(tops.get(dim, 0.0)))
        return value * gain

    transforms: dict[str, dict[str, float]] = {}
    renamed: dict[tuple[str, str], str] = {}
    for gate in gates:
        for axis in (gate.x, gate.y):
            if axis is None or axis.transform is None:
                continue
            key = (axis.transform, axis.dimension)
            if key in renamed:
                continue
            params = dict(template.transforms[axis.transform])
            params["T"] = params["T"] * gains.get(axis.dimension, 1.0)
            name = axis.transform
            if name in transforms and transforms[name] != params:
                name = f"{axis.transform}-{axis.dimension}"
            transforms[name] = params
            renamed[key] = name

    def axis_of(axis: Axis | None) -> Axis | None:
        if axis is None or axis.transform is None:
            return axis
        return Axis(axis.dimension, renamed[(axis.transform, axis.dimension)])

    placed: list[GateShape] = []
    for gate in gates:
        x, y = axis_of(gate.x), axis_of(gate.y)
        assert x is not None
        linear_x = x.transform is None
        linear_y = y is not None and y.transform is None
        vertices = tuple(
            (
                scaled(x.dimension, vx) if linear_x else vx,
                scaled(y.dimension, vy) if linear_y and y is not None else vy,
            )
            for vx, vy in gate.vertices
        )
        bounds = {}
        for key, (lo, hi) in gate.bounds.items():
            axis = x if key == "x" else y
            if axis is not None and axis.transform is None:
                lo = None if lo is None else scaled(axis.dimension, lo)
                hi = None if hi is None else scaled(axis.dimension, hi)
            bounds[key] = (lo, hi)
        placed.append(replace(gate, x=x, y=y, vertices=vertices, bounds=bounds))
        spec = fits.get(gate.id)
        if spec is not None:
            fits[gate.id] = _scaled_fit(spec, x, y, scaled)

    registered = copy.copy(template)
    registered.gates = placed
    registered.fits = fits
    registered.transforms = transforms
    registered.marker_transforms = {}
    for marker in backbone or {}:
        if marker in data:
            name = f"logicle-{marker}"
            registered.transforms[name] = auto_logicle(
                data[marker], tops.get(marker, reference_top)
            )
            registered.marker_transforms[marker] = name
    return registered, Registration(gains, source, landmark, singlets, flags)


def _scaled_fit(spec: FitSpec, x: Axis, y: Axis | None, scaled: Any) -> FitSpec:
    """A ``<fit>`` spec in the tube's units: windows, edges and centres on linear axes are
    scaled like the gate; relative shifts, ratios and logicle values are scale-free."""
    attrs = dict(spec.attrs)
    if spec.method == "valley":
        axis = x if attrs.get("axis", "x") == "x" else y
        if axis is not None and axis.transform is None:
            attrs["edge"] = repr(scaled(axis.dimension, float(attrs["edge"])))
            lo, hi = spec.numbers("window")
            attrs["window"] = f"{scaled(axis.dimension, lo)!r} {scaled(axis.dimension, hi)!r}"
    elif spec.method == "cluster" and "centre" in attrs:
        cx, cy = spec.numbers("centre")
        if x.transform is None:
            dx, dy = spec.numbers("shift")
            cx = scaled(x.dimension, cx)
            attrs["shift"] = f"{scaled(x.dimension, dx)!r} {dy!r}"
        if y is not None and y.transform is None:
            cy = scaled(y.dimension, cy)
        attrs["centre"] = f"{cx!r} {cy!r}"
    return FitSpec(spec.method, attrs)
