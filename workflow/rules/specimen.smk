# Tubes that are not a specimen of their own: the tubes of a panel split over several tubes,
# or a tube whose specimen_id is not its sample_id. Included only when the sample sheet has
# such tubes (Snakefile), so an archive of one-tube specimens plans one job per sample and
# Snakemake does not build a losing candidate of each rule below for every sample (issue 19).
#
# Per tube: the same one job as one_tube_specimen, without the specimen's files.


rule tube:
    input:
        unpack(sample_inputs),
        **stages.profile_inputs(config),
    output:
        **TUBE_OUTPUTS,
    params:
        **TUBE_PARAMS,
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


# A specimen of several tubes (a panel split over tubes), or one tube under another id: the
# tubes' files merged (one value per antigen, coverage exact within a tube and bounded across
# tubes), the trial's rules applied to the merge, and the specimen's report.


rule specimen:
    input:
        unpack(specimen_inputs),
        trial=config["trial"],
    output:
        **outputs.specimen_patterns(RESULTS, outputs.SPECIMEN_WRITES),
        report=report_file(
            outputs.specimen_patterns(RESULTS, ("report",))["report"],
            "Specimens",
            "specimen",
            "specimen_report",
            wildcard="specimen",
        ),
    params:
        tubes=lambda wc: SPECIMENS[wc.specimen],
        sheet=specimen_sheet,
        specimen_settings=stages.digest(config, stages.SPECIMEN_SETTINGS),
        specimen_report_settings=stages.digest(config, stages.SPECIMEN_REPORT_SETTINGS),
        review=lambda wc: review_param(wc.specimen),
        targets=list(TRIAL.targets),
    log:
        f"{RESULTS}/logs/specimen/{{specimen}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/specimen/{{specimen}}.tsv"
    group:
        "sample"
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../environment.yml"
    script:
        "../scripts/specimen.py"


ruleorder: one_tube_specimen > tube
ruleorder: one_tube_specimen > specimen
