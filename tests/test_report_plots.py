"""Tests of how the report's plots are drawn: density panels from binned counts, histograms
from the same events, and the small plots' shared figure left clean between plots (issue 19)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import LogNorm

from antigen_profile.report import plots, sample_plots

N = 20_000  # report.max_plot_events


def _events(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.5, 0.4, N)
    y = rng.normal(2.0, 0.5, N)
    x[:7] = np.nan  # not drawable: neither drawn nor counted
    y[7:9] = np.inf
    return x, y, (x > 1.2) & (y > 1.8)


def _gate(**changes: Any) -> dict[str, Any]:
    gate = {
        "id": "blasts",
        "parent": "leukocytes",
        "type": "rectangle",
        "x": {"dimension": "CD19", "transform": "logicle"},
        "y": {"dimension": "SSC-A", "transform": None},
        "bounds": {"x": [1.2, None], "y": [1.8, None]},
        "events": 5321,
        "pct_parent": 26.6,
    }
    return {**gate, **changes}


def test_density_panel_is_the_binned_counts_of_the_plotted_events() -> None:
    x, y, inside = _events()
    fig = plots.gate_figure(_gate(), x, y, inside)
    [ax] = fig.axes
    [image] = ax.get_images()  # one picture of the density, no scatter of events
    assert not ax.collections
    x0, x1, y0, y1 = image.get_extent()
    assert (x0, x1) == ax.get_xlim() and (y0, y1) == ax.get_ylim()
    drawable = np.isfinite(x) & np.isfinite(y)
    total, kept = plots.density_counts(
        x[drawable], y[drawable], inside[drawable], (x0, x1), (y0, y1)
    )
    assert total.shape == kept.shape == (sample_plots.BINS, sample_plots.BINS)
    assert total.sum() == drawable.sum() == N - 9  # every plotted event counted once
    edges = (np.linspace(x0, x1, sample_plots.BINS + 1), np.linspace(y0, y1, sample_plots.BINS + 1))
    np.testing.assert_array_equal(total, np.histogram2d(x, y, bins=edges)[0])
    np.testing.assert_array_equal(kept, np.histogram2d(x[inside], y[inside], bins=edges)[0])
    assert kept.sum() == (inside & drawable).sum()
    rgba = np.asarray(image.get_array())
    np.testing.assert_array_equal(rgba, plots.density_rgba(total, kept))
    # painted exactly where there are events; rows are y bins, from the bottom
    np.testing.assert_array_equal(rgba[..., 3] > 0, total.T > 0)
    # one log colour scale from 1 to the fullest bin: kept bins viridis, the others grey
    norm = LogNorm(vmin=1, vmax=total.max())
    i, j = np.unravel_index(np.argmax(kept), kept.shape)
    assert tuple(rgba[j, i]) == tuple(colormaps["viridis"](norm(kept[i, j]), bytes=True))
    outside = (total - kept) * (kept == 0)
    i, j = np.unravel_index(np.argmax(outside), outside.shape)
    grey = sample_plots.OUTSIDE_CMAP(norm(outside[i, j]), bytes=True)
    assert tuple(rgba[j, i]) == tuple(grey)
    # the gate drawn on top, with the labels and the counts of gates.json
    assert [type(p).__name__ for p in ax.patches] == ["Rectangle"]
    assert ax.get_xlabel() == "CD19 (logicle)" and ax.get_ylabel() == "SSC-A"
    assert "5,321 events" in ax.texts[0].get_text()


def test_density_bins_are_numpys_even_on_the_edges() -> None:
    edges = np.linspace(-1.0, 2.0, sample_plots.BINS + 1)
    rng = np.random.default_rng(11)
    values = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    values = np.concatenate([values, rng.uniform(-1.5, 2.5, 5000), [np.nan]])
    total, _ = plots.density_counts(values, values[::-1], None, (-1.0, 2.0), (-1.0, 2.0))
    expected = np.histogram2d(values, values[::-1], bins=(edges, edges))[0]
    np.testing.assert_array_equal(total, expected)


def test_density_without_a_mask_or_events() -> None:
    x, y, _ = _events()
    total, kept = plots.density_counts(x[9:], y[9:], None, (0.0, 3.0), (0.0, 4.0))
    assert kept is None and total.sum() == np.sum((x[9:] <= 3) & (y[9:] <= 4) & (x[9:] >= 0))
    rgba = plots.density_rgba(total)
    norm = LogNorm(vmin=1, vmax=total.max())
    i, j = np.unravel_index(np.argmax(total), total.shape)
    assert tuple(rgba[j, i]) == tuple(colormaps["viridis"](norm(total[i, j]), bytes=True))
    empty = plots.gate_figure(_gate(), np.empty(0), np.empty(0), np.empty(0, bool))
    assert not empty.axes[0].get_images()
    assert any(t.get_text() == "no events to plot" for t in empty.axes[0].texts)


def test_one_dimensional_gate_histogram_counts_the_plotted_events() -> None:
    x, _, inside = _events()
    gate = _gate(y=None, bounds={"x": [1.2, None]})
    fig = plots.gate_figure(gate, x, None, inside)
    [ax] = fig.axes
    parent, kept = ax.patches[:2]
    n = sample_plots.BINS + 1
    heights = parent.get_xy()[1 : 2 * n - 1 : 2, 1]
    assert heights.sum() == np.isfinite(x).sum()
    assert kept.get_xy()[1 : 2 * n - 1 : 2, 1].sum() == (inside & np.isfinite(x)).sum()
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] == pytest.approx(1.05 * heights.max())


def test_antigen_histograms_are_shares_of_their_own_events() -> None:
    rng = np.random.default_rng(5)
    blasts, reference = rng.normal(0.6, 0.1, 3000), rng.normal(0.25, 0.05, 800)
    fig = plots.antigen_figure("CD22", blasts, reference, 0.4)
    assert fig is not None
    [ax] = fig.axes
    n = sample_plots.BINS + 1
    shares = [p.get_xy()[1 : 2 * n - 1 : 2, 1].sum() for p in ax.patches[:2]]
    assert shares == pytest.approx([1.0, 1.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "reference",
        "blasts",
        "threshold",
    ]


def test_shared_small_figure_keeps_nothing_of_the_previous_plot() -> None:
    x, y, inside = _events()
    first = plots.gate_plot(_gate(), x, y, inside)
    plots.antigen_plot("CD22", np.random.default_rng(1).normal(0.6, 0.1, 500), None, 0.4)
    plots.gate_plot(_gate(y=None, bounds={"x": [1.2, None]}), x, None, inside)
    plots.mimic_plot(x[9:], y[9:], inside[9:])
    assert plots.gate_plot(_gate(), x, y, inside) == first  # the same picture, byte for byte


def test_shared_time_course_figure_keeps_nothing_of_the_previous_plot() -> None:
    def course(bins: int, scale: int, clogged: bool = True) -> dict[str, Any]:
        kept = [not (clogged and 10 <= i < 14) for i in range(bins)]
        events = [scale * (500 + (7 * i) % 23) for i in range(bins)]
        return {"bin_seconds": 1.0, "start_s": list(range(bins)), "events": events, "kept": kept}

    clog = [{"start_s": 10.0, "end_s": 14.0, "reason": "clog"}]
    first = plots.time_course_plot(course(60, 1), clog, level=505.0)
    other = plots.time_course_figure(course(300, 40, clogged=False), [], level=None)
    assert other is not None
    [ax] = other.axes
    assert [type(p).__name__ for p in ax.patches] == ["StepPatch"]  # nothing shaded, no level
    assert not ax.lines and ax.get_xlim() == (0.0, 300.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["events per bin"]
    assert plots.time_course_plot(course(60, 1), clog, level=505.0) == first


def test_shared_upset_figure_keeps_nothing_of_the_previous_chart() -> None:
    targets = ["CD22", "CD10", "CD38"]
    small = [
        {"label": "CD22", "pct": 61.0, "members": [True, False, False], "escape": False},
        {"label": "CD22+CD10", "pct": 30.5, "members": [True, True, False], "escape": False},
        {"label": "none", "pct": 8.5, "members": [False, False, False], "escape": True},
    ]
    first = plots.upset_plot(small, targets)
    tall = [{**p, "pct": p["pct"] / 3} for p in small] + [
        {"label": "CD38", "pct": 66.0, "members": [False, False, True], "escape": False}
    ]
    fig = plots.upset_figure(tall, targets)
    assert fig is not None
    bars, matrix = fig.axes
    assert len(matrix.get_yticklabels()) == len(targets)
    assert len(bars.containers) == 1 and len(bars.containers[0]) == len(tall)
    assert list(bars.get_yticks()) == [0, 20, 40, 60, 80]  # this chart's own ticks
    assert plots.upset_plot(small, targets) == first


@pytest.mark.parametrize("k", [1, 2, 5, 8])
@pytest.mark.parametrize("top", [1.15, 9.0, 46.0, 75.9, 115.0, 140.0])
def test_bar_ticks_are_matplotlibs_automatic_ticks_on_a_new_axes(k: int, top: float) -> None:
    """The UpSet bars' ticks, fixed so a reused axes keeps them, are those matplotlib chose
    on the chart's new axes (before its tick labels were made smaller)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=sample_plots.UPSET_FIGSIZE, dpi=sample_plots.DPI)
    grid = fig.add_gridspec(2, 1, height_ratios=[2.2, 0.45 + 0.28 * k])
    bars = fig.add_subplot(grid[0])
    bars.set_ylim(0, top)
    np.testing.assert_array_equal(sample_plots._bar_ticks(bars), bars.get_yticks())


def _draw_each() -> list[str | None]:
    x, y, inside = _events()
    raw = {"dimension": "FSC-A", "transform": None}
    rng = np.random.default_rng(2)
    return [
        plots.gate_plot(_gate(), x, y, inside),
        plots.gate_plot(_gate(x=raw, bounds={"x": [2e4, None], "y": [None, 1.8]}), x * 1e5, y),
        plots.gate_plot(_gate(y=None, bounds={"x": [1.2, None]}), x, None, inside),
        plots.antigen_plot("CD22", rng.normal(0.6, 0.1, 900), rng.normal(0.2, 0.1, 400), 0.4),
        plots.mimic_plot(x[9:], y[9:], inside[9:]),
    ]


def test_axis_labels_sit_where_matplotlib_puts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The small plots fix their axis labels' places; matplotlib, left to place them on a
    new figure, draws the same pictures."""
    placed = _draw_each()
    monkeypatch.setattr(sample_plots, "place_axis_labels", lambda _fig, _ax: None)
    monkeypatch.setattr(sample_plots._FIGURES, "figures", {})  # a new figure, labels unplaced
    assert _draw_each() == placed
