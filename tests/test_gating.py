"""Tests of gating: the shipped B-ALL template, Populations, gates.json and the polygon engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from antigen_profile.compensate import compensate
from antigen_profile.config import load_config
from antigen_profile.gating import GatingError, GatingTemplate, Populations, gate_to_json
from antigen_profile.ingest import find_markers, parse_spillover
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import Truth, demo_tube_events, demo_tube_spec
from antigen_profile.transforms import logicle

TEMPLATE = REPO_ROOT / "resources" / "gates" / "b-all-blasts.xml"
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
    spill = parse_spillover(spec.keywords()["$SPILLOVER"], channels)
    compensated = compensate(events, channels, spill)
    markers, _ = find_markers(channels, labels, CONFIG["markers"], CONFIG["scatter"])
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
        name: (logicle(values, CONFIG["logicle"]) if name == "CD45" else values)
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
