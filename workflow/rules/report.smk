# Reports: one self-contained HTML per sample, and the cohort index linking them.
# Outputs wrapped in report(...) also go into Snakemake's own report
# (`snakemake --report report.zip`), with the captions in workflow/report/.


rule sample_report:
    input:
        qc=f"{RESULTS}/{{sample}}/qc.json",
        populations=f"{RESULTS}/{{sample}}/populations.tsv",
        antigens=f"{RESULTS}/{{sample}}/antigens.tsv",
        coverage=f"{RESULTS}/{{sample}}/coverage.tsv",
        coexpression=f"{RESULTS}/{{sample}}/coexpression.tsv",
        gates=f"{RESULTS}/{{sample}}/gates.json",
        plotdata=f"{RESULTS}/{{sample}}/plotdata.npz",
        profile=f"{RESULTS}/{{sample}}/profile.json",
        decision=f"{RESULTS}/{{sample}}/decision.json",
        positive_controls=f"{RESULTS}/{{sample}}/positive_controls.tsv",
    output:
        report(
            f"{RESULTS}/{{sample}}/report.html",
            caption="../report/sample_report.rst",
            category="Samples",
            subcategory="{sample}",
            labels={"sample": "{sample}", "file": "report.html"},
        ),
    params:
        patient_samples=patient_samples,
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


rule cohort_report:
    input:
        recommendations=f"{RESULTS}/recommendations.tsv",
        patients=f"{RESULTS}/patients.tsv",
        timeline=f"{RESULTS}/patient_timeline.tsv",
        reports=expand(f"{RESULTS}/{{sample}}/report.html", sample=SAMPLE_IDS),
    output:
        report(
            f"{RESULTS}/report.html",
            caption="../report/cohort_report.rst",
            category="Cohort",
            labels={"file": "report.html"},
        ),
    log:
        f"{RESULTS}/logs/cohort_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_report.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/cohort_report.py"
