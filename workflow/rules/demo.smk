# The built-in demo cohort: each tube is generated deterministically in its own job.


rule demo_tube:
    output:
        fcs=str(DEMO_DIR / "fcs" / "{tube}.fcs"),
        truth=str(DEMO_DIR / "fcs" / "{tube}.truth.npz"),
    wildcard_constraints:
        tube="|".join(sorted(DEMO_TUBES)),
    params:
        spec=lambda wc: demo.tube_digest(wc.tube),
    log:
        f"{RESULTS}/logs/demo_tube/{{tube}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_tube/{{tube}}.tsv"
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/demo_tube.py"
