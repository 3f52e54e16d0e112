"""Gating: a Gating-ML 2.0 template applied to one tube gives :class:`Populations`.

Our template's route (a lab's own gating is :mod:`antigen_profile.lab_gating`; both read
files through :mod:`antigen_profile.gatingml` and are run by
:mod:`antigen_profile.gating_engine`). Templates name markers (``CD45``, ``SSC-A``), not
detectors; the caller hands in each marker's compensated events under that name, so the same
template serves every instrument. Templates are read here (lxml, checked against the Gating-ML
2.0 schema FlowKit ships), fitted to the tube (numerics in :mod:`antigen_profile.gatefit`),
exported as Gating-ML, and gated here with FlowKit's own membership rules, so results match
FlowKit's ``gate_sample`` without its cost: each display column is transformed once (logicle by
table), each gate tests only its parent's events, and the masks computed while fitting are the
final ones wherever a gate did not change afterwards.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from antigen_profile import gatefit
from antigen_profile.errors import AntigenProfileError
from antigen_profile.gatingml import (
    DATATYPE_NS,
    GATING_NS,
    TRANSFORMS_NS,
    datatype_tag,
    gating_tag,
    one_line,
    read_xml,
    transforms_tag,
)
from antigen_profile.populations import masked, percent, population_table
from antigen_profile.transforms import logicle_table


class GatingError(AntigenProfileError, ValueError):
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
        return int(np.count_nonzero(self.masks[population]))

    def counts(self) -> pd.DataFrame:
        """The ``populations.tsv`` table (see docs/outputs.md)."""
        return population_table(
            (
                (
                    gate.id,
                    gate.parent,
                    self.count(gate.id),
                    self.count(gate.parent) if gate.parent else self.n_total,
                )
                for gate in self.gates
            ),
            self.n_total,
        )

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


#: ``<fit method>`` values a template may use (see :class:`FitSpec`; ``width`` is written by
#: :mod:`antigen_profile.registration` for a singlet gate on a pulse-width channel).
FIT_METHODS = frozenset({"valley", "ratio", "cluster", "contain", "width"})

#: Compensation references a template may use: the caller hands in events compensated with
#: the tube's own spillover, which is what ``FCS`` asks for; a named matrix is not supported.
COMPENSATION_REFS = {"uncompensated", "FCS"}


@cache
def _schema() -> Any:
    """The Gating-ML 2.0 schema from FlowKit's package data (``None`` if FlowKit is absent),
    located without importing FlowKit, which alone costs ~2 s per job; building it ~2 ms."""
    from lxml import etree

    spec = importlib.util.find_spec("flowkit")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        xsd = Path(folder) / "_resources" / "Gating-ML.v2.0.xsd"
        if xsd.is_file():
            return etree.XMLSchema(etree.parse(str(xsd)))
    return None


def _read_template(
    path: Path,
) -> tuple[
    list[GateShape], dict[str, dict[str, float]], dict[str, FitSpec], dict[str, dict[str, Any]]
]:
    """Gates (parents first), logicle transforms, ``<fit>`` specs and the other
    antigen-profile elements of ``custom_info`` (``<landmark>``, ``<alternatives>``: see
    :mod:`antigen_profile.registration`) of a template, by gate id.

    Reads the subset of Gating-ML 2.0 templates use (polygon and rectangle gates on
    ``fcs-dimension``s, logicle transforms) after validating the whole document against the
    schema, as FlowKit does; anything else is a one-line :class:`GatingError`.
    """
    from lxml import etree

    root, _ = read_xml(
        path,
        "gating template",
        GatingError,
        syntax="{path}: not a valid Gating-ML 2.0 file ({reason}); validate it against the "
        "Gating-ML 2.0 schema",
        empty="{path}: the file holds no XML document; give a Gating-ML 2.0 file",
        doctype="{path}: declares a DOCTYPE, which Gating-ML 2.0 never does; remove the "
        "<!DOCTYPE ...> declaration (and any entities) from the template",
    )
    tree = root.getroottree()
    schema = _schema()
    if schema is None:
        raise GatingError(f"{path}: cannot validate: the Gating-ML 2.0 schema (FlowKit) is missing")
    if not schema.validate(tree):
        first = schema.error_log[0]
        raise GatingError(
            f"{path}: not a valid Gating-ML 2.0 file (line {first.line}: "
            f"{one_line(first.message)}); validate it against the Gating-ML 2.0 schema"
        )
    root = tree.getroot()

    def fail(message: str) -> GatingError:
        return GatingError(f"{path}: {message}")

    transforms: dict[str, dict[str, float]] = {}
    other_kinds: dict[str, str] = {}
    for element in root.iterchildren(transforms_tag("transformation")):
        xform_id = str(element.get(transforms_tag("id")))
        kind = next((etree.QName(c).localname for c in element if isinstance(c.tag, str)), "")
        if kind == "logicle":
            child = element.find(transforms_tag("logicle"))
            transforms[xform_id] = {
                k: float(child.get(transforms_tag(k))) for k in ("T", "W", "M", "A")
            }
        else:
            other_kinds[xform_id] = kind

    gates: dict[str, GateShape] = {}
    fits: dict[str, FitSpec] = {}
    extras: dict[str, dict[str, Any]] = {}
    for element in root:
        if not isinstance(element.tag, str):
            continue
        qname = etree.QName(element)
        if qname.namespace != GATING_NS or not qname.localname.endswith("Gate"):
            continue
        name = str(element.get(gating_tag("id")))
        if qname.localname not in ("PolygonGate", "RectangleGate"):
            article = "an" if qname.localname[0] in "AEIOU" else "a"
            raise fail(
                f"gate {name} is {article} {qname.localname}; templates support polygon and "
                "rectangle gates"
            )
        if name in gates:
            raise fail(f"gate id {name} is used twice")
        axes: list[Axis] = []
        bounds: dict[str, tuple[float | None, float | None]] = {}
        dims = element.findall(gating_tag("dimension"))
        for key, dim in zip(("x", "y", "z"), dims, strict=False):
            fcs = dim.find(datatype_tag("fcs-dimension"))
            if fcs is None:
                raise fail(f"gate {name} uses a derived (ratio) dimension; templates gate markers")
            xform = dim.get(gating_tag("transformation-ref"))
            if xform is not None and xform not in transforms:
                kind = other_kinds.get(xform)
                raise fail(
                    f"gate {name} uses the {kind} transform {xform}; templates support logicle"
                    if kind
                    else f"gate {name} refers to transform {xform}, which the file does not define"
                )
            compensation = dim.get(gating_tag("compensation-ref"))
            if compensation not in COMPENSATION_REFS:
                raise fail(
                    f"gate {name} refers to compensation {compensation}; templates gate "
                    "events compensated with the tube's own spillover: use "
                    'compensation-ref="uncompensated"'
                )
            axes.append(Axis(str(fcs.get(datatype_tag("name"))), xform))
            lo, hi = dim.get(gating_tag("min")), dim.get(gating_tag("max"))
            bounds[key] = (None if lo is None else float(lo), None if hi is None else float(hi))
        parent = element.get(gating_tag("parent_id"))
        if qname.localname == "PolygonGate":
            if len(axes) != 2:
                raise fail(f"gate {name} must have two dimensions")
            vertices = []
            for vertex in element.findall(gating_tag("vertex")):
                coords = [
                    float(c.get(datatype_tag("value")))
                    for c in vertex.findall(gating_tag("coordinate"))
                ]
                if len(coords) != 2:
                    raise fail(f"gate {name} has a vertex without two coordinates")
                vertices.append((coords[0], coords[1]))
            gates[name] = GateShape(name, parent, "polygon", axes[0], axes[1], tuple(vertices))
        else:
            if not axes or len(axes) > 2:
                raise fail(f"gate {name} must have one or two dimensions")
            y = axes[1] if len(axes) > 1 else None
            gates[name] = GateShape(name, parent, "rectangle", axes[0], y, bounds=bounds)
        for info in element.findall(datatype_tag("custom_info")):
            spec = info.find("fit")
            if spec is not None:
                fits[name] = FitSpec(spec.get("method", ""), dict(spec.attrib))
            for tag in ("landmark", "alternatives"):
                found = info.find(tag)
                if found is not None:
                    extras.setdefault(name, {})[tag] = dict(found.attrib)
    return _parents_first(gates, fail), transforms, fits, extras


def _parents_first(gates: Mapping[str, GateShape], fail: Any) -> list[GateShape]:
    """Depth first from the roots, siblings in document order (FlowKit's order for templates
    written parents first); a parent that is no gate, or a cycle, is an error."""
    children: dict[str | None, list[GateShape]] = {}
    for gate in gates.values():
        if gate.parent is not None and gate.parent not in gates:
            raise fail(f"gate {gate.id}'s parent {gate.parent} is not a gate in the file")
        children.setdefault(gate.parent, []).append(gate)
    order: list[GateShape] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        gate = stack.pop()
        order.append(gate)
        stack.extend(reversed(children.get(gate.id, [])))
    if len(order) != len(gates):
        cyclic = sorted(set(gates) - {g.id for g in order})
        raise fail(f"gates {', '.join(cyclic)} are their own ancestors")
    return order


#: Events per block when testing polygons: bounds the index and point buffers to a few MiB.
BLOCK = 1 << 16
#: Cells per axis of the grid :class:`_PolygonGrid` lays over a polygon's bounding box.
GRID = 32
#: A parent holding at least this share of the events is tested over all events (then masked):
#: cheaper than gathering its events.
DENSE_PARENT = 0.25
#: Cell states of :class:`_PolygonGrid`.
_OUT, _IN, _EXACT = 0, 1, 2


class _PolygonGrid:
    """flowutils' winding-number test of one polygon, decided per grid cell where it cannot
    vary.

    A ``GRID`` x ``GRID`` grid covers the polygon's (padded) bounding box. flowutils adds, per
    edge whose y-span ``[min, max)`` holds the point's y, +1 (edge upward, point strictly
    left of it) or -1 (downward, strictly right), the side being the sign of the float
    cross product; the point is inside when the sum is odd. In a cell (widened by a margin
    far above the rounding of the cell index) where every edge either spans the whole cell
    in y or none of it, and the cross product of every spanning edge has one sign at all
    four corners with a magnitude a billion times its rounding error bound, every point
    gets the same sum as the exact arithmetic gives, so the cell's answer is known without
    testing its points. Only points in the other cells (those an edge crosses, and the
    outermost ring, which reaches past the exact bounding box) are handed to flowutils;
    points outside the padded box are outside, as before. ``tests/test_gating.py`` checks
    the result against flowutils on random polygons, edges and vertices included.
    """

    def __init__(self, vertices: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x_lo, y_lo, x_hi, y_hi = box
        self.ok = False
        width, height = x_hi - x_lo, y_hi - y_lo
        pad = 1e-9 * (np.ptp(vertices, axis=0) + np.abs(vertices).max(axis=0))
        if not (width > 0 and height > 0 and np.all(np.isfinite(vertices))):
            return
        if pad[0] * GRID * 4 >= width or pad[1] * GRID * 4 >= height:
            return  # the pad would reach past the ring of cells: test every point
        self.ok = True
        self.x_lo, self.y_lo = x_lo, y_lo
        # a hair under GRID cells per box: every point of the box lands in a cell below GRID
        self.sx = GRID / width * (1 - 1e-12)
        self.sy = GRID / height * (1 - 1e-12)
        cw, ch = 1 / self.sx, 1 / self.sy
        i = np.arange(GRID + 1, dtype=np.float64)
        nodes_x, nodes_y = x_lo + i * cw, y_lo + i * ch  # cell corners
        margin_x = 1e-6 * cw + 1e-12 * (abs(x_lo) + abs(x_hi))
        margin_y = 1e-6 * ch + 1e-12 * (abs(y_lo) + abs(y_hi))
        y0 = (nodes_y[:-1] - margin_y)[:, None, None]  # rows (y), columns (x), edges
        y1 = (nodes_y[1:] + margin_y)[:, None, None]  # (cells widened by the margins)
        ax, ay = vertices[:, 0], vertices[:, 1]
        bx, by = np.roll(ax, -1), np.roll(ay, -1)  # edge k runs from vertex k to k + 1
        low, high = np.minimum(ay, by), np.maximum(ay, by)
        up, down = ay < by, ay > by  # horizontal edges never count
        # edges whose closed y-span meets the cell's rows: their side must be known
        meets = (low <= y1) & (high >= y0) & (up | down)
        dx, dy = bx - ax, by - ay
        # flowutils' cross product at every cell corner; over a cell it is affine, so its
        # extremes are at the corners, and the margins move it by at most `widen`
        cross = (dx * (nodes_y[:, None] - ay))[:, None, :] - ((nodes_x[:, None] - ax) * dy)[None]
        pair = np.minimum(cross[:-1], cross[1:])
        lowest = np.minimum(pair[:, :-1], pair[:, 1:])
        pair = np.maximum(cross[:-1], cross[1:])
        highest = np.maximum(pair[:, :-1], pair[:, 1:])
        widen = np.abs(dx) * margin_y + np.abs(dy) * margin_x
        reach_y = np.maximum(np.abs(nodes_y[:-1, None] - ay), np.abs(nodes_y[1:, None] - ay))
        reach_x = np.maximum(np.abs(nodes_x[:-1, None] - ax), np.abs(nodes_x[1:, None] - ax))
        reach_y += margin_y
        reach_x += margin_x
        # a billion times the rounding error bound of the products (scale of both terms)
        tol = 1e-9 * ((np.abs(dx) * reach_y)[:, None, :] + (np.abs(dy) * reach_x)[None]) + widen
        left = lowest > tol  # cross product > 0 over the whole (widened) cell
        right = highest < -tol  # < 0
        known = np.all(~meets | left | right, axis=2)
        # counted where the y-span holds the point's y: +1 (up, left) or -1 (down, right);
        # the count is the same for every y of the cell when, at each vertex height in
        # it, the counting edges that start there match those that end there
        counts = meets & ((up & left) | (down & right))
        jump = counts.astype(np.float64) - np.roll(counts, 1, axis=2)  # at vertex k
        at = (ay >= y0) & (ay <= y1)  # vertex heights in the cell's rows
        heights, group = np.unique(ay, return_inverse=True)
        one_hot = np.zeros((ay.size, heights.size))  # small integers: exact in float
        one_hot[np.arange(ay.size), group] = 1
        steady = ~np.any((jump * at) @ one_hot, axis=2)
        # the count at the cell's lowest y
        holds = (low <= y0) & (y0 < high)
        wind = np.sum(holds & up & left, axis=2) - np.sum(holds & down & right, axis=2)
        states = np.where(known & steady, wind % 2 != 0, _EXACT)
        states = states.astype(np.uint8)
        states[[0, -1], :] = _EXACT  # the ring reaches past the exact bounding box
        states[:, [0, -1]] = _EXACT
        # one more ring, outside the padded box: outside the polygon
        self.table = np.zeros((GRID + 2, GRID + 2), dtype=np.uint8)
        self.table[1:-1, 1:-1] = states
        self.table = self.table.reshape(-1)

    def states(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Each point's cell state: outside, inside, or to be tested exactly."""
        u = px - self.x_lo
        u *= self.sx
        np.floor(u, out=u)
        np.clip(u, -1.0, GRID, out=u)
        v = py - self.y_lo
        v *= self.sy
        np.floor(v, out=v)
        np.clip(v, -1.0, GRID, out=v)
        v *= GRID + 2
        v += u
        v += GRID + 3  # (row + 1) * (GRID + 2) + column + 1
        with np.errstate(invalid="ignore"):  # NaN: a border cell, outside (as flowutils)
            cells = v.astype(np.intp)
        return self.table.take(cells, mode="clip")


def membership(
    gate: GateShape, x: np.ndarray, y: np.ndarray | None, parent: np.ndarray | None = None
) -> np.ndarray:
    """Events inside ``gate`` among ``parent``'s (all events when ``None``), by FlowKit's own
    rules, so that fitting, the final masks and FlowKit re-gating the export agree, events on
    an edge included: polygons by flowutils' winding-number test (FlowKit's), rectangles
    ``min <= v < max`` (Gating-ML). ``x`` and ``y`` are display-scale columns over all events;
    only the parent's events are tested, in blocks, so no copy of all events is made; a
    polygon's events are decided per grid cell where flowutils' answer cannot vary there
    (:class:`_PolygonGrid`), the others by flowutils itself."""
    n = x.shape[0]
    if gate.type != "polygon":
        keep = np.ones(n, dtype=bool) if parent is None else parent.copy()
        for key, values in (("x", x), ("y", y)):
            lo, hi = gate.bounds.get(key, (None, None))
            if values is not None and lo is not None:
                keep &= values >= lo
            if values is not None and hi is not None:
                keep &= values < hi
        return keep
    from flowutils import gating as fu_gating

    assert y is not None
    vertices = np.asarray(gate.vertices, dtype=np.float64)
    # Outside the polygon's bounding box the winding number is exactly 0: above or below it
    # a point crosses no edge; right of it, it is right of every edge it crosses (none
    # counts); left of it, upward and downward crossings cancel. So only points in the box
    # (padded far beyond rounding error in flowutils' edge test) are tested; NaN is out.
    pad = 1e-9 * (np.ptp(vertices, axis=0) + np.abs(vertices).max(axis=0))
    (x_lo, y_lo), (x_hi, y_hi) = vertices.min(axis=0) - pad, vertices.max(axis=0) + pad
    grid = _PolygonGrid(vertices, (x_lo, y_lo, x_hi, y_hi))

    def test(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """flowutils' answer for these points (in the padded box or not)."""
        hits = np.zeros(px.size, dtype=bool)
        if grid.ok:
            state = grid.states(px, py)
            hits = state == _IN
            near = np.flatnonzero(state == _EXACT)
        else:
            near = np.flatnonzero((px >= x_lo) & (px <= x_hi) & (py >= y_lo) & (py <= y_hi))
        if near.size:
            points = np.empty((near.size, 2), dtype=np.float64)
            points[:, 0] = px[near]
            points[:, 1] = py[near]
            hits[near] = fu_gating.points_in_polygon(vertices, points)
        return hits

    dense = parent is None or np.count_nonzero(parent) >= DENSE_PARENT * n
    out = np.zeros(n, dtype=bool)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        if dense:  # every event of the block, then the parent's
            hits = test(x[start:stop], y[start:stop])
            if parent is not None:
                hits &= parent[start:stop]
            out[start:stop] = hits
            continue
        assert parent is not None
        index = np.flatnonzero(parent[start:stop])
        if index.size == 0:
            continue
        index += start
        out[index] = test(x[index], y[index])
    return out


class _Events(Mapping[str, np.ndarray]):
    """One tube's events by marker, remembering each (dimension, transform) display column so
    that it is computed once however many gates and fitting steps use it."""

    def __init__(self, template: GatingTemplate, data: Mapping[str, Any]) -> None:
        self._template = template
        self._data = data
        self._columns: dict[tuple[str, str | None], np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        return np.asarray(self._data[key], dtype=np.float64)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def n(self) -> int:
        return len(self[self._template.dimensions[0]])

    def column(self, axis: Axis, index: np.ndarray | None = None) -> np.ndarray:
        key = (axis.dimension, axis.transform)
        if key not in self._columns:
            if index is not None:  # a few events: not worth transforming them all
                return self._template.transform(axis.transform, self[axis.dimension][index])
            self._columns[key] = self._template.transform(axis.transform, self[axis.dimension])
        column = self._columns[key]
        return column if index is None else column[index]


@dataclass(frozen=True)
class _Membership:
    """A gate's mask and what it was computed from: the shape, and the events it was tested
    among (its parent's mask at the time; ``None`` for all events)."""

    gate: GateShape
    mask: np.ndarray
    among: np.ndarray | None


#: Memberships by gate id.
Known = dict[str, _Membership]


class GatingTemplate:
    """A Gating-ML 2.0 gating strategy whose dimensions are marker names.

    Parameters
    ----------
    path : str or Path
        The Gating-ML file (``resources/gates/*.xml``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.gates, self.transforms, self.fits, self.extras = _read_template(self.path)
        #: Transform of each backbone marker (``require``), set by registration; others use
        #: the template's first transform.
        self.marker_transforms: dict[str, str] = {}
        unknown = {f.method for f in self.fits.values()} - FIT_METHODS
        if unknown:
            raise GatingError(f"{self.path}: unknown fit method(s) {', '.join(sorted(unknown))}")

    @property
    def optional_gates(self) -> list[str]:
        """Gates the template marks ``<alternatives optional="true">``: skipped (and flagged)
        when a tube has none of their channel pairs."""
        return [
            gate_id
            for gate_id, extra in self.extras.items()
            if extra.get("alternatives", {}).get("optional") == "true"
        ]

    @property
    def required(self) -> list[str]:
        """Marker names a tube must have: those of every gate that is not optional."""
        optional = set(self.optional_gates)
        names: list[str] = []
        for gate in self.gates:
            if gate.id in optional:
                continue
            for axis in (gate.x, gate.y):
                if axis is not None and axis.dimension not in names:
                    names.append(axis.dimension)
        return names

    def marker_transform(self, marker: str) -> str:
        """The transform a backbone marker is gated on."""
        return self.marker_transforms.get(marker, next(iter(self.transforms)))

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
        """Values in the template's scale for a dimension with transform ``name``: the logicle
        by table (within 1e-9 of FlowKit's, see :class:`~antigen_profile.transforms.LogicleTable`),
        the same values gating uses."""
        if name is None:
            return np.asarray(values, dtype=np.float64)
        return logicle_table(self.transforms[name])(values)

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
        population lies in this sample (see :class:`FitSpec`); the fitted coordinates are the
        ones gated, reported in ``gates.json`` and drawn. ``require`` adds backbone markers to
        the definition of ``population`` (``{"CD34": "positive", "CD3": "negative"}``), see
        :meth:`require_markers`. ``sample_id`` is kept for callers; gating does not use it.
        """
        require = dict(require or {})
        dimensions = self.dimensions + [m for m in require if m not in self.dimensions]
        missing = [d for d in dimensions if d not in data]
        if missing:
            raise GatingError(
                f"{self.path}: the tube has no {', '.join(missing)} for this template; map the "
                "marker in config (`markers` / `scatter`) or use a template for this panel"
            )
        events = _Events(self, {d: data[d] for d in dimensions})
        if len({events[d].shape for d in dimensions}) > 1:
            raise GatingError(f"{self.path}: the markers handed in have different event counts")
        known: Known = {}
        if fit and self.fits:
            gates, notes, known = self._fit(events)
        else:
            gates, notes = list(self.gates), []
        known = self._gate(gates, events, known)
        if require:
            masks = {gate_id: member.mask for gate_id, member in known.items()}
            gates, more = self.require_markers(gates, events, require, population, masks)
            notes += more
            region = f"{population}_region"
            if population in known and any(g.id == region for g in gates):
                member = known.pop(population)  # the same gate, renamed
                known[region] = replace(member, gate=replace(member.gate, id=region))
            known = self._gate(gates, events, known)
        masks = {g.id: known[g.id].mask for g in gates}
        return Populations(masks=masks, gates=gates, n_total=events.n, notes=notes)

    def _gate(self, gates: list[GateShape], events: _Events, known: Known) -> Known:
        """Every gate's final membership, parents first, each tested on its parent's events
        only. A mask from fitting is kept where neither the gate nor its parent changed since;
        one tested among more events than its parent now has (a child fitted before its
        ``contain`` parent moved) is narrowed to them rather than tested again."""
        out: Known = {}
        for gate in gates:
            among = out[gate.parent].mask if gate.parent is not None else None
            prior = known.get(gate.id)
            if prior is not None and prior.gate == gate:
                if prior.among is among:
                    out[gate.id] = prior
                    continue
                narrowable = prior.among is not None and among is not None
                if narrowable and not np.any(among & ~prior.among):  # among within prior's
                    out[gate.id] = _Membership(gate, prior.mask & among, among)
                    continue
            out[gate.id] = _Membership(gate, self.inside(gate, events, among), among)
        return out

    def require_markers(
        self,
        gates: list[GateShape],
        frame: Mapping[str, np.ndarray],
        require: Mapping[str, str],
        population: str = "blasts",
        masks: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[list[GateShape], list[dict[str, str]]]:
        """Narrow ``population`` by backbone markers (CD34+, CD3-, ...), one 1-D gate each.

        The template's gate becomes ``{population}_region`` and the last backbone gate takes
        the population's name, so every later stage still reads ``blasts``. Each threshold
        sits at the density valley of the marker among the region's parent events (where
        positive and negative cells both occur); a marker without a clear valley is not
        applied and a note says so, rather than cutting at a guessed level. ``masks`` (by gate
        id) saves recomputing the parent's membership.
        """
        if not self.transforms:
            raise GatingError(f"{self.path}: backbone markers need a logicle transform")
        by_id = {g.id: g for g in gates}
        region = by_id[population]
        if masks is not None and region.parent in masks:
            parent_mask = masks[region.parent]
        else:
            parent_mask = self._chain_mask(region.parent, by_id, frame)
        notes: list[dict[str, str]] = []
        steps: list[tuple[str, str, float]] = []
        for marker, sign in require.items():
            xform = self.marker_transform(marker)
            values = self.display(Axis(marker, xform), frame)[parent_mask]
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
            axis = Axis(marker, self.marker_transform(marker))
            chain.append(GateShape(gate_id, parent, "rectangle", axis, None, bounds=bounds))
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
        """Membership of ``gate_id`` with all its ancestors, root first."""
        chain: list[GateShape] = []
        while gate_id is not None:
            chain.insert(0, by_id[gate_id])
            gate_id = chain[0].parent
        mask: np.ndarray | None = None
        for gate in chain:
            mask = self.inside(gate, frame, mask)
        if mask is None:
            return np.ones(len(frame[self.dimensions[0]]), dtype=bool)
        return mask

    def _events(self, frame: Mapping[str, np.ndarray]) -> _Events:
        return frame if isinstance(frame, _Events) else _Events(self, frame)

    # -- fitting --------------------------------------------------------------------------

    def display(
        self, axis: Axis, frame: Mapping[str, np.ndarray], index: np.ndarray | None = None
    ) -> np.ndarray:
        """A dimension's values in the gate's (display) scale, for all events or only those at
        ``index`` (a plot transforms just the events it draws)."""
        if isinstance(frame, _Events):
            return frame.column(axis, index)
        values = np.asarray(frame[axis.dimension], dtype=np.float64)
        return self.transform(axis.transform, values if index is None else values[index])

    def inside(
        self,
        gate: GateShape,
        frame: Mapping[str, np.ndarray],
        parent: np.ndarray | None = None,
    ) -> np.ndarray:
        """Membership of one gate among ``parent``'s events (all events when ``None``): the
        one test (:func:`membership`) that fitting and the final masks both use."""
        y = None if gate.y is None else self.display(gate.y, frame)
        return membership(gate, self.display(gate.x, frame), y, parent)

    def fit(self, frame: Mapping[str, np.ndarray]) -> tuple[list[GateShape], list[dict[str, str]]]:
        """Fit every gate with a ``<fit>`` spec to this sample, root first.

        Returns the fitted gates (template order) and plain-language notes on anything that
        could not be fitted (the template's position was kept there).
        """
        gates, notes, _ = self._fit(self._events(frame))
        return gates, notes

    def _fit(self, events: _Events) -> tuple[list[GateShape], list[dict[str, str]], Known]:
        """:meth:`fit`, plus the memberships computed on the way, for :meth:`_gate` to reuse
        (the ``contain`` gate has none: it moves after its children are fitted)."""
        fitted: dict[str, GateShape] = {g.id: g for g in self.gates}
        masks: dict[str | None, np.ndarray] = {None: np.ones(events.n, dtype=bool)}
        known: Known = {}
        notes: list[dict[str, str]] = []
        clusters: dict[str, dict[str, gatefit.ClusterFit]] = {}
        deferred: list[GateShape] = []
        for gate in self.gates:
            spec = self.fits.get(gate.id)
            parent = masks[gate.parent]
            if spec is not None and spec.method == "contain":
                deferred.append(gate)
                masks[gate.id] = parent  # children are fitted on the parent's events
                continue
            if spec is not None:
                shape, note = self._fit_one(gate, spec, events, parent, masks, clusters)
                fitted[gate.id] = shape
                if note:
                    notes.append({"gate": gate.id, "code": "population_not_found", "message": note})
            among = parent if gate.parent else None
            masks[gate.id] = self.inside(fitted[gate.id], events, among)
            known[gate.id] = _Membership(fitted[gate.id], masks[gate.id], among)
        for gate in deferred:
            fitted[gate.id] = self._contain(gate, self.fits[gate.id], fitted)
        return [fitted[g.id] for g in self.gates], notes, known

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
            valley = gatefit.density_valley(masked(self.display(axis, frame), parent), (lo, hi))
            if valley is None:
                return gate, None
            return _move_edge(gate, spec.attrs.get("axis", "x"), edge, valley), None
        if spec.method == "width":
            assert gate.y is not None
            width = gatefit.median_width(masked(self.display(gate.y, frame), parent))
            if width is None:
                return gate, f"{gate.id}: too few events to place the pulse-width band"
            return _width_band(gate, width, spec.numbers("band")), None
        if spec.method == "ratio":
            assert gate.y is not None
            numerator, denominator = self.display(gate.y, frame), self.display(gate.x, frame)
            use = denominator > 0  # the parent's events ratio_mode keeps, taken out once
            use &= parent
            mode = gatefit.ratio_mode(masked(numerator, use), masked(denominator, use))
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
        # Only the events the mixture is fitted on are built (gatefit.fit_rows): the same
        # fit as from every event's point, without millions of logarithms.
        # The rows are drawn among the population's finite events as if they had been taken
        # out first (the same draw), then only they are: x, y of every event stay in place.
        xs, ys = self.display(first.x, frame), self.display(first.y, frame)
        finite = np.isfinite(xs)
        finite &= (ys < np.inf) if ylog else np.isfinite(ys)  # log10(clip(y, 1)): -inf is 0
        finite &= mask
        rows = gatefit.fit_rows(finite)
        x, y = xs[rows], ys[rows]
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
            f'    xmlns:transforms="{TRANSFORMS_NS}"',
            f'    xmlns:data-type="{DATATYPE_NS}">',
        ]
        for name, params in self.transforms.items():
            out.append(f"  <transforms:transformation transforms:id={quoteattr(name)}>")
            out.append(
                f'    <transforms:logicle transforms:T="{params["T"]!r}" '
                f'transforms:W="{params["W"]!r}" transforms:M="{params["M"]!r}" '
                f'transforms:A="{params["A"]!r}"/>'
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


def _width_band(gate: GateShape, width: float, band: tuple[float, ...]) -> GateShape:
    """A singlet band on a pulse-width axis: singlets within ``band`` (low, high) times the
    median width, across the whole area axis (doublets are wider)."""
    xs = [v[0] for v in gate.vertices]
    lo, hi = band
    x0, x1 = min(xs), max(xs)
    vertices = ((x0, width * lo), (x1, width * lo), (x1, width * hi), (x0, width * hi))
    return replace(gate, vertices=vertices)


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
    entry["pct_parent"] = percent(events, parent_events)
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
