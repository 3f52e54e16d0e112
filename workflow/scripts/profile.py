"""Snakemake script: the per-sample analysis (antigen_profile.pipeline.profile_sample).

The configuration is rebuilt from the rule's params and inputs only (stages.stage_config),
and the outputs are the paths the rule declares."""

from antigen_profile.logs import job_log
from antigen_profile.outputs import PROFILE_FILES
from antigen_profile.pipeline import profile_sample
from antigen_profile.settings import Settings
from antigen_profile.stages import PROFILE_SETTINGS, declared, stage_config

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]) as log:
    result = profile_sample(
        sm.wildcards.sample,
        sm.input.fcs,
        {key: sm.output[key] for key in PROFILE_FILES},
        Settings.from_config(
            stage_config(declared(sm.config, PROFILE_SETTINGS, sm.params.settings), sm.input)
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
