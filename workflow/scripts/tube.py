"""Snakemake script: one tube, start to finish, in one process (rules `tube` and
`one_tube_specimen`): the analysis (pipeline.profile_sample), the trial's decision
(steps.decide_sample) and the report; for a tube that is its own specimen, also the
specimen's files and report (steps.report_specimen).

Each stage's configuration is rebuilt from the rule's params and inputs only
(stages.declared, stages.stage_config), and every file is a path the rule declares."""

import json

from antigen_profile.logs import job_log, leave
from antigen_profile.outputs import (
    DECISION_READS,
    PROFILE_FILES,
    REPORT_READS,
    SAMPLE_FILES,
    SPECIMEN_FILES,
)
from antigen_profile.pipeline import profile_sample
from antigen_profile.settings import Settings
from antigen_profile.stages import (
    DECISION_SETTINGS,
    PROFILE_SETTINGS,
    REPORT_SETTINGS,
    SPECIMEN_REPORT_SETTINGS,
    SPECIMEN_SETTINGS,
    declared,
    stage_config,
)
from antigen_profile.steps import decide_sample, report_specimen, write_sample_report

sm = snakemake  # noqa: F821 - injected by Snakemake
sample = sm.wildcards.sample
# patient_id, patient (the patient's row), timepoint, specimen_id, patient_samples
sheet = json.loads(sm.params.sheet)
files = {key: sm.output[key] for key in SAMPLE_FILES}
with job_log(sm.log[0]) as log:
    result = profile_sample(
        sample,
        sm.input.fcs,
        {key: files[key] for key in PROFILE_FILES},
        Settings.from_config(
            stage_config(
                declared(sm.config, PROFILE_SETTINGS, sm.params.profile_settings), sm.input
            )
        ),
        control=sm.input.get("control"),
        bead_fcs=sm.input.get("beads"),
        gates=sm.input.get("gates"),
        marker_controls={
            key.removeprefix("control_"): path
            for key, path in sm.input.items()
            if key.startswith("control_")
        },
    )
    log.info("%s: QC %s %s", result.sample_id, result.qc_status, "; ".join(result.reasons))
    decision = decide_sample(
        {key: files[key] for key in DECISION_READS},
        sample,
        sheet["patient_id"],
        None,
        sm.input.trial,
        declared(sm.config, DECISION_SETTINGS, sm.params.decision_settings),
        timepoint=sheet["timepoint"],
        out=files["decision"],
        patient_record=sheet["patient"],
        specimen_id=sheet["specimen_id"],
    )
    log.info("%s: %s", sample, decision["decision"])
    write_sample_report(
        {key: files[key] for key in REPORT_READS},
        declared(sm.config, REPORT_SETTINGS, sm.params.report_settings),
        sheet["patient_samples"],
        out=files["report"],
    )
    if "specimen_report" in sm.output.keys():  # noqa: SIM118 - Namedlist `in` tests values
        report_specimen(
            sample,
            {sample: files},
            sheet,
            sm.input.trial,
            {
                **declared(sm.config, SPECIMEN_SETTINGS, sm.params.specimen_settings),
                **declared(sm.config, SPECIMEN_REPORT_SETTINGS, sm.params.specimen_report_settings),
            },
            {key: sm.output[f"specimen_{key}"] for key in SPECIMEN_FILES},
            review=sm.params.review,
            targets=sm.params.targets,
        )
leave()  # every output written and closed: skip the interpreter teardown (issue 19)
