"""Snakemake script: the cohort tables (recommendations, decisions, patients, timeline)."""

from pathlib import Path

from antigen_profile.logs import job_log
from antigen_profile.steps import write_cohort_table

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_cohort_table(sm.input.decisions, Path(sm.output.recommendations).parent, sm.config)
