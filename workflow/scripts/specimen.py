"""Snakemake script: a specimen's tubes merged and decided (steps.decide_specimen), from the
tubes' files and the patient's row the rule declares."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import SPECIMEN_READS, SPECIMEN_WRITES
from antigen_profile.stages import SPECIMEN_SETTINGS, declared
from antigen_profile.steps import decide_specimen

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]) as log:
    tubes = {
        sample_id: {key: sm.input[f"{key}_{i}"] for key in SPECIMEN_READS}
        for i, sample_id in enumerate(sm.params.tubes)
    }
    decision = decide_specimen(
        sm.wildcards.specimen,
        tubes,
        sm.params.patient_id,
        sm.params.patient,
        sm.input.trial,
        declared(sm.config, SPECIMEN_SETTINGS, sm.params.settings),
        {key: sm.output[key] for key in SPECIMEN_WRITES},
        timepoint=sm.params.timepoint,
    )
    log.info("%s (%s): %s", sm.wildcards.specimen, ", ".join(tubes), decision["decision"])
