# The cohort index, linking every sample's and specimen's report (those are written by the
# per-sample jobs, workflow/rules/sample.smk).
# Outputs wrapped in report(...) also go into Snakemake's own report
# (`snakemake --report report.zip`), with the captions in workflow/report/.


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
