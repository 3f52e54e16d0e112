# Cohort: every specimen's decision in one table (the decisions themselves are made in the
# per-sample jobs, workflow/rules/sample.smk).


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
