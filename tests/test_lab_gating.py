"""Tests of a lab's own gating (Gating-ML 2.0 or a FlowJo 10 workspace) through LabGating.

The reference for every number is independent of our layer: FlowKit's own ``Workspace``
analysis of the FlowJo files with their FCS files, the ISAC compliance results for Gating-ML,
and our own B-ALL template pipeline for a template exported as a lab would keep it.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import flowkit as fk
import numpy as np
import pandas as pd
import pytest
from conftest import CORPUS, corpus_skip_reason
from lxml import etree

from antigen_profile.compensate import compensate
from antigen_profile.config import load_config
from antigen_profile.gating import GatingTemplate
from antigen_profile.ingest import Tube, read_tube
from antigen_profile.lab_gating import (
    ACQUISITION_DEFINED,
    LabGating,
    LabGatingError,
    LabGatingResult,
    flowkit_sample,
    template_workspace,
)
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import DEMO_SAMPLES, write_demo_tube

WORKSPACES = CORPUS / "flowjo-workspaces"
COMPLIANCE = CORPUS / "gatingml-compliance"
TEMPLATE = REPO_ROOT / "resources" / "gates" / "b-all-blasts.xml"
CONFIG = load_config()

#: The demo panel's B-ALL template as a lab would name it in FlowJo.
LAB_NAMES = {
    "cells": "Cells",
    "singlets": "Single Cells",
    "leukocytes": "CD45+",
    "blasts": "Blasts",
    "lymphocytes": "Lymphs",
}
LAB_MAPPING = {ours: theirs for ours, theirs in LAB_NAMES.items()}
NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")


def _corpus(path: Path) -> Path:
    if not path.exists():
        pytest.skip(corpus_skip_reason(path))
    return path


# ------------------------------------------------------------------------------------------
# FlowJo workspaces from the corpus: same counts as FlowKit's own Workspace analysis
# ------------------------------------------------------------------------------------------

CORPUS_WORKSPACES = sorted(WORKSPACES.glob("*/*.wsp")) if WORKSPACES.is_dir() else []


@pytest.mark.parametrize(
    "wsp",
    CORPUS_WORKSPACES
    or [pytest.param(None, marks=pytest.mark.skip(reason=corpus_skip_reason(WORKSPACES)))],
    ids=lambda p: p.name if isinstance(p, Path) else "absent",
)
def test_workspace_counts_match_flowkit_workspace(wsp: Path) -> None:
    fcs = next(wsp.parent.glob("*.fcs"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = fk.Workspace(str(wsp), fcs_samples=[str(fcs)])
        sample_id = workspace.get_sample_ids()[0]
        workspace.analyze_samples(sample_id=sample_id, use_mp=False)
        report = workspace.get_gating_results(sample_id).report
        sample = fk.Sample(str(fcs))
    expected = {
        "/".join((*path[1:], name)): int(count)
        for path, name, count in zip(
            report.gate_path, report.gate_name, report["count"], strict=True
        )
    }
    first = report.gate_name.iloc[0]
    lab = LabGating(wsp, {"blasts": first, "lymphocytes": first, "leukocytes": first})
    result = lab.apply(sample.get_events(source="raw"), list(sample.pnn_labels), None, sample_id)

    assert result.counts == expected
    reference = workspace.get_gate_membership(sample_id, first)
    for mask in result.masks.values():
        np.testing.assert_array_equal(mask, reference)
    assert lab.sample_name == sample_id
    assert [g["path"] for g in result.gates] == list(result.counts)
    assert all(NCNAME.match(g["id"]) for g in result.gates)


# ------------------------------------------------------------------------------------------
# Gating-ML from the compliance folder: same counts as the ISAC reference results
# ------------------------------------------------------------------------------------------


def _truth(stem: str) -> np.ndarray:
    path = COMPLIANCE / "truth" / f"Results_{stem}.txt"
    return np.loadtxt(path, dtype=np.int8).astype(bool)


def _data1() -> tuple[np.ndarray, list[str], list[str]]:
    sample = fk.Sample(str(_corpus(COMPLIANCE / "data1.fcs")))
    return sample.get_events(source="raw"), list(sample.pnn_labels), list(sample.pns_labels)


def test_gatingml_counts_match_compliance_truth() -> None:
    events, channels, labels = _data1()
    gml = COMPLIANCE / "gml" / "gml_all_gates.xml"
    mapping = {"blasts": "Polygon1", "lymphocytes": "Ellipse1", "leukocytes": "Range1"}
    result = LabGating(gml, mapping).apply(events, channels, None, "data1", labels=labels)

    checked = 0
    for path, count in result.counts.items():
        stem = path.rsplit("/", 1)[-1]
        if (COMPLIANCE / "truth" / f"Results_{stem}.txt").is_file():
            assert count == int(_truth(stem).sum()), path
            checked += 1
    assert checked == len(result.counts) == 49  # every gate has a reference result
    for ours, theirs in mapping.items():
        np.testing.assert_array_equal(result.masks[ours], _truth(theirs))
    assert result.defined_by["blasts"] == ["FL2-H", "FL3-H"]
    json.dumps(result.gates, allow_nan=False)  # log and ratio axes included
    assert any("MySpill" in note for note in result.notes)


def test_gatingml_gate_under_a_quadrant() -> None:
    """A child of a quadrant is addressed by its path; its truth file has another name."""
    events, channels, _ = _data1()
    gml = COMPLIANCE / "gml" / "gml_parent_quadrant_rect_gate.xml"
    mapping = {
        "blasts": "Quadrant1/FL2P-FL4P/ParRectangle1",
        "lymphocytes": "FL2N-FL4N",
        "leukocytes": "Quadrant1/FL2P-FL4P",
    }
    result = LabGating(gml, mapping).apply(events, channels, None, "data1")
    np.testing.assert_array_equal(result.masks["blasts"], _truth("ParQuadRect"))
    np.testing.assert_array_equal(result.masks["leukocytes"], _truth("FL2P-FL4P"))
    gates = {g["id"]: g for g in result.gates}
    assert gates["blasts"]["parent"] == "leukocytes"
    assert gates["leukocytes"]["type"] == "rectangle"
    assert gates["leukocytes"]["bounds"]["x"][1] is None  # FL2 positive: open upper end
    assert result.populations().set_index("population").loc["blasts", "parent"] == "leukocytes"


# ------------------------------------------------------------------------------------------
# Our B-ALL template as a lab's FlowJo workspace, on a demo tube
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_tube(tmp_path_factory: pytest.TempPathFactory) -> Tube:
    folder = tmp_path_factory.mktemp("lab-gating")
    fcs = write_demo_tube(DEMO_SAMPLES[0].sample_id, folder)
    return read_tube(fcs, CONFIG["markers"], CONFIG["scatter"])


def demo_workspace(tube: Tube, out: Path, **options: Any) -> Path:
    """The B-ALL template as a lab's FlowJo workspace on the demo panel's detectors (reusable
    for an end-to-end workflow test: map LAB_MAPPING in config)."""
    options.setdefault("spillover", tube.spillover)
    options.setdefault("names", LAB_NAMES)
    options.setdefault("channels", tube.channels)
    return template_workspace(TEMPLATE, {"CD45": tube.markers["CD45"]}, out, **options)


def _template_masks(tube: Tube) -> dict[str, np.ndarray]:
    """Our own pipeline's gating (compensate, then the marker-named template), at the
    template's coordinates: a FlowJo workspace holds fixed gates, so the per-sample fitting
    of our engine is switched off where it exists."""
    events = compensate(tube.events, tube.channels, tube.spillover)
    data = {m: events[:, tube.channels.index(d)] for m, d in tube.markers.items()}
    template = GatingTemplate(TEMPLATE)
    options = {"fit": False} if "fit" in inspect.signature(template.apply).parameters else {}
    return template.apply(data, "demo", **options).masks


@pytest.fixture(scope="module")
def template_masks(demo_tube: Tube) -> dict[str, np.ndarray]:
    return _template_masks(demo_tube)


def _assert_same(lab: np.ndarray, ours: np.ndarray, name: str) -> None:
    differ = int((lab != ours).sum())
    assert differ <= 0.001 * max(int(ours.sum()), 1), f"{name}: {differ} events differ"


def test_template_workspace_matches_our_pipeline(
    demo_tube: Tube, template_masks: dict[str, np.ndarray], tmp_path: Path
) -> None:
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    lab = LabGating(wsp, LAB_MAPPING)
    result = lab.apply(
        demo_tube.events,
        demo_tube.channels,
        demo_tube.spillover,
        "demo",
        markers=demo_tube.markers,
    )
    for name in ("blasts", "lymphocytes", "leukocytes", "singlets", "cells"):
        _assert_same(result.masks[name], template_masks[name], name)
    assert template_masks["blasts"].sum() > 1000  # a real comparison, not two empty gates

    assert list(result.masks) == ["cells", "singlets", "leukocytes", "blasts", "lymphocytes"]
    assert result.defined_by["blasts"] == ["FSC-A", "SSC-A", "FSC-H", "CD45"]
    assert any(ACQUISITION_DEFINED in note and "tube" in note for note in result.notes)
    assert list(result.counts) == [
        "Cells",
        "Cells/Single Cells",
        "Cells/Single Cells/CD45+",
        "Cells/Single Cells/CD45+/Blasts",
        "Cells/Single Cells/CD45+/Lymphs",
        "Cells/Single Cells/CD45+/monocytes",  # template gates not mapped keep their names
        "Cells/Single Cells/CD45+/granulocytes",
    ]
    gates = {g["id"]: g for g in result.gates}
    assert [g["id"] for g in result.gates] == [*result.masks, "monocytes", "granulocytes"]
    assert gates["blasts"]["parent"] == "leukocytes"
    assert gates["blasts"]["name"] == "Blasts"
    assert gates["blasts"]["x"] == {
        "dimension": "V500-C-A",
        "transform": "logicle",
        "transform_id": "V500-C-A",
    }
    assert gates["blasts"]["events"] == int(template_masks["blasts"].sum())
    assert list(result.gate_masks) == list(gates)
    np.testing.assert_array_equal(result.gate_masks["blasts"], result.masks["blasts"])
    json.dumps(result.gates, allow_nan=False)  # gates.json is written without NaN
    x, y = result.display("blasts")
    assert x.shape == y.shape == (demo_tube.n_events,)
    cd45 = compensate(demo_tube.events, demo_tube.channels, demo_tube.spillover)[
        :, demo_tube.channels.index("V500-C-A")
    ]
    logicle = fk.transforms.LogicleTransform(262144, 0.5, 4.5, 0)
    np.testing.assert_allclose(x, logicle.apply(cd45.reshape(-1, 1)).ravel(), atol=1e-9)
    np.testing.assert_array_equal(y, demo_tube.column("SSC-A"))
    table = result.populations()
    assert table.set_index("population").loc["blasts", "parent"] == "leukocytes"


def test_template_workspace_reads_in_flowkit_alone(demo_tube: Tube, tmp_path: Path) -> None:
    """The exported file is a complete workspace: FlowKit's own reader, with the FCS file,
    gives the same counts (its matrix sits in the Sample, where FlowJo 10 puts it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample_id = fk.Sample(str(demo_tube.path)).id
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp", sample_name=sample_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = fk.Workspace(str(wsp), fcs_samples=[str(demo_tube.path)])
        workspace.analyze_samples(sample_id=sample_id, use_mp=False)
        report = workspace.get_gating_results(sample_id).report
    expected = {
        "/".join((*p[1:], n)): int(c)
        for p, n, c in zip(report.gate_path, report.gate_name, report["count"], strict=True)
    }
    result = LabGating(wsp, LAB_MAPPING).apply(
        demo_tube.events, demo_tube.channels, demo_tube.spillover, sample_id
    )
    assert result.counts == expected


def test_acquisition_matrix_is_the_tubes_own(
    demo_tube: Tube, template_masks: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """FlowJo's acquisition matrix means each tube's own spillover: a stale copy in the
    workspace must not be used, whereas a lab-defined matrix is used as stored."""
    assert demo_tube.spillover is not None
    stale = demo_tube.spillover.copy()  # BV421 and FITC spilling heavily into V500-C (CD45)
    stale.loc["BV421-A", "V500-C-A"] = 0.9
    stale.loc["FITC-A", "V500-C-A"] = 0.6
    with_stale = _template_masks(_with_spillover(demo_tube, stale))
    assert (with_stale["blasts"] != template_masks["blasts"]).sum() > 10_000  # it matters

    acquisition = demo_workspace(demo_tube, tmp_path / "acq.wsp", spillover=stale)
    result = LabGating(acquisition, LAB_MAPPING).apply(
        demo_tube.events, demo_tube.channels, demo_tube.spillover, "demo"
    )
    _assert_same(result.masks["blasts"], template_masks["blasts"], "blasts")

    lab_matrix = demo_workspace(
        demo_tube, tmp_path / "lab.wsp", spillover=stale, matrix_name="Lab comp 2024"
    )
    lab = LabGating(lab_matrix, LAB_MAPPING).apply(
        demo_tube.events, demo_tube.channels, demo_tube.spillover, "demo"
    )
    assert any("Lab comp 2024" in note and "as stored" in note for note in lab.notes)
    _assert_same(lab.masks["blasts"], with_stale["blasts"], "blasts")


def _with_spillover(tube: Tube, spillover: pd.DataFrame | None) -> Tube:
    other = copy.copy(tube)
    other.spillover = spillover
    return other


def test_matrix_kept_only_at_workspace_level(
    demo_tube: Tube, template_masks: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """FlowJo 10.8+ keeps a matrix once, under Workspace/Matrices; the Sample's gates still
    name Comp- channels and must be compensated with it."""
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    root = etree.parse(str(wsp)).getroot()
    tag = "{http://www.isac-net.org/std/Gating-ML/v2.0/transformations}spilloverMatrix"
    for sample in root.find("SampleList").findall("Sample"):
        for matrix in sample.findall(tag):
            sample.remove(matrix)
    shared = tmp_path / "shared.wsp"
    shared.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    lab = LabGating(shared, LAB_MAPPING)
    assert lab.matrices_embedded == 1
    result = lab.apply(demo_tube.events, demo_tube.channels, demo_tube.spillover, "demo")
    assert any("tube's own spillover" in note for note in result.notes)
    _assert_same(result.masks["blasts"], template_masks["blasts"], "blasts")


def test_sample_and_group_selection(demo_tube: Tube, tmp_path: Path) -> None:
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp", group="Relapse panel")
    assert LabGating(wsp, LAB_MAPPING).sample_name == "template"
    assert LabGating(wsp, LAB_MAPPING, sample_name="Relapse panel").sample_name == "template"
    with pytest.raises(LabGatingError, match="no sample or group 'Diagnosis'") as error:
        LabGating(wsp, LAB_MAPPING, sample_name="Diagnosis")
    assert "template" in str(error.value)


def test_float64_events_are_kept() -> None:
    """An event on a gate edge is judged on the number FlowKit would read from the file,
    not on a float32 copy."""
    events = np.array([[1.0 + 1e-12, 262143.123456789], [3.0, 4.0]])
    sample = flowkit_sample(events, ["A", "B"], None, "s")
    np.testing.assert_array_equal(sample.get_events(source="raw"), events)


# ------------------------------------------------------------------------------------------
# Errors: one line, naming the file and what to do
# ------------------------------------------------------------------------------------------


def _one_line(error: pytest.ExceptionInfo[LabGatingError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_missing_population_names_it_and_lists_gates(demo_tube: Tube, tmp_path: Path) -> None:
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    with pytest.raises(LabGatingError) as error:
        LabGating(wsp, {**LAB_MAPPING, "blasts": "Blast cells"})
    text = _one_line(error)
    assert "'Blast cells'" in text and "blasts" in text and str(wsp) in text
    for name in LAB_NAMES.values():
        assert name in text


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({**LAB_MAPPING, "blasts": "CD45+/Blasts"}, None),  # a path tail resolves
        ({**LAB_MAPPING, "monocytes": "Cells"}, "not ours"),
        ({k: v for k, v in LAB_MAPPING.items() if k != "lymphocytes"}, "lacks lymphocytes"),
    ],
    ids=["path-tail", "unknown-ours", "required-missing"],
)
def test_mapping_checks(
    demo_tube: Tube, tmp_path: Path, mapping: dict[str, str], message: str | None
) -> None:
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    if message is None:
        assert LabGating(wsp, mapping).resolved["blasts"].name == "Blasts"
        return
    with pytest.raises(LabGatingError, match=message) as error:
        LabGating(wsp, mapping)
    _one_line(error)


def test_repeated_name_needs_a_path(demo_tube: Tube, tmp_path: Path) -> None:
    """When names repeat, a bare name is refused and a path (absolute with a leading "/")
    picks the gate."""
    wsp = demo_workspace(
        demo_tube, tmp_path / "repeat.wsp", names={**LAB_NAMES, "singlets": "Cells"}
    )
    with pytest.raises(LabGatingError, match="ambiguous") as error:
        LabGating(wsp, LAB_MAPPING)
    assert "Cells/Cells" in _one_line(error)
    lab = LabGating(wsp, {**LAB_MAPPING, "cells": "/Cells", "singlets": "Cells/Cells"})
    assert lab.resolved["cells"].key == "Cells"
    assert lab.resolved["singlets"].key == "Cells/Cells"
    assert lab.resolved["blasts"].key == "Cells/Cells/CD45+/Blasts"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.wsp", b"\x00\x01 not xml at all", "not a readable XML file"),
        ("empty.xml", b"", "not a readable XML file"),
        ("other.xml", b"<?xml version='1.0'?><Gates/>", "neither Gating-ML 2.0"),
        (
            "entity.wsp",
            b'<?xml version="1.0"?><!DOCTYPE Workspace [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<Workspace>&x;</Workspace>",
            "DOCTYPE",
        ),
        ("gates.csv", b"a,b\n", "not .csv"),
        ("truncated.wsp", b'<?xml version="1.0"?><Workspace flowJoVersion="10.6"><Sam', "XML"),
    ],
)
def test_unreadable_file_is_one_line_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LabGatingError, match=re.escape(message)) as error:
        LabGating(path, LAB_MAPPING)
    assert str(path) in _one_line(error)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LabGatingError, match="cannot be read") as error:
        LabGating(tmp_path / "absent.wsp", LAB_MAPPING)
    _one_line(error)


def test_tube_without_the_gated_detector(demo_tube: Tube, tmp_path: Path) -> None:
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    keep = [i for i, c in enumerate(demo_tube.channels) if c != "V500-C-A"]
    channels = [demo_tube.channels[i] for i in keep]
    assert demo_tube.spillover is not None
    spill = demo_tube.spillover.drop(index="V500-C-A", columns="V500-C-A")
    with pytest.raises(LabGatingError, match="needs V500-C-A") as error:
        LabGating(wsp, LAB_MAPPING).apply(demo_tube.events[:, keep], channels, spill, "P99")
    assert _one_line(error).startswith("P99:")


def test_result_type() -> None:
    assert {f for f in LabGatingResult.__dataclass_fields__ if not f.startswith("_")} == {
        "masks",
        "gates",
        "counts",
        "defined_by",
        "notes",
        "gate_masks",
    }


# ------------------------------------------------------------------------------------------
# Reading the file: regular files only, under a size cap, parsed once (issue 14)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_lab_gating_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A FIFO used to hang the job, ``/dev/zero`` to eat the memory."""
    from test_inputs import SPECIAL_WORDS, special_file, within_limit

    path = tmp_path / "lab.wsp"
    fifos = special_file(path, kind)
    with pytest.raises(LabGatingError) as error:
        within_limit(lambda: LabGating(path, LAB_MAPPING), fifos)
    text = _one_line(error)
    assert text.startswith(f"{path}: lab gating file ") and SPECIAL_WORDS[kind] in text


def test_lab_gating_over_the_size_cap_is_refused_before_reading(
    demo_tube: Tube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from antigen_profile import inputs

    sparse = tmp_path / "huge.wsp"  # a hole: no disk used, nothing read
    with open(sparse, "wb") as handle:
        os.truncate(handle.fileno(), inputs.MAX_GATING_BYTES + 1)
    with pytest.raises(LabGatingError) as error:
        LabGating(sparse, LAB_MAPPING)
    text = _one_line(error)
    assert text.startswith(f"{sparse}: lab gating file is 50.0 MB, over the 50.0 MB limit")
    assert "only the sample whose gates are used" in text
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    monkeypatch.setattr(inputs, "MAX_GATING_BYTES", wsp.stat().st_size - 1)
    with pytest.raises(LabGatingError, match="over the"):
        LabGating(wsp, LAB_MAPPING)


def _spy_on_flowkit(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, list[str]]]:
    """What FlowKit's Workspace is given, and the names under which any caller still holds a
    parsed element while FlowKit parses its own tree (ours should be freed by then)."""
    real = fk.Workspace
    seen: list[tuple[bytes, list[str]]] = []

    def spy(document: Any, *args: Any, **kwargs: Any) -> Any:
        held = []
        frame = inspect.currentframe()
        while frame is not None:
            held += [k for k, v in frame.f_locals.items() if isinstance(v, etree._Element)]
            frame = frame.f_back
        seen.append((document.getvalue(), held))
        return real(document, *args, **kwargs)

    monkeypatch.setattr(fk, "Workspace", spy)
    return seen


def test_workspace_is_read_once_and_handed_to_flowkit_as_read(
    demo_tube: Tube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FlowKit gets the bytes already read, not our tree serialised again (the 80 MB
    workspace of issue 14 took about 1.8 GB that way), and our tree is gone before FlowKit
    builds its own."""
    wsp = demo_workspace(demo_tube, tmp_path / "b-all.wsp")
    seen = _spy_on_flowkit(monkeypatch)
    lab = LabGating(wsp, LAB_MAPPING)
    assert lab.matrices_embedded == 0
    assert len(seen) == 1
    document, held = seen[0]
    assert document == wsp.read_bytes()
    assert held == []


SPILL = "{http://www.isac-net.org/std/Gating-ML/v2.0/transformations}spilloverMatrix"


def _matrix_only_in_workspace(wsp: Path) -> Path:
    """A copy of ``wsp`` keeping its matrix under Workspace/Matrices only (FlowJo 10.8+)."""
    root = etree.parse(str(wsp)).getroot()
    for sample in root.find("SampleList").findall("Sample"):
        for matrix in sample.findall(SPILL):
            sample.remove(matrix)
    shared = wsp.with_name(f"shared-{wsp.name}")
    shared.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return shared


def test_workspace_with_shared_matrices_is_serialised_once(
    demo_tube: Tube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a shared matrix had to be copied into the samples, FlowKit gets that document,
    and again no tree of ours outlives the hand-over."""
    shared = _matrix_only_in_workspace(demo_workspace(demo_tube, tmp_path / "b-all.wsp"))
    seen = _spy_on_flowkit(monkeypatch)
    lab = LabGating(shared, LAB_MAPPING)
    assert lab.matrices_embedded == 1
    assert len(seen) == 1
    document, held = seen[0]
    assert len(etree.fromstring(document).findall(f".//{SPILL}")) == 2  # shared, and the copy
    assert held == []
