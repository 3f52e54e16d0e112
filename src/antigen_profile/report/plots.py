"""Every plot of the reports, in one namespace: the pages draw through it.

The drawing lives in :mod:`~antigen_profile.report.sample_plots` (gates, antigen histograms,
time course, UpSet chart) and :mod:`~antigen_profile.report.cohort_plots` (heat map, patient
timelines) on the shared style of :mod:`~antigen_profile.report.plot_style`. The pages call
``plots.<name>`` rather than importing the functions, so that a test can replace a slow drawing
by a stub in one place. Each plot returns a PNG data URI, or None when there is nothing to draw.

Those modules (and matplotlib, a quarter of a second) are imported on first use: a page
without plots, such as the specimen report, never loads them (issue 19).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from antigen_profile.report.cohort_plots import (
        LOSS_COLOUR,
        cohort_heatmap_figure,
        cohort_heatmap_plot,
        patient_timeline_figure,
        patient_timeline_plot,
    )
    from antigen_profile.report.sample_plots import (
        BLAST_COLOUR,
        GATE_COLOUR,
        antigen_figure,
        antigen_plot,
        axis_label,
        density_counts,
        density_rgba,
        gate_figure,
        gate_plot,
        mimic_plot,
        time_course_figure,
        time_course_plot,
        upset_figure,
        upset_plot,
    )

__all__ = [
    "BLAST_COLOUR",
    "GATE_COLOUR",
    "LOSS_COLOUR",
    "antigen_figure",
    "antigen_plot",
    "axis_label",
    "cohort_heatmap_figure",
    "cohort_heatmap_plot",
    "density_counts",
    "density_rgba",
    "gate_figure",
    "gate_plot",
    "mimic_plot",
    "patient_timeline_figure",
    "patient_timeline_plot",
    "time_course_figure",
    "time_course_plot",
    "upset_figure",
    "upset_plot",
]
#: The names drawn by :mod:`.cohort_plots`; every other one is :mod:`.sample_plots`'.
_COHORT = frozenset(
    {
        "LOSS_COLOUR",
        "cohort_heatmap_figure",
        "cohort_heatmap_plot",
        "patient_timeline_figure",
        "patient_timeline_plot",
    }
)


def __getattr__(name: str) -> Any:
    """Import the module that draws ``name`` on first use, and keep the name here."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = "cohort_plots" if name in _COHORT else "sample_plots"
    value = getattr(import_module(f"antigen_profile.report.{home}"), name)
    globals()[name] = value
    return value
