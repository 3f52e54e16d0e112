"""What every report plot shares: resolution, typography, axes style, plain-text labels and
the PNG data URI the page embeds.

matplotlib's object API (``Figure`` with an Agg canvas) is used instead of pyplot so that no
display backend is needed on HPC nodes and no figure lingers in pyplot's global registry
between plots.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from typing import Any

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text
from matplotlib.transforms import Affine2D, Bbox

from antigen_profile.report.format import to_number

#: Resolution: with the sample plots' size, a report with a dozen plots stays under 1 MB.
DPI: int = 90
#: Base font size (points); titles are one larger, tick labels and legends smaller.
FONT = 7.0
#: Space (inches) between a page-wide plot's outermost labels and the figure's edge, and
#: between stacked axes' labels: what matplotlib's constrained layout leaves (3 points).
PAD = 3 / 72
#: matplotlib's defaults (points) that place labels: axis label and title off their axes.
LABEL_PAD = 4.0
TITLE_PAD = 6.0
#: Tick labels' font size, ticks' length and their labels' pad (points): see style_axes.
TICK_FONT = FONT - 1
TICK_LENGTH = 2.0
TICK_PAD = 1.5


def png_data_uri(fig: Figure) -> str:
    """Render ``fig`` to a base64 PNG data URI.

    The PNG carries no ``Software`` metadata: smaller, and no URL hidden in the report. The
    figure is not cleared afterwards: outside pyplot nothing else holds it, and clearing
    rebuilt every axis' ticks only to throw them away (a tenth of the report's time, issue 19).
    A figure drawn again (the small plots reuse theirs) keeps its canvas, and with it the
    renderer's cache of text sizes.
    """
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # zlib level 3: a third faster than the default 6 and no larger on these flat pictures
    fig.savefig(
        buffer,
        format="png",
        dpi=DPI,
        metadata={"Software": None},
        pil_kwargs={"compress_level": 3},
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


#: Laid-out sizes of texts already measured: (text, size, dpi) -> (width, height, ascent).
_TEXT_SIZES: dict[tuple[str, float, float], tuple[float, float, float]] = {}


def text_inches(fig: Figure, text: str, size: float) -> tuple[float, float, float]:
    """Width, height and ascent above the baseline (inches) of one line of plain ``text`` at
    ``size`` points, as ``fig``'s Agg renderer lays out a label (remembered: tick labels
    repeat from plot to plot)."""
    key = (text, size, fig.dpi)
    if key not in _TEXT_SIZES:
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        label = Text(0, 0, text, fontsize=size, va="baseline", parse_math=False)
        label.set_figure(fig)
        box = label.get_window_extent(fig.canvas.get_renderer())
        _TEXT_SIZES[key] = (box.width / fig.dpi, box.height / fig.dpi, box.y1 / fig.dpi)
    return _TEXT_SIZES[key]


def _tick_labels(axis: Axis) -> list[str]:
    """The major tick labels ``axis`` will draw: labelled as matplotlib labels them (every
    tick at once, the formatter's precision depends on all), those within the view kept."""
    locs = axis.get_major_locator()()
    labels = axis.get_major_formatter().format_ticks(locs)
    low, high = sorted(axis.get_view_interval())
    slack = 1e-10 * (high - low)
    return [
        label
        for loc, label in zip(locs, labels, strict=True)
        if label and low - slack <= loc <= high + slack
    ]


def tick_labels_width(fig: Figure, axis: Axis, size: float) -> float:
    """Width (inches) of the widest major tick label ``axis`` will draw at ``size`` points."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=size)
    widths = [
        renderer.get_text_width_height_descent(label, font, ismath=False)[0]
        for label in _tick_labels(axis)
    ]
    return max(widths, default=0.0) / fig.dpi


def place_axis_labels(fig: Figure, ax: Axes) -> None:
    """Fix ``ax``'s axis labels where matplotlib would put them for its tick labels (styled by
    :func:`style_axes`, below and left): ``LABEL_PAD`` below the deepest x tick label and
    left of the widest y tick label. Call it once the limits are final.

    Left to matplotlib, every draw measures every tick label a second time to place the
    labels (issue 19).
    """
    points = fig.dpi / 72
    ticks = (TICK_LENGTH + TICK_PAD + LABEL_PAD) * points
    labels = _tick_labels(ax.xaxis)
    deepest = max((text_inches(fig, label, TICK_FONT)[1] for label in labels), default=0.0)
    below = Affine2D().translate(0, -(ticks + deepest * fig.dpi))
    ax.xaxis.set_label_coords(0.5, 0, transform=ax.transAxes + below)
    widest = tick_labels_width(fig, ax.yaxis, TICK_FONT)
    beside = Affine2D().translate(-(ticks + widest * fig.dpi), 0)
    ax.yaxis.set_label_coords(0, 0.5, transform=ax.transAxes + beside)


def place_axes(fig: Figure, ax: Axes, left: float, bottom: float, right: float, top: float) -> None:
    """Put ``ax`` at fixed margins (inches from each edge of ``fig``).

    The page-wide plots size their margins from their labels' measured text instead of
    running matplotlib's constrained layout, which measured every artist before drawing them
    all again (most of those plots' time, issue 19); the margins are those it chose.
    """
    width, height = fig.get_size_inches()
    ax.set_position(
        Bbox.from_extents(left / width, bottom / height, 1 - right / width, 1 - top / height)
    )


def style_axes(ax: Axes) -> None:
    """The report's axes: small ticks, no top or right frame."""
    ax.tick_params(labelsize=TICK_FONT, length=TICK_LENGTH, pad=TICK_PAD)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plain_text(texts: Iterable[Text]) -> None:
    """Labels are file strings: never interpret ``$...$`` in them as mathtext."""
    for text in texts:
        text.set_parse_math(False)


def plain_legend(ax: Axes, **options: Any) -> None:
    """A legend (``options`` as for :meth:`Axes.legend`) whose labels are drawn as plain text."""
    plain_text(ax.legend(**options).get_texts())


def number_or_nan(value: Any) -> float:
    """A finite float, or NaN for anything missing or non-numeric (drawn as no bar or a gap)."""
    number = to_number(value)
    return float("nan") if number is None else number
