"""Tests of gating: the shipped B-ALL template, Populations, gates.json and the polygon engine."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CORPUS, corpus_skip_reason
from matplotlib.path import Path as MplPath

from antigen_profile.compensate import compensate
from antigen_profile.config import load_config
from antigen_profile.fcs import parse_spillover
from antigen_profile.gating import (
    Axis,
    GateShape,
    GatingError,
    GatingTemplate,
    Populations,
    gate_to_json,
    membership,
)
from antigen_profile.ingest import find_markers
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import Truth, demo_tube_events, demo_tube_spec
from antigen_profile.transforms import logicle

TEMPLATE = REPO_ROOT / "resources" / "gates" / "b-all-blasts.xml"
COMPLIANCE = CORPUS / "gatingml-compliance"
CONFIG = load_config()
QUANTIFIED = ("CD19", "CD22", "CD123", "CD38", "CD10", "CD20")

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<gating:Gating-ML
    xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating"
    xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
    xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">
"""
TAIL = "</gating:Gating-ML>\n"

#: A concave ("C"-shaped) polygon: a convex-hull shortcut would get the notch wrong.
CONCAVE = [(0.0, 0.0), (10.0, 0.0), (10.0, 3.0), (4.0, 3.0), (4.0, 7.0), (10.0, 7.0),
           (10.0, 10.0), (0.0, 10.0), (2.0, 5.0)]  # fmt: skip


def _dim(name: str) -> str:
    return (
        '<gating:dimension gating:compensation-ref="uncompensated">'
        f'<data-type:fcs-dimension data-type:name="{name}"/></gating:dimension>'
    )


def _polygon(gate_id: str, dims: tuple[str, str], vertices: Sequence[tuple[float, float]],
             parent: str | None = None) -> str:  # fmt: skip
    parent_attr = f' gating:parent_id="{parent}"' if parent else ""
    verts = "".join(
        f'<gating:vertex><gating:coordinate data-type:value="{x}"/>'
        f'<gating:coordinate data-type:value="{y}"/></gating:vertex>'
        for x, y in vertices
    )
    return (
        f'<gating:PolygonGate gating:id="{gate_id}"{parent_attr}>'
        f"{_dim(dims[0])}{_dim(dims[1])}{verts}</gating:PolygonGate>\n"
    )


def _rectangle(gate_id: str, dim: str, low: float | None, high: float | None,
               parent: str | None = None) -> str:  # fmt: skip
    parent_attr = f' gating:parent_id="{parent}"' if parent else ""
    limits = ""
    if low is not None:
        limits += f' gating:min="{low}"'
    if high is not None:
        limits += f' gating:max="{high}"'
    return (
        f'<gating:RectangleGate gating:id="{gate_id}"{parent_attr}>'
        f'<gating:dimension gating:compensation-ref="uncompensated"{limits}>'
        f'<data-type:fcs-dimension data-type:name="{dim}"/></gating:dimension>'
        "</gating:RectangleGate>\n"
    )


def _template(tmp_path: Path, *gates: str) -> GatingTemplate:
    path = tmp_path / "template.xml"
    path.write_text(HEAD + "".join(gates) + TAIL, encoding="utf-8")
    return GatingTemplate(path)


def _custom(tmp_path: Path) -> GatingTemplate:
    """A concave polygon on X/Y, a 1-D open rectangle on Z inside it and a sibling on W."""
    return _template(
        tmp_path,
        _polygon("shape", ("X", "Y"), CONCAVE),
        _rectangle("bright", "Z", 5.0, None, parent="shape"),
        _rectangle("other", "W", None, 0.5, parent="shape"),
    )


def _cloud(n: int = 20_000, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.uniform(-1.0, 11.0, n),
        "Y": rng.uniform(-1.0, 11.0, n),
        "Z": rng.uniform(0.0, 10.0, n),
        "W": rng.uniform(0.0, 1.0, n),
    }


def _inside(vertices: Sequence[Sequence[float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point in polygon computed independently of FlowKit."""
    return MplPath(np.asarray(vertices, dtype=float)).contains_points(np.column_stack([x, y]))


def _precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int(np.sum(found & truth))
    return hits / max(int(found.sum()), 1), hits / max(int(truth.sum()), 1)


@pytest.fixture(scope="module")
def template() -> GatingTemplate:
    return GatingTemplate(TEMPLATE)


@pytest.fixture(scope="module")
def demo() -> tuple[dict[str, np.ndarray], Truth]:
    """P01-R1's events compensated with the file's own $SPILLOVER, keyed by marker name."""
    spec, _ = demo_tube_spec("P01-R1")
    events, truth = demo_tube_events("P01-R1")
    channels = [c.name for c in spec.channels]
    labels = [c.label for c in spec.channels]
    names, matrix = parse_spillover(spec.keywords()["$SPILLOVER"], channels)
    spill = pd.DataFrame(matrix, index=names, columns=names)
    compensated = compensate(events, channels, spill)
    markers = find_markers(channels, labels, CONFIG["markers"], CONFIG["scatter"]).markers
    data = {m: compensated[:, channels.index(d)] for m, d in markers.items()}
    return data, truth


@pytest.fixture(scope="module")
def populations(template: GatingTemplate, demo: tuple[dict[str, np.ndarray], Truth]) -> Populations:
    return template.apply(demo[0], "P01-R1")


# --------------------------------------------------------------------------------------------
# The shipped template
# --------------------------------------------------------------------------------------------


def test_template_parses_with_the_expected_hierarchy(template: GatingTemplate) -> None:
    assert [(g.id, g.parent) for g in template.gates] == [
        ("cells", None),
        ("singlets", "cells"),
        ("leukocytes", "singlets"),
        ("blasts", "leukocytes"),
        ("lymphocytes", "leukocytes"),
        ("monocytes", "leukocytes"),
        ("granulocytes", "leukocytes"),
    ]


def test_template_dimensions_never_include_a_quantified_antigen(
    template: GatingTemplate,
) -> None:
    """Blasts must never be defined by the antigens reported on them (circular gating)."""
    dims = template.dimensions
    assert len(dims) == len(set(dims))
    assert set(dims) == {"FSC-A", "SSC-A", "FSC-H", "CD45"}
    assert not set(dims) & set(QUANTIFIED)
    assert not set(dims) & set(CONFIG["quantified"])


def test_blast_and_lymphocyte_gates_match_the_truth(
    populations: Populations, demo: tuple[dict[str, np.ndarray], Truth]
) -> None:
    truth = demo[1]
    for name in ("blasts", "lymphocytes"):
        precision, recall = _precision_recall(populations.masks[name], truth.mask(name))
        assert precision >= 0.99, (name, precision)
        assert recall >= 0.99, (name, recall)


def test_leukocytes_exclude_debris_and_doublets(
    populations: Populations, demo: tuple[dict[str, np.ndarray], Truth]
) -> None:
    truth = demo[1]
    precision, recall = _precision_recall(populations.masks["leukocytes"], truth.leukocytes())
    assert precision >= 0.99
    assert recall >= 0.99


def test_counts_match_masks(
    populations: Populations, demo: tuple[dict[str, np.ndarray], Truth]
) -> None:
    table = populations.counts()
    n_total = len(demo[1].population)
    assert populations.n_total == n_total
    assert list(table.columns) == ["population", "parent", "events", "pct_parent", "pct_total"]
    assert list(table["population"]) == [g.id for g in populations.gates]
    for row in table.to_dict("records"):
        mask = populations.masks[row["population"]]
        assert mask.shape == (n_total,)
        assert row["events"] == int(mask.sum())
        parent_events = populations.count(row["parent"]) if row["parent"] else n_total
        assert row["pct_parent"] == pytest.approx(100.0 * row["events"] / parent_events, abs=1e-4)
        assert row["pct_total"] == pytest.approx(100.0 * row["events"] / n_total, abs=1e-4)
        if row["parent"]:
            # a child population is a subset of its parent
            assert not np.any(mask & ~populations.masks[row["parent"]])
    assert table.loc[table["population"] == "cells", "parent"].item() == ""


def test_defined_by_blasts(populations: Populations) -> None:
    assert populations.lineage("blasts") == ["cells", "singlets", "leukocytes", "blasts"]
    defined = populations.defined_by("blasts")
    assert set(defined) == {"FSC-A", "SSC-A", "FSC-H", "CD45"}
    assert len(defined) == len(set(defined))
    assert not set(defined) & set(QUANTIFIED)
    assert populations.defined_by("cells") == ["FSC-A", "SSC-A"]


def test_gates_json_structure(populations: Populations) -> None:
    entries = [gate_to_json(g, populations) for g in populations.gates]
    json.dumps(entries)  # plain JSON types only
    assert [e["id"] for e in entries] == [
        "cells",
        "singlets",
        "leukocytes",
        "blasts",
        "lymphocytes",
        "monocytes",
        "granulocytes",
    ]
    table = populations.counts().set_index("population")
    for entry in entries:
        assert set(entry) == {"id", "parent", "type", "x", "y", "vertices", "events", "pct_parent"}
        assert entry["type"] == "polygon"
        assert set(entry["x"]) == {"dimension", "transform"}
        assert set(entry["y"]) == {"dimension", "transform"}
        assert all(len(v) == 2 for v in entry["vertices"]) and len(entry["vertices"]) >= 3
        assert entry["events"] == populations.count(entry["id"])
        assert entry["pct_parent"] == table.loc[entry["id"], "pct_parent"]
    blasts = entries[3]
    assert blasts["parent"] == "leukocytes"
    assert blasts["x"] == {"dimension": "CD45", "transform": "logicle"}
    assert blasts["y"] == {"dimension": "SSC-A", "transform": None}
    # display scale: logicle coordinates on the CD45 axis (0..1), raw on SSC-A
    assert all(0.0 <= x <= 1.0 for x, _ in blasts["vertices"])
    assert max(y for _, y in blasts["vertices"]) > 1000
    assert entries[0]["parent"] is None


def test_shipped_template_membership_recomputed_independently(
    template: GatingTemplate,
    populations: Populations,
    demo: tuple[dict[str, np.ndarray], Truth],
) -> None:
    """Every gate applied (the fitted ones), recomputed with matplotlib on logicle CD45."""
    data = demo[0]
    display = {
        name: (logicle(values, template.transforms["logicle"]) if name == "CD45" else values)
        for name, values in data.items()
    }
    by_id = {g.id: g for g in populations.gates}
    for gate in populations.gates:
        assert gate.y is not None
        inside = _inside(gate.vertices, display[gate.x.dimension], display[gate.y.dimension])
        parent = gate.parent
        while parent is not None:
            p = by_id[parent]
            assert p.y is not None
            inside &= _inside(p.vertices, display[p.x.dimension], display[p.y.dimension])
            parent = p.parent
        assert np.array_equal(populations.masks[gate.id], inside), gate.id


# --------------------------------------------------------------------------------------------
# The engine on a constructed template
# --------------------------------------------------------------------------------------------


def test_polygon_membership_matches_matplotlib(tmp_path: Path) -> None:
    template = _custom(tmp_path)
    cloud = _cloud()
    pops = template.apply(cloud)
    expected = _inside(CONCAVE, cloud["X"], cloud["Y"])
    assert 0.2 < expected.mean() < 0.8  # both sides are well populated, notch included
    notch = (cloud["X"] > 5) & (cloud["Y"] > 4) & (cloud["Y"] < 6)
    assert not np.any(expected & notch)
    np.testing.assert_array_equal(pops.masks["shape"], expected)
    np.testing.assert_array_equal(pops.masks["bright"], expected & (cloud["Z"] >= 5.0))
    np.testing.assert_array_equal(pops.masks["other"], expected & (cloud["W"] < 0.5))


def test_defined_by_follows_the_lineage_only(tmp_path: Path) -> None:
    pops = _custom(tmp_path).apply(_cloud(500))
    assert pops.defined_by("bright") == ["X", "Y", "Z"]
    assert pops.defined_by("other") == ["X", "Y", "W"]


def test_gate_to_json_rectangle(tmp_path: Path) -> None:
    template = _custom(tmp_path)
    pops = template.apply(_cloud(1000))
    by_id = {g.id: g for g in template.gates}
    bright = gate_to_json(by_id["bright"], pops)
    assert bright["type"] == "rectangle"
    assert bright["parent"] == "shape"
    assert bright["x"] == {"dimension": "Z", "transform": None}
    assert bright["y"] is None
    assert bright["bounds"]["x"] == [5.0, None]
    assert "vertices" not in bright
    assert bright["events"] == pops.count("bright")
    expected = round(100.0 * pops.count("bright") / pops.count("shape"), 4)
    assert bright["pct_parent"] == pytest.approx(expected)
    other = gate_to_json(by_id["other"], pops)
    assert other["bounds"]["x"] == [None, 0.5]
    json.dumps([bright, other])


def test_missing_dimension_names_the_marker(template: GatingTemplate) -> None:
    data = {name: np.ones(10) for name in ("FSC-A", "SSC-A", "FSC-H")}
    with pytest.raises(GatingError, match="CD45") as info:
        template.apply(data)
    assert str(TEMPLATE) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "this is not XML",
        '<?xml version="1.0"?><root/>',
        HEAD + "<gating:PolygonGate",
    ],
)
def test_invalid_template_is_a_gating_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GatingError) as info:
        GatingTemplate(path)
    assert str(path) in str(info.value)


def test_missing_template_file_is_a_gating_error(tmp_path: Path) -> None:
    with pytest.raises(GatingError):
        GatingTemplate(tmp_path / "absent.xml")


# --------------------------------------------------------------------------------------------
# Our gating engine and reader against FlowKit's
# --------------------------------------------------------------------------------------------


def _flowkit_masks(xml: str, data: dict[str, np.ndarray], gate_ids: list[str]) -> dict:
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = fk.parse_gating_xml(io.BytesIO(xml.encode("utf-8")))
        results = strategy.gate_sample(fk.Sample(pd.DataFrame(data), sample_id="s"))
    return {g: np.asarray(results.get_gate_membership(g), dtype=bool) for g in gate_ids}


@pytest.mark.parametrize("require", [None, {"CD34": "positive"}], ids=["template", "CD34+"])
def test_masks_equal_flowkit_gate_sample_event_for_event(
    template: GatingTemplate,
    demo: tuple[dict[str, np.ndarray], Truth],
    require: dict[str, str] | None,
) -> None:
    """The fitted gates (and a backbone gate) applied by FlowKit to the same events."""
    data = demo[0]
    pops = template.apply(data, "P01-R1", require=require)
    fitted = {g.id: g for g in pops.gates}
    assert fitted["blasts" if require is None else "blasts_region"] != template.gates[3]
    if require:
        assert [g.id for g in pops.gates][3:5] == ["blasts_region", "blasts"]
    used = {a.dimension for g in pops.gates for a in (g.x, g.y) if a is not None}
    theirs = _flowkit_masks(
        template.to_gatingml(pops.gates), {d: data[d] for d in used}, list(fitted)
    )
    for gate_id, mask in theirs.items():
        assert pops.masks[gate_id].dtype == bool
        np.testing.assert_array_equal(pops.masks[gate_id], mask, err_msg=gate_id)


def test_fitting_plots_and_final_masks_share_one_membership_test(
    template: GatingTemplate, populations: Populations, demo: tuple[dict[str, np.ndarray], Truth]
) -> None:
    data = demo[0]
    for gate in populations.gates:
        parent = populations.masks[gate.parent] if gate.parent else None
        np.testing.assert_array_equal(
            template.inside(gate, data, parent), populations.masks[gate.id], err_msg=gate.id
        )
    index = np.arange(0, populations.n_total, 97)
    for axis in (populations.gates[3].x, populations.gates[3].y):
        assert axis is not None
        np.testing.assert_array_equal(
            template.display(axis, data, index), template.display(axis, data)[index]
        )


def _edge_cases(
    vertices: Sequence[tuple[float, float]], dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices, edge midpoints, the bounding box and one ulp (of ``dtype``) either side,
    NaN, infinities."""
    v = np.asarray(vertices, dtype=float)
    ends = np.roll(v, -1, axis=0)
    lo, hi = v.min(axis=0), v.max(axis=0)
    box = [(x, y) for x in (lo[0], hi[0]) for y in np.linspace(lo[1], hi[1], 7)]
    box += [(x, y) for y in (lo[1], hi[1]) for x in np.linspace(lo[0], hi[0], 7)]
    points = np.concatenate([v, (v + ends) / 2, np.asarray(box)]).astype(dtype)
    down, up = dtype(-np.inf), dtype(np.inf)
    near = [np.nextafter(points, down), np.nextafter(points, up)]
    near += [np.column_stack([np.nextafter(points[:, 0], d), points[:, 1]]) for d in (down, up)]
    special = [[np.nan, 5.0], [5.0, np.nan], [np.inf, 5.0], [-np.inf, 5.0], [5.0, np.inf]]
    points = np.concatenate([points, *near, np.asarray(special, dtype=dtype)])
    return points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)


@pytest.mark.parametrize("shape", ["concave", "traced"])
def test_polygon_membership_is_flowutils_on_edges_and_odd_values(shape: str) -> None:
    """Points on edges and vertices, at the bounding box and one ulp off it: our blockwise,
    box-filtered test decides exactly as flowutils' (FlowKit's) on every one."""
    from flowutils import gating as fu_gating

    if shape == "concave":
        vertices = [(float(x), float(y)) for x, y in CONCAVE]
    else:
        # like a traced cluster: 72 vertices, logicle x, linear y
        angle = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        radius = 0.1 + 0.03 * np.sin(5 * angle)
        xs, ys = 0.4 + radius * np.cos(angle), 3e4 + 2e4 * radius * np.sin(angle)
        vertices = list(zip(xs.tolist(), ys.tolist(), strict=True))
    x, y = _edge_cases(vertices)
    rng = np.random.default_rng(1)
    lo, hi = np.min(vertices, axis=0), np.max(vertices, axis=0)
    x = np.concatenate([x, rng.uniform(2 * lo[0] - hi[0], 2 * hi[0] - lo[0], 200_000)])
    y = np.concatenate([y, rng.uniform(2 * lo[1] - hi[1], 2 * hi[1] - lo[1], 200_000)])
    gate = GateShape("p", None, "polygon", Axis("X", None), Axis("Y", None), tuple(vertices))
    expected = fu_gating.points_in_polygon(np.asarray(vertices), np.column_stack([x, y]))
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(membership(gate, x, y), expected)
    parent = rng.random(x.size) < 0.5
    np.testing.assert_array_equal(membership(gate, x, y, parent), expected & parent)


def test_edges_and_bounds_decided_as_flowkit_decides(tmp_path: Path) -> None:
    """Events exactly on polygon edges and on rectangle bounds (min inside, max outside).

    FlowKit's ``Sample`` keeps a DataFrame's values in float32 (as an FCS file holds them),
    so the events here are float32 values: both engines then see the same numbers."""
    template = _custom(tmp_path)
    cloud = {k: v.astype(np.float32).astype(np.float64) for k, v in _cloud(5000).items()}
    x, y = _edge_cases(CONCAVE, np.float32)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    just_below = float(np.nextafter(np.float32(5.0), np.float32(0)))
    just_above = float(np.nextafter(np.float32(0.5), np.float32(1)))
    extra = {
        "X": x,
        "Y": y,
        "Z": np.resize([5.0, just_below, 7.0], x.size),
        "W": np.resize([0.5, just_above, 0.1], x.size),
    }
    data = {k: np.concatenate([cloud[k], extra[k]]) for k in cloud}
    pops = template.apply(data)
    theirs = _flowkit_masks(template.to_gatingml(pops.gates), data, ["shape", "bright", "other"])
    for gate_id, mask in theirs.items():
        np.testing.assert_array_equal(pops.masks[gate_id], mask, err_msg=gate_id)
    tail = slice(cloud["X"].size, None)
    shape = pops.masks["shape"][tail]
    assert np.array_equal(pops.masks["bright"][tail], shape & (extra["Z"] >= 5.0))
    assert np.array_equal(pops.masks["other"][tail], shape & (extra["W"] < 0.5))


def _flowkit_view(path: Path) -> tuple[list[tuple[Any, ...]], dict[str, tuple[float, ...]]]:
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = fk.parse_gating_xml(str(path))
    gates = []
    for name, gate_path in strategy.get_gate_ids():
        gate = strategy.get_gate(name, gate_path=gate_path)
        parent = gate_path[-1] if gate_path[-1] != "root" else None
        dims = tuple((d.id, d.transformation_ref) for d in gate.dimensions)
        if type(gate).__name__ == "PolygonGate":
            detail: Any = tuple((float(vx), float(vy)) for vx, vy in gate.vertices)
        else:
            detail = tuple((d.min, d.max) for d in gate.dimensions)
        gates.append((name, parent, type(gate).__name__, dims, detail))
    xforms = {
        name: (x.param_t, x.param_w, x.param_m, x.param_a)
        for name, x in strategy.transformations.items()
        if type(x).__name__ == "LogicleTransform"
    }
    return gates, xforms


def _our_view(path: Path) -> tuple[list[tuple[Any, ...]], dict[str, tuple[float, ...]]]:
    template = GatingTemplate(path)
    gates = []
    for g in template.gates:
        axes = [g.x] if g.y is None else [g.x, g.y]
        dims = tuple((a.dimension, a.transform) for a in axes)
        if g.type == "polygon":
            detail: Any = g.vertices
        else:
            detail = tuple(g.bounds.get(k, (None, None)) for k in ("x", "y")[: len(axes)])
        kind = "PolygonGate" if g.type == "polygon" else "RectangleGate"
        gates.append((g.id, g.parent, kind, dims, detail))
    xforms = {n: (p["T"], p["W"], p["M"], p["A"]) for n, p in template.transforms.items()}
    return gates, xforms


def _compliance_documents() -> list[Path]:
    return sorted((COMPLIANCE / "gml").glob("*.xml"))


#: What makes a compliance document no template: the features our reader refuses, by name.
REFUSED = ("Gate; templates support polygon and rectangle gates", "transform", "compensation",
           "derived (ratio) dimension", "not a valid Gating-ML 2.0 file")  # fmt: skip


def test_our_reader_reads_what_flowkit_reads() -> None:
    """Gate ids, order, parents, dimensions, transforms, vertices and bounds as FlowKit parses
    them: the shipped template and every polygon/rectangle document of the ISAC suite; every
    other document is refused in one line naming it and what is not supported."""
    assert _our_view(TEMPLATE) == _flowkit_view(TEMPLATE)
    if not COMPLIANCE.is_dir():
        pytest.skip(corpus_skip_reason(COMPLIANCE))
    read = []
    for path in _compliance_documents():
        try:
            ours = _our_view(path)
        except GatingError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message
            assert any(reason in message for reason in REFUSED), message
            continue
        assert ours == _flowkit_view(path), path.name
        read.append(path.stem.removeprefix("gml_").removesuffix("_gate"))
    assert set(read) == {
        "poly1", "poly2", "poly3ns", "range", "rect1", "rect2", "time_range",
        "transform_logicle_range4", "transform_logicle_range5",
    }  # fmt: skip


def test_documents_we_read_match_the_isac_reference_results() -> None:
    """Our engine on the ISAC data file, against the expected membership of every event."""
    if not COMPLIANCE.is_dir():
        pytest.skip(corpus_skip_reason(COMPLIANCE))
    import flowkit as fk

    sample = fk.Sample(str(COMPLIANCE / "data1.fcs"))
    raw = sample.get_events(source="raw")  # no spillover in the file: FCS = as acquired
    data = {name: raw[:, i] for i, name in enumerate(sample.pnn_labels)}
    checked = 0
    for path in _compliance_documents():
        try:
            template = GatingTemplate(path)
        except GatingError:
            continue
        pops = template.apply(data, fit=False)
        for gate in template.gates:
            truth = np.loadtxt(COMPLIANCE / "truth" / f"Results_{gate.id}.txt", dtype=np.int8)
            np.testing.assert_array_equal(pops.masks[gate.id], truth.astype(bool), gate.id)
            checked += 1
    assert checked == 9


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '<gating:EllipsoidGate gating:id="E"><gating:dimension gating:compensation-ref='
            '"uncompensated"><data-type:fcs-dimension data-type:name="X"/></gating:dimension>'
            '<gating:dimension gating:compensation-ref="uncompensated"><data-type:fcs-dimension '
            'data-type:name="Y"/></gating:dimension><gating:mean><gating:coordinate '
            'data-type:value="1"/><gating:coordinate data-type:value="1"/></gating:mean>'
            '<gating:covarianceMatrix><gating:row><gating:entry data-type:value="1"/>'
            '<gating:entry data-type:value="0"/></gating:row><gating:row><gating:entry '
            'data-type:value="0"/><gating:entry data-type:value="1"/></gating:row>'
            '</gating:covarianceMatrix><gating:distanceSquare data-type:value="1"/>'
            "</gating:EllipsoidGate>",
            "gate E is an EllipsoidGate; templates support polygon and rectangle gates",
        ),
        (
            '<transforms:transformation transforms:id="asinh"><transforms:fasinh '
            'transforms:T="1000" transforms:M="4" transforms:A="1"/></transforms:transformation>'
            '<gating:RectangleGate gating:id="R"><gating:dimension gating:min="0.1" '
            'gating:transformation-ref="asinh" gating:compensation-ref="uncompensated">'
            '<data-type:fcs-dimension data-type:name="X"/></gating:dimension>'
            "</gating:RectangleGate>",
            "gate R uses the fasinh transform asinh; templates support logicle",
        ),
        (
            _rectangle("R", "X", 0.0, None).replace("uncompensated", "MySpill"),
            "gate R refers to compensation MySpill",
        ),
        (_rectangle("R", "X", 0.0, None, parent="nowhere"), "parent nowhere is not a gate"),
    ],
    ids=["ellipse", "fasinh", "matrix", "orphan"],
)
def test_unsupported_template_content_is_a_clear_gating_error(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "template.xml"
    path.write_text(HEAD + body + TAIL, encoding="utf-8")
    with pytest.raises(GatingError) as info:
        GatingTemplate(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_gating_does_not_import_flowkit() -> None:
    """Reading and applying a template needs no FlowKit import (~2 s per Snakemake job)."""
    code = (
        "import sys, numpy as np\n"
        "from antigen_profile.gating import GatingTemplate\n"
        f"t = GatingTemplate({str(TEMPLATE)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "t.apply({d: rng.uniform(0, 2e5, 2000) for d in t.dimensions}, fit=False)\n"
        "assert 'flowkit' not in sys.modules, 'flowkit was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Reading the template: as a lab's gating file is read (issue 14)
# --------------------------------------------------------------------------------------------


def _with_doctype(tmp_path: Path, name: str, doctype: str, reference: str = "") -> Path:
    """The shipped template with ``doctype`` before its root element and ``reference`` as the
    root's first content."""
    text = TEMPLATE.read_text(encoding="utf-8")
    root = text.index("<gating:Gating-ML")
    body = text.index(">", root) + 1
    path = tmp_path / name
    path.write_text(
        text[:root] + doctype + "\n" + text[root:body] + reference + text[body:], encoding="utf-8"
    )
    return path


@pytest.mark.parametrize(
    ("name", "doctype", "reference"),
    [
        ("doctype.xml", "<!DOCTYPE gating:Gating-ML>", ""),
        (
            "external.xml",
            '<!DOCTYPE gating:Gating-ML [<!ENTITY x SYSTEM "file:///etc/hostname">]>',
            "&x;",
        ),
        ("internal.xml", '<!DOCTYPE gating:Gating-ML [<!ENTITY x "text">]>', "&x;"),
        ("network.xml", '<!DOCTYPE gating:Gating-ML SYSTEM "http://example.org/x.dtd">', ""),
    ],
)
def test_template_with_a_doctype_is_refused_in_one_line(
    tmp_path: Path, name: str, doctype: str, reference: str
) -> None:
    """A DOCTYPE used to be accepted, and an external entity crashed with a raw lxml
    traceback; Gating-ML never declares one."""
    path = _with_doctype(tmp_path, name, doctype, reference)
    with pytest.raises(GatingError) as error:
        GatingTemplate(path)
    text = str(error.value)
    assert text.startswith(f"{path}: declares a DOCTYPE") and "\n" not in text


@pytest.mark.parametrize("kind", ["fifo", "directory", "dev-zero"])
def test_template_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    from test_inputs import SPECIAL_WORDS, special_file, within_limit

    path = tmp_path / "template.xml"
    fifos = special_file(path, kind)
    what = SPECIAL_WORDS[kind]
    with pytest.raises(GatingError) as error:
        within_limit(lambda: GatingTemplate(path), fifos)
    text = str(error.value)
    assert text.startswith(f"{path}: gating template ") and what in text and "\n" not in text


def test_template_over_the_size_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from antigen_profile import inputs

    monkeypatch.setattr(inputs, "MAX_GATING_BYTES", 1000)
    with pytest.raises(GatingError) as error:
        GatingTemplate(TEMPLATE)
    text = str(error.value)
    assert str(TEMPLATE) in text and "over the 1000 bytes limit for gating files" in text


def _random_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Polygons of every kind the grid must get right: convex and traced, concave stars,
    self-crossing, axis-aligned (horizontal and vertical edges), repeated and collinear
    vertices, far from the origin."""
    n = int(rng.integers(3, 80))
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    if kind == "convex":
        v = np.column_stack([np.cos(angle), np.sin(angle)])
    elif kind == "star":
        r = rng.uniform(0.2, 1.0, n)
        v = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
    elif kind == "crossing":
        v = rng.uniform(-1, 1, (max(n, 5), 2))
    elif kind == "rectilinear":
        steps = rng.integers(1, 5, (max(n // 2, 2), 2)).astype(float)
        xs, ys = np.cumsum(steps[:, 0]), np.cumsum(steps[:, 1])
        v = np.array([p for i in range(xs.size) for p in ((xs[i], ys[i - 1]), (xs[i], ys[i]))])
        v = np.concatenate([v, [[0.0, ys[-1]], [0.0, 0.0], [xs[0], 0.0]]])
    elif kind == "repeated":
        v = np.column_stack([np.cos(angle), 0.5 * np.sin(angle)])
        v = np.repeat(v, rng.integers(1, 3, v.shape[0]), axis=0)
        middle = (v[0] + v[1]) / 2  # a collinear vertex
        v = np.concatenate([v[:1], [middle], v[1:]])
    else:  # "far": a small traced cluster far from the origin (logicle x, linear SSC y)
        r = 0.1 + 0.03 * np.sin(5 * angle)
        v = np.column_stack([0.4 + r * np.cos(angle), 3e4 + 2e4 * r * np.sin(angle)])
    return v


def _awkward_points(v: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random points over the box and around it, vertices, points on edges, points at every
    vertex height, on the grid's cell lines, and each of those one ulp off."""
    from antigen_profile.gating import GRID

    lo, hi = v.min(axis=0), v.max(axis=0)
    span = hi - lo
    free = rng.uniform(lo - 0.2 * span, hi + 0.2 * span, (n, 2))
    ends = np.roll(v, -1, axis=0)
    t = rng.uniform(0, 1, (v.shape[0], 4))
    on_edges = (v[:, None, :] + t[:, :, None] * (ends - v)[:, None, :]).reshape(-1, 2)
    heights = np.column_stack([rng.uniform(lo[0], hi[0], v.shape[0] * 4), np.repeat(v[:, 1], 4)])
    lines = lo + span * np.linspace(0, 1, GRID + 1)[:, None]
    cross = np.array([(a, b) for a in lines[:, 0] for b in rng.uniform(lo[1], hi[1], 3)])
    cross = np.concatenate(
        [cross, [(b, a) for a in lines[:, 1] for b in rng.uniform(lo[0], hi[0], 3)]]
    )
    exact = np.concatenate([v, on_edges, heights, cross])
    ulps = [np.nextafter(exact, d) for d in (-np.inf, np.inf)]
    return np.concatenate([free, exact, *ulps])


@pytest.mark.parametrize("kind", ["convex", "star", "crossing", "rectilinear", "repeated", "far"])
def test_polygon_grid_decides_exactly_as_flowutils(kind: str) -> None:
    """The grid fast path of membership() (cells flowutils' answer cannot vary in are decided
    without testing their points) equals flowutils on every point, random polygons of every
    kind, points on vertices, edges, vertex heights and cell lines included, with and
    without a parent (sparse and dense)."""
    from flowutils import gating as fu_gating

    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(12):
        v = _random_polygon(kind, rng)
        points = _awkward_points(v, rng, 30_000)
        x, y = points[:, 0].copy(), points[:, 1].copy()
        x[:3] = np.nan
        gate = GateShape(
            "p", None, "polygon", Axis("X", None), Axis("Y", None), tuple(map(tuple, v))
        )
        expected = fu_gating.points_in_polygon(v, np.column_stack([x, y]))
        np.testing.assert_array_equal(membership(gate, x, y), expected)
        for share in (0.9, 0.05):
            parent = rng.random(x.size) < share
            np.testing.assert_array_equal(membership(gate, x, y, parent), expected & parent)


def test_polygon_grid_leaves_few_points_to_flowutils() -> None:
    """On a traced 72-vertex gate the grid decides most points spread over its box (the
    fast path is taken), and the outermost ring of cells is always tested exactly."""
    from antigen_profile.gating import _EXACT, GRID, _PolygonGrid

    angle = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    v = np.column_stack([0.4 + 0.1 * np.cos(angle), 3e4 + 2e3 * np.sin(angle)])
    grid = _PolygonGrid(v, (*v.min(axis=0), *v.max(axis=0)))
    assert grid.ok
    rng = np.random.default_rng(0)
    points = rng.uniform(v.min(axis=0), v.max(axis=0), (100_000, 2))
    states = grid.states(points[:, 0], points[:, 1])
    assert np.mean(states == _EXACT) < 0.25  # boundary cells and the ring (12% of the box)
    table = grid.table.reshape(GRID + 2, GRID + 2)
    assert np.all(table[[1, -2], 1:-1] == _EXACT) and np.all(table[0] == 0)
