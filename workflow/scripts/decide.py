"""Snakemake script: the trial's decision for one sample (steps.decide_sample)."""

from pathlib import Path

from antigen_profile.logs import job_log
from antigen_profile.steps import decide_sample

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]) as log:
    decision = decide_sample(
        Path(sm.output[0]).parent,
        sm.wildcards.sample,
        sm.params.patient_id,
        sm.input.patients,
        sm.input.trial,
        sm.config,
        timepoint=sm.params.timepoint,
    )
    log.info("%s: %s", sm.wildcards.sample, decision["decision"])
