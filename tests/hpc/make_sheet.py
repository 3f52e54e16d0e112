"""Write a large cohort sheet for DAG-scale measurements (`snakemake -n`).

    python tests/hpc/make_sheet.py /tmp/cohort1000 1000 [--fcs-dir resources/demo/fcs]

Row i uses demo sample i mod 8 (its stained and control tubes, by absolute path: the same
files may serve many rows) under sample_id S0001, S0002, ...; patients.tsv is the demo's.
The FCS files must exist (run the demo once, or `antigen-profile demo DIR`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import DEMO_SAMPLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for samples.tsv and patients.tsv")
    parser.add_argument("samples", type=int, help="rows in samples.tsv")
    parser.add_argument("--fcs-dir", type=Path, default=REPO_ROOT / "resources/demo/fcs")
    args = parser.parse_args()
    fcs_dir = args.fcs_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["sample_id\tpatient_id\tfcs\tcontrol_fcs\ttimepoint"]
    for i in range(args.samples):
        demo = DEMO_SAMPLES[i % len(DEMO_SAMPLES)].sample_id
        stained, control = fcs_dir / f"{demo}.fcs", fcs_dir / f"{demo}_control.fcs"
        for path in (stained, control):
            if not path.exists():
                raise SystemExit(f"{path} not found: generate the demo tubes first")
        lines.append(f"S{i + 1:05d}\t{demo.split('-')[0]}\t{stained}\t{control}\trelapse")
    (args.out / "samples.tsv").write_text("\n".join(lines) + "\n")
    shutil.copy(REPO_ROOT / "resources/demo/patients.tsv", args.out / "patients.tsv")
    print(args.out / "samples.tsv")


if __name__ == "__main__":
    main()
