"""Snakemake script: a specimen's tubes merged and decided (steps.decide_specimen) and its
report (steps.write_specimen_report), from the tubes' files and the patient's row the rule
declares."""

import json

from antigen_profile.logs import job_log, leave
from antigen_profile.outputs import SPECIMEN_READS, SPECIMEN_WRITES
from antigen_profile.stages import SPECIMEN_REPORT_SETTINGS, SPECIMEN_SETTINGS, declared
from antigen_profile.steps import decide_specimen, write_specimen_report

sm = snakemake  # noqa: F821 - injected by Snakemake
sheet = json.loads(sm.params.sheet)  # patient_id, patient (the patient's row), timepoint
with job_log(sm.log[0]) as log:
    tubes = {
        sample_id: {key: sm.input[f"{key}_{i}"] for key in SPECIMEN_READS}
        for i, sample_id in enumerate(sm.params.tubes)
    }
    files = {key: sm.output[key] for key in SPECIMEN_WRITES}
    decision = decide_specimen(
        sm.wildcards.specimen,
        tubes,
        sheet["patient_id"],
        sheet["patient"],
        sm.input.trial,
        declared(sm.config, SPECIMEN_SETTINGS, sm.params.specimen_settings),
        files,
        timepoint=sheet["timepoint"],
    )
    log.info("%s (%s): %s", sm.wildcards.specimen, ", ".join(tubes), decision["decision"])
    write_specimen_report(
        files,
        declared(sm.config, SPECIMEN_REPORT_SETTINGS, sm.params.specimen_report_settings),
        out=sm.output.report,
        review=sm.params.review,
        profile_files={tube: where["profile"] for tube, where in tubes.items()},
        targets=sm.params.targets,
    )
leave()  # every output written and closed: skip the interpreter teardown (issue 19)
