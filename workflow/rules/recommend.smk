# Per sample: the trial's rules applied to the antigen profile and the patient's facts.
# Cohort: all decisions in one table.
# The patient's row of the sheet is a param, not the sheet an input: editing one patient
# reruns that patient's decisions, not the cohort's.


rule decide:
    input:
        **outputs.sample_patterns(RESULTS, outputs.DECISION_READS),
        trial=config["trial"],
    output:
        f"{RESULTS}/{{sample}}/{outputs.DECISION_FILE}",
    params:
        patient_id=lambda wc: SAMPLES.loc[wc.sample, "patient_id"],
        patient=lambda wc: patient_param(
            patient_record(PATIENTS, SAMPLES.loc[wc.sample, "patient_id"])
        ),
        timepoint=lambda wc: SAMPLES.loc[wc.sample, "timepoint"] or None,
        settings=stages.digest(config, stages.DECISION_SETTINGS),
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


COHORT_OUTPUTS = {k: str(p) for k, p in outputs.cohort_paths(RESULTS).items()}
for _key, _caption in (
    ("recommendations", "recommendations"),
    ("patients", "patients"),
    ("timeline", "patient_timeline"),
):
    COHORT_OUTPUTS[_key] = report(
        COHORT_OUTPUTS[_key],
        caption=f"../report/{_caption}.rst",
        category="Cohort",
        labels={"file": outputs.COHORT_FILES[_key]},
    )


rule recommendations:
    input:
        decisions=expand(f"{RESULTS}/{{sample}}/{outputs.DECISION_FILE}", sample=SAMPLE_IDS),
        antigens=expand(
            f"{RESULTS}/{{sample}}/{outputs.PROFILE_FILES['antigens']}", sample=SAMPLE_IDS
        ),
    output:
        **COHORT_OUTPUTS,
    params:
        settings=stages.digest(config, stages.COHORT_SETTINGS),
    log:
        f"{RESULTS}/logs/recommendations.log",
    benchmark:
        f"{RESULTS}/benchmarks/recommendations.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/recommendations.py"
