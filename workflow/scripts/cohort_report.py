"""Snakemake script: the cohort index (results/report.html)."""

from antigen_profile.logs import job_log
from antigen_profile.stages import COHORT_REPORT_SETTINGS, declared
from antigen_profile.steps import write_cohort_report

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    settings = declared(sm.config, COHORT_REPORT_SETTINGS, sm.params.settings)
    write_cohort_report(sm.input.recommendations, sm.output[0], settings)
