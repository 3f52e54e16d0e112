"""Snakemake script: the trial's decision for one sample (steps.decide_sample), from the
files and the patient's row the rule declares."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import DECISION_READS
from antigen_profile.stages import DECISION_SETTINGS, declared
from antigen_profile.steps import decide_sample

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]) as log:
    decision = decide_sample(
        {key: sm.input[key] for key in DECISION_READS},
        sm.wildcards.sample,
        sm.params.patient_id,
        None,
        sm.input.trial,
        declared(sm.config, DECISION_SETTINGS, sm.params.settings),
        timepoint=sm.params.timepoint,
        out=sm.output[0],
        patient_record=sm.params.patient,
        specimen_id=sm.params.specimen_id,
    )
    log.info("%s: %s", sm.wildcards.sample, decision["decision"])
