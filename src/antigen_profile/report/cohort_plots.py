"""The cohort index's plots: the % positive heat map and each patient's antigens over time.

Like the sample plots they draw what the files hold (NaN is grey or a gap, never 0) and compute
no statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from antigen_profile.report import plot_style as style
from antigen_profile.report.format import DASH

#: Heat map of % positive blasts: white (0%) to the blasts' blue (100%).
HEATMAP_CMAP = LinearSegmentedColormap.from_list("pct_positive", ["#ffffff", "#9ecae1", "#08306b"])
NO_NUMBER_COLOUR = "#e6e6e6"
#: Cells are annotated with their value up to this many samples (beyond, labels get unreadable).
HEATMAP_ANNOTATE_ROWS = 60


def cohort_heatmap_figure(
    samples: Sequence[str],
    markers: Sequence[str],
    values: np.ndarray,
    text: Sequence[Sequence[str]] | None = None,
) -> Figure | None:
    """Samples (rows) by antigens (columns), coloured by % positive blasts.

    Parameters
    ----------
    samples, markers
        Row and column labels, in display order.
    values
        ``len(samples) x len(markers)`` % positive; NaN where the sample's antigens.tsv holds
        no number (not quantified, no reference, too few blasts, QC failed), drawn grey.
    text
        Optional cell labels (same shape); default: the value with no decimals, a dash for NaN.

    Returns
    -------
    Figure or None
        None when there is no sample or no marker.
    """
    data = np.asarray(values, dtype=float)
    n, k = len(samples), len(markers)
    if not n or not k or data.shape != (n, k):
        return None
    height = min(max(1.8, 1.0 + 0.3 * n), 40.0)
    fig = Figure(figsize=(max(4.0, 1.8 + 0.8 * k), height), dpi=style.DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor(NO_NUMBER_COLOUR)
    image = ax.imshow(
        np.ma.masked_invalid(data),
        cmap=HEATMAP_CMAP,
        vmin=0,
        vmax=100,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(np.arange(k), [str(m) for m in markers])
    ax.set_yticks(np.arange(n), [str(s) for s in samples])
    ax.xaxis.tick_top()
    ax.tick_params(labelsize=style.FONT + 1, length=0, pad=2)
    style.plain_text(ax.get_xticklabels() + ax.get_yticklabels())
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.tick_params(which="minor", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if n <= HEATMAP_ANNOTATE_ROWS:
        for i in range(n):
            for j in range(k):
                value = data[i, j]
                label = (
                    text[i][j]
                    if text is not None
                    else (DASH if not math.isfinite(value) else f"{value:.0f}")
                )
                dark = math.isfinite(value) and value >= 55
                ax.text(
                    j,
                    i,
                    label,
                    ha="center",
                    va="center",
                    fontsize=style.FONT,
                    color="white" if dark else "#333333",
                    parse_math=False,
                    # inside its cell: nothing for the layout engine to make room for, and
                    # measuring every cell's text was a third of this plot's time (issue 19)
                    in_layout=False,
                )
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 3.0 / height + 0.3), pad=0.02)
    bar.set_label("% positive blasts", fontsize=style.FONT)
    bar.ax.tick_params(labelsize=style.FONT - 1, length=2)
    return fig


def cohort_heatmap_plot(
    samples: Sequence[str],
    markers: Sequence[str],
    values: np.ndarray,
    text: Sequence[Sequence[str]] | None = None,
) -> str | None:
    """:func:`cohort_heatmap_figure` as a PNG data URI (None when there is nothing to draw)."""
    fig = cohort_heatmap_figure(samples, markers, values, text)
    return None if fig is None else style.png_data_uri(fig)


#: One colour per antigen in the patient timelines (tab10 minus red, kept for losses).
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")  # fmt: skip
LOSS_COLOUR = "#d62728"


def patient_timeline_figure(
    patient_id: str,
    samples: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    losses: Mapping[str, Sequence[bool]] | None = None,
    density: Mapping[str, Sequence[float | None]] | None = None,
) -> Figure | None:
    """Each antigen's % positive blasts over one patient's samples, falls flagged in red.

    Parameters
    ----------
    patient_id
        The plot's title (a file string: drawn as plain text).
    samples
        X-axis labels in time order (e.g. ``"P01-R1\\nrelapse"``).
    series
        Marker -> % positive per sample (None where the sample has no number: a gap).
    losses
        Marker -> per sample, True where patient_timeline.tsv flags a loss (``loss``); drawn as
        a red ring with the marker's name, the segment leading to it red.
    density
        Marker -> ABC median per sample; when any is present a second panel shows it (log).

    Returns
    -------
    Figure or None
        None when there are fewer than two samples or no series.
    """
    n = len(samples)
    if n < 2 or not series:
        return None
    has_density = bool(density) and any(
        math.isfinite(style.number_or_nan(v)) for values in density.values() for v in values
    )
    width = min(7.0, 2.6 + 0.9 * n)
    fig = Figure(figsize=(width, 4.4 if has_density else 2.8), dpi=style.DPI, layout="constrained")
    axes = fig.subplots(2 if has_density else 1, 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(n)
    for index, (marker, values) in enumerate(series.items()):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        y = np.array([style.number_or_nan(v) for v in values], dtype=float)
        ok = np.isfinite(y)
        # connect measured samples only, across unmeasured ones
        axes[0].plot(x[ok], y[ok], "-o", color=colour, lw=1.2, ms=3.5, label=str(marker))
        flags = list((losses or {}).get(marker, []))
        for i, lost in enumerate(flags[:n]):
            if not (lost and ok[i]):
                continue
            previous = [j for j in range(i) if ok[j]]
            if previous:
                j = previous[-1]
                axes[0].plot([x[j], x[i]], [y[j], y[i]], color=LOSS_COLOUR, lw=2.2)
            axes[0].plot(x[i], y[i], "o", ms=9, mfc="none", mec=LOSS_COLOUR, mew=1.8)
            axes[0].annotate(
                f"{marker} loss",
                (x[i], y[i]),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=style.FONT - 1,
                color=LOSS_COLOUR,
                fontweight="bold",
                annotation_clip=False,
            ).set_parse_math(False)
        if has_density and density is not None and marker in density:
            d = np.array([style.number_or_nan(v) for v in density[marker]], dtype=float)
            keep = np.isfinite(d) & (d > 0)
            if keep.any():
                axes[1].plot(x[keep], d[keep], "-o", color=colour, lw=1.2, ms=3.5)
    axes[0].set_ylim(-3, 108)
    axes[0].set_ylabel("% positive blasts", fontsize=style.FONT)
    axes[0].set_title(str(patient_id), fontsize=style.FONT + 1, parse_math=False)
    if has_density:
        axes[1].set_yscale("log")
        axes[1].set_ylabel("ABC median", fontsize=style.FONT)
    for ax in axes:
        style.style_axes(ax)
        ax.set_xlim(-0.4, n - 0.6 + 0.4 * (n > 1))
    axes[-1].set_xticks(x, [str(s) for s in samples])
    style.plain_text(axes[-1].get_xticklabels())
    style.plain_legend(
        axes[0], fontsize=style.FONT - 1, frameon=False, loc="upper left",
        bbox_to_anchor=(1.01, 1.0), handlelength=1.4, borderaxespad=0.2,
    )  # fmt: skip
    return fig


def patient_timeline_plot(
    patient_id: str,
    samples: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    losses: Mapping[str, Sequence[bool]] | None = None,
    density: Mapping[str, Sequence[float | None]] | None = None,
) -> str | None:
    """:func:`patient_timeline_figure` as a PNG data URI (None when there is nothing to draw)."""
    fig = patient_timeline_figure(patient_id, samples, series, losses, density)
    return None if fig is None else style.png_data_uri(fig)
