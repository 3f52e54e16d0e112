"""Positivity against known per-event truth over repeated draws: dim and partial antigens,
thresholds from a control population, intervals that hold what they promise."""

from __future__ import annotations

import numpy as np
import pytest

from antigen_profile.quantify import PositivitySettings, Reference, quantify_marker

BACKGROUND = 150.0  # median autofluorescence of the negative cells
DRAWS = 50


def _draw(
    rng: np.random.Generator, n: int, fraction: float, fold: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blasts whose positives carry ``fold`` x the negative median (lognormal, ``sigma``)."""
    positive = rng.random(n) < fraction
    negative = BACKGROUND * np.exp(sigma * rng.standard_normal(n))
    stained = BACKGROUND * fold * np.exp(sigma * rng.standard_normal(n))
    return np.where(positive, stained, negative), positive


@pytest.mark.parametrize(
    ("name", "fraction", "fold", "sigma"),
    [
        ("dim, 4x the negative, 60% positive", 0.60, 4.0, 0.25),
        ("dim, 5x the negative, 30% positive", 0.30, 5.0, 0.30),
        ("partial bright, 35% positive", 0.35, 20.0, 0.35),
        ("bright, 95% positive", 0.95, 30.0, 0.35),
    ],
)
def test_pct_within_3_points_and_interval_covers_truth(
    name: str, fraction: float, fold: float, sigma: float
) -> None:
    settings = PositivitySettings()
    rng = np.random.default_rng(2024)
    covered, worst = 0, 0.0
    for _ in range(DRAWS):
        blasts, truth = _draw(rng, 5000, fraction, fold, sigma)
        control = BACKGROUND * np.exp(sigma * rng.standard_normal(20_000))
        row = quantify_marker(blasts, Reference(control, "control:blasts"), settings)
        true_pct = 100 * truth.mean()
        worst = max(worst, abs(float(row["pct_positive"]) - true_pct))  # type: ignore[arg-type]
        covered += float(row["pct_ci_low"]) <= true_pct <= float(row["pct_ci_high"])  # type: ignore[arg-type]
    assert worst <= 3.0, f"{name}: worst error {worst:.2f} points"
    assert covered >= 0.9 * DRAWS, f"{name}: truth inside the 95% CI in {covered}/{DRAWS} draws"


def test_dim_intensity_word() -> None:
    """The positive blasts' median over the reference decides dim (< 10x) or bright."""
    rng = np.random.default_rng(1)
    settings = PositivitySettings()
    control = BACKGROUND * np.exp(0.25 * rng.standard_normal(20_000))
    dim, _ = _draw(rng, 5000, 0.8, 4.0, 0.25)
    bright, _ = _draw(rng, 5000, 0.8, 40.0, 0.25)
    reference = Reference(control, "control:blasts")
    assert quantify_marker(dim, reference, settings)["intensity"] == "dim"
    assert quantify_marker(bright, reference, settings)["intensity"] == "bright"
