"""Snakemake script: a specimen's HTML report, from the files the rule declares."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import SPECIMEN_WRITES
from antigen_profile.stages import SPECIMEN_REPORT_SETTINGS, declared
from antigen_profile.steps import write_specimen_report

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]):
    write_specimen_report(
        {key: sm.input[key] for key in SPECIMEN_WRITES},
        declared(sm.config, SPECIMEN_REPORT_SETTINGS, sm.params.settings),
        out=sm.output[0],
        review=sm.params.review,
        profile_files={t: sm.input[f"profile_{i}"] for i, t in enumerate(sm.params.tubes)},
        targets=sm.params.targets,
    )
