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
