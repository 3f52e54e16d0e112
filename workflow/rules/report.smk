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
        # The index also reads each tube's decision, profile, qc and antigens and each
        # specimen's decision, specimen.json and antigens. Every one of those files is
        # written by the same job as the report named here (a job's outputs are redone
        # together), so the reports alone carry the dependency: 2 inputs a sample instead of
        # 9 keeps the plan of a 10,000-sample archive linear and short (issue 19).
        reports=expand(f"{RESULTS}/{{sample}}/{outputs.REPORT_FILE}", sample=SAMPLE_IDS),
        specimen_reports=SPECIMEN_REPORTS,
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
