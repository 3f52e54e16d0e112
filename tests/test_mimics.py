"""Normal look-alikes in the blast gate (issue 17): the screen's rules on events whose truth is
known by construction (the generated marrows of test_lookalikes.py check them end to end)."""

from __future__ import annotations

import numpy as np
import pytest

from antigen_profile.config import load_config
from antigen_profile.mimics import (
    HEMATOGONE_PATTERN,
    LOOKALIKES_KEPT,
    LOOKALIKES_SUSPECTED,
    LOW_BLAST_SHARE,
    MimicSettings,
    continuum,
    screen,
)

#: Negative-reference thresholds (a 99.5th percentile of the background, here 1.0 for all).
THRESHOLDS = {m: 1.0 for m in ("CD123", "CD34", "CD20", "CD38", "CD19", "CD10")}


@pytest.fixture(scope="module")
def settings() -> MimicSettings:
    return MimicSettings.from_config(load_config())


def _events(rng: np.random.Generator, n: int, **medians: float) -> dict[str, np.ndarray]:
    """``n`` events per marker, lognormal around the given median (0.3: below threshold)."""
    out = {}
    for marker in THRESHOLDS:
        median = medians.get(marker, 0.3)
        out[marker] = median * np.exp(0.3 * rng.standard_normal(n))
    return out


def _join(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def test_basophils_and_pdcs_leave_the_blasts_and_cd123_is_not_inflated(
    settings: MimicSettings,
) -> None:
    """3% CD123-negative blasts with a similar count of CD123-bright CD34-negative cells in
    the gate: the look-alikes are excluded, the blasts kept whole."""
    rng = np.random.default_rng(1)
    blasts = _events(rng, 600, CD34=5.0, CD10=6.0, CD38=4.0)
    basophils = _events(rng, 250, CD123=40.0, CD38=3.0)
    pdcs = _events(rng, 80, CD123=60.0, CD38=3.0)
    gate = _join(blasts, basophils, pdcs)
    found = screen(gate, THRESHOLDS, leukocytes=20_000, settings=settings)
    assert found.excluded == {"cd123_bright_cd34_negative": 330}
    assert found.keep[:600].all() and not found.keep[600:].any()
    cd123 = gate["CD123"][found.keep]
    assert np.mean(cd123 >= THRESHOLDS["CD123"]) < 0.01  # not CD123-positive any more
    assert found.summary["basophils_pdcs"]["excluded"] is True
    assert found.summary["basophils_pdcs"]["source"].startswith("Basophils")


def test_cd123_positive_blasts_keep_their_cd123(settings: MimicSettings) -> None:
    """CD123-positive leukaemic blasts (CD34+ or B-lineage+) are never taken for basophils,
    even when CD123-bright."""
    rng = np.random.default_rng(2)
    blasts = _events(rng, 3000, CD34=5.0, CD123=20.0, CD19=4.0)
    cd34_negative = _events(rng, 300, CD123=20.0, CD19=4.0)  # CD34- but CD19+: B lineage
    basophils = _events(rng, 100, CD123=40.0)
    found = screen(_join(blasts, cd34_negative, basophils), THRESHOLDS, 10_000, settings)
    assert found.keep[:3300].all()
    assert found.excluded["cd123_bright_cd34_negative"] == int((~found.keep[3300:]).sum())
    assert found.excluded["cd123_bright_cd34_negative"] >= 95


def test_a_gate_made_mostly_of_the_phenotype_is_the_leukaemia(settings: MimicSettings) -> None:
    rng = np.random.default_rng(3)
    leukaemia = _events(rng, 2000, CD123=40.0)  # CD34-negative, no B-lineage antigen measured
    found = screen(leukaemia, THRESHOLDS, 5000, settings)
    assert found.keep.all() and not found.excluded
    assert [f["code"] for f in found.flags] == [LOOKALIKES_KEPT]


def test_without_cd34_cd123_bright_events_are_counted_and_flagged(
    settings: MimicSettings,
) -> None:
    rng = np.random.default_rng(4)
    gate = _join(_events(rng, 600, CD34=5.0), _events(rng, 60, CD123=40.0))
    del gate["CD34"]
    found = screen(gate, {k: v for k, v in THRESHOLDS.items() if k != "CD34"}, 20_000, settings)
    assert found.keep.all()
    assert [f["code"] for f in found.flags] == [LOOKALIKES_SUSPECTED]
    assert "no CD34" in found.flags[0]["message"]


def test_a_maturation_continuum_is_hematogone_like_a_cluster_is_not(
    settings: MimicSettings,
) -> None:
    """Hematogones: CD34+CD20- early, CD34-CD20+ late, mutually exclusive; a leukaemic
    cluster with partial CD20 independent of CD34 (P03-like) is not."""
    rng = np.random.default_rng(5)
    stages = [
        _events(rng, 400, CD34=5.0, CD10=8.0, CD38=6.0),
        _events(rng, 400, CD10=4.0, CD20=2.0, CD38=6.0),
        _events(rng, 400, CD20=8.0, CD38=6.0),
    ]
    normal = continuum(_join(*stages), THRESHOLDS, settings)
    assert normal["hematogone_like"] and normal["phi_cd34_cd20"] < -0.5
    cluster = _events(rng, 1200, CD34=5.0, CD10=8.0)
    cluster["CD20"] = np.where(rng.random(1200) < 0.35, 8.0, 0.3)
    leukaemia = continuum(cluster, THRESHOLDS, settings)
    assert not leukaemia["hematogone_like"]
    found = screen(_join(*stages), THRESHOLDS, 30_000, settings)
    assert HEMATOGONE_PATTERN in [f["code"] for f in found.flags]
    assert continuum({"CD34": cluster["CD34"]}, THRESHOLDS, settings)["assessed"] is False


def test_few_blasts_need_an_aberrant_phenotype(settings: MimicSettings) -> None:
    rng = np.random.default_rng(6)
    plain = _events(rng, 400, CD34=5.0, CD38=6.0, CD10=6.0)  # 2% of leukocytes, CD38 bright
    found = screen(plain, THRESHOLDS, 20_000, settings)
    assert [f["code"] for f in found.flags] == [LOW_BLAST_SHARE]
    aberrant = _events(rng, 400, CD34=5.0, CD10=6.0)  # CD38 negative: a leukaemic feature
    found = screen(aberrant, THRESHOLDS, 20_000, settings)
    assert found.flags == [] and found.summary["low_blast_share"]["aberrancies"]
    plenty = screen(plain, THRESHOLDS, 2_000, settings)  # 20%: no rule applies
    assert plenty.flags == []
