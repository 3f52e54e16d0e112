"""Tests of quantification: thresholds from a negative reference, % positive, calls, floors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from antigen_profile.config import load_config
from antigen_profile.quantify import (
    ANTIGEN_COLUMNS,
    PositivitySettings,
    Reference,
    antigen_table,
    call_from_pct,
    quantify_marker,
)

SETTINGS = PositivitySettings()


def _reference(n: int = 2000, seed: int = 0, source: str = "control:blasts") -> Reference:
    rng = np.random.default_rng(seed)
    return Reference(rng.lognormal(np.log(150.0), 0.45, n), source)


def _blasts(n_negative: int, n_positive: int, low: float = 10.0, high: float = 1e6) -> np.ndarray:
    """Blasts whose positivity is unambiguous: negatives far below and positives far above any
    threshold from :func:`_reference`."""
    return np.concatenate([np.full(n_negative, low), np.full(n_positive, high)])


def test_settings_from_config_match_the_defaults() -> None:
    settings = PositivitySettings.from_config(load_config())
    assert settings.percentile == 99.5
    assert (settings.partial, settings.positive) == (20.0, 80.0)
    assert (settings.detect_floor, settings.quantify_floor) == (20, 50)
    assert settings.min_reference_events == 200


def test_threshold_is_the_reference_percentile() -> None:
    ref = _reference()
    row = quantify_marker(_blasts(60, 40), ref, SETTINGS)
    assert row["threshold"] == pytest.approx(np.percentile(ref.values, 99.5), abs=0.005)
    assert row["threshold_source"] == "control:blasts"


def test_threshold_follows_the_configured_percentile() -> None:
    ref = Reference(np.arange(1.0, 1001.0), "internal:lymphocytes")
    settings = PositivitySettings(percentile=90.0)
    row = quantify_marker(np.arange(1.0, 101.0) * 10, ref, settings)
    assert row["threshold"] == pytest.approx(np.percentile(ref.values, 90.0), abs=0.005)
    # blasts 10..1000 step 10; threshold 900.1: 910..1000 are positive
    assert row["positive_events"] == 10


def test_pct_positive_exact_on_constructed_data() -> None:
    ref = Reference(np.arange(1.0, 1001.0), "internal:lymphocytes")  # threshold 995.005
    blasts = np.array([995.0] * 30 + [995.01] * 70 + [2000.0] * 100)
    row = quantify_marker(blasts, ref, SETTINGS)
    assert row["events"] == 200
    assert row["positive_events"] == 170
    assert row["pct_positive"] == 85.0
    assert row["call"] == "positive"
    assert row["median"] == pytest.approx(np.median(blasts), abs=0.005)
    assert row["threshold_source"] == "internal:lymphocytes"
    assert row["note"] == ""


def test_value_equal_to_the_threshold_is_not_positive() -> None:
    ref = Reference(np.full(500, 300.0), "control:blasts")  # every percentile is 300
    row = quantify_marker(np.full(100, 300.0), ref, SETTINGS)
    assert row["positive_events"] == 0
    assert row["call"] == "negative"


@pytest.mark.parametrize(
    ("pct", "call"),
    [
        (0.0, "negative"),
        (19.99, "negative"),
        (20.0, "partial"),
        (50.0, "partial"),
        (79.99, "partial"),
        (80.0, "positive"),
        (100.0, "positive"),
    ],
)
def test_call_limits(pct: float, call: str) -> None:
    assert call_from_pct(pct, SETTINGS) == call


@pytest.mark.parametrize(
    ("positive", "call"), [(19, "negative"), (20, "partial"), (79, "partial"), (80, "positive")]
)
def test_call_boundaries_on_events(positive: int, call: str) -> None:
    row = quantify_marker(_blasts(100 - positive, positive), _reference(), SETTINGS)
    assert row["pct_positive"] == float(positive)
    assert row["call"] == call


def test_call_limits_come_from_settings() -> None:
    settings = PositivitySettings(partial=10.0, positive=50.0)
    assert call_from_pct(10.0, settings) == "partial"
    assert call_from_pct(50.0, settings) == "positive"
    assert call_from_pct(9.9, settings) == "negative"


@pytest.mark.parametrize(("n", "detected"), [(0, False), (19, False), (20, True), (49, True)])
def test_below_quantification_floor(n: int, detected: bool) -> None:
    row = quantify_marker(_blasts(0, n), _reference(), SETTINGS)
    assert row["events"] == n
    assert row["call"] == "insufficient_events"
    for key in ("pct_positive", "positive_events", "median", "rmfi", "threshold"):
        assert row[key] is None, key
    note = str(row["note"])
    assert str(n) in note and "50" in note
    assert ("not detected" in note) is (not detected)
    assert "detected" in note


def test_at_the_quantification_floor_a_number_is_given() -> None:
    row = quantify_marker(_blasts(25, 25), _reference(), SETTINGS)
    assert row["call"] == "partial"
    assert row["pct_positive"] == 50.0


def test_no_reference_gives_no_number() -> None:
    row = quantify_marker(_blasts(50, 50), None, SETTINGS)
    assert row["call"] == "no_reference"
    assert row["threshold_source"] == "none"
    for key in ("pct_positive", "positive_events", "rmfi", "threshold"):
        assert row[key] is None, key
    assert row["note"]


@pytest.mark.parametrize("n_ref", [0, 1, 199])
def test_too_small_reference_gives_no_number(n_ref: int) -> None:
    row = quantify_marker(_blasts(50, 50), _reference(n_ref), SETTINGS)
    assert row["call"] == "no_reference"
    for key in ("pct_positive", "positive_events", "rmfi", "threshold"):
        assert row[key] is None, key
    assert str(n_ref) in str(row["note"]) and "200" in str(row["note"])


def test_reference_at_the_minimum_is_used() -> None:
    row = quantify_marker(_blasts(50, 50), _reference(200), SETTINGS)
    assert row["call"] == "partial"
    assert row["threshold"] is not None


def test_rmfi_is_the_ratio_of_medians() -> None:
    rng = np.random.default_rng(3)
    ref = Reference(rng.uniform(100.0, 300.0, 1001), "control:blasts")
    blasts = rng.uniform(500.0, 3000.0, 301)
    row = quantify_marker(blasts, ref, SETTINGS)
    expected = np.median(blasts) / np.median(ref.values)
    assert row["rmfi"] == pytest.approx(expected, abs=0.005)


def test_rmfi_absent_when_reference_median_is_not_positive() -> None:
    ref = Reference(np.concatenate([np.full(300, -5.0), np.full(10, 10.0)]), "control:blasts")
    row = quantify_marker(_blasts(50, 50), ref, SETTINGS)
    assert row["rmfi"] is None
    assert row["pct_positive"] == 50.0
    assert "rMFI" in str(row["note"])


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.75])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_pct_positive_recovers_a_known_fraction(fraction: float, seed: int) -> None:
    """Bimodal lognormal blasts (negatives like the reference, positives 20x brighter)."""
    rng = np.random.default_rng(seed)
    n = 4000
    positive = rng.random(n) < fraction
    background = 150.0 * np.exp(0.45 * rng.standard_normal(n))
    stain = 3000.0 * np.exp(0.35 * rng.standard_normal(n))
    blasts = background + np.where(positive, stain, 0.0)
    ref = Reference(150.0 * np.exp(0.45 * rng.standard_normal(5000)), "control:blasts")
    row = quantify_marker(blasts, ref, SETTINGS)
    pct = row["pct_positive"]
    assert isinstance(pct, float)
    assert abs(pct - 100.0 * positive.mean()) <= 1.5
    assert abs(pct - 100.0 * fraction) <= 1.5 + 3 * 100 * np.sqrt(fraction * (1 - fraction) / n)


def test_antigen_table_rows_columns_and_not_in_panel() -> None:
    markers = ["CD19", "CD22", "CD123", "CD38", "CD10", "CD20"]
    blasts = {
        "CD19": _blasts(100, 0),
        "CD22": _blasts(10, 90),
        "CD38": _blasts(40, 60),
        "CD10": _blasts(5, 5),
        "CD20": _blasts(70, 30),
    }
    references: dict[str, Reference | None] = {
        "CD19": _reference(source="internal:lymphocytes"),
        "CD22": _reference(),
        "CD38": None,
        "CD10": _reference(),
        "CD20": _reference(),
    }
    table = antigen_table("S1", blasts, references, SETTINGS, markers)
    assert list(table.columns) == ANTIGEN_COLUMNS
    assert ANTIGEN_COLUMNS[:11] == [
        "sample_id", "population", "marker", "events", "positive_events", "pct_positive",
        "median", "rmfi", "threshold", "threshold_source", "call",
    ]  # fmt: skip
    assert list(table["marker"]) == markers
    assert set(table["sample_id"]) == {"S1"}
    assert set(table["population"]) == {"blasts"}
    by = table.set_index("marker")
    assert by.loc["CD19", "call"] == "negative"
    assert by.loc["CD19", "threshold_source"] == "internal:lymphocytes"
    assert by.loc["CD22", "call"] == "positive"
    assert by.loc["CD38", "call"] == "no_reference"
    assert pd.isna(by.loc["CD38", "pct_positive"])
    assert by.loc["CD10", "call"] == "insufficient_events"
    assert by.loc["CD20", "call"] == "partial"
    assert by.loc["CD123", "call"] == "not_in_panel"
    assert by.loc["CD123", "threshold_source"] == "none"
    assert pd.isna(by.loc["CD123", "events"])
    assert pd.isna(by.loc["CD123", "pct_positive"])
    assert "CD123" in by.loc["CD123", "note"]
    assert str(table["events"].dtype) == "Int64"
    assert str(table["positive_events"].dtype) == "Int64"
    assert by.loc["CD22", "events"] == 100
    assert by.loc["CD22", "positive_events"] == 90


def test_antigen_table_population_name() -> None:
    table = antigen_table(
        "S1", {"CD22": _blasts(50, 50)}, {"CD22": _reference()}, SETTINGS, ["CD22"], "lymphocytes"
    )
    assert list(table["population"]) == ["lymphocytes"]


@pytest.mark.parametrize(("positive", "limit"), [(4000, 20.0), (16000, 80.0)])
def test_call_agrees_with_the_reported_pct(positive: int, limit: float) -> None:
    ref = Reference(np.arange(1.0, 1001.0), "control:blasts")
    row = quantify_marker(_blasts(20001 - positive, positive), ref, SETTINGS)
    assert row["pct_positive"] == limit  # as written to antigens.tsv
    assert row["call"] == call_from_pct(limit, SETTINGS)
