"""The workflow's output files, named once.

The Snakemake rules declare their outputs from these tables, the writers write to the paths
they are handed (a rule's declared paths, or a folder's default names) and the readers read
them: a file is renamed or added here, not in each stage. docs/outputs.md describes what each
file holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

#: What ``profile`` writes per sample: key -> file name in ``results/{sample_id}/``.
PROFILE_FILES: dict[str, str] = {
    "qc": "qc.json",
    "populations": "populations.tsv",
    "antigens": "antigens.tsv",
    "coverage": "coverage.tsv",
    "coexpression": "coexpression.tsv",
    "gates": "gates.json",
    "gatingml": "gates.xml",
    "plotdata": "plotdata.npz",
    "profile": "profile.json",
    "calibration": "calibration.json",
    "positive_controls": "positive_controls.tsv",
}
#: What ``decide`` writes per sample.
DECISION_FILE = "decision.json"
#: The per-sample HTML report (and the cohort index, one level up).
REPORT_FILE = "report.html"
#: What ``decide`` reads of the profile.
DECISION_READS = ("antigens", "coverage", "populations", "qc", "profile")
#: What ``sample_report`` reads: the profile's files but the Gating-ML export, the
#: calibration curves, and the decision.
REPORT_READS = (
    "qc",
    "populations",
    "antigens",
    "coverage",
    "coexpression",
    "gates",
    "plotdata",
    "profile",
    "positive_controls",
    "decision",
)
#: What ``recommendations`` writes for the cohort: key -> file name in ``results/``.
COHORT_FILES: dict[str, str] = {
    "recommendations": "recommendations.tsv",
    "decisions": "decisions.json",
    "patients": "patients.tsv",
    "timeline": "patient_timeline.tsv",
}
#: Where the specimens go: ``results/specimens/{specimen_id}/``.
SPECIMEN_DIR = "specimens"
#: What ``specimen`` writes per specimen (its tubes merged), and ``specimen_report`` the last.
SPECIMEN_FILES: dict[str, str] = {
    "antigens": "antigens.tsv",
    "coverage": "coverage.tsv",
    "specimen": "specimen.json",
    "decision": DECISION_FILE,
    "report": REPORT_FILE,
}
#: What ``specimen`` reads of each tube: what ``decide`` reads.
SPECIMEN_READS = DECISION_READS
#: What ``specimen`` writes (the report comes after).
SPECIMEN_WRITES = ("antigens", "coverage", "specimen", "decision")

#: File names in ``results/`` that no sample id may take (its folder would shadow them).
COHORT_NAMES = frozenset({*COHORT_FILES.values(), REPORT_FILE, "logs", "benchmarks", SPECIMEN_DIR})

#: Every per-sample file name: key -> name.
SAMPLE_FILES: dict[str, str] = {
    **PROFILE_FILES,
    "decision": DECISION_FILE,
    "report": REPORT_FILE,
}


def sample_paths(
    where: str | Path | Mapping[str, str | Path], keys: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """The paths of a sample's files (``keys``: all of :data:`SAMPLE_FILES` by default).

    ``where`` is the sample's folder (each file under its default name) or a mapping from
    key to path, as a Snakemake rule declares them; a mapping must hold every key asked for,
    so a stage never falls back to a name its rule did not declare.
    """
    return _paths(where, SAMPLE_FILES, keys, "per-sample")


def sample_patterns(results: str, keys: tuple[str, ...]) -> dict[str, str]:
    """``{key: "{results}/{sample}/{name}"}``: a rule's declaration of per-sample files."""
    return {k: f"{results}/{{sample}}/{SAMPLE_FILES[k]}" for k in keys}


def specimen_paths(
    where: str | Path | Mapping[str, str | Path], keys: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """The paths of a specimen's files (``keys``: all of :data:`SPECIMEN_FILES`), from its
    folder or a rule's declared mapping (as :func:`sample_paths`)."""
    return _paths(where, SPECIMEN_FILES, keys, "per-specimen")


def _paths(
    where: str | Path | Mapping[str, str | Path],
    files: Mapping[str, str],
    keys: tuple[str, ...] | None,
    what: str,
) -> dict[str, Path]:
    keys = tuple(files) if keys is None else keys
    unknown = [k for k in keys if k not in files]
    if unknown:
        raise KeyError(f"not a {what} output: {', '.join(unknown)}")
    if isinstance(where, Mapping):
        missing = [k for k in keys if k not in where]
        if missing:
            raise KeyError(f"no path given for {', '.join(missing)}")
        return {k: Path(where[k]) for k in keys}
    folder = Path(where)
    return {k: folder / files[k] for k in keys}


def specimen_patterns(results: str, keys: tuple[str, ...]) -> dict[str, str]:
    """``{key: "{results}/specimens/{specimen}/{name}"}``: a rule's per-specimen files."""
    return {k: f"{results}/{SPECIMEN_DIR}/{{specimen}}/{SPECIMEN_FILES[k]}" for k in keys}


def cohort_paths(results: str | Path) -> dict[str, Path]:
    """The cohort tables in ``results``."""
    return {k: Path(results) / name for k, name in COHORT_FILES.items()}


def layout_problems(
    results: str | Path,
    sample_ids: Iterable[str],
    inputs: Mapping[str, Iterable[str | Path]],
    specimen_ids: Iterable[str] = (),
) -> list[str]:
    """What would make the run write where it must not, one line each: a sample id that is
    not a plain folder name inside ``results`` (``.``, ``..``, a cohort output's name), or
    an output that resolves onto one of ``inputs`` (what -> paths: the sheets, the tubes, the
    trial, the template, ...). Checked before any job runs: an output written over a user's
    sheet or tube cannot be taken back.

    Each input is looked up where an output of its name would be (a sample's or specimen's
    folder, or ``results`` itself), rather than every output listed: an archive of 10,000
    samples has 180,000 outputs and its check must stay a small part of planning (issue 19).
    """
    problems: list[str] = []
    root = Path(results).resolve()
    links = _linked_folders(root)
    folders: dict[Path, str] = {}  # a sample's folder as resolved -> its sample_id
    for sample_id in sample_ids:
        if sample_id in {".", ".."} or "/" in sample_id or "\\" in sample_id:
            problems.append(
                f"sample_id {sample_id!r} is not a folder name: its outputs would land outside "
                f"{results}/; rename the sample in the sheet"
            )
            continue
        if sample_id in COHORT_NAMES:
            problems.append(
                f"sample_id {sample_id!r} is the name of a cohort output in {results}/; rename "
                "the sample in the sheet"
            )
            continue
        folder = links.get(sample_id, root / sample_id)
        if folder.parent != root:
            problems.append(
                f"{results}/{sample_id} is a link to {folder}: outputs must stay in {results}/; "
                "remove the link"
            )
            continue
        folders[folder] = sample_id
    specimens: set[str] = set()
    for specimen_id in specimen_ids:
        if specimen_id in {".", ".."} or "/" in specimen_id or "\\" in specimen_id:
            problems.append(
                f"specimen_id {specimen_id!r} is not a folder name: its outputs would land "
                f"outside {results}/{SPECIMEN_DIR}/; rename the specimen in the sheet"
            )
            continue
        specimens.add(specimen_id)
    cohort = {*COHORT_FILES.values(), REPORT_FILE}
    sample_names, specimen_names = set(SAMPLE_FILES.values()), set(SPECIMEN_FILES.values())
    for what, paths in inputs.items():
        for given in paths:
            path = Path(given).resolve()
            folder = path.parent
            if folder == root and path.name in cohort:
                target = path.name
            elif folder in folders and path.name in sample_names:
                target = f"{folders[folder]}/{path.name}"
            elif (
                folder.parent == root / SPECIMEN_DIR
                and folder.name in specimens
                and path.name in specimen_names
            ):
                target = f"{SPECIMEN_DIR}/{folder.name}/{path.name}"
            else:
                continue
            problems.append(
                f"{what} {given} would be overwritten by the output {target} of "
                f"results={results}; choose another results folder"
            )
    return problems


def _linked_folders(root: Path) -> dict[str, Path]:
    """The entries of ``root`` that are symbolic links, each resolved: only a folder that
    exists can be a link, so one listing replaces resolving every sample's folder."""
    if not root.is_dir():
        return {}
    with os.scandir(root) as entries:
        return {e.name: Path(e.path).resolve() for e in entries if e.is_symlink()}
