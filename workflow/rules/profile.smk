# Per sample: ingest -> QC -> compensation -> gating -> quantification (one job, one file read).


rule profile:
    input:
        unpack(sample_inputs),
    output:
        qc=f"{RESULTS}/{{sample}}/qc.json",
        populations=f"{RESULTS}/{{sample}}/populations.tsv",
        antigens=report(
            f"{RESULTS}/{{sample}}/antigens.tsv",
            caption="../report/antigens.rst",
            category="Samples",
            subcategory="{sample}",
            labels={"sample": "{sample}", "file": "antigens.tsv"},
        ),
        coverage=f"{RESULTS}/{{sample}}/coverage.tsv",
        coexpression=f"{RESULTS}/{{sample}}/coexpression.tsv",
        gates=f"{RESULTS}/{{sample}}/gates.json",
        gatingml=f"{RESULTS}/{{sample}}/gates.xml",
        plotdata=f"{RESULTS}/{{sample}}/plotdata.npz",
        profile=f"{RESULTS}/{{sample}}/profile.json",
        calibration=f"{RESULTS}/{{sample}}/calibration.json",
        positive_controls=f"{RESULTS}/{{sample}}/positive_controls.tsv",
    log:
        f"{RESULTS}/logs/profile/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile/{{sample}}.tsv"
    group:
        "sample"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../environment.yml"
    script:
        "../scripts/profile.py"
