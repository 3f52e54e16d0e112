# Reports: one self-contained HTML per sample and per specimen, and the cohort index linking
# them.
# Outputs wrapped in report(...) also go into Snakemake's own report
# (`snakemake --report report.zip`), with the captions in workflow/report/.


rule sample_report:
    input:
        **outputs.sample_patterns(RESULTS, outputs.REPORT_READS),
    output:
        report(
            f"{RESULTS}/{{sample}}/{outputs.REPORT_FILE}",
            caption="../report/sample_report.rst",
            category="Samples",
            subcategory="{sample}",
            labels={"sample": "{sample}", "file": outputs.REPORT_FILE},
        ),
    params:
        patient_samples=patient_samples,
        settings=stages.digest(config, stages.REPORT_SETTINGS),
    log:
        f"{RESULTS}/logs/sample_report/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_report/{{sample}}.tsv"
    group:
        "sample"
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    script:
        "../scripts/sample_report.py"


rule specimen_report:
    input:
        unpack(tube_profiles),
        **outputs.specimen_patterns(RESULTS, outputs.SPECIMEN_WRITES),
    output:
        report(
            outputs.specimen_patterns(RESULTS, ("report",))["report"],
            caption="../report/specimen_report.rst",
            category="Specimens",
            subcategory="{specimen}",
            labels={"specimen": "{specimen}", "file": outputs.REPORT_FILE},
        ),
    params:
        settings=stages.digest(config, stages.SPECIMEN_REPORT_SETTINGS),
        tubes=lambda wc: SPECIMENS[wc.specimen],
        review=review_param,
        targets=list(TRIAL.targets),
    log:
        f"{RESULTS}/logs/specimen_report/{{specimen}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/specimen_report/{{specimen}}.tsv"
    group:
        "sample"
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../environment.yml"
    script:
        "../scripts/specimen_report.py"


SPECIMEN_REPORTS = expand(
    outputs.specimen_patterns(RESULTS, ("report",))["report"], specimen=SPECIMEN_IDS
)


rule cohort_report:
    input:
        recommendations=COHORT_OUTPUTS["recommendations"],
        patients=COHORT_OUTPUTS["patients"],
        timeline=COHORT_OUTPUTS["timeline"],
        reports=expand(f"{RESULTS}/{{sample}}/{outputs.REPORT_FILE}", sample=SAMPLE_IDS),
        specimen_reports=SPECIMEN_REPORTS,
        # read by the index: per tube its QC, per specimen its decision (trial version),
        # flags and antigens (heat map)
        sample_files=expand(
            f"{RESULTS}/{{sample}}/{{name}}",
            sample=SAMPLE_IDS,
            name=[outputs.SAMPLE_FILES[k] for k in ("decision", "profile", "qc", "antigens")],
        ),
        specimen_files=expand(
            f"{RESULTS}/{outputs.SPECIMEN_DIR}/{{specimen}}/{{name}}",
            specimen=SPECIMEN_IDS,
            name=[outputs.SPECIMEN_FILES[k] for k in ("decision", "specimen", "antigens")],
        ),
    output:
        report(
            f"{RESULTS}/{outputs.REPORT_FILE}",
            caption="../report/cohort_report.rst",
            category="Cohort",
            labels={"file": outputs.REPORT_FILE},
        ),
    params:
        settings=stages.digest(config, stages.COHORT_REPORT_SETTINGS),
    log:
        f"{RESULTS}/logs/cohort_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_report.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/cohort_report.py"
