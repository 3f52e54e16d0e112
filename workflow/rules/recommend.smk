# Per sample: the trial's rules applied to the antigen profile and the patient's facts.
# Cohort: every specimen's decision in one table.
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
        specimen_id=lambda wc: SAMPLES.loc[wc.sample, "specimen_id"],
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


# Per specimen: its tubes merged (one value per antigen, coverage exact within a tube and
# bounded across tubes) and the trial's rules applied to the merge. A tube that is its own
# specimen gets the decision its tube got.


rule specimen:
    input:
        unpack(specimen_inputs),
        trial=config["trial"],
    output:
        **outputs.specimen_patterns(RESULTS, outputs.SPECIMEN_WRITES),
    params:
        tubes=lambda wc: SPECIMENS[wc.specimen],
        patient_id=lambda wc: specimen_row(wc)["patient_id"],
        patient=lambda wc: patient_param(patient_record(PATIENTS, specimen_row(wc)["patient_id"])),
        timepoint=lambda wc: specimen_row(wc)["timepoint"] or None,
        settings=stages.digest(config, stages.SPECIMEN_SETTINGS),
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


SPECIMEN_DECISIONS = expand(
    outputs.specimen_patterns(RESULTS, ("decision",))["decision"], specimen=SPECIMEN_IDS
)
SPECIMEN_ANTIGENS = expand(
    outputs.specimen_patterns(RESULTS, ("antigens",))["antigens"], specimen=SPECIMEN_IDS
)

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


# With a review sheet, the cohort tables say each specimen's review status: the sheet and the
# tubes' profile.json (the result hash) are inputs then, and only then.
REVIEW_INPUTS = (
    {
        "review": REVIEW_SHEET,
        "profiles": expand(
            outputs.sample_patterns(RESULTS, ("profile",))["profile"], sample=SAMPLE_IDS
        ),
    }
    if REVIEW_SHEET
    else {}
)


rule recommendations:
    input:
        decisions=SPECIMEN_DECISIONS,
        antigens=SPECIMEN_ANTIGENS,
        **REVIEW_INPUTS,
    output:
        **COHORT_OUTPUTS,
    params:
        settings=stages.digest(config, stages.COHORT_SETTINGS),
        samples=SAMPLE_IDS if REVIEW_SHEET else [],
    log:
        f"{RESULTS}/logs/recommendations.log",
    benchmark:
        f"{RESULTS}/benchmarks/recommendations.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/recommendations.py"
