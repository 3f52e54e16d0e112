"""Snakemake script: write one tube of the built-in demo cohort."""

from pathlib import Path

from antigen_profile.demo import write_tube
from antigen_profile.logs import job_log

with job_log(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    path = write_tube(snakemake.wildcards.tube, Path(snakemake.output.fcs).parent.parent)  # noqa: F821
    log.info("wrote %s", path)
