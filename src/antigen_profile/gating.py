"""Gating: a Gating-ML 2.0 template applied to one tube gives :class:`Populations`.

The only module that talks Gating-ML. Templates name markers (``CD45``, ``SSC-A``), not
detectors; the caller hands in each marker's compensated events under that name, so the same
template serves every instrument. FlowKit evaluates the gates.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from antigen_profile import gatefit

POPULATION_COLUMNS = ["population", "parent", "events", "pct_parent", "pct_total"]


class GatingError(ValueError):
    """A template that cannot be read or applied; one line naming the template and the fix."""


@dataclass(frozen=True)
class Axis:
    """One gate dimension: the marker and the transform its coordinates are in."""

    dimension: str
    transform: str | None


@dataclass(frozen=True)
class GateShape:
    """A gate as drawn: coordinates are in display scale (transformed where the axis is)."""

    id: str
    parent: str | None
    type: str  # "polygon" or "rectangle"
    x: Axis
    y: Axis | None
    vertices: tuple[tuple[float, float], ...] = ()
    bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)


@dataclass
class Populations:
    """Membership of every gated population over the tube's events, and the gates used."""

    masks: dict[str, np.ndarray]
    gates: list[GateShape]
    n_total: int
    #: What could not be done as the template asked, as ``{"gate", "code", "message"}``.
    notes: list[dict[str, str]] = field(default_factory=list)

    def parent(self, population: str) -> str | None:
        return next(g.parent for g in self.gates if g.id == population)

    def count(self, population: str) -> int:
        return int(self.masks[population].sum())

    def counts(self) -> pd.DataFrame:
        """The ``populations.tsv`` table (see docs/outputs.md)."""
        rows = []
        for gate in self.gates:
            events = self.count(gate.id)
            parent_events = self.count(gate.parent) if gate.parent else self.n_total
            rows.append(
                {
                    "population": gate.id,
                    "parent": gate.parent or "",
                    "events": events,
                    "pct_parent": _pct(events, parent_events),
                    "pct_total": _pct(events, self.n_total),
                }
            )
        return pd.DataFrame(rows, columns=POPULATION_COLUMNS)

    def lineage(self, population: str) -> list[str]:
        """The population and its ancestors, root first."""
        chain = [population]
        while (parent := self.parent(chain[0])) is not None:
            chain.insert(0, parent)
        return chain

    def defined_by(self, population: str) -> list[str]:
        """Every marker used by the gates from the root down to ``population``: what a
        reviewer must know to judge whether the population was defined independently of
        the antigens reported on it."""
        names: list[str] = []
        by_id = {g.id: g for g in self.gates}
        for gate_id in self.lineage(population):
            gate = by_id[gate_id]
            for axis in (gate.x, gate.y):
                if axis is not None and axis.dimension not in names:
                    names.append(axis.dimension)
        return names


@dataclass(frozen=True)
class FitSpec:
    """How a template gate adapts to a sample (a ``<fit>`` element in the gate's
    ``data-type:custom_info``): ``valley`` moves a threshold edge to the density valley
    inside ``window``; ``ratio`` re-centres a y/x band (singlets) on the sample's ratio;
    ``cluster`` traces the population found near ``centre`` (within ``shift``: absolute on x,
    relative on y) by a Gaussian mixture of the ``fit_on`` population; ``contain`` lowers a
    threshold edge so that the listed child gates fit inside it."""

    method: str
    attrs: Mapping[str, str]

    def numbers(self, key: str) -> tuple[float, ...]:
        return tuple(float(v) for v in self.attrs[key].split())


GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
DATATYPE_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"


def _read_fit_specs(path: Path) -> dict[str, FitSpec]:
    from lxml import etree

    specs: dict[str, FitSpec] = {}
    root = etree.parse(str(path)).getroot()
    for gate in root:
        gate_id = gate.get(f"{{{GATING_NS}}}id")
        for info in gate.findall(f"{{{DATATYPE_NS}}}custom_info"):
            fit = info.find("fit")
            if gate_id and fit is not None:
                specs[gate_id] = FitSpec(fit.get("method", ""), dict(fit.attrib))
    return specs


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 4) if whole else float("nan")


class GatingTemplate:
    """A Gating-ML 2.0 gating strategy whose dimensions are marker names.

    Parameters
    ----------
    path : str or Path
        The Gating-ML file (``resources/gates/*.xml``).
    """

    def __init__(self, path: str | Path) -> None:
        import flowkit as fk

        self.path = Path(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._strategy = fk.parse_gating_xml(str(self.path))
        except Exception as exc:
            raise GatingError(
                f"{self.path}: not a valid Gating-ML 2.0 file ({exc}); "
                "validate it against the Gating-ML 2.0 schema"
            ) from None
        self.gates = [self._shape(name, path) for name, path in self._strategy.get_gate_ids()]
        self.fits = _read_fit_specs(self.path)
        unknown = {f.method for f in self.fits.values()} - {"valley", "ratio", "cluster", "contain"}
        if unknown:
            raise GatingError(f"{self.path}: unknown fit method(s) {', '.join(sorted(unknown))}")

    @property
    def dimensions(self) -> list[str]:
        """Marker names the template needs, in first-use order."""
        names: list[str] = []
        for gate in self.gates:
            for axis in (gate.x, gate.y):
                if axis is not None and axis.dimension not in names:
                    names.append(axis.dimension)
        return names

    def transform(self, name: str | None, values: np.ndarray) -> np.ndarray:
        """Values in the template's scale for a dimension with transform ``name``."""
        if name is None:
            return np.asarray(values, dtype=np.float64)
        xform = self._strategy.transformations[name]
        flat = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        return np.asarray(xform.apply(flat)).reshape(np.shape(values))

    def apply(
        self,
        data: Mapping[str, np.ndarray],
        sample_id: str = "sample",
        fit: bool = True,
        require: Mapping[str, str] | None = None,
        population: str = "blasts",
    ) -> Populations:
        """Gate events given as marker -> compensated values (all the same length).

        With ``fit``, every gate that carries a ``<fit>`` spec is first moved to where its
        population lies in this sample (see :class:`FitSpec`); FlowKit then gates with the
        fitted coordinates, which are what ``gates.json`` and the plots show. ``require``
        adds backbone markers to the definition of ``population`` (``{"CD34": "positive",
        "CD3": "negative"}``), see :meth:`require_markers`.
        """
        import flowkit as fk

        require = dict(require or {})
        dimensions = self.dimensions + [m for m in require if m not in self.dimensions]
        missing = [d for d in dimensions if d not in data]
        if missing:
            raise GatingError(
                f"{self.path}: the tube has no {', '.join(missing)} for this template; map the "
                "marker in config (`markers` / `scatter`) or use a template for this panel"
            )
        frame = pd.DataFrame({d: np.asarray(data[d], dtype=np.float64) for d in dimensions})
        gates, notes = self.fit(frame) if fit and self.fits else (list(self.gates), [])
        if require:
            gates, more = self.require_markers(gates, frame, require, population)
            notes += more
        strategy = self._strategy
        if gates != self.gates:
            xml = self.to_gatingml(gates)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                strategy = fk.parse_gating_xml(io.BytesIO(xml.encode("utf-8")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = fk.Sample(frame, sample_id=sample_id)
            results = strategy.gate_sample(sample)
        masks = {g.id: np.asarray(results.get_gate_membership(g.id), dtype=bool) for g in gates}
        return Populations(masks=masks, gates=gates, n_total=len(frame), notes=notes)

    def require_markers(
        self,
        gates: list[GateShape],
        frame: Mapping[str, np.ndarray],
        require: Mapping[str, str],
        population: str = "blasts",
    ) -> tuple[list[GateShape], list[dict[str, str]]]:
        """Narrow ``population`` by backbone markers (CD34+, CD3-, ...), one 1-D gate each.

        The template's gate becomes ``{population}_region`` and the last backbone gate takes
        the population's name, so every later stage still reads ``blasts``. Each threshold
        sits at the density valley of the marker among the region's parent events (where
        positive and negative cells both occur); a marker without a clear valley is not
        applied and a note says so, rather than cutting at a guessed level.
        """
        if not self._strategy.transformations:
            raise GatingError(f"{self.path}: backbone markers need a logicle transform")
        xform = next(iter(self._strategy.transformations))
        by_id = {g.id: g for g in gates}
        region = by_id[population]
        parent_mask = self._chain_mask(region.parent, by_id, frame)
        notes: list[dict[str, str]] = []
        steps: list[tuple[str, str, float]] = []
        for marker, sign in require.items():
            values = self.transform(xform, frame[marker])[parent_mask]
            threshold = gatefit.density_valley(values, (0.25, 0.75))
            if threshold is None:
                notes.append(
                    {
                        "gate": population,
                        "code": "backbone_not_applied",
                        "message": f"{population}: {marker} {sign} not applied: no clear split "
                        f"between {marker}-positive and -negative cells in this sample",
                    }
                )
                continue
            steps.append((marker, sign, threshold))
        if not steps:
            return gates, notes
        region_id = f"{population}_region"
        chain: list[GateShape] = []
        parent = region_id
        for i, (marker, sign, threshold) in enumerate(steps):
            suffix = "pos" if sign == "positive" else "neg"
            gate_id = population if i == len(steps) - 1 else f"{population}_{marker}{suffix}"
            bounds = {"x": (threshold, None) if sign == "positive" else (None, threshold)}
            chain.append(
                GateShape(gate_id, parent, "rectangle", Axis(marker, xform), None, bounds=bounds)
            )
            parent = gate_id
        out: list[GateShape] = []
        for gate in gates:
            if gate.id == population:
                out.append(replace(gate, id=region_id))
                out.extend(chain)
            elif gate.parent == population:
                out.append(replace(gate, parent=population))
            else:
                out.append(gate)
        return out, notes

    def _chain_mask(
        self, gate_id: str | None, by_id: Mapping[str, GateShape], frame: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        n = len(frame[self.dimensions[0]])
        mask = np.ones(n, dtype=bool)
        while gate_id is not None:
            gate = by_id[gate_id]
            mask &= self.inside(gate, frame)
            gate_id = gate.parent
        return mask

    # -- fitting --------------------------------------------------------------------------

    def display(self, axis: Axis, frame: Mapping[str, np.ndarray]) -> np.ndarray:
        """A dimension's values in the gate's (display) scale."""
        return self.transform(axis.transform, frame[axis.dimension])

    def inside(self, gate: GateShape, frame: Mapping[str, np.ndarray]) -> np.ndarray:
        """Membership of one gate alone (no parent), for fitting; FlowKit gives the final
        membership. Cross-checked against FlowKit in the tests."""
        from matplotlib.path import Path as PolygonPath

        x = self.display(gate.x, frame)
        if gate.type == "polygon" and gate.y is not None:
            points = np.column_stack([x, self.display(gate.y, frame)])
            return PolygonPath(np.asarray(gate.vertices)).contains_points(points)
        keep = np.ones(x.shape, dtype=bool)
        for key, values in (
            ("x", x),
            ("y", None if gate.y is None else self.display(gate.y, frame)),
        ):
            lo, hi = gate.bounds.get(key, (None, None))
            if values is not None and lo is not None:
                keep &= values >= lo
            if values is not None and hi is not None:
                keep &= values < hi
        return keep

    def fit(self, frame: Mapping[str, np.ndarray]) -> tuple[list[GateShape], list[dict[str, str]]]:
        """Fit every gate with a ``<fit>`` spec to this sample, root first.

        Returns the fitted gates (template order) and plain-language notes on anything that
        could not be fitted (the template's position was kept there).
        """
        n = len(frame[self.dimensions[0]])
        fitted: dict[str, GateShape] = {g.id: g for g in self.gates}
        masks: dict[str | None, np.ndarray] = {None: np.ones(n, dtype=bool)}
        notes: list[dict[str, str]] = []
        clusters: dict[str, dict[str, gatefit.ClusterFit]] = {}
        deferred: list[GateShape] = []
        for gate in self.gates:
            spec = self.fits.get(gate.id)
            parent = masks.get(gate.parent, masks[None]) if gate.parent else masks[None]
            if spec is not None and spec.method == "contain":
                deferred.append(gate)
                masks[gate.id] = parent  # children are fitted on the parent's events
                continue
            if spec is not None:
                shape, note = self._fit_one(gate, spec, frame, parent, masks, clusters)
                fitted[gate.id] = shape
                if note:
                    notes.append({"gate": gate.id, "code": "population_not_found", "message": note})
            masks[gate.id] = parent & self.inside(fitted[gate.id], frame)
        for gate in deferred:
            fitted[gate.id] = self._contain(gate, self.fits[gate.id], fitted)
        return [fitted[g.id] for g in self.gates], notes

    def _fit_one(
        self,
        gate: GateShape,
        spec: FitSpec,
        frame: Mapping[str, np.ndarray],
        parent: np.ndarray,
        masks: Mapping[str | None, np.ndarray],
        clusters: dict[str, dict[str, gatefit.ClusterFit]],
    ) -> tuple[GateShape, str | None]:
        if spec.method == "valley":
            axis = gate.x if spec.attrs.get("axis", "x") == "x" else gate.y
            assert axis is not None
            edge = float(spec.attrs["edge"])
            lo, hi = spec.numbers("window")
            valley = gatefit.density_valley(self.display(axis, frame)[parent], (lo, hi))
            if valley is None:
                return gate, None
            return _move_edge(gate, spec.attrs.get("axis", "x"), edge, valley), None
        if spec.method == "ratio":
            assert gate.y is not None
            mode = gatefit.ratio_mode(
                self.display(gate.y, frame)[parent], self.display(gate.x, frame)[parent]
            )
            if mode is None:
                return gate, None
            factor = mode / float(spec.attrs["expected"])
            vertices = tuple((vx, vy * factor) for vx, vy in gate.vertices)
            return replace(gate, vertices=vertices), None
        # cluster: one mixture per (fit_on population), shared by every gate fitted on it
        fit_on = spec.attrs.get("fit_on", gate.parent or "")
        if fit_on not in clusters:
            clusters[fit_on] = self._fit_clusters(fit_on, frame, masks)
        result = clusters[fit_on].get(gate.id)
        if result is None or result.polygon is None:
            centre = spec.attrs["centre"]
            return gate, (
                f"{gate.id}: no population found near the template's position ({centre}); "
                "the template gate was used unchanged"
            )
        ylog = spec.attrs.get("ylog") == "true"
        vertices = tuple((float(vx), float(10**vy if ylog else vy)) for vx, vy in result.polygon)
        return replace(gate, vertices=vertices), None

    def _fit_clusters(
        self,
        fit_on: str,
        frame: Mapping[str, np.ndarray],
        masks: Mapping[str | None, np.ndarray],
    ) -> dict[str, gatefit.ClusterFit]:
        members = [
            g for g in self.gates if self.fits.get(g.id, FitSpec("", {})).method == "cluster"
        ]
        members = [g for g in members if self.fits[g.id].attrs.get("fit_on", g.parent) == fit_on]
        first = members[0]
        assert first.y is not None
        ylog = self.fits[first.id].attrs.get("ylog") == "true"
        mask = masks.get(fit_on)
        if mask is None:
            raise GatingError(f"{self.path}: fit_on={fit_on!r} is not a gate above {first.id}")
        x = self.display(first.x, frame)[mask]
        y = self.display(first.y, frame)[mask]
        if ylog:
            y = np.log10(np.clip(y, 1.0, None))
        targets = {}
        for gate in members:
            spec = self.fits[gate.id]
            cx, cy = spec.numbers("centre")
            dx, dy = spec.numbers("shift")
            centre = (cx, np.log10(cy) if ylog else cy)
            shift = (dx, np.log10(1 + dy) if ylog else dy * cy)
            targets[gate.id] = gatefit.ClusterTarget(centre, shift)
        return gatefit.fit_clusters(np.column_stack([x, y]), targets)

    def _contain(
        self, gate: GateShape, spec: FitSpec, fitted: Mapping[str, GateShape]
    ) -> GateShape:
        """Lower a threshold edge so every fitted child lies inside: blasts may be CD45-dim
        or negative, and the CD45+ gate above them must not cut them."""
        edge = float(spec.attrs["edge"])
        floor = float(spec.attrs.get("floor", "-inf"))
        children = [g for g in fitted.values() if g.parent == gate.id and g.type == "polygon"]
        lowest = min((min(v[0] for v in c.vertices) for c in children), default=edge)
        new_edge = max(floor, min(edge, lowest - 0.005))
        return _move_edge(gate, spec.attrs.get("axis", "x"), edge, new_edge)

    # -- writing --------------------------------------------------------------------------

    def to_gatingml(
        self,
        gates: list[GateShape],
        names: Mapping[str, str] | None = None,
        compensation: Mapping[str, str] | None = None,
    ) -> str:
        """A Gating-ML 2.0 document for ``gates`` with this template's transforms.

        ``names`` maps our dimension names to the file's detectors and ``compensation`` gives
        a dimension's ``compensation-ref`` (default ``uncompensated``: values as handed in);
        an export for the FCS file itself uses detectors and ``FCS``.
        """
        names = names or {}
        compensation = compensation or {}
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<gating:Gating-ML xmlns:gating="{GATING_NS}"',
            '    xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations"',
            f'    xmlns:data-type="{DATATYPE_NS}">',
        ]
        for name, xform in self._strategy.transformations.items():
            out.append(f"  <transforms:transformation transforms:id={quoteattr(name)}>")
            out.append(
                f'    <transforms:logicle transforms:T="{xform.param_t!r}" '
                f'transforms:W="{xform.param_w!r}" transforms:M="{xform.param_m!r}" '
                f'transforms:A="{xform.param_a!r}"/>'
            )
            out.append("  </transforms:transformation>")

        def dimension(axis: Axis, bounds: tuple[float | None, float | None] = (None, None)) -> str:
            attrs = ""
            if axis.transform:
                attrs += f" gating:transformation-ref={quoteattr(axis.transform)}"
            comp = compensation.get(axis.dimension, "uncompensated")
            attrs += f" gating:compensation-ref={quoteattr(comp)}"
            if bounds[0] is not None:
                attrs += f' gating:min="{bounds[0]!r}"'
            if bounds[1] is not None:
                attrs += f' gating:max="{bounds[1]!r}"'
            name = quoteattr(names.get(axis.dimension, axis.dimension))
            return (
                f"    <gating:dimension{attrs}><data-type:fcs-dimension data-type:name={name}/>"
                "</gating:dimension>"
            )

        for gate in gates:
            parent = f" gating:parent_id={quoteattr(gate.parent)}" if gate.parent else ""
            axes = [gate.x] if gate.y is None else [gate.x, gate.y]
            if gate.type == "polygon":
                out.append(f"  <gating:PolygonGate gating:id={quoteattr(gate.id)}{parent}>")
                out += [dimension(a) for a in axes]
                for vx, vy in gate.vertices:
                    out.append(
                        f'    <gating:vertex><gating:coordinate data-type:value="{vx!r}"/>'
                        f'<gating:coordinate data-type:value="{vy!r}"/></gating:vertex>'
                    )
                out.append("  </gating:PolygonGate>")
            else:
                out.append(f"  <gating:RectangleGate gating:id={quoteattr(gate.id)}{parent}>")
                out += [
                    dimension(a, gate.bounds.get(k, (None, None)))
                    for k, a in zip(("x", "y"), axes, strict=False)
                ]
                out.append("  </gating:RectangleGate>")
        out.append("</gating:Gating-ML>")
        return "\n".join(out) + "\n"

    def _shape(self, name: str, gate_path: tuple[str, ...]) -> GateShape:
        gate: Any = self._strategy.get_gate(name, gate_path=gate_path)
        parent = gate_path[-1] if gate_path and gate_path[-1] != "root" else None
        dims = list(getattr(gate, "dimensions", []))
        if not dims or len(dims) > 2:
            raise GatingError(f"{self.path}: gate {name} must have one or two dimensions")
        axes = [Axis(str(d.id), d.transformation_ref) for d in dims]
        x, y = axes[0], (axes[1] if len(axes) > 1 else None)
        kind = type(gate).__name__
        if kind == "PolygonGate":
            vertices = tuple((float(vx), float(vy)) for vx, vy in gate.vertices)
            return GateShape(name, parent, "polygon", x, y, vertices=vertices)
        if kind == "RectangleGate":
            bounds = {
                key: (
                    None if d.min is None else float(d.min),
                    None if d.max is None else float(d.max),
                )
                for key, d in zip(("x", "y"), dims, strict=False)
            }
            return GateShape(name, parent, "rectangle", x, y, bounds=bounds)
        raise GatingError(
            f"{self.path}: gate {name} is a {kind}; templates support polygon and rectangle gates"
        )


def gate_to_json(gate: GateShape, populations: Populations) -> dict[str, Any]:
    """One ``gates.json`` entry (see docs/outputs.md)."""
    entry: dict[str, Any] = {
        "id": gate.id,
        "parent": gate.parent,
        "type": gate.type,
        "x": _axis_json(gate.x),
        "y": _axis_json(gate.y),
    }
    if gate.type == "polygon":
        entry["vertices"] = [list(v) for v in gate.vertices]
    else:
        entry["bounds"] = {k: list(v) for k, v in gate.bounds.items()}
    events = populations.count(gate.id)
    parent_events = populations.count(gate.parent) if gate.parent else populations.n_total
    entry["events"] = events
    entry["pct_parent"] = _pct(events, parent_events)
    return entry


def _axis_json(axis: Axis | None) -> dict[str, Any] | None:
    return None if axis is None else {"dimension": axis.dimension, "transform": axis.transform}


def _move_edge(gate: GateShape, axis: str, old: float, new: float) -> GateShape:
    """Move every vertex (or rectangle bound) that sits on ``old`` along ``axis`` to ``new``."""
    i = 0 if axis == "x" else 1
    if gate.type == "polygon":
        vertices = tuple(
            tuple(new if (j == i and abs(v - old) < 1e-9) else v for j, v in enumerate(vertex))
            for vertex in gate.vertices
        )
        return replace(gate, vertices=vertices)  # type: ignore[arg-type]
    lo, hi = gate.bounds.get(axis, (None, None))
    bounds = dict(gate.bounds)
    bounds[axis] = (new if lo is not None and abs(lo - old) < 1e-9 else lo, hi)
    return replace(gate, bounds=bounds)


def gating_flags(
    populations: Populations, floors: Mapping[str, int], blasts: str = "blasts"
) -> list[dict[str, str]]:
    """Flags a reviewer must see about the blast gate: not found where expected, or too few
    events to detect (``floors['detect']``) or to quantify (``floors['quantify']``)."""
    flags = []
    for note in populations.notes:
        code = note["code"]
        if code == "population_not_found":
            code = "no_blast_population" if note["gate"] == blasts else "gate_not_fitted"
        flags.append({"code": code, "message": note["message"]})
    return flags + floor_flags(populations.count(blasts), floors)


def floor_flags(blasts: int, floors: Mapping[str, int]) -> list[dict[str, str]]:
    """Blasts too few to detect (``floors['detect']``) or to quantify (``floors['quantify']``):
    Poisson CV ~ 1/sqrt(n) makes a percentage from fewer events unreliable."""
    if blasts < int(floors["detect"]):
        return [
            {
                "code": "blasts_not_detected",
                "message": f"{blasts} blast events, below the detection floor of "
                f"{floors['detect']}",
            }
        ]
    if blasts < int(floors["quantify"]):
        return [
            {
                "code": "blasts_below_quantification_floor",
                "message": f"{blasts} blast events: detected, but below the quantification "
                f"floor of {floors['quantify']}",
            }
        ]
    return []


def export_gatingml(
    template: GatingTemplate,
    populations: Populations,
    detectors: Mapping[str, str],
    compensated: set[str],
) -> str:
    """The gates applied to one sample as Gating-ML 2.0 on the FCS file's own detectors, so
    that any Gating-ML reader re-gates the original file: compensated dimensions refer to the
    file's spillover (``compensation-ref="FCS"``), the others are used as acquired."""
    used = {a.dimension for g in populations.gates for a in (g.x, g.y) if a is not None}
    names = {m: d for m, d in detectors.items() if m in used}
    compensation = {m: "FCS" for m in names if detectors[m] in compensated}
    return template.to_gatingml(populations.gates, names=names, compensation=compensation)
