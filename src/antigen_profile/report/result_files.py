"""Reading the result files the profile and decide stages wrote (docs/outputs.md), as written.

Both pages read through here. Tables are read as text, not numbers, so that an empty cell stays
empty and is shown as a dash rather than becoming NaN or 0 on the way.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antigen_profile.outputs import REPORT_READS, sample_paths

#: The result files a report needs (keys of :data:`antigen_profile.outputs.SAMPLE_FILES`).
REQUIRED_FILES = ("qc", "populations", "antigens", "gates", "plotdata", "profile", "decision")
#: Written by later versions of the profile stage: a results folder without them still renders,
#: with a note where their section would be.
OPTIONAL_FILES = ("coverage", "coexpression", "positive_controls")


@dataclass(frozen=True)
class Table:
    """A TSV as written: its header (even when it has no rows) and its rows as strings."""

    columns: list[str]
    rows: list[dict[str, str]]


@dataclass(frozen=True)
class SampleFiles:
    """Everything the profile and decide stages wrote for one sample.

    ``coverage``, ``coexpression`` and ``positive_controls`` are None when the folder
    predates them.
    """

    qc: dict[str, Any]
    populations: list[dict[str, str]]
    antigens: list[dict[str, str]]
    gates: list[dict[str, Any]]
    plotdata: dict[str, np.ndarray]
    profile: dict[str, Any]
    decision: dict[str, Any]
    coverage: Table | None = None
    coexpression: Table | None = None
    positive_controls: Table | None = None


def read_json(path: Path) -> Any:
    """Parse a JSON result file."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_tsv_table(path: Path) -> Table:
    """A TSV's header and rows as strings, exactly as written (header-only gives no rows)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [dict(row) for row in reader]
        return Table(columns=list(reader.fieldnames or []), rows=rows)


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a required TSV (a missing file raises)."""
    return _read_tsv_table(path).rows


def read_table(path: Path) -> Table | None:
    """An optional TSV with its header, or None when the file does not exist."""
    return _read_tsv_table(path) if path.is_file() else None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of plotdata.npz, loaded eagerly so the file is closed (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_sample(sample_dir: Path | Mapping[str, str | Path]) -> SampleFiles:
    """Read the seven result files of a sample, failing loudly when one is missing, and the
    optional ones (coverage.tsv, coexpression.tsv) when they are there.

    ``sample_dir`` is the sample's folder or the files a rule declared
    (:data:`antigen_profile.outputs.REPORT_READS`). A report silently missing its decision or
    its gates would look complete to a clinician; an error in the workflow log is the safer
    outcome. The optional files are newer than some results folders: their absence is said in
    the report, not raised.
    """
    paths = sample_paths(sample_dir, REPORT_READS)
    missing = [str(paths[key]) for key in REQUIRED_FILES if not paths[key].is_file()]
    if missing:
        raise FileNotFoundError(f"missing result file(s) {', '.join(missing)}")
    gates = read_json(paths["gates"])
    if not isinstance(gates, list):
        raise ValueError(f"{paths['gates']}: expected a list of gates")
    return SampleFiles(
        qc=read_json(paths["qc"]),
        populations=read_tsv(paths["populations"]),
        antigens=read_tsv(paths["antigens"]),
        gates=gates,
        plotdata=read_npz(paths["plotdata"]),
        profile=read_json(paths["profile"]),
        decision=read_json(paths["decision"]),
        **{key: read_table(paths[key]) for key in OPTIONAL_FILES},
    )


#: The files of a specimen its report needs (keys of
#: :data:`antigen_profile.outputs.SPECIMEN_FILES`); coverage.tsv may be absent.
SPECIMEN_REQUIRED = ("decision", "specimen", "antigens")


@dataclass(frozen=True)
class SpecimenFiles:
    """What the specimen step wrote: the decision, specimen.json (tubes, every tube's values,
    flags), the merged antigen table and the coverage bounds (None when absent)."""

    decision: dict[str, Any]
    specimen: dict[str, Any]
    antigens: Table
    coverage: Table | None


def read_specimen(files: Mapping[str, str | Path]) -> SpecimenFiles:
    """Read a specimen's files (``files``: key -> path, as the rule declared them), failing
    loudly when a required one is missing or is not what it should be: a specimen report
    without its decision or its tubes would look complete to a clinician."""
    paths = {key: Path(path) for key, path in files.items()}
    missing = [str(paths.get(key, key)) for key in SPECIMEN_REQUIRED if not _is_file(paths, key)]
    if missing:
        raise FileNotFoundError(f"missing result file(s) {', '.join(missing)}")
    decision, specimen = read_json(paths["decision"]), read_json(paths["specimen"])
    for key, data in (("decision", decision), ("specimen", specimen)):
        if not isinstance(data, dict):
            raise ValueError(f"{paths[key]}: expected a JSON object")
    coverage = paths.get("coverage")
    return SpecimenFiles(
        decision=decision,
        specimen=specimen,
        antigens=_read_tsv_table(paths["antigens"]),
        coverage=read_table(coverage) if coverage is not None else None,
    )


def _is_file(paths: Mapping[str, Path], key: str) -> bool:
    return key in paths and paths[key].is_file()
