"""Snakemake script: the self-contained per-sample HTML report, from the files the rule
declares."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import REPORT_READS
from antigen_profile.stages import REPORT_SETTINGS, declared
from antigen_profile.steps import write_sample_report

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_sample_report(
        {key: sm.input[key] for key in REPORT_READS},
        declared(sm.config, REPORT_SETTINGS, sm.params.settings),
        sm.params.patient_samples,
        out=sm.output[0],
    )
