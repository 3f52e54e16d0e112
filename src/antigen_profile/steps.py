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
from antigen_profile.outputs import (
    COHORT_FILES,
    DECISION_FILE,
    DECISION_READS,
    PROFILE_FILES,
    REPORT_FILE,
    REPORT_READS,
    cohort_paths,
    sample_paths,
)
from antigen_profile.trial import load_trial
from antigen_profile.vocabulary import QCStatus

#: ``decide_sample``'s ``patient_record`` default: read the record from ``patients_sheet``.
FROM_SHEET: Any = object()


def patient_param(record: Mapping[str, Any] | None) -> str:
    """A patient's row as the JSON text a rule passes as a param (``decide_sample`` reads it
    back): params are stored and shown in Snakemake's own HTML report, so ``<``, ``>`` and
    ``&`` of free text are written as JSON escapes and cannot open a tag there."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def decide_sample(
    sample_dir: str | Path | Mapping[str, str | Path],
    sample_id: str,
    patient_id: str,
    patients_sheet: str | Path | None,
    trial_path: str | Path,
    config: Mapping[str, Any],
    timepoint: str | None = None,
    out: str | Path | None = None,
    patient_record: Mapping[str, Any] | str | None = FROM_SHEET,
    specimen_id: str | None = None,
) -> dict[str, Any]:
    """Apply the trial's rules to one profiled sample and write ``decision.json``.

    ``specimen_id`` names the specimen the tube belongs to (default: the tube is its own);
    a tube of a split panel gets its own decision too, the tube's view, and its report points
    to the specimen's.

    ``sample_dir`` is the sample's folder or the profile files a rule declared
    (:data:`~antigen_profile.outputs.DECISION_READS`); ``out`` defaults to ``decision.json``
    beside them. ``patient_record`` (the patient's row as text, ``None``: not in the sheet)
    replaces reading ``patients_sheet``: the workflow passes the row, so editing one patient
    reruns that patient's decisions only; as text, it is :func:`patient_param`'s JSON. Only
    ``config["floors"]`` is read.
    """
    from antigen_profile.decision import decide, parse_patient
    from antigen_profile.sheets import patient_record as sheet_record
    from antigen_profile.sheets import read_patients

    files = sample_paths(sample_dir, DECISION_READS)
    trial = load_trial(trial_path)
    record = None if patient_record is FROM_SHEET else patient_record
    if isinstance(record, str):
        record = json.loads(record)
    if patient_record is FROM_SHEET and patients_sheet:
        record = sheet_record(read_patients(patients_sheet), patient_id)
    patient = parse_patient(record, trial) if record is not None else None
    coverage_file = files["coverage"]
    decision = decide(
        sample_id,
        patient_id,
        pd.read_csv(files["antigens"], sep="\t"),
        pd.read_csv(files["populations"], sep="\t"),
        _read_json(files["qc"]),
        patient,
        trial,
        config["floors"],
        timepoint=timepoint,
        coverage=pd.read_csv(coverage_file, sep="\t") if coverage_file.exists() else None,
        flags=_read_json(files["profile"]).get("flags", []),
        specimen_id=specimen_id,
    ).to_dict()
    write_json(Path(out) if out else files["profile"].parent / DECISION_FILE, decision)
    return decision


def decide_specimen(
    specimen_id: str,
    tubes: Mapping[str, str | Path | Mapping[str, str | Path]],
    patient_id: str,
    patient_record: Mapping[str, Any] | str | None,
    trial_path: str | Path,
    config: Mapping[str, Any],
    out: str | Path | Mapping[str, str | Path],
    timepoint: str | None = None,
) -> dict[str, Any]:
    """Merge a specimen's tubes and apply the trial's rules to the merge.

    ``tubes`` maps each tube's sample_id (in sheet order) to its folder or the files a rule
    declared (:data:`~antigen_profile.outputs.SPECIMEN_READS`); ``out`` is the specimen's
    folder or its :data:`~antigen_profile.outputs.SPECIMEN_WRITES` mapped to paths.
    ``patient_record`` is the patient's row (:func:`patient_param`'s JSON, or None: not in
    the sheet). Reads ``config["floors"]``, ``["quantified"]`` and ``["b_lineage_markers"]``.
    A specimen of one tube gets the decision its tube got, plus ``specimen_id`` and ``tubes``.
    """
    from antigen_profile.decision import decide, parse_patient
    from antigen_profile.outputs import SPECIMEN_WRITES, specimen_paths
    from antigen_profile.specimen import (
        merge_specimen,
        specimen_document,
        specimen_populations,
        specimen_qc,
        tube_from_outputs,
    )

    files = specimen_paths(out, SPECIMEN_WRITES)
    trial = load_trial(trial_path)
    floor = int(config["floors"]["quantify"])
    results = [tube_from_outputs(sample_id, where, floor) for sample_id, where in tubes.items()]
    profile = merge_specimen(
        specimen_id,
        results,
        config["quantified"],
        trial.targets,
        config["b_lineage_markers"],
    )
    record = json.loads(patient_record) if isinstance(patient_record, str) else patient_record
    antigens = profile.antigen_table(config["quantified"])
    decision = decide(
        results[0].sample_id if len(results) == 1 else None,
        patient_id,
        antigens,
        specimen_populations(results),
        specimen_qc(results),
        parse_patient(record, trial) if record is not None else None,
        trial,
        config["floors"],
        timepoint=timepoint,
        coverage=profile.coverage,
        flags=profile.flags,
        specimen_id=specimen_id,
        tubes=[t.sample_id for t in results],
    ).to_dict()
    write_tsv(files["antigens"], antigens)
    write_tsv(files["coverage"], profile.coverage)
    write_json(files["specimen"], specimen_document(profile, results))
    write_json(files["decision"], decision)
    return decision


def report_specimen(
    specimen_id: str,
    tubes: Mapping[str, Mapping[str, str | Path]],
    sheet: Mapping[str, Any],
    trial_path: str | Path,
    config: Mapping[str, Any],
    out: Mapping[str, str | Path],
    review: Mapping[str, Any] | str | None = None,
    targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A specimen's whole step, as one job runs it: :func:`decide_specimen` on its tubes'
    files, then :func:`write_specimen_report`, its result hash from the same tubes'
    ``profile.json``. ``sheet`` holds ``patient_id``, ``patient`` (the row) and
    ``timepoint``; ``out`` maps every key of
    :data:`~antigen_profile.outputs.SPECIMEN_FILES` to its path."""
    decision = decide_specimen(
        specimen_id,
        tubes,
        sheet["patient_id"],
        sheet["patient"],
        trial_path,
        config,
        out,
        timepoint=sheet["timepoint"],
    )
    write_specimen_report(
        out,
        config,
        out=out["report"],
        review=review,
        profile_files={tube: files["profile"] for tube, files in tubes.items()},
        targets=targets,
    )
    return decision


def write_cohort_table(
    decision_files: Sequence[str | Path],
    out_dir: str | Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    antigen_files: Sequence[str | Path] | None = None,
    review_sheet: str | Path | None = None,
    profile_files: Mapping[str, str | Path] | None = None,
) -> dict[str, Path]:
    """The cohort outputs from every specimen's ``decision.json`` and ``antigens.tsv``
    (``results/specimens/{specimen_id}/``): ``recommendations.tsv``, ``decisions.json``
    (every rule of every specimen, for audit), ``patients.tsv`` and
    ``patient_timeline.tsv``.

    ``antigen_files`` pairs with ``decision_files`` (default: ``antigens.tsv`` beside each
    decision); ``out_dir`` is a folder or the :data:`~antigen_profile.outputs.COHORT_FILES`
    keys mapped to paths. Only ``config["timepoints"]`` is read.

    ``review_sheet`` (``review.tsv``, read as it was checked at parse time) adds each
    specimen's ``review`` object to ``decisions.json`` and the review columns to
    ``recommendations.tsv``, its result hash from the tubes' ``profile.json``
    (``profile_files`` by sample_id; default: the results layout beside the decisions).
    The specimens' own ``decision.json`` stay as computed."""
    from antigen_profile.cohort import (
        patient_table,
        patient_timeline,
        specimen_key,
        write_recommendations,
    )

    if isinstance(out_dir, Mapping):
        out = {k: Path(out_dir[k]) for k in COHORT_FILES}
    else:
        out = cohort_paths(out_dir)
    if antigen_files is None:
        antigen_files = [Path(f).parent / PROFILE_FILES["antigens"] for f in decision_files]
    decisions = [_read_json(f) for f in decision_files]
    if review_sheet:
        decisions = _with_reviews(decisions, decision_files, review_sheet, profile_files)
    antigens = {
        specimen_key(d): pd.read_csv(a, sep="\t")
        for d, a in zip(decisions, antigen_files, strict=True)
    }
    order = list(config["timepoints"]["order"])
    timeline = patient_timeline(decisions, antigens, order, config["timepoints"]["loss_points"])
    paths = {
        "recommendations": write_recommendations(decisions, out["recommendations"]),
        "decisions": write_json(out["decisions"], sorted(decisions, key=specimen_key)),
        "patients": write_tsv(out["patients"], patient_table(decisions, timeline, order)),
        "timeline": write_tsv(out["timeline"], timeline),
    }
    return paths


def _with_reviews(
    decisions: Sequence[dict[str, Any]],
    decision_files: Sequence[str | Path],
    review_sheet: str | Path,
    profile_files: Mapping[str, str | Path] | None,
) -> list[dict[str, Any]]:
    """Each decision with its ``review`` object (:func:`antigen_profile.review.review_status`)."""
    from antigen_profile.cohort import specimen_key
    from antigen_profile.review import read_profiles, review_status, tube_profiles
    from antigen_profile.sheets import read_review

    # targets were checked against the trial at parse time (this job does not read it)
    rows = read_review(review_sheet, {specimen_key(d) for d in decisions}, None)
    out = []
    for decision, path in zip(decisions, decision_files, strict=True):
        where = tube_profiles(path, decision)
        if profile_files is not None:
            where = {tube: Path(profile_files[tube]) for tube in where}
        review = review_status(decision, read_profiles(where), rows.get(specimen_key(decision)))
        out.append({**decision, "review": review})
    return out


def write_sample_report(
    sample_dir: str | Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
    out: str | Path | None = None,
) -> Path:
    """``report.html`` for one sample, from its outputs only (the sample's folder, or the
    :data:`~antigen_profile.outputs.REPORT_READS` a rule declared); ``patient_samples`` (the
    ids of every sample of the same patient, in timepoint order) adds links to the others.
    ``out`` defaults to ``report.html`` beside the profile."""
    from antigen_profile.report import render_sample_report, write_html

    files = sample_paths(sample_dir, REPORT_READS)
    path = Path(out) if out else files["profile"].parent / REPORT_FILE
    write_html(render_sample_report(files, config, patient_samples), path)
    return path


def write_specimen_report(
    specimen_dir: str | Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    out: str | Path | None = None,
    review: Mapping[str, Any] | str | None = None,
    profile_files: Mapping[str, str | Path] | None = None,
    targets: Sequence[str] | None = None,
) -> Path:
    """``report.html`` of a specimen, from what ``specimen`` wrote (its folder, or the
    :data:`~antigen_profile.outputs.SPECIMEN_WRITES` a rule declared): the decision, every
    tube's value, the coverage bounds, links to the tubes' own reports.

    ``review`` is this specimen's review row (the rule's JSON param; ``None``: unreviewed)
    and ``profile_files`` its tubes' ``profile.json`` by sample_id (default: the results
    layout), for the result hash the report shows and its sign-off form; ``targets`` are
    the form's choices (default: the targets the specimen's decision assessed)."""
    from antigen_profile.outputs import SPECIMEN_WRITES, specimen_paths
    from antigen_profile.report import render_specimen_report, write_html
    from antigen_profile.review import read_profiles, review_row, review_status, tube_profiles

    files = specimen_paths(specimen_dir, SPECIMEN_WRITES)
    path = Path(out) if out else files["decision"].parent / REPORT_FILE
    decision = _read_json(files["decision"])
    where = profile_files or tube_profiles(files["decision"], decision)
    status = review_status(decision, read_profiles(where), review_row(review))
    html = render_specimen_report(files, config, review=status, targets=targets)
    write_html(html, path)
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


def run_summary(results: str | Path, sample_ids: Sequence[str], top: int = 3) -> str:
    """The few lines a run ends with (after Snakemake's log): specimens by decision, the most
    frequent reasons for review or refusal, the tubes not analysed and why, and where the
    report is; or, when the cohort table was not written, which samples have no decision."""
    from collections import Counter

    from antigen_profile.cohort import specimen_key

    root = Path(results)
    table_path = cohort_paths(root)["recommendations"]
    lines = []
    ours = set(sample_ids)
    if table_path.is_file():
        table = pd.read_csv(table_path, sep="\t", dtype=str, keep_default_na=False)
        tubes = table["tubes"] if "tubes" in table else table["sample_id"]
        table = table[[bool(set(t.split(",")) & ours) for t in tubes]]
        counts = Counter(table["decision"])
        lines.append(
            f"antigen-profile: {len(table)} specimen(s): "
            + ", ".join(f"{n} {word}" for word, n in counts.most_common())
        )
        # Reasons from decisions.json, where each is a list item: the table joins them with
        # "; ", and a reason may hold "; " itself.
        reasons: Counter[str] = Counter()
        decisions_path = cohort_paths(root)["decisions"]
        decisions = _read_json(decisions_path) if decisions_path.is_file() else []
        specimens = set(table["specimen_id"]) if "specimen_id" in table else ours
        for decision in decisions:
            if specimen_key(decision) in specimens:
                for key in ("review_reasons", "clinical_reasons"):
                    reasons.update(str(r) for r in decision.get(key) or [])
        if reasons:
            lines.append(
                "  most frequent reasons: "
                + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(top))
            )
    else:
        decided = [s for s in sample_ids if (root / s / DECISION_FILE).is_file()]
        lines.append(
            f"antigen-profile: {len(decided)} of {len(sample_ids)} sample(s) decided; "
            f"no {table_path.name} yet: see the errors above and {root / 'logs'}"
        )
    failed = []
    for sample_id in sample_ids:
        qc_path = root / sample_id / PROFILE_FILES["qc"]
        if not qc_path.is_file():
            continue
        qc = _read_json(qc_path)
        if qc.get("status") == QCStatus.FAIL:
            failed.append(f"{sample_id}: {'; '.join(qc.get('reasons') or ['see qc.json'])}")
    if failed:
        lines.append(f"  not analysed ({len(failed)}): " + " | ".join(failed[:top]))
        if len(failed) > top:
            lines.append(f"  ... and {len(failed) - top} more: see {table_path}")
    report = root / REPORT_FILE
    if report.is_file():
        lines.append(f"  report: {report}")
    return "\n".join(lines)
