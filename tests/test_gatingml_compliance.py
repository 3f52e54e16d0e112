"""Gating-ML 2.0 compliance: FlowKit, our gating engine, against the ISAC reference results.

The ISAC compliance suite (as shipped by FlowKit, in ``../shared/fcs-corpus``) gives for every
gate the expected membership (0/1) of each event of ``data1.fcs``. Every gate of every
Gating-ML file that has a truth file must match it event for event; a gate the engine gets
wrong would silently move blasts in or out of a population.

Truth files are named ``Results_{gate id}.txt``; the one exception is listed in
:data:`TRUTH_ALIASES`. Several files share gate ids (``gml_all_gates.xml`` holds them all), so
one truth file serves several cases.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import CORPUS, corpus_skip_reason

FOLDER = CORPUS / "gatingml-compliance"
GML = FOLDER / "gml"
TRUTH = FOLDER / "truth"
SKIP_REASON = corpus_skip_reason(FOLDER)

#: (file, gate id) -> truth file stem, where the truth file is not named after the gate.
TRUTH_ALIASES = {("gml_parent_quadrant_rect_gate.xml", "ParRectangle1"): "ParQuadRect"}
#: Documents the suite ships as schema-invalid on purpose: they must be rejected, never gated.
INVALID = {
    "gml_range_gate_attr_testing.xml": (
        "wraps its gate in a <sample> element and gives it a gating:name attribute, neither "
        "of which the Gating-ML 2.0 schema allows"
    ),
}
#: (file, gate id) -> reason, for FlowKit failures that cannot be fixed in our layer (each
#: becomes a strict xfail, so a FlowKit fix shows up as a failure to clean up). None today.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


@functools.cache
def _sample() -> Any:
    import flowkit as fk

    return fk.Sample(str(FOLDER / "data1.fcs"))


@functools.cache
def _strategy(name: str) -> Any:
    """Each Gating-ML file is parsed once per session (collection and tests share it)."""
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.parse_gating_xml(str(GML / name))


@functools.cache
def _results(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _strategy(name).gate_sample(_sample())


@functools.cache
def _truth(stem: str) -> np.ndarray:
    return np.loadtxt(TRUTH / f"Results_{stem}.txt", dtype=np.int8).astype(bool)


def _cases() -> list[Any]:
    """One case per (Gating-ML file, gate) with a truth file; ids like ``poly1:Polygon1``."""
    if not (FOLDER / "data1.fcs").is_file():
        return [pytest.param(None, None, None, None, marks=pytest.mark.skip(reason=SKIP_REASON))]
    cases = []
    for path in sorted(GML.glob("*.xml")):
        if path.name in INVALID:
            continue
        for gate_id, gate_path in _strategy(path.name).get_gate_ids():
            stem = TRUTH_ALIASES.get((path.name, gate_id), gate_id)
            if not (TRUTH / f"Results_{stem}.txt").is_file():
                continue  # quadrant containers and a few gates have no reference result
            reason = KNOWN_FAILURES.get((path.name, gate_id))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            short = path.stem.removeprefix("gml_").removesuffix("_gate")
            cases.append(
                pytest.param(
                    path.name, gate_id, gate_path, stem, marks=marks, id=f"{short}:{gate_id}"
                )
            )
    return cases


CASES = _cases()


@pytest.mark.parametrize(("gml", "gate_id", "gate_path", "truth"), CASES)
def test_gate_matches_reference(
    gml: str, gate_id: str, gate_path: tuple[str, ...], truth: str
) -> None:
    membership = np.asarray(
        _results(gml).get_gate_membership(gate_id, gate_path=gate_path), dtype=bool
    )
    expected = _truth(truth)
    assert membership.shape == expected.shape
    wrong = np.flatnonzero(membership != expected)
    assert wrong.size == 0, (
        f"{gml} gate {gate_id}: {wrong.size} of {expected.size} events differ from "
        f"Results_{truth}.txt (first: {wrong[:10].tolist()})"
    )


def test_every_reference_result_is_checked() -> None:
    """No truth file is left unused, and every valid document took part."""
    if not FOLDER.is_dir():
        pytest.skip(SKIP_REASON)
    used = {case.values[3] for case in CASES}
    available = {p.stem.removeprefix("Results_") for p in TRUTH.glob("Results_*.txt")}
    assert available - used == set()
    files = {case.values[0] for case in CASES}
    documents = {p.name for p in GML.glob("*.xml")} - set(INVALID)
    # gml_ellipse2_gate.xml's "myEllipse2" is the only gate without a reference result
    assert documents - files == {"gml_ellipse2_gate.xml"}
    assert len(CASES) >= len(available)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_schema_invalid_document_is_rejected(name: str) -> None:
    """A document the schema rejects is refused with one clear line by FlowKit, our template
    loader and the lab-gating loader alike, rather than half-read."""
    from antigen_profile.gating import GatingError, GatingTemplate
    from antigen_profile.lab_gating import LabGating, LabGatingError

    path = GML / name
    if not path.is_file():
        pytest.skip(SKIP_REASON)
    import flowkit as fk

    with pytest.raises(ValueError, match=r"GatingML 2\.0"):
        fk.parse_gating_xml(str(path))
    with pytest.raises(GatingError) as template_error:
        GatingTemplate(path)
    with pytest.raises(LabGatingError) as lab_error:
        LabGating(path, {"blasts": "Range1", "lymphocytes": "Range1", "leukocytes": "Range1"})
    for error in (template_error.value, lab_error.value):
        assert "\n" not in str(error)
        assert str(path) in str(error)
