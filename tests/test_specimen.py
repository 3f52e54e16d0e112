"""A specimen's panel split over two tubes (issue 16, the merge): one value per antigen by a
stated rule, disagreements flagged, coverage exact within a tube and bounded across tubes,
a failed tube's antigens not measured."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from antigen_profile.coverage import coverage_table
from antigen_profile.quantify import clopper_pearson
from antigen_profile.specimen import TubeResult, blast_share_flags, merge_specimen

TARGETS = ["CD22", "CD123", "CD38", "CD10"]


def _antigens(sample_id: str, positive: pd.DataFrame) -> pd.DataFrame:
    n = len(positive)
    rows = []
    for marker in positive.columns:
        k = int(positive[marker].sum())
        low, high = clopper_pearson(np.array([k]), n, 0.95)
        rows.append(
            {"sample_id": sample_id, "population": "blasts", "marker": marker, "events": n,
             "positive_events": k, "pct_positive": round(100 * k / n, 2),
             "pct_ci_low": round(100 * float(low[0]), 2),
             "pct_ci_high": round(100 * float(high[0]), 2)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _tube(sample_id: str, positive: pd.DataFrame, leukocytes: int) -> TubeResult:
    return TubeResult(
        sample_id,
        _antigens(sample_id, positive),
        coverage_table(positive, sample_id),
        len(positive),
        leukocytes,
    )


def _cells(n: int, seed: int) -> pd.DataFrame:
    """Per-blast truth with correlated targets: CD22 on most, CD10 mostly where CD22 is
    missing (the escape a second product closes), CD38 and CD123 independent."""
    rng = np.random.default_rng(seed)
    cd22 = rng.random(n) < 0.7
    cd10 = np.where(cd22, rng.random(n) < 0.3, rng.random(n) < 0.9)
    return pd.DataFrame(
        {"CD22": cd22, "CD123": rng.random(n) < 0.1, "CD38": rng.random(n) < 0.5, "CD10": cd10}
    )


@pytest.fixture()
def split() -> tuple[pd.DataFrame, list[TubeResult]]:
    """The same marrow in two tubes: CD22 + CD123 in the first, CD38 + CD10 in the second
    (each tube's blasts a fresh draw of the same cells' distribution)."""
    first, second = _cells(20_000, 1), _cells(18_000, 2)
    tubes = [
        _tube("S1-T1", first[["CD22", "CD123"]], 40_000),
        _tube("S1-T2", second[["CD38", "CD10"]], 36_500),
    ]
    return pd.concat([first, second]), tubes


def test_each_antigen_comes_from_a_tube_that_measured_it(
    split: tuple[pd.DataFrame, list[TubeResult]],
) -> None:
    truth, tubes = split
    profile = merge_specimen("S1", tubes, TARGETS, TARGETS)
    table = profile.antigens.set_index("marker")
    assert dict(table["sample_id"]) == {
        "CD22": "S1-T1", "CD123": "S1-T1", "CD38": "S1-T2", "CD10": "S1-T2",
    }  # fmt: skip
    for marker in TARGETS:
        assert table.loc[marker, "pct_positive"] == pytest.approx(
            100 * truth[marker].mean(), abs=1.5
        )
    assert profile.flags == [] and profile.unmeasured == {}


def test_coverage_is_exact_within_a_tube_and_bounds_the_truth_across_tubes(
    split: tuple[pd.DataFrame, list[TubeResult]],
) -> None:
    truth, tubes = split
    coverage = merge_specimen("S1", tubes, TARGETS, TARGETS).coverage.set_index("combination")
    assert len(coverage) == 2**4 - 1
    for size in range(1, 5):
        for combo in combinations(TARGETS, size):
            row = coverage.loc["+".join(combo)]
            true_pct = 100 * truth[list(combo)].any(axis=1).mean()
            together = row["measured_together"]
            if together:
                assert set(combo) <= set(tubes[0 if together == "S1-T1" else 1].measured)
                assert row["covered_pct"] == row["covered_pct_high"]
                assert row["covered_pct"] == pytest.approx(true_pct, abs=1.5)
            else:  # bounds hold the truth (within counting error of the tube draws)
                assert row["covered_pct"] <= true_pct + 1.0, combo
                assert true_pct <= row["covered_pct_high"] + 1.0, combo
                assert row["covered_pct_high"] <= 100.0
    # CD22+CD10 spans the tubes: its lower bound is CD22's, far below the truth (~97%)
    row = coverage.loc["CD22+CD10"]
    assert (
        row["measured_together"] == "" and row["covered_pct"] == coverage.loc["CD22", "covered_pct"]
    )


def test_an_antigen_in_both_tubes_uses_the_larger_tube_and_flags_disagreement() -> None:
    rng = np.random.default_rng(5)
    a = pd.DataFrame({"CD22": rng.random(30_000) < 0.60, "CD10": rng.random(30_000) < 0.4})
    b = pd.DataFrame({"CD22": rng.random(10_000) < 0.80, "CD38": rng.random(10_000) < 0.5})
    tubes = [_tube("T1", a, 60_000), _tube("T2", b, 20_000)]
    profile = merge_specimen("S", tubes, ["CD22", "CD38", "CD10"], ["CD22", "CD38", "CD10"])
    assert profile.antigens.set_index("marker").loc["CD22", "sample_id"] == "T1"
    assert sorted(profile.measurements["sample_id"]) == ["T1", "T1", "T2", "T2"]
    [flag] = [f for f in profile.flags if f["code"] == "tubes_disagree"]
    assert "CD22" in flag["message"] and "T1" in flag["message"]


def test_blast_shares_that_disagree_beyond_counting_and_tolerance_are_flagged() -> None:
    cells = _cells(10_000, 3)
    same = [_tube("A", cells[["CD22"]], 20_000), _tube("B", cells[["CD10"]], 20_500)]
    assert blast_share_flags(same) == []
    off = [_tube("A", cells[["CD22"]], 20_000), _tube("B", cells[["CD10"]], 40_000)]
    [flag] = blast_share_flags(off)
    assert flag["code"] == "blast_share_disagrees" and "50.0%" in flag["message"]


def test_a_failed_tube_leaves_its_antigens_unmeasured_with_the_reason() -> None:
    cells = _cells(10_000, 4)
    failed = TubeResult("T2", pd.DataFrame(), pd.DataFrame(), 0, 0, failure="too few events")
    profile = merge_specimen("S", [_tube("T1", cells[["CD22"]], 20_000), failed], TARGETS, TARGETS)
    assert list(profile.antigens["marker"]) == ["CD22"]
    assert set(profile.unmeasured) == {"CD123", "CD38", "CD10"}
    assert profile.unmeasured["CD10"] == "T2 not analysed: too few events"
    assert list(profile.coverage["combination"]) == ["CD22"]
