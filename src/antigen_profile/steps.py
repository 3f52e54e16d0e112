"""The workflow's steps after profiling: the trial decision, the cohort tables, the reports.

Each reads only the files :func:`antigen_profile.pipeline.profile_sample` wrote, and none
imports the profiling stack (FCS reading, gating, scikit-learn): these jobs run once per
sample or per cohort, so what they import is paid hundreds of times on a cluster (issue 9).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from antigen_profile.files import write_json, write_tsv
from antigen_profile.recommend import load_trial


def decide_sample(
    sample_dir: str | Path,
    sample_id: str,
    patient_id: str,
    patients_sheet: str | Path | None,
    trial_path: str | Path,
    config: Mapping[str, Any],
    timepoint: str | None = None,
) -> dict[str, Any]:
    """Apply the trial's rules to one profiled sample and write ``decision.json``."""
    from antigen_profile.recommend import decide, parse_patient
    from antigen_profile.sheets import patient_record, read_patients

    sample_dir = Path(sample_dir)
    trial = load_trial(trial_path)
    record = None
    if patients_sheet:
        record = patient_record(read_patients(patients_sheet), patient_id)
    patient = parse_patient(record, trial) if record is not None else None
    coverage_file = sample_dir / "coverage.tsv"
    decision = decide(
        sample_id,
        patient_id,
        pd.read_csv(sample_dir / "antigens.tsv", sep="\t"),
        pd.read_csv(sample_dir / "populations.tsv", sep="\t"),
        _read_json(sample_dir / "qc.json"),
        patient,
        trial,
        config["floors"],
        timepoint=timepoint,
        coverage=pd.read_csv(coverage_file, sep="\t") if coverage_file.exists() else None,
        flags=_read_json(sample_dir / "profile.json").get("flags", []),
    ).to_dict()
    write_json(sample_dir / "decision.json", decision)
    return decision


def write_cohort_table(
    decision_files: Sequence[str | Path],
    out_dir: str | Path,
    config: Mapping[str, Any],
) -> dict[str, Path]:
    """The cohort outputs from every sample's ``decision.json`` and ``antigens.tsv``:
    ``recommendations.tsv``, ``decisions.json`` (every rule of every sample, for audit),
    ``patients.tsv`` and ``patient_timeline.tsv``."""
    from antigen_profile.cohort import patient_table, patient_timeline
    from antigen_profile.recommend import write_recommendations

    out = Path(out_dir)
    decisions = [_read_json(f) for f in decision_files]
    antigens = {
        str(d["sample_id"]): pd.read_csv(Path(f).parent / "antigens.tsv", sep="\t")
        for d, f in zip(decisions, decision_files, strict=True)
    }
    order = list(config["timepoints"]["order"])
    timeline = patient_timeline(decisions, antigens, order, config["timepoints"]["loss_points"])
    paths = {
        "recommendations": write_recommendations(decisions, out / "recommendations.tsv"),
        "decisions": write_json(
            out / "decisions.json", sorted(decisions, key=lambda d: str(d["sample_id"]))
        ),
        "patients": write_tsv(out / "patients.tsv", patient_table(decisions, timeline, order)),
        "timeline": write_tsv(out / "patient_timeline.tsv", timeline),
    }
    return paths


def write_sample_report(
    sample_dir: str | Path,
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
) -> Path:
    """``report.html`` for one sample, from its outputs only; ``patient_samples`` (the ids of
    every sample of the same patient, in timepoint order) adds links to the others."""
    from antigen_profile.report import render_sample_report, write_html

    path = Path(sample_dir) / "report.html"
    write_html(render_sample_report(Path(sample_dir), config, patient_samples), path)
    return path


def write_cohort_report(
    recommendations: str | Path, path: str | Path, config: Mapping[str, Any]
) -> Path:
    """The cohort index ``report.html`` beside ``recommendations.tsv``."""
    from antigen_profile.report import render_cohort_report, write_html

    table = pd.read_csv(recommendations, sep="\t", dtype=str, keep_default_na=False)
    write_html(render_cohort_report(Path(path).parent, table, config), Path(path))
    return Path(path)


def _read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
