"""Sample and patient sheets: read, check every row, and stop before any job runs.

Each problem is reported as one line naming the sheet, the line, the sample or patient and
what to fix, because a lab fixing a sheet at 8 a.m. needs to know exactly where to look.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Container, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

from antigen_profile.config import load_yaml
from antigen_profile.errors import AntigenProfileError
from antigen_profile.inputs import NOT_FOUND, file_problem, fix_for, problem_message
from antigen_profile.paths import repo_path
from antigen_profile.vocabulary import ReviewVerdict

SAMPLE_SCHEMA = "workflow/schemas/samples.schema.yaml"
PATIENT_SCHEMA = "workflow/schemas/patients.schema.yaml"
SAMPLE_REQUIRED = ["sample_id", "patient_id", "fcs"]
SAMPLE_OPTIONAL = ["control_fcs", "timepoint", "bead_fcs", "specimen_id", "gates"]
#: Columns naming a file, relative to the sheet: checked before any job. ``gates`` is a
#: tube's gates.xml as a reviewer corrected it (applied as given to that tube only).
SAMPLE_FILES = ["fcs", "control_fcs", "bead_fcs", "gates"]
#: Optional per-antigen control tubes (an FMO for that antigen): ``control_CD22``, ...
MARKER_CONTROL = re.compile(r"^control_(?!fcs$)[A-Za-z0-9-]+$")
PATIENT_NUMBERS = ["age_years", "kps", "hgb_g_per_l", "life_expectancy_months"]
PATIENT_FLAGS = [
    "prior_anti_cd19",
    "active_infection",
    "hiv",
    "hbv_hcv_active",
    "pregnant_or_nursing",
    "systemic_steroids_last_7d",
]
#: The patient sheet's columns (the input patients.tsv), in order; the cohort's output of the
#: same name has :data:`antigen_profile.cohort.PATIENT_TABLE_COLUMNS`.
PATIENT_COLUMNS = ["patient_id", *PATIENT_NUMBERS, *PATIENT_FLAGS]


class SheetError(AntigenProfileError, ValueError):
    """One line per problem: sheet, line, id, problem and fix."""


class SheetWarning(UserWarning):
    """Something in a sheet that was read anyway, and that the lab may want to tidy."""


#: pandas' name for a column whose header cell is empty (``Unnamed: 3``).
UNNAMED = re.compile(r"^Unnamed: \d+$")


def _read_tsv(path: Path) -> pd.DataFrame:
    problem = file_problem(path)
    if problem == NOT_FOUND:
        raise SheetError(f"{path}: sheet not found; pass an existing TSV with --config")
    if problem is not None:
        raise SheetError(problem_message(path, problem, "sheet"))
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except pd.errors.EmptyDataError:
        raise SheetError(f"{path}: the sheet is empty; it needs a header line and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        separator = _other_separator(path)
        if separator:
            raise SheetError(_separator_message(path, separator)) from None
        raise SheetError(f"{path}: not a readable tab-separated sheet ({exc})") from None
    if len(frame.columns) == 1:
        separator = _other_separator(path)
        if separator:
            raise SheetError(_separator_message(path, separator))
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda col: col.str.strip())
    return _drop_empty_unnamed(frame, path)


def _other_separator(path: Path) -> str | None:
    """``comma`` or ``semicolon`` when the header line has no tab but one of those: a sheet
    saved as CSV (Excel writes semicolons where the comma is the decimal mark)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    if "\t" in header:
        return None
    counts = {"comma": header.count(","), "semicolon": header.count(";")}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else None


def _separator_message(path: Path, separator: str) -> str:
    return (
        f"{path}: looks {separator}-separated; save it as tab-separated text (in Excel: "
        "Save As > Text (Tab delimited)) and keep the .tsv name"
    )


def _drop_empty_unnamed(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Columns without a header and without a single value (Excel exports a sheet's once-used
    columns that way) are dropped, with a :class:`SheetWarning`: they hold nothing to read.
    An unnamed column that holds a value is refused: what it means is unknown."""
    unnamed = [c for c in frame.columns if c == "" or UNNAMED.match(c)]
    filled = [c for c in unnamed if frame[c].astype(bool).any()]
    if filled:
        number = list(frame.columns).index(filled[0]) + 1
        row = int(frame[filled[0]].astype(bool).to_numpy().argmax())
        value = frame[filled[0]].iloc[row]
        raise SheetError(
            f"{path}: column {number} has no header but holds values (line {_line(row)}: "
            f"{value!r}); give it a header or delete the column"
        )
    if unnamed:
        plural = "s" if len(unnamed) > 1 else ""
        warnings.warn(
            f"{path}: ignored {len(unnamed)} empty column{plural} without a header (an Excel "
            "export); delete them to silence this warning",
            SheetWarning,
            stacklevel=4,
        )
    return frame.drop(columns=unnamed)


def _line(index: int) -> int:
    """File line of a data row (the header is line 1)."""
    return index + 2


def _schema_problems(
    frame: pd.DataFrame,
    schema_file: str,
    sheet: Path,
    id_column: str,
    skip: Container[tuple[int, str]] = (),
) -> list[str]:
    """Schema errors, one line each; cells in ``skip`` (row position, column) were reported
    already in plainer words."""
    validator = jsonschema.Draft202012Validator(load_yaml(repo_path(schema_file)))
    problems = []
    for index, record in enumerate(frame.to_dict("records")):
        row = {k: v for k, v in record.items() if v is not None and v != ""}
        for error in validator.iter_errors(row):
            field = ".".join(str(p) for p in error.absolute_path) or "row"
            if (index, field) in skip:
                continue
            message = error.message
            if error.validator == "pattern" and "description" in error.schema:
                message = f"{error.instance!r} is not allowed: {error.schema['description']}"
            problems.append(
                f"{sheet} line {_line(index)} ({id_column}={record.get(id_column, '?')}): "
                f"{field}: {message}"
            )
    return problems


def read_samples(
    path: str | Path, producible: Container[str] | Callable[[Path], bool] = ()
) -> pd.DataFrame:
    """Read and check ``samples.tsv``; its file columns (``fcs``, ``control_fcs``,
    ``bead_fcs``, ``gates``, ``control_<MARKER>``) come back as absolute paths.

    Parameters
    ----------
    path : str or Path
        The sheet. Paths inside it are relative to its own folder.
    producible : container of str, or callable
        Files the workflow itself will write (the demo cohort); not required to exist yet.
    """
    sheet = Path(path).resolve()
    frame = _read_tsv(sheet)
    missing = [c for c in SAMPLE_REQUIRED if c not in frame.columns]
    unknown = [
        c
        for c in frame.columns
        if c not in SAMPLE_REQUIRED + SAMPLE_OPTIONAL and not MARKER_CONTROL.match(c)
    ]
    if missing or unknown:
        raise SheetError(
            f"{sheet}: columns must be {', '.join(SAMPLE_REQUIRED)} and optionally "
            f"{', '.join(SAMPLE_OPTIONAL)} and control_<MARKER> (missing: "
            f"{', '.join(missing) or 'none'}; "
            f"unknown: {', '.join(unknown) or 'none'})"
        )
    if frame.empty:
        raise SheetError(f"{sheet}: the sheet has no samples")
    for column in SAMPLE_OPTIONAL:
        if column not in frame.columns:
            frame[column] = ""
    problems = _schema_problems(frame, SAMPLE_SCHEMA, sheet, "sample_id")
    seen: dict[str, int] = {}
    can_make = producible if callable(producible) else (lambda p: str(p) in producible)
    for index, row in frame.iterrows():
        line = _line(int(index))
        sid = row["sample_id"]
        if sid in seen:
            problems.append(
                f"{sheet} line {line} (sample_id={sid}): sample_id repeats line {seen[sid]}; "
                "every sample_id must be unique"
            )
        seen.setdefault(sid, line)
        for column in [*SAMPLE_FILES, *marker_control_columns(frame)]:
            given = str(row[column])
            if not given:
                continue
            file = _resolved(sheet.parent / given)
            frame.at[index, column] = str(file)
            problem = file_problem(file)
            if problem is None and column == "gates" and not os.access(file, os.R_OK):
                problem = "cannot be read (permission denied)"  # parsed in the job: say it now
            if problem is None or (problem == NOT_FOUND and can_make(file)):
                continue
            where = f"{sheet} line {line} (sample_id={sid}): {column} file {given}"
            if problem == NOT_FOUND:
                problems.append(
                    f"{where} not found (looked for {file}); paths are relative to the "
                    "sheet's folder"
                )
            else:
                at = "" if str(file) == given else f" ({file})"
                problems.append(f"{where}{at} {problem}; {_fix(problem, column)}")
    # A tube without specimen_id is its own specimen; filled first, so a specimen_id that is
    # another row's sample_id joins that tube and is checked with it.
    named = frame["specimen_id"].astype(str) != ""
    given = zip(frame["specimen_id"], frame["sample_id"], strict=True)
    frame["specimen_id"] = [str(spec) or str(sid) for spec, sid in given]
    problems += _specimen_problems(frame, named, sheet)
    if problems:
        raise SheetError("\n".join(problems))
    return frame.set_index("sample_id", drop=False)


def _specimen_problems(frame: pd.DataFrame, named: pd.Series, sheet: Path) -> list[str]:
    """Tubes of one specimen (rows sharing ``specimen_id``; an empty cell: the tube is its
    own specimen) come from one draw of one patient, so they
    must agree on ``patient_id`` and ``timepoint``: one line per specimen that does not."""
    problems = []
    # Only specimens a row names: tubes that are their own specimens need no check (a
    # repeated sample_id is said apart), and skipping them keeps a sheet of 10,000 such tubes
    # from 10,000 pandas groups (issue 19).
    chosen = frame["specimen_id"].isin(set(frame.loc[named.to_numpy(), "specimen_id"]))
    for specimen, rows in frame[chosen.to_numpy()].groupby("specimen_id", sort=False):
        for column in ("patient_id", "timepoint"):
            values = list(dict.fromkeys(str(v) for v in rows[column]))
            if len(values) > 1:
                lines = ", ".join(str(_line(int(i))) for i in rows.index)
                problems.append(
                    f"{sheet} lines {lines} (specimen_id={specimen}): the tubes of one specimen "
                    f"must share {column}, found {' and '.join(repr(v) for v in values)}; fix "
                    "the sheet or give the tubes different specimen_ids"
                )
    return problems


def _resolved(path: Path) -> Path:
    """``path`` made absolute with symlinks resolved; a symlink loop (on which Python before
    3.13 raises ``RuntimeError``) stays as given, for :func:`file_problem` to name."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _fix(problem: str, column: str = "fcs") -> str:
    if problem == "is a directory":
        kind = "Gating-ML" if column == "gates" else "FCS"
        return f"give the path of the {kind} file inside it"
    return fix_for(problem)


def marker_control_columns(samples: pd.DataFrame) -> list[str]:
    """The sheet's per-antigen control columns (``control_CD22`` ...)."""
    return [c for c in samples.columns if MARKER_CONTROL.match(str(c))]


def _check_columns(sheet: Path, frame: pd.DataFrame, columns: Sequence[str], fix: str = "") -> None:
    """Refuse a sheet whose columns are not exactly ``columns``, in one line saying which are
    missing and which unknown."""
    missing = [c for c in columns if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in columns]
    if missing or unknown:
        raise SheetError(
            f"{sheet}: columns must be {', '.join(columns)} (missing: "
            f"{', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}){fix}"
        )


def read_patients(path: str | Path) -> pd.DataFrame:
    """Read and check ``patients.tsv``. Cells stay text (empty = unknown); numbers and yes/no
    are checked here, and read as facts by :func:`antigen_profile.decision.parse_patient`."""
    sheet = Path(path).resolve()
    frame = _read_tsv(sheet)
    _check_columns(sheet, frame, PATIENT_COLUMNS)
    typed, problems = _typed_patients(frame, sheet)
    flag_problems, reported = _yes_no_problems(frame, sheet)
    problems += flag_problems
    problems += _schema_problems(typed, PATIENT_SCHEMA, sheet, "patient_id", skip=reported)
    first_line: dict[str, int] = {}
    for index, pid in frame["patient_id"].items():
        line = _line(int(index))
        if pid in first_line:
            problems.append(
                f"{sheet} line {line} (patient_id={pid}): patient repeats line "
                f"{first_line[pid]}; list each patient once"
            )
        first_line.setdefault(pid, line)
    if problems:
        raise SheetError("\n".join(problems))
    return frame.set_index("patient_id", drop=False)


#: What a yes/no cell may say (case-insensitive), as the patient schema's pattern does.
YES_NO = {"yes", "no", "y", "n", "true", "false"}


def _yes_no_problems(frame: pd.DataFrame, sheet: Path) -> tuple[list[str], set[tuple[int, str]]]:
    """One plain sentence per yes/no cell holding anything else (``1``, ``0``, ``x``), and
    the cells reported, so that the schema does not report them again as a pattern."""
    problems: list[str] = []
    reported: set[tuple[int, str]] = set()
    for position, (index, row) in enumerate(frame.iterrows()):
        for column in PATIENT_FLAGS:
            value = row[column]
            if value == "" or value.lower() in YES_NO:
                continue
            problems.append(
                f"{sheet} line {_line(int(index))} (patient_id={row['patient_id']}): {column} "
                f"{value!r}: write yes or no (or leave it empty if unknown)"
            )
            reported.add((position, column))
    return problems, reported


def _typed_patients(frame: pd.DataFrame, sheet: Path) -> tuple[pd.DataFrame, list[str]]:
    typed = frame.astype(object)
    problems = []
    for index, row in frame.iterrows():
        for column in PATIENT_NUMBERS:
            if row[column] == "":
                typed.at[index, column] = None
                continue
            try:
                typed.at[index, column] = float(row[column])
            except ValueError:
                problems.append(
                    f"{sheet} line {_line(int(index))} (patient_id={row['patient_id']}): "
                    f"{column} {row[column]!r} is not a number; leave it empty if unknown"
                )
    return typed, problems


def typed_patients(patients: pd.DataFrame) -> pd.DataFrame:
    """Numbers as floats, for JSON Schema validation (``snakemake.utils.validate``)."""
    return _typed_patients(patients.reset_index(drop=True), Path("patients"))[0]


def patient_record(patients: pd.DataFrame, patient_id: str) -> dict[str, Any] | None:
    """One patient's cells as text (``None`` where empty), or ``None`` if not in the sheet."""
    if patient_id not in patients.index:
        return None
    return {k: (v if v != "" else None) for k, v in patients.loc[patient_id].items()}


REVIEW_SCHEMA = "workflow/schemas/review.schema.yaml"
#: What an override's ``final_targets`` says for "no target": the specimen is not a candidate.
NO_TARGET = "none"
#: The review sheet's columns (review.tsv), all required in the header; ``final_targets``
#: and ``reason`` may be empty for a ``confirm``.
REVIEW_COLUMNS = [
    "specimen_id",
    "reviewer",
    "verdict",
    "final_targets",
    "reason",
    "date",
    "result_hash",
]


#: Cells every review row must fill, and how.
REVIEW_FILL = {
    "specimen_id": "name the specimen reviewed",
    "reviewer": "write the reviewer's name or initials",
    "verdict": "write confirm or override",
    "date": "write the day the review was made as YYYY-MM-DD",
    "result_hash": "copy the result hash from the specimen's report",
}
REVIEW_REQUIRED = list(REVIEW_FILL)


def read_review(
    path: str | Path, specimen_ids: Container[str], targets: Sequence[str] | None
) -> dict[str, dict[str, str]]:
    """Read and check ``review.tsv`` against the cohort's specimens and the trial's
    ``targets`` (``None``: not checked): the rows by specimen_id, cells as text. Every
    problem is one line naming the sheet, the line and the fix; a sheet with any is refused
    whole, because a sign-off must not be half read."""
    sheet = Path(path).resolve()
    frame = _read_tsv(sheet)
    _check_columns(
        sheet, frame, REVIEW_COLUMNS, "; fill the row in from the specimen report's form"
    )
    problems, skip = [], set()
    for position, (index, row) in enumerate(frame.iterrows()):
        for column in REVIEW_REQUIRED:
            if not row[column]:
                problems.append(
                    f"{sheet} line {_line(int(index))} (specimen_id={row['specimen_id']}): "
                    f"{column} is empty; {REVIEW_FILL[column]}"
                )
                skip.add((position, "row"))
    problems += _schema_problems(frame, REVIEW_SCHEMA, sheet, "specimen_id", skip=skip)
    first: dict[str, int] = {}
    rows: dict[str, dict[str, str]] = {}
    for index, row in frame.iterrows():
        line = _line(int(index))
        sid = str(row["specimen_id"])
        where = f"{sheet} line {line} (specimen_id={sid})"
        if sid and sid not in specimen_ids:
            problems.append(
                f"{where}: specimen_id not in the sample sheet; use a specimen_id of "
                "samples.tsv (or a sample_id, for a tube that is its own specimen)"
            )
        if sid in first:
            problems.append(
                f"{where}: specimen repeats line {first[sid]}; keep one review per specimen"
            )
        first.setdefault(sid, line)
        chosen = [t.strip() for t in str(row["final_targets"]).split(",") if t.strip()]
        stray = [t for t in chosen if targets is not None and t not in targets and t != NO_TARGET]
        if stray:
            problems.append(
                f"{where}: final_targets {', '.join(stray)} not in the trial; choose from "
                f"{', '.join(targets)} (or {NO_TARGET})"
            )
        if row["verdict"] == ReviewVerdict.OVERRIDE and not row["reason"]:
            problems.append(f"{where}: an override needs a reason; write why in reason")
        if row["verdict"] == ReviewVerdict.OVERRIDE and not row["final_targets"]:
            problems.append(
                f"{where}: an override needs final_targets; name the targets to treat, or "
                "write none for no target"
            )
        if row["verdict"] == ReviewVerdict.CONFIRM and row["final_targets"]:
            problems.append(
                f"{where}: a confirm takes the computed targets; leave final_targets empty "
                "or make the verdict override"
            )
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", str(row["date"])):
            try:
                date.fromisoformat(str(row["date"]))
            except ValueError:
                problems.append(
                    f"{where}: date {row['date']} is not a calendar date; write the day the "
                    "review was made as YYYY-MM-DD"
                )
        rows[sid] = {k: str(row[k]) for k in REVIEW_COLUMNS}
    if problems:
        raise SheetError("\n".join(sorted(problems, key=_line_of)))
    return rows


def _line_of(problem: str) -> int:
    """A problem's line number, to list a sheet's problems in line order."""
    found = re.search(r" line (\d+) ", problem)
    return int(found[1]) if found else 0
