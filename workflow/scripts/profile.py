"""Snakemake script: the per-sample analysis (antigen_profile.pipeline.profile_sample)."""

from pathlib import Path

from antigen_profile.logs import job_log
from antigen_profile.pipeline import profile_sample

sm = snakemake  # noqa: F821 - injected by Snakemake
with job_log(sm.log[0]) as log:
    result = profile_sample(
        sm.wildcards.sample,
        sm.input.fcs,
        Path(sm.output.qc).parent,
        sm.config,
        control=sm.input.get("control"),
        bead_fcs=sm.input.get("beads"),
        marker_controls={
            key.removeprefix("control_"): path
            for key, path in sm.input.items()
            if key.startswith("control_")
        },
    )
    log.info("%s: QC %s %s", result.sample_id, result.qc_status, "; ".join(result.reasons))
