# Per sample: ingest -> QC -> compensation -> gating -> quantification (one job, one file read).
# Inputs: the tubes and every file the config points at (gating template or lab gating, trial,
# compensation matrix); params: every config value that changes a number. Change either and
# Snakemake reruns exactly the samples it affects.

PROFILE_OUTPUTS = outputs.sample_patterns(RESULTS, tuple(outputs.PROFILE_FILES))
PROFILE_OUTPUTS["antigens"] = report(
    PROFILE_OUTPUTS["antigens"],
    caption="../report/antigens.rst",
    category="Samples",
    subcategory="{sample}",
    labels={"sample": "{sample}", "file": "antigens.tsv"},
)


rule profile:
    input:
        unpack(sample_inputs),
        **stages.profile_inputs(config),
    output:
        **PROFILE_OUTPUTS,
    params:
        settings=stages.digest(config, stages.PROFILE_SETTINGS),
    log:
        f"{RESULTS}/logs/profile/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile/{{sample}}.tsv"
    group:
        "sample"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../environment.yml"
    script:
        "../scripts/profile.py"
