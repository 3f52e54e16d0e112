"""Snakemake script: a specimen's tubes merged and decided, and its report
(steps.report_specimen), from the tubes' files and the patient's row the rule declares."""

import json

from antigen_profile.logs import job_log, leave
from antigen_profile.outputs import SPECIMEN_FILES, SPECIMEN_READS
from antigen_profile.stages import SPECIMEN_REPORT_SETTINGS, SPECIMEN_SETTINGS, declared
from antigen_profile.steps import report_specimen

sm = snakemake  # noqa: F821 - injected by Snakemake
sheet = json.loads(sm.params.sheet)  # patient_id, patient (the patient's row), timepoint
with job_log(sm.log[0]) as log:
    tubes = {
        sample_id: {key: sm.input[f"{key}_{i}"] for key in SPECIMEN_READS}
        for i, sample_id in enumerate(sm.params.tubes)
    }
    config = {
        **declared(sm.config, SPECIMEN_SETTINGS, sm.params.specimen_settings),
        **declared(sm.config, SPECIMEN_REPORT_SETTINGS, sm.params.specimen_report_settings),
    }
    out = {key: sm.output[key] for key in SPECIMEN_FILES}
    decision = report_specimen(
        sm.wildcards.specimen,
        tubes,
        sheet,
        sm.input.trial,
        config,
        out,
        review=sm.params.review,
        targets=sm.params.targets,
    )
    log.info("%s (%s): %s", sm.wildcards.specimen, ", ".join(tubes), decision["decision"])
leave()  # every output written and closed: skip the interpreter teardown (issue 19)
