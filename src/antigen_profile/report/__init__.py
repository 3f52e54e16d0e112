"""Report stage: self-contained HTML reports (per sample, per specimen and the cohort index)
from result files.

The report reads what the profile and decide stages wrote (docs/outputs.md) and computes
nothing new, so every number a clinician reads can be traced back to a result file.

Where things are: :mod:`.sample_page`, :mod:`.specimen_page` (a specimen's tubes merged) and
:mod:`.cohort_page` build the three pages (with the sample page's sections in
:mod:`.settings_table`, :mod:`.escape_section` and :mod:`.audit_trail`); :mod:`.result_files`
reads the files; :mod:`.format` turns values into text and CSS class words; :mod:`.plots`
draws (:mod:`.sample_plots`, :mod:`.cohort_plots`, :mod:`.plot_style`); :mod:`.page` holds
the Jinja2 environment, the Content-Security-Policy and the atomic writer;
``templates/_base.html`` is the page every template extends.
"""

from antigen_profile.report.cohort_page import render_cohort_report
from antigen_profile.report.page import write_html
from antigen_profile.report.sample_page import render_sample_report
from antigen_profile.report.specimen_page import render_specimen_report

__all__ = ["render_cohort_report", "render_sample_report", "render_specimen_report", "write_html"]
