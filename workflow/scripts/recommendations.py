"""Snakemake script: every sample's decision in one table (recommendations.tsv)."""

from antigen_profile.logs import job_log
from antigen_profile.pipeline import write_cohort_table

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_cohort_table(sm.input, sm.output[0])
