"""Every plot of the reports, in one namespace: the pages draw through it.

The drawing lives in :mod:`~antigen_profile.report.sample_plots` (gates, antigen histograms,
time course, UpSet chart) and :mod:`~antigen_profile.report.cohort_plots` (heat map, patient
timelines) on the shared style of :mod:`~antigen_profile.report.plot_style`. The pages call
``plots.<name>`` rather than importing the functions, so that a test can replace a slow drawing
by a stub in one place. Each plot returns a PNG data URI, or None when there is nothing to draw.
"""

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
