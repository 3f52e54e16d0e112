# Per sample: the trial's rules applied to the antigen profile and the patient's facts.
# Cohort: all decisions in one table.


rule decide:
    input:
        antigens=f"{RESULTS}/{{sample}}/antigens.tsv",
        coverage=f"{RESULTS}/{{sample}}/coverage.tsv",
        populations=f"{RESULTS}/{{sample}}/populations.tsv",
        qc=f"{RESULTS}/{{sample}}/qc.json",
        profile=f"{RESULTS}/{{sample}}/profile.json",
        patients=config["patients"],
        trial=config["trial"],
    output:
        f"{RESULTS}/{{sample}}/decision.json",
    params:
        patient_id=lambda wc: SAMPLES.loc[wc.sample, "patient_id"],
        timepoint=lambda wc: SAMPLES.loc[wc.sample, "timepoint"] or None,
    log:
        f"{RESULTS}/logs/decide/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decide/{{sample}}.tsv"
    group:
        "sample"
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../environment.yml"
    script:
        "../scripts/decide.py"


rule recommendations:
    input:
        decisions=expand(f"{RESULTS}/{{sample}}/decision.json", sample=SAMPLE_IDS),
        antigens=expand(f"{RESULTS}/{{sample}}/antigens.tsv", sample=SAMPLE_IDS),
    output:
        recommendations=report(
            f"{RESULTS}/recommendations.tsv",
            caption="../report/recommendations.rst",
            category="Cohort",
            labels={"file": "recommendations.tsv"},
        ),
        decisions=f"{RESULTS}/decisions.json",
        patients=report(
            f"{RESULTS}/patients.tsv",
            caption="../report/patients.rst",
            category="Cohort",
            labels={"file": "patients.tsv"},
        ),
        timeline=report(
            f"{RESULTS}/patient_timeline.tsv",
            caption="../report/patient_timeline.rst",
            category="Cohort",
            labels={"file": "patient_timeline.tsv"},
        ),
    log:
        f"{RESULTS}/logs/recommendations.log",
    benchmark:
        f"{RESULTS}/benchmarks/recommendations.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/recommendations.py"
