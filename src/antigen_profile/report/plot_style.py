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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from antigen_profile.report.format import to_number

#: Resolution: with the sample plots' size, a report with a dozen plots stays under 1 MB.
DPI: int = 90
#: Base font size (points); titles are one larger, tick labels and legends smaller.
FONT = 7.0


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
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def style_axes(ax: Axes) -> None:
    """The report's axes: small ticks, no top or right frame."""
    ax.tick_params(labelsize=FONT - 1, length=2, pad=1.5)
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
