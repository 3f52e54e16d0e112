"""Snakemake script: the cohort tables (recommendations, decisions, patients, timeline)."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import COHORT_FILES
from antigen_profile.stages import COHORT_SETTINGS, declared
from antigen_profile.steps import write_cohort_table

sm = snakemake  # noqa: F821 - injected by Snakemake
review = sm.input.get("review")  # a Namedlist: `in` tests values, not names
profiles = (
    dict(zip(sm.params.samples, sm.input.profiles, strict=True)) if sm.params.samples else None
)
with job_log(sm.log[0]):
    write_cohort_table(
        sm.input.decisions,
        {key: sm.output[key] for key in COHORT_FILES},
        declared(sm.config, COHORT_SETTINGS, sm.params.settings),
        antigen_files=sm.input.antigens,
        review_sheet=review,
        profile_files=profiles,
    )
