"""Tests of quantification: thresholds from a negative reference, % positive, calls, floors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from antigen_profile import quantify
from antigen_profile.config import load_config
from antigen_profile.quantify import (
    ANTIGEN_COLUMNS,
    PositivitySettings,
    Reference,
    antigen_table,
    call_from_pct,
    mixture_labels,
    mixture_reference,
    quantify_marker,
)
from antigen_profile.transforms import logicle, logicle_inverse

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


# --------------------------------------------------------------------------------------------
# The mixture reference: labels by boundaries solved once, exactly the model's
# --------------------------------------------------------------------------------------------

PARAMS = {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}  # the 18-bit BD scale the tests draw on


def _mixture(weights: list[float], means: list[float], variances: list[float]) -> object:
    """A fitted 1-D two-component GaussianMixture with these parameters (logicle scale)."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(2)
    model.weights_ = np.array(weights, dtype=float)
    model.means_ = np.array(means, dtype=float).reshape(2, 1)
    model.covariances_ = np.array(variances, dtype=float).reshape(2, 1, 1)
    model.precisions_cholesky_ = 1.0 / np.sqrt(model.covariances_)
    model.n_features_in_ = 1
    return model


def _predicted(values: np.ndarray, model: object) -> np.ndarray:
    return model.predict(logicle(values, PARAMS).reshape(-1, 1))  # type: ignore[attr-defined]


def _draws(model: object, seed: int, n: int = 20_000) -> np.ndarray:
    """Linear intensities over the whole logicle scale, plus the events right at (and one
    float either side of) each label boundary, where rounding decides."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(-0.2, 1.1, n)
    roots = quantify._label_boundaries(model)
    extra = []
    for root in [] if roots is None else roots:
        at = logicle_inverse(np.array([root]), PARAMS)
        extra += [at, np.nextafter(at, -np.inf), np.nextafter(at, np.inf)]
        extra.append(logicle_inverse(root + rng.uniform(-1e-6, 1e-6, 50), PARAMS))
    far = np.array([-1e300, -1e120, 1e120, 1e300, np.finfo(float).max, np.nan])  # logicle: -1
    return np.concatenate([logicle_inverse(y, PARAMS), *extra, far])


MODELS = {
    "two roots": ([0.6, 0.4], [0.3, 0.7], [0.003, 0.01]),
    "two roots, weights swapped": ([0.05, 0.95], [0.8, 0.35], [0.002, 0.02]),
    "equal variances: one root": ([0.7, 0.3], [0.25, 0.65], [0.004, 0.004]),
    "equal everything: no root": ([0.5, 0.5], [0.4, 0.4], [0.01, 0.01]),
    "one component everywhere: no real root": ([0.99, 0.01], [0.5, 0.52], [0.05, 0.001]),
    "nearly equal variances: far second root": ([0.5, 0.5], [0.2, 0.6], [0.004, 0.004000001]),
    "densities nearly touch: model for all": ([0.5, 0.5], [0.5, 0.5], [0.01, 0.0100000001]),
    "equal variances, means a hair apart: model for all": (
        [0.5, 0.5],
        [0.5, 0.5 + 1e-9],
        [0.01, 0.01],
    ),
}


@pytest.mark.parametrize("block", [1000, 1 << 16])
@pytest.mark.parametrize("name", list(MODELS))
def test_mixture_labels_equal_the_models_prediction(
    name: str, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantify, "LABEL_BLOCK", block)
    model = _mixture(*MODELS[name])
    for seed in range(3):
        values = _draws(model, seed)
        np.testing.assert_array_equal(
            mixture_labels(values, model, PARAMS), _predicted(values, model)
        )


@pytest.mark.parametrize("seed", range(6))
def test_mixture_labels_of_fitted_models_on_random_draws(seed: int) -> None:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    n_negative = int(rng.integers(2000, 20_000))
    values = np.concatenate(
        [
            rng.normal(rng.uniform(-50, 300), rng.uniform(20, 150), n_negative),
            rng.lognormal(
                rng.uniform(6, 10), rng.uniform(0.2, 1.0), int(rng.integers(200, 20_000))
            ),
        ]
    )
    model = GaussianMixture(2, random_state=0).fit(logicle(values, PARAMS).reshape(-1, 1))
    values = np.concatenate([values, _draws(model, seed, 2000)])
    np.testing.assert_array_equal(mixture_labels(values, model, PARAMS), _predicted(values, model))


def test_mixture_labels_ask_the_model_about_a_handful_of_events_only() -> None:
    model = _mixture(*MODELS["two roots"])
    asked: list[int] = []
    predict = model.predict

    def counting(x: np.ndarray) -> np.ndarray:
        asked.append(len(x))
        return predict(x)

    model.predict = counting  # type: ignore[method-assign]
    values = logicle_inverse(np.random.default_rng(0).uniform(-0.2, 1.1, 200_000), PARAMS)
    mixture_labels(values, model, PARAMS)
    assert sum(asked) < 100


def _old_mixture_reference(values: np.ndarray, settings: PositivitySettings) -> Reference | None:
    """The mixture reference as first written: every blast transformed and predicted."""
    from scipy.stats import norm
    from sklearn.mixture import GaussianMixture

    x = logicle(values, PARAMS)
    rng = np.random.default_rng(20240611)
    sample = x if x.size <= 20_000 else rng.choice(x, 20_000, replace=False)
    model = GaussianMixture(2, random_state=0).fit(sample.reshape(-1, 1))
    means, sds = model.means_.ravel(), np.sqrt(model.covariances_.ravel())
    lo, hi = int(np.argmin(means)), int(np.argmax(means))
    if means[hi] - means[lo] < 2.5 * max(sds[lo], sds[hi]) or model.weights_.min() < 0.02:
        return None
    z = float(norm.ppf(settings.percentile / 100))
    threshold = float(logicle_inverse(np.array([means[lo] + z * sds[lo]]), PARAMS)[0])
    return Reference(values[model.predict(x.reshape(-1, 1)) == lo], "mixture:blasts", threshold)


@pytest.mark.parametrize("n", [5_000, 60_000])
def test_mixture_reference_is_unchanged(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.concatenate(
        [rng.normal(100, 60, n // 2), rng.lognormal(np.log(20_000), 0.4, n - n // 2)]
    )
    new = mixture_reference(values, PARAMS, SETTINGS)
    old = _old_mixture_reference(values, SETTINGS)
    assert new is not None and old is not None
    assert new.threshold == old.threshold and new.source == old.source
    np.testing.assert_array_equal(new.values, old.values)
    unimodal = rng.normal(100, 60, n)
    assert mixture_reference(unimodal, PARAMS, SETTINGS) is None
    assert _old_mixture_reference(unimodal, SETTINGS) is None


def test_measured_thresholds_are_the_tables_thresholds() -> None:
    """The thresholds the look-alike screen reads before the table exists are the ones
    thresholds_from_references reads back from it, for every kind of row."""
    from antigen_profile.coverage import thresholds_from_references

    markers = ["CD19", "CD22", "CD123", "CD38", "CD10", "CD20", "CD34"]
    blasts = {
        "CD19": _blasts(100, 0),
        "CD22": _blasts(10, 90),
        "CD38": _blasts(40, 60),
        "CD10": _blasts(5, 5),  # too few blasts
        "CD20": _blasts(70, 30),
        "CD34": _blasts(60, 40),
    }
    references: dict[str, Reference | None] = {
        "CD19": _reference(source="internal:lymphocytes"),
        "CD22": _reference(),
        "CD38": None,
        "CD10": _reference(),
        "CD20": Reference(np.array([1.0, 2.0, 3.0]), "control:blasts"),  # too small
        "CD34": Reference(np.arange(500.0), "mixture:blasts", threshold=123.4),
    }
    table = antigen_table("S1", blasts, references, SETTINGS, markers, not_measured={"CD123": "x"})
    expected = thresholds_from_references(table, references, SETTINGS.percentile)
    found = quantify.measured_thresholds(blasts, references, SETTINGS, markers)
    assert found == expected
    assert list(found) == markers
    assert found["CD22"] is not None and found["CD34"] == 123.4 and found["CD20"] is None


@pytest.mark.parametrize("seed", [0, 1])
def test_quantify_marker_numbers_equal_numpys(seed: int) -> None:
    """Medians, positives and the positives' median (for the intensity) come from one
    partition of the blasts; they are NumPy's own to the last bit."""
    rng = np.random.default_rng(seed)
    blasts = np.concatenate([rng.lognormal(4, 1, 3001), rng.lognormal(9, 0.7, 7000)])
    reference = _reference(5000, seed)
    row = quantify_marker(blasts, reference, SETTINGS)
    threshold = float(np.percentile(reference.values, SETTINGS.percentile))
    positive = blasts[blasts > threshold]
    assert row["threshold"] == round(threshold, 2)
    assert row["positive_events"] == positive.size
    assert row["median"] == round(float(np.median(blasts)), 2)
    ref_median = float(np.median(reference.values))
    assert row["rmfi"] == round(float(np.median(blasts)) / ref_median, 2)
    bright = float(np.median(positive)) / ref_median >= SETTINGS.bright_rmfi
    assert row["intensity"] == ("bright" if bright else "dim")
