# Per sample, ONE job: ingest -> QC -> compensation -> gating -> quantification -> the trial's
# decision -> the report, in one process (issue 19: five jobs a sample paid five interpreter
# start-ups, five sets of imports and five rounds of Snakemake's scheduler for 1 s of
# analysis). A tube that is its own specimen (no specimen_id, or specimen_id = sample_id) also
# writes its specimen's files in the same job (rule one_tube_specimen); the tubes of a split
# panel are merged by rule specimen.
#
# Inputs: the tubes and every file the config points at (gating template or lab gating, trial,
# compensation matrix); params: every config value that changes a number, one digest per
# stage, and the patient's row (a param, not the sheet an input: editing one patient reruns
# that patient's samples, not the cohort). Change either and Snakemake reruns exactly the
# samples it affects.


TUBE_OUTPUTS = outputs.sample_patterns(RESULTS, tuple(outputs.SAMPLE_FILES))
TUBE_OUTPUTS["antigens"] = report_file(TUBE_OUTPUTS["antigens"], "Samples", "sample", "antigens")
TUBE_OUTPUTS["report"] = report_file(TUBE_OUTPUTS["report"], "Samples", "sample", "sample_report")
# The specimen's files when the tube is its own specimen: results/specimens/{sample}/...
OWN_SPECIMEN_OUTPUTS = {
    f"specimen_{key}": path.replace("{specimen}", "{sample}")
    for key, path in outputs.specimen_patterns(RESULTS, tuple(outputs.SPECIMEN_FILES)).items()
}
OWN_SPECIMEN_OUTPUTS["specimen_report"] = report_file(
    OWN_SPECIMEN_OUTPUTS["specimen_report"], "Specimens", "specimen", "one_tube_specimen_report"
)
TUBE_PARAMS = dict(
    profile_settings=stages.digest(config, stages.PROFILE_SETTINGS),
    decision_settings=stages.digest(config, stages.DECISION_SETTINGS),
    report_settings=stages.digest(config, stages.REPORT_SETTINGS),
    sheet=tube_sheet,
)


# The common case, a specimen of one tube named after it: tube and specimen in one job. For
# any other {sample} this rule's input is a file nothing makes, so Snakemake falls back to
# rules tube and specimen (workflow/rules/specimen.smk: a rule whose input cannot be made is
# skipped, ruleorder there).
rule one_tube_specimen:
    input:
        unpack(own_specimen_inputs),
        **stages.profile_inputs(config),
    output:
        **TUBE_OUTPUTS,
        **OWN_SPECIMEN_OUTPUTS,
    params:
        **TUBE_PARAMS,
        specimen_settings=stages.digest(config, stages.SPECIMEN_SETTINGS),
        specimen_report_settings=stages.digest(config, stages.SPECIMEN_REPORT_SETTINGS),
        review=lambda wc: review_param(wc.sample),
        targets=list(TRIAL.targets),
    log:
        f"{RESULTS}/logs/tube/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tube/{{sample}}.tsv"
    group:
        "sample"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../environment.yml"
    script:
        "../scripts/tube.py"
