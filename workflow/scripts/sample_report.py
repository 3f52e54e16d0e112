"""Snakemake script: the self-contained per-sample HTML report."""

from pathlib import Path

from antigen_profile.logs import job_log
from antigen_profile.steps import write_sample_report

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_sample_report(Path(sm.output[0]).parent, sm.config, sm.params.patient_samples)
