# antigen-profile: which 4SCAR CAR-T targets do a relapsed B-ALL patient's blasts still carry?
#
#   snakemake --cores 2                       # the built-in demo cohort -> results/
#   snakemake --cores 8 --config samples=my/samples.tsv patients=my/patients.tsv results=out
#
# Config is validated against workflow/schemas/ and both sheets are checked row by row before
# any job runs. All logic lives in the antigen_profile package; rules only wire files.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/sample.smk"


# Tubes of split specimens (or under another specimen id) have rules of their own, read only
# when the sheet has such tubes.
if SPLIT_TUBES:

    include: "workflow/rules/specimen.smk"


include: "workflow/rules/recommend.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/recommendations.tsv",
        f"{RESULTS}/report.html",
        expand(f"{RESULTS}/{{sample}}/report.html", sample=SAMPLE_IDS),
        SPECIMEN_REPORTS,


# The last lines of every run: decisions, main reasons, failed samples, the report's path.
onsuccess:
    print(run_summary(RESULTS, SAMPLE_IDS))


onerror:
    print(run_summary(RESULTS, SAMPLE_IDS))
