"""Gating: a Gating-ML 2.0 template applied to one tube gives :class:`Populations`.

The only module that talks Gating-ML. Templates name markers (``CD45``, ``SSC-A``), not
detectors; the caller hands in each marker's compensated events under that name, so the same
template serves every instrument. FlowKit evaluates the gates.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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

    def apply(self, data: Mapping[str, np.ndarray], sample_id: str = "sample") -> Populations:
        """Gate events given as marker -> compensated values (all the same length)."""
        import flowkit as fk

        missing = [d for d in self.dimensions if d not in data]
        if missing:
            raise GatingError(
                f"{self.path}: the tube has no {', '.join(missing)} for this template; map the "
                "marker in config (`markers` / `scatter`) or use a template for this panel"
            )
        frame = pd.DataFrame({d: np.asarray(data[d], dtype=np.float64) for d in self.dimensions})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = fk.Sample(frame, sample_id=sample_id)
            results = self._strategy.gate_sample(sample)
        masks = {
            g.id: np.asarray(results.get_gate_membership(g.id), dtype=bool) for g in self.gates
        }
        return Populations(masks=masks, gates=list(self.gates), n_total=len(frame))

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
    row = populations.counts().set_index("population").loc[gate.id]
    entry["events"] = int(row["events"])
    entry["pct_parent"] = float(row["pct_parent"])
    return entry


def _axis_json(axis: Axis | None) -> dict[str, Any] | None:
    return None if axis is None else {"dimension": axis.dimension, "transform": axis.transform}
