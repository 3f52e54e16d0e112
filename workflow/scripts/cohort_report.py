"""Snakemake script: the cohort index (results/report.html)."""

from antigen_profile.logs import job_log
from antigen_profile.steps import write_cohort_report

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_cohort_report(sm.input.recommendations, sm.output[0], sm.config)
