"""The template placed on each tube's own scale and channel set (issue 13).

The same cells acquired with another scatter range (18-, 20-, 22-, 23-bit), other PMT gains
or another channel set must give the same populations: the gates follow the tube's
lymphocytes, the singlet gate takes whichever pulse pair exists, and what was applied still
re-gates the original file in FlowKit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from antigen_profile import simulate as sim
from antigen_profile.compensate import compensate
from antigen_profile.gating import GatingTemplate
from antigen_profile.paths import REPO_ROOT
from antigen_profile.pipeline import profile_sample
from antigen_profile.registration import lymphocyte_landmark, register

TEMPLATE = REPO_ROOT / "resources" / "gates" / "b-all-blasts.xml"
TOP = 262144.0
#: Scatter gains of real scales relative to 18 bits, times a voltage factor, and CD45 gains.
SCALES = {
    "18-bit, lower voltage": (0.6, 0.5),
    "20-bit (Beckman, Attune)": (4 * 1.3, 3.0),
    "22-bit (Cytek)": (16 * 0.7, 9.0),
    "23-bit (CytoFLEX)": (32 * 1.6, 0.25),
}


@pytest.fixture(scope="module")
def template() -> GatingTemplate:
    return GatingTemplate(TEMPLATE)


@pytest.fixture(scope="module")
def tube() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The P04 demo patient (40% blasts): compensated data by marker, the true blasts and the
    true doublets."""
    spec, _ = sim.demo_tube_spec("P04-R1")
    events, truth = sim.simulate_events(spec, 30_000, np.random.default_rng(7))
    channels = [c.name for c in spec.channels]
    fluorescence = [c.name for c in spec.fluorescence]
    spill = pd.DataFrame(spec.spillover_matrix(), index=fluorescence, columns=fluorescence)
    comp = compensate(events, channels, spill)
    names = {"FSC-A": "FSC-A", "FSC-H": "FSC-H", "SSC-A": "SSC-A", "CD45": "V500-C-A"}
    data = {m: comp[:, channels.index(c)] for m, c in names.items()}
    return data, truth.mask("blasts"), truth.mask("doublets")


def _scaled(data: dict[str, np.ndarray], scatter: float, cd45: float) -> dict[str, np.ndarray]:
    return {m: v * (cd45 if m == "CD45" else scatter) for m, v in data.items()}


def _tops(scatter: float, cd45: float) -> dict[str, float]:
    return {m: TOP * (cd45 if m == "CD45" else scatter) for m in ("FSC-A", "FSC-H", "SSC-A")}


@pytest.mark.parametrize("scale", list(SCALES), ids=list(SCALES))
def test_same_populations_on_every_scale(template: GatingTemplate, tube: Any, scale: str) -> None:
    data, blasts, _ = tube
    placed, reference = register(template, data, _tops(1, 1))
    expected = placed.apply(data).masks
    scatter, cd45 = SCALES[scale]
    moved = _scaled(data, scatter, cd45)
    placed, registration = register(template, moved, _tops(scatter, cd45))
    masks = placed.apply(moved).masks
    assert registration.source == "lymphocytes"
    assert registration.gains["SSC-A"] == pytest.approx(reference.gains["SSC-A"] * scatter)
    assert registration.gains["CD45"] == pytest.approx(reference.gains["CD45"] * cd45)
    for population, mask in expected.items():
        differ = int(np.count_nonzero(mask != masks[population]))
        assert differ <= 0.001 * mask.size, f"{scale} {population}: {differ} events differ"
    hits = int((masks["blasts"] & blasts).sum())
    precision, recall = hits / int(masks["blasts"].sum()), hits / int(blasts.sum())
    assert precision >= 0.95 and recall >= 0.95, (scale, precision, recall)


def test_the_fixed_template_misses_on_a_22_bit_scale(template: GatingTemplate, tube: Any) -> None:
    """What registration is for: without it the blasts of a Cytek-scale tube are lost."""
    data, blasts, _ = tube
    moved = _scaled(data, *SCALES["22-bit (Cytek)"])
    unplaced = template.apply(moved).masks["blasts"]
    assert (unplaced & blasts).sum() / blasts.sum() < 0.5


def test_landmark_is_the_lymphocyte_cluster(tube: Any) -> None:
    spec, _ = sim.demo_tube_spec("P04-R1")
    _, truth = sim.simulate_events(spec, 30_000, np.random.default_rng(7))
    data, _, _ = tube
    mask = lymphocyte_landmark(data["CD45"], data["SSC-A"])
    assert mask is not None
    lymphocytes = truth.mask("lymphocytes")
    assert (mask & lymphocytes).sum() / mask.sum() >= 0.95


def test_width_channel_gives_the_singlet_gate(template: GatingTemplate, tube: Any) -> None:
    """FSC-A vs FSC-W (BD with width, no height): width = area / height, doublets wider."""
    data, blasts, doublets = tube
    with_width = {m: v for m, v in data.items() if m != "FSC-H"}
    with_width["FSC-W"] = 70_000 * data["FSC-A"] / np.maximum(data["FSC-H"], 1.0)
    placed, registration = register(template, with_width, _tops(1, 1))
    assert registration.singlets == "FSC-A vs FSC-W"
    populations = placed.apply(with_width)
    singlets = populations.masks["singlets"]
    cells = populations.masks["cells"]
    assert (singlets & doublets).sum() <= 0.1 * (cells & doublets).sum(), "doublets excluded"
    assert (singlets & blasts).sum() >= 0.97 * (cells & blasts).sum(), "single blasts kept"
    assert populations.masks["blasts"][blasts].mean() >= 0.95


def test_side_scatter_height_gives_the_singlet_gate(template: GatingTemplate, tube: Any) -> None:
    data, blasts, doublets = tube
    ratio = data["FSC-H"] / np.maximum(data["FSC-A"], 1.0)
    side = {m: v for m, v in data.items() if m != "FSC-H"}
    side["SSC-H"] = data["SSC-A"] * ratio
    placed, registration = register(template, side, _tops(1, 1))
    assert registration.singlets == "SSC-A vs SSC-H"
    populations = placed.apply(side)
    cells, singlets = populations.masks["cells"], populations.masks["singlets"]
    assert (singlets & doublets).sum() <= 0.1 * (cells & doublets).sum()
    assert (singlets & blasts).sum() >= 0.97 * (cells & blasts).sum()


def test_without_pulse_pairs_the_singlet_gate_is_skipped_and_flagged(
    template: GatingTemplate, tube: Any
) -> None:
    data, blasts, _ = tube
    areas = {m: v for m, v in data.items() if m != "FSC-H"}
    placed, registration = register(template, areas, _tops(1, 1))
    populations = placed.apply(areas)
    assert "singlets" not in populations.masks
    assert populations.parent("leukocytes") == "cells"
    assert [f["code"] for f in registration.flags] == ["singlets_gate_skipped"]
    assert "doublets were not excluded" in registration.flags[0]["message"]
    hits = int((populations.masks["blasts"] & blasts).sum())
    assert hits / int(blasts.sum()) >= 0.95


def test_without_a_lymphocyte_cluster_gates_follow_the_range_and_say_so(
    template: GatingTemplate, tube: Any
) -> None:
    data, _, _ = tube
    no_cd45 = dict(data, CD45=np.full_like(data["CD45"], -5.0))
    _, registration = register(template, no_cd45, _tops(4, 4))
    assert registration.source == "scale"
    assert registration.gains["SSC-A"] == pytest.approx(4.0)
    assert [f["code"] for f in registration.flags] == ["gates_placed_by_scale"]


def test_a_22_bit_tube_exports_gates_that_flowkit_applies_identically(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    """The placed gates stay in the file's own units (and each logicle's T scaled), so the
    exported Gating-ML re-gates the original 22-bit file in FlowKit event for event."""
    import flowkit as fk

    spec, _ = sim.demo_tube_spec("P03-R1")
    events, _ = sim.simulate_events(spec, 20_000, np.random.default_rng(3))
    scatter, cd45 = SCALES["22-bit (Cytek)"]
    gains = np.array([cd45 if c.kind == "fluorescence" else scatter for c in spec.channels])
    gains[[c.kind for c in spec.channels].index("Time")] = 1.0
    keywords = spec.keywords()
    for i, channel in enumerate(spec.channels, start=1):
        keywords[f"$P{i}R"] = str(int(TOP * gains[i - 1])) if channel.kind != "Time" else "262144"
    fcs = sim.write_fcs(
        tmp_path / "cytek.fcs",
        events * gains,
        [c.name for c in spec.channels],
        [c.label for c in spec.channels],
        keywords,
    )
    profile_sample("P03-R1", fcs, tmp_path / "out", config)
    profile = pd.read_json(tmp_path / "out" / "profile.json", typ="series")
    assert profile["gating"]["registration"]["source"] == "lymphocytes"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = fk.parse_gating_xml(str(tmp_path / "out" / "gates.xml"))
        report = strategy.gate_sample(fk.Sample(str(fcs))).report
    theirs = report.set_index("gate_name")["count"].to_dict()
    ours = pd.read_csv(tmp_path / "out" / "populations.tsv", sep="\t").set_index("population")
    assert theirs == ours["events"].to_dict()
    assert ours.loc["blasts", "events"] > 1000


def test_backbone_markers_get_a_logicle_of_their_own(template: GatingTemplate, tube: Any) -> None:
    data, _, _ = tube
    spec, _ = sim.demo_tube_spec("P04-R1")
    events, _ = sim.simulate_events(spec, 30_000, np.random.default_rng(7))
    cd34 = events[:, [c.name for c in spec.channels].index("PerCP-Cy5-5-A")] * 16
    placed, _ = register(
        template, dict(data, CD34=cd34), dict(_tops(1, 1), CD34=TOP * 16), {"CD34": "positive"}
    )
    name = placed.marker_transform("CD34")
    assert name == "logicle-CD34"
    assert placed.transforms[name]["T"] == pytest.approx(TOP * 16)
