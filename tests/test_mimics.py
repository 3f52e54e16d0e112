"""Normal look-alikes in the blast gate (issue 17): the screen's rules on events whose truth is
known by construction (the generated marrows of test_lookalikes.py check them end to end)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from antigen_profile.config import load_config, resolve_paths
from antigen_profile.lookalikes import (
    LOOKALIKE_MARROWS,
    write_lookalike_marrow,
    write_lookalike_sheets,
)
from antigen_profile.mimics import (
    HEMATOGONE_PATTERN,
    LOOKALIKES_KEPT,
    LOOKALIKES_SUSPECTED,
    LOW_BLAST_SHARE,
    MimicSettings,
    continuum,
    screen,
)
from antigen_profile.paths import REPO_ROOT
from antigen_profile.pipeline import profile_sample
from antigen_profile.sheets import patient_record, read_patients
from antigen_profile.steps import decide_sample, write_sample_report

TRIAL = REPO_ROOT / "config" / "trials" / "4scar.yaml"

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


# --------------------------------------------------------------------------------------------
# Generated marrows with look-alikes (antigen_profile.lookalikes), profiled and decided
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    truth: dict[str, Any]
    antigens: pd.DataFrame
    profile: dict[str, Any]
    decision: dict[str, Any]
    report: str


@pytest.fixture(scope="module")
def marrows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Decided]:
    """Every look-alike marrow profiled with the default config and decided with its
    patient's row, and its report written, as the workflow does."""
    out = tmp_path_factory.mktemp("lookalikes")
    config = resolve_paths(load_config(), REPO_ROOT)
    write_lookalike_sheets(out)
    patients = read_patients(out / "patients.tsv")
    decided = {}
    for marrow in LOOKALIKE_MARROWS:
        sid = marrow.sample_id
        files = write_lookalike_marrow(sid, out)
        folder = out / "results" / sid
        profile_sample(sid, files.fcs, folder, config, control=files.control)
        record = json.dumps(patient_record(patients, marrow.patient_id))
        decision = decide_sample(
            folder, sid, marrow.patient_id, None, TRIAL, config, timepoint=marrow.timepoint,
            patient_record=record,
        )  # fmt: skip
        report = write_sample_report(folder, config)
        decided[sid] = Decided(
            json.loads(files.truth.read_text()),
            pd.read_csv(folder / "antigens.tsv", sep="\t").set_index("marker"),
            json.loads((folder / "profile.json").read_text()),
            decision,
            report.read_text(encoding="utf-8"),
        )
    return decided


def test_regenerating_hematogones_without_leukaemia_are_never_a_candidate(
    marrows: dict[str, Decided],
) -> None:
    """After CD19 CAR-T the marrow regenerates CD34+CD19-CD22+ progenitors and later stages,
    no leukaemia: the gate's 'blasts' are CD22/CD10/CD38-positive normal cells. The
    continuum is recognised and the recommendation goes to review, saying why."""
    case = marrows["regenerating"]
    assert case.truth["decision"] == "needs_review"
    assert case.decision["decision"] != "candidate"
    codes = [f["code"] for f in case.profile["flags"]]
    assert HEMATOGONE_PATTERN in codes
    assert any("hematogones" in r for r in case.decision["review_reasons"])
    assert "maturation continuum like normal B progenitors" in case.report
    pattern = case.profile["blast_mimics"]["continuum"]
    assert pattern["hematogone_like"] and pattern["phi_cd34_cd20"] <= -0.3


def test_a_low_cd123_negative_leukaemia_is_not_called_cd123_positive(
    marrows: dict[str, Decided],
) -> None:
    """3% CD123-negative blasts beside basophils and pDCs (a naive gate: CD123 on ~37%):
    the look-alikes leave the blasts, CD123 stays below its cut-off, and the low blast share
    goes to review."""
    case = marrows["low_cd123_negative"]
    assert case.truth["naive_blast_gate"]["pct_positive"]["CD123"] > 20  # the trap is real
    cd123 = case.antigens.loc["CD123"]
    assert cd123["call"] != "positive" and cd123["pct_positive"] < 20
    assert "CD123" not in case.decision["eligible_targets"]
    look = case.profile["blast_mimics"]["basophils_pdcs"]
    assert look["excluded"] and look["events"] >= 0.8 * (
        case.truth["population_events"]["basophils"] + case.truth["population_events"]["pdcs"]
    )
    assert case.decision["decision"] == case.truth["decision"] == "needs_review"
    assert any("low_blast_share" in r for r in case.decision["review_reasons"])


@pytest.mark.parametrize("sid", ["high_cd123_positive", "high_cd123_negative"])
def test_a_30pct_leukaemia_keeps_its_numbers_beside_basophils_and_pdcs(
    marrows: dict[str, Decided], sid: str
) -> None:
    """30% blasts with basophils and pDCs: the gates are fitted (no template fallback), each
    antigen within 3 points of the truth on the true blasts, and the decision is the truth's
    (CD123-positive blasts are still CD123 eligible)."""
    case = marrows[sid]
    assert not [f for f in case.profile["flags"] if f["code"] == "no_blast_population"]
    for marker, truth in case.truth["antigens"].items():
        got = case.antigens.loc[marker, "pct_positive"]
        assert abs(got - truth["pct_positive"]) <= 3.0, (marker, got, truth["pct_positive"])
    assert case.decision["eligible_targets"] == case.truth["eligible_targets"]
    assert case.decision["decision"] == case.truth["decision"]
    assert ("CD123" in case.decision["eligible_targets"]) is (sid == "high_cd123_positive")


def test_the_report_shows_what_was_taken_out_with_a_plot_and_each_rules_source(
    marrows: dict[str, Decided],
) -> None:
    html = marrows["low_cd123_negative"].report
    section = html[html.index('id="mimics"') :]
    section = section[: section.index("<h2")]
    assert "taken out as basophils or" in section and 'id="mimics-plot"' in section
    assert "data:image/png;base64," in section
    assert "Basophils and pDCs: CD123 bright" in section  # the configured source, printed
    assert "no continuum" in section  # the hematogone check ran and found none
    assert "a maturation continuum (hematogone-like)" in marrows["regenerating"].report


@pytest.mark.parametrize("dropped", [0, 1, 7, 5000, 60_000])
def test_kept_and_masked_equal_boolean_indexing(dropped: int) -> None:
    """populations.kept (blocks between a few dropped events) and populations.masked
    (through the indices) give exactly values[mask]."""
    from antigen_profile.populations import kept, masked

    rng = np.random.default_rng(dropped)
    values = rng.normal(size=100_000)
    keep = np.ones(values.size, dtype=bool)
    keep[rng.choice(values.size, dropped, replace=False)] = False
    for mask in (keep, ~keep, rng.random(values.size) < 0.3):
        assert np.array_equal(kept(values, mask), values[mask])
        assert np.array_equal(kept(values, mask, np.flatnonzero(~mask)), values[mask])
        assert np.array_equal(masked(values, mask), values[mask])
    edges = np.ones(values.size, dtype=bool)
    edges[[0, 1, 50, values.size - 1]] = False
    assert np.array_equal(kept(values, edges), values[edges])
    assert kept(values[:0], keep[:0]).size == 0
