"""Report stage: self-contained HTML reports (per sample and cohort index) from result files.

The report reads what the profile and decide stages wrote (docs/outputs.md) and computes
nothing new, so every number a clinician reads can be traced back to a result file.
"""

from antigen_profile.report.render import render_cohort_report, render_sample_report, write_html

__all__ = ["render_cohort_report", "render_sample_report", "write_html"]
