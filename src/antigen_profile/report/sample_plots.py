"""The sample report's plots: gates over their parent events, antigen histograms over the
reference, the acquisition time course and the UpSet chart of co-expression.

The plots only *draw* what the profile stage wrote (events already in display scale, gate
coordinates, thresholds, counts); they compute no statistic.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon, Rectangle, StepPatch
from matplotlib.text import Text
from matplotlib.ticker import Formatter, FuncFormatter, Locator, MaxNLocator
from matplotlib.transforms import Bbox

from antigen_profile.report.format import DASH
from antigen_profile.report.plot_style import (
    DPI,
    FONT,
    LABEL_PAD,
    PAD,
    TICK_LENGTH,
    TICK_PAD,
    TITLE_PAD,
    number_or_nan,
    place_axes,
    place_axis_labels,
    plain_legend,
    plain_text,
    png_data_uri,
    style_axes,
    text_inches,
    tick_labels_width,
)

#: Figure size (inches): ~290x270 px at the report's resolution.
FIGSIZE: tuple[float, float] = (3.2, 3.0)
#: Margins of the small plots (fractions of the figure): room for tick labels, axis labels
#: and the title at :data:`FIGSIZE`.
SMALL_MARGINS: dict[str, float] = {"left": 0.19, "right": 0.97, "bottom": 0.15, "top": 0.9}
#: Bins per axis of the density plots and histograms (display only).
BINS: int = 96

#: One palette for every sample plot: gates/thresholds red, blasts blue, reference grey.
GATE_COLOUR = "#c62828"
BLAST_COLOUR = "#1f5fa8"
REFERENCE_COLOUR = "#8a8a8a"
OUTSIDE_CMAP = LinearSegmentedColormap.from_list("outside", ["#d9d9d9", "#4d4d4d"])
INSIDE_CMAP = colormaps["viridis"]


def axis_label(spec: Mapping[str, Any] | None) -> str:
    """Label an axis with its dimension and, where one was applied, its transform.

    A reader must know a value is on the logicle scale before comparing it with a raw one.
    """
    if not spec:
        return "?"
    name = str(spec.get("dimension") or "?")
    transform = spec.get("transform")
    return f"{name} ({transform})" if transform else name


def _compact(value: float, _position: int | None = None) -> str:
    """Tick label for raw scatter values: 250k rather than 250000 on a 3-inch plot."""
    return f"{value / 1000:g}k" if abs(value) >= 1000 else f"{value:g}"


def _label_axes(ax: Axes, gate: Mapping[str, Any]) -> None:
    """Axis titles with their transform, compact ticks on untransformed (raw) axes."""
    ax.set_xlabel(axis_label(gate.get("x")), fontsize=FONT, parse_math=False)
    axes = [(gate.get("x"), ax.xaxis)]
    if gate.get("y"):
        ax.set_ylabel(axis_label(gate.get("y")), fontsize=FONT, parse_math=False)
        axes.append((gate.get("y"), ax.yaxis))
    for spec, axis in axes:
        if spec and not spec.get("transform"):
            axis.set_major_formatter(FuncFormatter(_compact))


#: Each thread's figures drawn again and again, by kind: see :func:`_reused`.
_FIGURES = threading.local()
#: An axes' own tick locators and formatters (x then y), restored when it is blanked.
Tickers = tuple[Locator, Formatter, Locator, Formatter]


def _reused(
    key: Hashable, build: Callable[[], tuple[Figure, list[Axes]]]
) -> tuple[Figure, list[Axes]]:
    """A blank figure of kind ``key`` and its axes, built by ``build`` on first use.

    Plots of one kind have the same size and axes furniture, so one figure is drawn on again
    and again, blanked before each plot: building a figure, its axes and their ticks anew took
    a third of each plot's time (issue 19). Each thread has its own; a figure is valid until
    the next plot of its kind is started.
    """
    figures = _FIGURES.__dict__.setdefault("figures", {})
    if key not in figures:
        fig, axes = build()
        tickers = [
            (
                ax.xaxis.get_major_locator(),
                ax.xaxis.get_major_formatter(),
                ax.yaxis.get_major_locator(),
                ax.yaxis.get_major_formatter(),
            )
            for ax in axes
        ]
        figures[key] = (fig, axes, tickers)
    fig, axes, tickers = figures[key]
    for ax, defaults in zip(axes, tickers, strict=True):
        _blank(ax, defaults)
    return fig, axes


def _new_axes() -> tuple[Figure, Axes]:
    """A blank small figure (gates, antigens, look-alikes) with one axes and the report's
    typography; see :func:`_reused`."""

    def build() -> tuple[Figure, list[Axes]]:
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        # Fixed margins, not constrained layout: every small plot has the same axes
        # furniture, and the layout engine cost ~1 s of a report's 1.4 s (issue 19).
        fig.subplots_adjust(**SMALL_MARGINS)
        ax = fig.add_subplot()
        style_axes(ax)
        return fig, [ax]

    fig, (ax,) = _reused("small", build)
    return fig, ax


def _blank(ax: Axes, tickers: Tickers) -> None:
    """Take everything a plot draws off ``ax``: what it holds, its texts, its tick locators
    and formatters (``tickers``: the axes' own), its limits, which autoscale again, and its
    position, back where its grid puts it (ticks are chosen for that size)."""
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    for container in list(ax.containers):
        container.remove()
    for artist in [*ax.images, *ax.patches, *ax.lines, *ax.collections, *ax.texts, *ax.artists]:
        artist.remove()
    ax.set_title("")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.xaxis.set_major_locator(tickers[0])
    ax.xaxis.set_major_formatter(tickers[1])
    ax.yaxis.set_major_locator(tickers[2])
    ax.yaxis.set_major_formatter(tickers[3])
    ax.dataLim.set_points(Bbox.null().get_points())
    ax.ignore_existing_data_limits = True
    ax.set_autoscale_on(True)
    spec = ax.get_subplotspec()
    if spec is not None:
        ax.set_position(spec.get_position(ax.get_figure()))


def _title(ax: Axes, text: str) -> None:
    """The plot's title (plain text) just above the axes.

    Placed at ``y=1`` rather than left to matplotlib, which would measure every tick label to
    check that none sits above the axes; none does in these plots, so the title lands where
    it always did, without the cost (a fifth of a report's drawing, issue 19).
    """
    ax.set_title(text, fontsize=FONT + 1, parse_math=False, y=1.0)


def _finite(values: np.ndarray | None) -> np.ndarray:
    """Finite float values of an optional array (NaN/inf events are not drawable)."""
    if values is None:
        return np.empty(0, dtype=float)
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _limits(values: np.ndarray, extra: Sequence[float | None] = ()) -> tuple[float, float]:
    """Axis limits covering the events and the gate, padded by 3%.

    Gate coordinates far outside the data (an "open" vertex at 1e9) would squash the events
    into a corner, so only coordinates within one data span of the events widen the axis.
    """
    finite = _finite(values)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = hi - lo if hi > lo else (abs(lo) or 1.0)
    for value in extra:
        if value is None or not math.isfinite(float(value)):
            continue
        if lo - span <= float(value) <= hi + span:
            lo, hi = min(lo, float(value)), max(hi, float(value))
    if hi <= lo:
        lo, hi = lo - 0.5 * span, hi + 0.5 * span
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


def _gate_coordinates(gate: Mapping[str, Any], axis: int) -> list[float | None]:
    """The gate's coordinates along one axis (0 = x, 1 = y), for the axis limits."""
    if gate.get("type") == "polygon":
        return [float(v[axis]) for v in gate.get("vertices") or [] if len(v) > axis]
    bounds = (gate.get("bounds") or {}).get("xy"[axis]) or []
    return [None if b is None else float(b) for b in bounds]


def _annotation(gate: Mapping[str, Any]) -> str:
    """Event count and % of parent exactly as gates.json states them."""
    events = gate.get("events")
    pct = gate.get("pct_parent")
    parent = gate.get("parent") or "all QC-kept events"
    events_text = f"{int(events):,} events" if isinstance(events, int | float) else f"events {DASH}"
    pct_text = f"{float(pct):.1f}%" if isinstance(pct, int | float) else DASH
    return f"{gate.get('id', '?')}: {events_text}\n{pct_text} of {parent}"


def _write_inside(ax: Axes, text: str) -> None:
    """Write text in the top-right corner of the plot on a translucent box."""
    ax.text(
        0.98,
        0.98,
        text,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=FONT - 0.5,
        parse_math=False,
        bbox={
            "boxstyle": "round,pad=0.25",
            "fc": "white",
            "ec": "#999999",
            "alpha": 0.85,
            "lw": 0.5,
        },
    )


def _open_bounds(
    bounds: Sequence[float | None] | None, limits: tuple[float, float]
) -> tuple[float, float]:
    """Replace open (null) rectangle ends by points beyond the axis so the edge is not drawn."""
    lo, hi = limits
    span = hi - lo
    bounds = list(bounds) if bounds else [None, None]
    start = lo - span if bounds[0] is None else float(bounds[0])
    end = hi + span if len(bounds) < 2 or bounds[1] is None else float(bounds[1])
    return start, end


def gate_plot(
    gate: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> str:
    """:func:`gate_figure` as a PNG data URI."""
    return png_data_uri(gate_figure(gate, x, y, inside))


def gate_figure(
    gate: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> Figure:
    """Draw one gate over its parent events.

    2-D gates: density of the parent events (events outside the gate in grey, inside in colour,
    so a reader sees at once what the gate kept), binned by :func:`density_counts` and drawn as
    one image, with the polygon or rectangle drawn. 1-D gates (``"y": null``): histogram with
    the bounds drawn. The count and % of parent come from gates.json, never from the subsampled
    events. The figure is the small plots' shared one: valid until the next small plot.
    """
    fig, ax = _new_axes()
    x = np.asarray(x, dtype=float).ravel()
    two_d = y is not None and gate.get("y") is not None
    inside_mask = None if inside is None else np.asarray(inside, dtype=bool).ravel()
    if inside_mask is not None and inside_mask.shape != x.shape:
        inside_mask = None  # a malformed mask must not mislabel events; draw them all alike
    if two_d:
        _draw_2d(ax, gate, x, np.asarray(y, dtype=float).ravel(), inside_mask)
    else:
        _draw_1d(ax, gate, x, inside_mask)
    _label_axes(ax, gate)
    _title(ax, str(gate.get("id", "?")))
    _write_inside(ax, _annotation(gate))
    place_axis_labels(fig, ax)
    return fig


def _draw_2d(
    ax: Axes, gate: Mapping[str, Any], x: np.ndarray, y: np.ndarray, inside: np.ndarray | None
) -> None:
    """Density of the events (outside the gate grey, inside coloured) plus the gate outline."""
    if y.shape != x.shape:
        raise ValueError(f"gate {gate.get('id')!r}: x and y event arrays differ in length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    inside = inside[keep] if inside is not None else None
    xlim = _limits(x, _gate_coordinates(gate, 0))
    ylim = _limits(y, _gate_coordinates(gate, 1))
    total, kept = density_counts(x, y, inside, xlim, ylim)
    if total.max() > 0:
        ax.imshow(
            density_rgba(total, kept),
            origin="lower",
            aspect="auto",
            extent=(*xlim, *ylim),
            interpolation="nearest",
        )
    if gate.get("type") == "polygon" and gate.get("vertices"):
        ax.add_patch(
            Polygon(
                np.asarray(gate["vertices"], dtype=float),
                closed=True,
                fill=False,
                ec=GATE_COLOUR,
                lw=1.3,
            )
        )
    elif gate.get("type") == "rectangle":
        bounds = gate.get("bounds") or {}
        x0, x1 = _open_bounds(bounds.get("x"), xlim)
        y0, y1 = _open_bounds(bounds.get("y"), ylim)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=GATE_COLOUR, lw=1.3))
    elif gate.get("type") != "none":  # "none": events only, no gate to outline
        _unknown_shape(ax, gate)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    if not x.size:
        _no_events(ax)


def density_counts(
    x: np.ndarray,
    y: np.ndarray,
    inside: np.ndarray | None,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Events per bin of a density plot: :data:`BINS` x :data:`BINS` equal bins spanning
    ``xlim`` and ``ylim`` (index ``[x bin, y bin]``), for all the events and for those
    ``inside`` the gate (``None`` without a mask). Every event within the limits is counted
    once: the plot is these counts, not a scatter of the events."""
    x_edges, y_edges = np.linspace(*xlim, BINS + 1), np.linspace(*ylim, BINS + 1)
    within = (x >= x_edges[0]) & (x <= x_edges[-1]) & (y >= y_edges[0]) & (y <= y_edges[-1])
    cell = _bin_index(x[within], x_edges) * BINS + _bin_index(y[within], y_edges)
    total = np.bincount(cell, minlength=BINS * BINS).reshape(BINS, BINS).astype(float)
    if inside is None:
        return total, None
    kept = np.bincount(cell[np.asarray(inside)[within]], minlength=BINS * BINS)
    return total, kept.reshape(BINS, BINS).astype(float)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value (all within the edges) among equal-width ``edges``: the bin ``i``
    with ``edges[i] <= value < edges[i + 1]``, the last edge in the last bin. The same bins
    as ``np.histogram2d`` and by the same arithmetic as ``np.histogram``'s equal-bin path,
    without sorting the events into the edges (a tenth of a density plot's time, issue 19)."""
    n = edges.size - 1
    index = ((values - edges[0]) / (edges[-1] - edges[0]) * n).astype(np.intp)
    index[index == n] -= 1
    index[values < edges[index]] -= 1
    index[(values >= edges[index + 1]) & (index != n - 1)] += 1
    return index


def density_rgba(total: np.ndarray, kept: np.ndarray | None = None) -> np.ndarray:
    """The picture of :func:`density_counts`: RGBA bytes, one pixel per bin, rows from the
    lowest y bin up. Bins with events inside the gate take :data:`INSIDE_CMAP`, the others
    with events :data:`OUTSIDE_CMAP` (all bins :data:`INSIDE_CMAP` without ``kept``), both on
    one log scale from 1 to the fullest bin; empty bins are transparent.

    One image instead of one per layer: drawing and resampling an image is a tenth of a
    plot's time (issue 19); the pixels are those the two layers made.
    """
    norm = LogNorm(vmin=1, vmax=max(float(total.max()), 1.0))
    layers = (
        [(total, INSIDE_CMAP)]
        if kept is None
        else [(total - kept, OUTSIDE_CMAP), (kept, INSIDE_CMAP)]
    )
    rgba = np.zeros((*total.T.shape, 4), dtype=np.uint8)
    for counts, cmap in layers:  # inside over outside, as the layers were drawn
        counts = counts.T
        where = counts > 0
        if where.any():
            rgba[where] = cmap(norm(counts[where]), bytes=True)
    return rgba


def mimic_plot(cd34: np.ndarray, cd123: np.ndarray, kept: np.ndarray) -> str | None:
    """The blast gate's events on CD34 vs CD123 (display scale): those that stayed blasts in
    colour, the CD123-bright CD34-negative ones taken out as basophils / pDCs in grey, so a
    reviewer sees what was removed and where. None without events."""
    x, y = np.asarray(cd34, dtype=float).ravel(), np.asarray(cd123, dtype=float).ravel()
    inside = np.asarray(kept, dtype=bool).ravel()
    if not x.size or x.shape != y.shape or inside.shape != x.shape:
        return None
    fig, ax = _new_axes()
    _draw_2d(ax, {"id": "blasts", "type": "none"}, x, y, inside)
    ax.set_xlabel("CD34", fontsize=FONT)
    ax.set_ylabel("CD123", fontsize=FONT)
    _title(ax, "blast gate: kept vs taken out")
    removed = int((~inside).sum())
    _write_inside(ax, f"{removed} of {inside.size} plotted taken out")
    place_axis_labels(fig, ax)
    return png_data_uri(fig)


def _draw_1d(ax: Axes, gate: Mapping[str, Any], x: np.ndarray, inside: np.ndarray | None) -> None:
    """Histogram of the parent events, the kept ones in colour, with the gate bounds."""
    keep = np.isfinite(x)
    x = x[keep]
    inside = inside[keep] if inside is not None else None
    xlim = _limits(x, _gate_coordinates(gate, 0))
    edges = np.linspace(*xlim, BINS + 1)
    _step_histogram(ax, _counts(x, xlim), edges, color=REFERENCE_COLOUR,
                    alpha=0.45, label="parent")  # fmt: skip
    if inside is not None and inside.any():
        _step_histogram(ax, _counts(x[inside], xlim), edges, color=BLAST_COLOUR,
                        alpha=0.7, label="in gate")  # fmt: skip
    if gate.get("type") == "rectangle":
        x0, x1 = _open_bounds((gate.get("bounds") or {}).get("x"), xlim)
        ax.axvspan(x0, x1, color=GATE_COLOUR, alpha=0.07, lw=0)
        for bound in (gate.get("bounds") or {}).get("x") or []:
            if bound is not None:
                ax.axvline(float(bound), color=GATE_COLOUR, lw=1.3)
    elif gate.get("type") != "none":  # "none": events only, no gate to outline
        _unknown_shape(ax, gate)
    ax.set_xlim(xlim)
    ax.set_ylabel("events", fontsize=FONT)
    if not x.size:
        _no_events(ax)


def _unknown_shape(ax: Axes, gate: Mapping[str, Any]) -> None:
    """Say so in the plot rather than draw a gate shape this report does not know."""
    ax.text(
        0.5,
        0.02,
        f"gate type {gate.get('type')!s} not drawn",
        transform=ax.transAxes,
        ha="center",
        va="bottom",
        fontsize=FONT - 1,
        color=GATE_COLOUR,
        parse_math=False,
    )


def _no_events(ax: Axes) -> None:
    """Mark an empty plot explicitly, so an empty frame is not mistaken for a rendering bug."""
    ax.text(
        0.5,
        0.5,
        "no events to plot",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=FONT,
        color="#555555",
    )


def antigen_plot(
    marker: str,
    blasts: np.ndarray | None,
    reference: np.ndarray | None = None,
    threshold: float | None = None,
    title: str | None = None,
    reference_label: str = "reference",
) -> str | None:
    """:func:`antigen_figure` as a PNG data URI (``None`` without blast events)."""
    fig = antigen_figure(marker, blasts, reference, threshold, title, reference_label)
    return None if fig is None else png_data_uri(fig)


def antigen_figure(
    marker: str,
    blasts: np.ndarray | None,
    reference: np.ndarray | None = None,
    threshold: float | None = None,
    title: str | None = None,
    reference_label: str = "reference",
) -> Figure | None:
    """Histogram of the blasts over the reference population with the positivity threshold.

    Both populations are drawn as shares of their own events, because the reference is often
    ten times smaller or larger than the blast population. Returns ``None`` when there are no
    blast events to draw (the report then says so in words). The figure is the small plots'
    shared one: valid until the next small plot.
    """
    values = _finite(blasts)
    if not values.size:
        return None
    ref = _finite(reference)
    extra = [float(ref.min()), float(ref.max())] if ref.size else []
    if threshold is not None and math.isfinite(threshold):
        extra.append(threshold)
    xlim = _limits(values, extra)
    edges = np.linspace(*xlim, BINS + 1)
    fig, ax = _new_axes()
    if ref.size:
        _share_histogram(ax, ref, edges, color=REFERENCE_COLOUR, alpha=0.45, label=reference_label)
    _share_histogram(
        ax, values, edges, color=BLAST_COLOUR, alpha=0.55, ec=BLAST_COLOUR, lw=0.8, label="blasts"
    )
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color=GATE_COLOUR, lw=1.2, ls="--", label="threshold")
    ax.set_xlim(xlim)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom so the legend never hides a peak
    ax.set_xlabel(f"{marker} (logicle)", fontsize=FONT, parse_math=False)
    ax.set_ylabel("share of events", fontsize=FONT)
    _title(ax, title or marker)
    plain_legend(
        ax,
        fontsize=FONT - 1.5,
        frameon=False,
        loc="upper right",
        handlelength=1.2,
        borderaxespad=0.2,
    )
    place_axis_labels(fig, ax)
    return fig


def _share_histogram(ax: Axes, values: np.ndarray, edges: np.ndarray, **style: Any) -> None:
    """A filled histogram of ``values`` as shares of their own events: the reference is often
    ten times smaller or larger than the blast population, and both must read on one axis."""
    counts = _counts(values, (edges[0], edges[-1]))
    _step_histogram(ax, counts / values.size, edges, **style)


def _counts(values: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Events in each of :data:`BINS` equal bins spanning ``limits`` (the edges
    ``np.linspace(*limits, BINS + 1)``): numpy's equal-bin path, faster than handing it the
    edges (issue 19)."""
    return np.histogram(values, bins=BINS, range=limits)[0]


def _step_histogram(ax: Axes, heights: np.ndarray, edges: np.ndarray, **style: Any) -> Polygon:
    """A filled step histogram of binned ``heights``, the same polygon ``ax.hist(...,
    histtype="stepfilled")`` draws (outline along the tops, back along the baseline).

    Added without :meth:`Axes.add_patch`, whose data limits walk the outline segment by
    segment in Python (a tenth of a report's time, issue 19): the limits are the polygon's
    bounding box, and the baseline is sticky as in ``hist``, so the axes autoscale alike.
    """
    n = len(edges)
    x = np.zeros(4 * n - 3)
    y = np.zeros(4 * n - 3)
    x[0 : 2 * n - 1 : 2], x[1 : 2 * n - 1 : 2] = edges, edges[:-1]
    x[2 * n - 1 :] = x[1 : 2 * n - 1][::-1]
    y[1 : 2 * n - 1 : 2] = y[2 : 2 * n : 2] = heights
    outline = np.column_stack([x, y])[:-1]  # as hist: the closing point is implied
    style = dict(style)
    # as hist: ``color`` fills, and the outline is drawn only when an edge colour is given
    patch = Polygon(outline, closed=True, facecolor=style.pop("color", None), edgecolor="none")
    patch.update(style)
    patch.sticky_edges.y.append(0)
    ax.add_artist(patch)
    ax.update_datalim(outline)
    ax.autoscale_view()
    return patch


#: Shading of dropped acquisition per reason (qc.json ``dropped``); unknown reasons are grey.
DROP_COLOURS: dict[str, str] = {
    "clog": "#c62828",
    "burst": "#ef6c00",
    "gap": "#6d6d6d",
    "signal_shift": "#7b1fa2",
}
DROPPED_COLOUR = "#9e9e9e"
#: The time course spans the page: a run of 300 bins needs the width.
TIME_COURSE_FIGSIZE: tuple[float, float] = (7.0, 2.5)


def _time_course_axes() -> tuple[Figure, list[Axes]]:
    """The time course's figure and axes, as :func:`_reused` builds them."""
    fig = Figure(figsize=TIME_COURSE_FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    style_axes(ax)
    return fig, [ax]


def _course_arrays(
    course: Mapping[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """Start times, events and kept flags of a qc.json time course, or ``None`` when absent or
    inconsistent (lists of different lengths, non-numeric values): better no plot than a
    wrong one."""
    if not isinstance(course, Mapping):
        return None
    try:
        starts = np.asarray(course.get("start_s"), dtype=float).ravel()
        events = np.asarray(course.get("events"), dtype=float).ravel()
        kept = np.asarray(course.get("kept"), dtype=bool).ravel()
    except (TypeError, ValueError):
        return None
    if not (starts.size and starts.size == events.size == kept.size):
        return None
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(events))):
        return None
    width = course.get("bin_seconds")
    try:
        width = float(width)
    except (TypeError, ValueError):
        width = float("nan")
    if not (math.isfinite(width) and width > 0):
        width = float(np.median(np.diff(starts))) if starts.size > 1 else 1.0
    if not width > 0:
        return None
    return starts, events, kept, width


def _reason_at(dropped: Sequence[Mapping[str, Any]], time: float) -> str:
    """The reason of the dropped period containing ``time`` ("dropped" when none does)."""
    for period in dropped:
        try:
            start, end = float(period["start_s"]), float(period["end_s"])
        except (KeyError, TypeError, ValueError):
            continue
        if start <= time <= end:
            return str(period.get("reason") or "dropped")
    return "dropped"


def time_course_figure(
    course: Mapping[str, Any] | None,
    dropped: Sequence[Mapping[str, Any]] = (),
    level: float | None = None,
) -> Figure | None:
    """Events per bin over the acquisition, dropped bins shaded by reason, with a legend.

    The shading follows the time course's own ``kept`` flags (what QC actually dropped); each
    dropped bin takes the colour and legend label of the ``dropped`` period it falls in. ``level``
    (events per bin at the run's level) is drawn dashed, so a clog or burst reads against it.
    Returns ``None`` when there is no usable time course. The figure is reused by the next
    time course (see :func:`_reused`).
    """
    arrays = _course_arrays(course)
    if arrays is None:
        return None
    starts, events, kept, width = arrays
    edges = np.append(starts, starts[-1] + width)
    fig, (ax,) = _reused("time course", _time_course_axes)
    periods = [p for p in dropped if isinstance(p, Mapping)]
    middles = 0.5 * (edges[:-1] + edges[1:])
    reasons = [
        "" if k else _reason_at(periods, float(m)) for k, m in zip(kept, middles, strict=True)
    ]
    labelled: set[str] = set()
    a = 0
    while a < len(reasons):
        b = a + 1
        while b < len(reasons) and reasons[b] == reasons[a]:
            b += 1
        if reasons[a]:
            reason = reasons[a]
            label = "dropped" if reason == "dropped" else f"dropped: {reason.replace('_', ' ')}"
            ax.axvspan(
                edges[a],
                edges[b],
                color=DROP_COLOURS.get(reason, DROPPED_COLOUR),
                alpha=0.25,
                lw=0,
                label=None if label in labelled else label,
                gid=label,
            )
            labelled.add(label)
        a = b
    # as ax.stairs draws it; added as an artist: the limits are set below, and add_patch's
    # walk of the outline's segments for limits cost a tenth of this plot (issue 19)
    ax.add_artist(
        StepPatch(events, edges, baseline=0, fill=False, ec=BLAST_COLOUR, lw=1.0,
                  label="events per bin")
    )  # fmt: skip
    if level is not None and math.isfinite(level) and level > 0:
        ax.axhline(level, color="#333333", lw=0.8, ls="--", label="run's level")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(float(events.max()), level or 0.0, 1.0) * 1.25)
    ax.set_xlabel("time (s)", fontsize=FONT)
    ax.set_ylabel(f"events per {width:.3g}-s bin", fontsize=FONT, parse_math=False)
    _title(ax, "Acquisition over time")
    plain_legend(
        ax,
        fontsize=FONT - 1,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        handlelength=1.2,
        borderaxespad=0.2,
    )
    _place_time_course(fig, ax)
    return fig


#: Tick length and pad (points) of :func:`~antigen_profile.report.plot_style.style_axes`.
TICK_SPACE = TICK_LENGTH + TICK_PAD


def _place_time_course(fig: Figure, ax: Axes) -> None:
    """Margins of the time course from its labels: axis labels and tick labels left and
    below, the title above, the legend (outside, at 1.01 axes widths) right."""
    width = fig.get_size_inches()[0]
    tick = TICK_SPACE / 72
    left = (
        PAD
        + text_inches(fig, ax.get_ylabel(), FONT)[1]
        + LABEL_PAD / 72
        + tick_labels_width(fig, ax.yaxis, FONT - 1)
        + tick
    )
    bottom = (
        PAD
        + text_inches(fig, ax.get_xlabel(), FONT)[1]
        + LABEL_PAD / 72
        + text_inches(fig, "0", FONT - 1)[1]
        + tick
    )
    top = PAD + TITLE_PAD / 72 + text_inches(fig, ax.get_title(), FONT + 1)[2]
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    space = 0.2 * (FONT - 1) / 72  # the legend's borderaxespad
    axes_width = (width - left - PAD - legend - space) / 1.01
    place_axes(fig, ax, left, bottom, width - left - axes_width, top)


def time_course_plot(
    course: Mapping[str, Any] | None,
    dropped: Sequence[Mapping[str, Any]] = (),
    level: float | None = None,
) -> str | None:
    """:func:`time_course_figure` as a PNG data URI (``None`` without a usable time course)."""
    fig = time_course_figure(course, dropped, level)
    return None if fig is None else png_data_uri(fig)


#: The UpSet chart spans the page: up to 2^5 patterns of five trial targets side by side.
UPSET_FIGSIZE: tuple[float, float] = (7.0, 3.3)
#: Patterns drawn above this many get their value written vertically, so labels never overlap.
UPSET_UPRIGHT_LABELS = 12
MATRIX_OFF = "#d0d0d0"
MATRIX_ON = "#263238"


def upset_figure(
    patterns: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    escape_label: str = "negative for every target",
) -> Figure | None:
    """UpSet-style chart of co-expression patterns as coexpression.tsv lists them.

    One bar per pattern, its height the % of blasts the file states (``pct``), in the file's
    order; under the bars, a dot matrix marks which ``targets`` each pattern is positive for
    (``members``, one bool per target). The pattern flagged ``escape`` (blasts negative for
    every target, which no combination of these products covers) is drawn in red on a red
    band, so it reads even when its bar is too small to see.

    Parameters
    ----------
    patterns
        Mappings with ``label`` (str), ``pct`` (float or None: no bar), ``members`` (one bool
        per target), ``escape`` (bool) and optionally ``text``, the bar's label as the report
        words it (default: ``pct`` with a % sign).
    targets
        The targets, in the file's column order (the trial's).
    escape_label
        Legend text for the escape pattern.

    Returns
    -------
    Figure or None
        The chart, or None when there is no pattern or no target to draw.
    """
    if not patterns or not targets:
        return None
    n, k = len(patterns), len(targets)
    ratios = (2.2, 0.45 + 0.28 * k)

    def build() -> tuple[Figure, list[Axes]]:
        fig = Figure(figsize=UPSET_FIGSIZE, dpi=DPI)
        # the grid only sets where the axes start (the bars' ticks are chosen for that
        # height); _place_upset puts them where they end
        grid = fig.add_gridspec(2, 1, height_ratios=ratios)
        bars = fig.add_subplot(grid[0])
        matrix = fig.add_subplot(grid[1], sharex=bars)
        style_axes(bars)
        return fig, [bars, matrix]

    fig, (bars, matrix) = _reused(("upset", k), build)
    x = np.arange(n)
    heights = np.array(
        [number_or_nan(p.get("pct")) for p in patterns], dtype=float
    )  # NaN: no bar, a dash as label
    escape = np.array([bool(p.get("escape")) for p in patterns])
    colours = [GATE_COLOUR if e else BLAST_COLOUR for e in escape]
    top = float(np.nanmax(heights)) if np.isfinite(heights).any() else 1.0
    top = max(top, 1.0)
    for ax in (bars, matrix):
        for position in x[escape]:
            ax.axvspan(position - 0.5, position + 0.5, color=GATE_COLOUR, alpha=0.1, lw=0)
    bars.bar(x, np.nan_to_num(heights), width=0.7, color=colours)
    upright = n > UPSET_UPRIGHT_LABELS
    for position, height, is_escape, pattern in zip(x, heights, escape, patterns, strict=True):
        text = pattern.get("text") or (DASH if not math.isfinite(height) else f"{height:g}%")
        value = height if math.isfinite(height) else 0.0
        # a label that would not fit above its bar goes inside it, in white
        inside = upright and value >= 0.45 * top
        bars.text(
            position,
            value - 0.02 * top if inside else value + 0.015 * top,
            text,
            ha="center",
            va="top" if inside else "bottom",
            rotation=90 if upright else 0,
            fontsize=FONT - 1,
            color="white" if inside else (GATE_COLOUR if is_escape else "#333333"),
            fontweight="bold" if is_escape else "normal",
            parse_math=False,
        )
    bars.set_ylim(0, top * (1.4 if upright else 1.15))
    bars.set_yticks([t for t in _bar_ticks(bars) if 0 <= t <= 100])  # a share: never > 100%
    bars.set_ylabel("% of blasts", fontsize=FONT)
    _title(bars, "Co-expression of the trial targets on blasts")
    bars.tick_params(labelbottom=False, bottom=False)
    if escape.any():
        plain_legend(
            bars,
            handles=[Patch(color=GATE_COLOUR, label=escape_label)],
            fontsize=FONT - 1,
            frameon=False,
            loc="upper right",
            handlelength=1.2,
        )
    rows = np.arange(k)[::-1]  # first target on top
    grid_x, grid_y = np.meshgrid(x, rows)
    matrix.scatter(grid_x.ravel(), grid_y.ravel(), s=16, color=MATRIX_OFF, lw=0)
    # every pattern's line and dots in one collection each (one per pattern cost ~0.1 s)
    dots_x, dots_y, lines = [], [], []
    for position, pattern in zip(x, patterns, strict=True):
        members = [bool(m) for m in pattern.get("members", [])][:k]
        on = rows[: len(members)][np.asarray(members, dtype=bool)] if members else rows[:0]
        if on.size:
            lines.append((position, on.min(), on.max()))
            dots_x += [position] * on.size
            dots_y += list(on)
    if lines:
        matrix.vlines(*np.transpose(lines), color=MATRIX_ON, lw=1.4)
        matrix.scatter(dots_x, dots_y, s=22, color=MATRIX_ON, zorder=3)
    matrix.set_yticks(rows, [str(t) for t in targets])
    matrix.set_ylim(-0.6, k - 0.4)
    matrix.set_xlim(-0.6, n - 0.4)
    matrix.set_xticks([])
    matrix.tick_params(labelsize=FONT, length=0, pad=2)
    plain_text(matrix.get_yticklabels())
    for side in ("top", "right", "bottom", "left"):
        matrix.spines[side].set_visible(False)
    matrix.set_xlabel(
        "pattern: targets positive (filled dots); bars in the order of coexpression.tsv",
        fontsize=FONT - 1,
        color="#555555",
    )
    _place_upset(fig, bars, matrix, targets, ratios)
    return fig


#: The UpSet bars' ticks are spaced for labels of this size (points), matplotlib's default:
#: the chart chose them on a new axes, before its tick labels were made smaller.
BAR_TICK_SPACING_FONT = 10.0


def _bar_ticks(bars: Axes) -> np.ndarray:
    """The bars' tick values over their view: matplotlib's automatic ticks (at most 9, at
    least every two label heights of :data:`BAR_TICK_SPACING_FONT` points along the axes as
    its grid places it), fixed here so that a reused axes keeps the chart's ticks."""
    height = bars.get_subplotspec().get_position(bars.get_figure()).height
    length = height * bars.get_figure().get_size_inches()[1] * 72
    nbins = max(min(math.floor(length / (2 * BAR_TICK_SPACING_FONT)), 9), 1)
    low, high = bars.get_ylim()
    return MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)


def _place_upset(
    fig: Figure, bars: Axes, matrix: Axes, targets: Sequence[str], ratios: tuple[float, float]
) -> None:
    """Margins of the UpSet chart from its labels (the bars' axis label and ticks or the
    matrix's target names left, the title above, the matrix's caption below) and the two
    axes stacked in the height ``ratios`` (bars : matrix), the bars' lowest tick
    label clear of the matrix: what constrained layout made of them, without its cost."""
    height = fig.get_size_inches()[1]
    beside_bars = (
        text_inches(fig, bars.get_ylabel(), FONT)[1]
        + LABEL_PAD / 72
        + tick_labels_width(fig, bars.yaxis, FONT - 1)
        + TICK_SPACE / 72
    )
    names = max(text_inches(fig, str(t), FONT)[0] for t in targets) + 2 / 72  # tick pad 2
    left = PAD + max(beside_bars, names)
    top = PAD + TITLE_PAD / 72 + text_inches(fig, bars.get_title(), FONT + 1)[2]
    bottom = PAD + text_inches(fig, matrix.get_xlabel(), FONT - 1)[1] + LABEL_PAD / 72
    zero = Text(0, 0, "0", fontsize=FONT - 1, va="center_baseline")  # the bars' lowest tick
    zero.set_figure(fig)
    gap = 2 * PAD - zero.get_window_extent(fig.canvas.get_renderer()).y0 / fig.dpi
    share = (height - top - bottom - gap) / sum(ratios)
    matrix_top = bottom + ratios[1] * share
    place_axes(fig, matrix, left, bottom, PAD, height - matrix_top)
    place_axes(fig, bars, left, matrix_top + gap, PAD, top)


def upset_plot(
    patterns: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    escape_label: str = "negative for every target",
) -> str | None:
    """:func:`upset_figure` as a PNG data URI.

    Parameters
    ----------
    patterns, targets, escape_label
        As for :func:`upset_figure`.

    Returns
    -------
    str or None
        ``data:image/png;base64,...``, or None when there is nothing to draw.
    """
    fig = upset_figure(patterns, targets, escape_label)
    return None if fig is None else png_data_uri(fig)
