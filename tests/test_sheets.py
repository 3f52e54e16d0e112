"""Tests of the sample and patient sheets: every problem is one line naming where to look."""

from __future__ import annotations

import os
from collections.abc import Callable, Container
from pathlib import Path

import pandas as pd
import pytest

from antigen_profile.sheets import (
    PATIENT_COLUMNS,
    SheetError,
    SheetWarning,
    patient_record,
    read_patients,
    read_samples,
    typed_patients,
)

SAMPLE_HEADER = "sample_id\tpatient_id\tfcs\tcontrol_fcs\ttimepoint\n"
PATIENT_HEADER = "\t".join(PATIENT_COLUMNS) + "\n"
P01 = "P01\t12\t90\t95\t6\tyes\tno\tno\tno\tno\tno\n"


def _sheet(folder: Path, text: str, name: str = "samples.tsv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _fcs(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"FCS3.1")


def _error_lines(path: Path, producible: Container[str] | Callable[[Path], bool] = ()) -> list[str]:
    with pytest.raises(SheetError) as info:
        read_samples(path, producible)
    return str(info.value).splitlines()


# --------------------------------------------------------------------------------------------
# samples.tsv
# --------------------------------------------------------------------------------------------


def test_good_sample_sheet(tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    _fcs(folder, "fcs/S1.fcs", "fcs/S1_control.fcs", "fcs/S2.fcs")
    sheet = _sheet(
        folder,
        SAMPLE_HEADER
        + "S1\tP01\tfcs/S1.fcs\tfcs/S1_control.fcs\trelapse\n"
        + "S2\tP02\t fcs/S2.fcs \t\t\n",
    )
    frame = read_samples(sheet)
    assert list(frame.index) == ["S1", "S2"]
    assert list(frame["sample_id"]) == ["S1", "S2"]
    assert frame.loc["S1", "fcs"] == str((folder / "fcs/S1.fcs").resolve())
    assert frame.loc["S1", "control_fcs"] == str((folder / "fcs/S1_control.fcs").resolve())
    assert frame.loc["S2", "fcs"] == str((folder / "fcs/S2.fcs").resolve())  # cells are stripped
    assert frame.loc["S2", "control_fcs"] == ""
    assert frame.loc["S1", "timepoint"] == "relapse"
    assert Path(frame.loc["S1", "fcs"]).is_absolute()


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    _fcs(tmp_path, "a.fcs")
    frame = read_samples(_sheet(tmp_path, "sample_id\tpatient_id\tfcs\nS1\tP01\ta.fcs\n"))
    assert frame.loc["S1", "control_fcs"] == ""
    assert frame.loc["S1", "timepoint"] == ""


def test_missing_sheet(tmp_path: Path) -> None:
    path = tmp_path / "absent.tsv"
    with pytest.raises(SheetError) as info:
        read_samples(path)
    assert str(path) in str(info.value)


def test_missing_fcs_file_names_sheet_line_and_sample(tmp_path: Path) -> None:
    _fcs(tmp_path, "fcs/S1.fcs")
    sheet = _sheet(
        tmp_path,
        SAMPLE_HEADER + "S1\tP01\tfcs/S1.fcs\t\t\nS2\tP02\tfcs/S2.fcs\tfcs/S2c.fcs\t\n",
    )
    lines = _error_lines(sheet)
    assert len(lines) == 2  # the fcs and the control_fcs of S2
    for line in lines:
        assert str(sheet.resolve()) in line
        assert "line 3" in line
        assert "S2" in line
    assert any("fcs/S2.fcs" in line for line in lines)
    assert any("control_fcs" in line and "fcs/S2c.fcs" in line for line in lines)


def test_repeated_sample_id(tmp_path: Path) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(
        tmp_path, SAMPLE_HEADER + "S1\tP01\ta.fcs\t\t\nS2\tP02\ta.fcs\t\t\nS1\tP03\ta.fcs\t\t\n"
    )
    lines = _error_lines(sheet)
    assert len(lines) == 1
    assert str(sheet.resolve()) in lines[0]
    assert "line 4" in lines[0] and "S1" in lines[0] and "line 2" in lines[0]


@pytest.mark.parametrize("sample_id", ["S 1", "S1/x", "P01:R1", "S1;rm", "é1"])
def test_bad_sample_id_characters(tmp_path: Path, sample_id: str) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(tmp_path, SAMPLE_HEADER + f"OK-1\tP01\ta.fcs\t\t\n{sample_id}\tP02\ta.fcs\t\t\n")
    lines = _error_lines(sheet)
    assert len(lines) == 1
    assert str(sheet.resolve()) in lines[0]
    assert "line 3" in lines[0]
    assert sample_id in lines[0]
    assert "sample_id" in lines[0]


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(
        tmp_path,
        SAMPLE_HEADER + "bad id\tP01\ta.fcs\t\t\nS2\tP02\tmissing.fcs\t\t\nS2\tP03\ta.fcs\t\t\n",
    )
    lines = _error_lines(sheet)
    assert len(lines) == 3
    assert all(line.startswith(str(sheet.resolve())) for line in lines)
    for number, sample_id in ((2, "bad id"), (3, "S2"), (4, "S2")):
        assert any(f"line {number} (sample_id={sample_id})" in line for line in lines)


@pytest.mark.parametrize(
    ("header", "row", "named"),
    [
        ("sample_id\tfcs\n", "S1\ta.fcs\n", "patient_id"),
        ("sample_id\tpatient_id\tfcs\tcomment\n", "S1\tP01\ta.fcs\thello\n", "comment"),
        ("sample_id\tpatient\tfcs\n", "S1\tP01\ta.fcs\n", "patient"),
    ],
)
def test_missing_or_unknown_column(tmp_path: Path, header: str, row: str, named: str) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(tmp_path, header + row)
    lines = _error_lines(sheet)
    assert len(lines) == 1
    assert str(sheet.resolve()) in lines[0]
    assert named in lines[0]


def test_empty_sheet(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, SAMPLE_HEADER)
    lines = _error_lines(sheet)
    assert len(lines) == 1
    assert str(sheet.resolve()) in lines[0]


def test_zero_byte_sheet_is_a_sheet_error(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, "")
    lines = _error_lines(sheet)
    assert str(sheet.resolve()) in lines[0]


def test_paths_are_relative_to_the_sheet_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cohort"
    elsewhere = tmp_path / "elsewhere"
    _fcs(folder, "fcs/S1.fcs")
    _fcs(elsewhere, "fcs/S2.fcs")  # exists relative to the cwd only
    monkeypatch.chdir(elsewhere)
    sheet = _sheet(folder, SAMPLE_HEADER + "S1\tP01\tfcs/S1.fcs\t\t\n")
    frame = read_samples(Path("..") / "cohort" / "samples.tsv")
    assert frame.loc["S1", "fcs"] == str((folder / "fcs" / "S1.fcs").resolve())
    sheet.write_text(SAMPLE_HEADER + "S2\tP01\tfcs/S2.fcs\t\t\n", encoding="utf-8")
    lines = _error_lines(sheet)
    assert len(lines) == 1
    assert str((folder / "fcs" / "S2.fcs").resolve()) in lines[0]


def test_producible_files_need_not_exist_yet(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, SAMPLE_HEADER + "S1\tP01\tfcs/S1.fcs\tfcs/S1c.fcs\t\n")
    wanted = tmp_path.resolve() / "fcs"
    made = {str(wanted / "S1.fcs"), str(wanted / "S1c.fcs")}
    frame = read_samples(sheet, producible=made)
    assert frame.loc["S1", "fcs"] == str(wanted / "S1.fcs")
    frame = read_samples(sheet, producible=lambda p: p.parent == wanted)
    assert frame.loc["S1", "control_fcs"] == str(wanted / "S1c.fcs")
    # only the named files are let through
    lines = _error_lines(sheet, {str(wanted / "S1.fcs")})
    assert len(lines) == 1 and "control_fcs" in lines[0]


# --------------------------------------------------------------------------------------------
# patients.tsv
# --------------------------------------------------------------------------------------------


def _patient_error(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    sheet = _sheet(tmp_path, text, "patients.tsv")
    with pytest.raises(SheetError) as info:
        read_patients(sheet)
    return sheet.resolve(), str(info.value).splitlines()


def test_good_patient_sheet_with_empty_cells(tmp_path: Path) -> None:
    sheet = _sheet(
        tmp_path,
        PATIENT_HEADER
        + P01
        + "P02\t\t\t\t\t\t\t\t\t\t\n"
        + "P03\t8\t100\t\t12\tY\tN\tTRUE\tfalse\tno\tyes\n",
        "patients.tsv",
    )
    frame = read_patients(sheet)
    assert list(frame.index) == ["P01", "P02", "P03"]
    assert frame.loc["P01", "kps"] == "90"  # cells stay text
    assert frame.loc["P02", "kps"] == ""


def test_non_numeric_kps_names_line_and_patient(tmp_path: Path) -> None:
    sheet, lines = _patient_error(
        tmp_path, PATIENT_HEADER + P01 + "P02\t30\tninety\t100\t6\tyes\tno\tno\tno\tno\tno\n"
    )
    assert lines
    for line in lines:
        assert str(sheet) in line
        assert "line 3" in line and "P02" in line and "kps" in line
    assert any("ninety" in line for line in lines)


@pytest.mark.parametrize("value", ["maybe", "1", "si", "yes!"])
def test_bad_yes_no(tmp_path: Path, value: str) -> None:
    sheet, lines = _patient_error(
        tmp_path, PATIENT_HEADER + P01 + f"P02\t30\t90\t100\t6\tyes\tno\t{value}\tno\tno\tno\n"
    )
    assert len(lines) == 1
    assert str(sheet) in lines[0]
    assert "line 3" in lines[0] and "P02" in lines[0] and "hiv" in lines[0]


def test_out_of_range_number(tmp_path: Path) -> None:
    _, lines = _patient_error(
        tmp_path, PATIENT_HEADER + "P01\t12\t190\t95\t6\tyes\tno\tno\tno\tno\tno\n"
    )
    assert len(lines) == 1 and "kps" in lines[0] and "line 2" in lines[0]


def test_patient_columns_checked(tmp_path: Path) -> None:
    header = PATIENT_HEADER.replace("\thiv", "")
    row = "P01\t12\t90\t95\t6\tyes\tno\tno\tno\tno\n"
    sheet, lines = _patient_error(tmp_path, header + row)
    assert len(lines) == 1 and str(sheet) in lines[0] and "hiv" in lines[0]


def test_repeated_patient_names_the_line(tmp_path: Path) -> None:
    _, lines = _patient_error(tmp_path, PATIENT_HEADER + P01 + P01)
    assert len(lines) == 1
    assert "line 3" in lines[0] and "P01" in lines[0]


def test_patient_record(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, PATIENT_HEADER + P01 + "P02\t40\t\t\t\t\t\t\t\t\t\n", "patients.tsv")
    frame = read_patients(sheet)
    assert patient_record(frame, "P99") is None
    record = patient_record(frame, "P01")
    assert record is not None
    assert record["kps"] == "90" and record["prior_anti_cd19"] == "yes"
    assert set(record) == set(PATIENT_COLUMNS)
    other = patient_record(frame, "P02")
    assert other is not None
    assert other["age_years"] == "40"
    assert other["kps"] is None
    assert other["hiv"] is None


def test_typed_patients_converts_numbers(tmp_path: Path) -> None:
    sheet = _sheet(
        tmp_path, PATIENT_HEADER + P01 + "P02\t0.5\t\t80.5\t\tno\t\t\t\t\t\n", "patients.tsv"
    )
    typed = typed_patients(read_patients(sheet))
    rows = {r["patient_id"]: r for r in typed.to_dict("records")}
    assert rows["P01"]["age_years"] == 12.0 and isinstance(rows["P01"]["age_years"], float)
    assert rows["P01"]["kps"] == 90.0
    assert rows["P02"]["age_years"] == 0.5
    assert rows["P02"]["hgb_g_per_l"] == 80.5
    assert rows["P02"]["kps"] is None
    assert rows["P01"]["prior_anti_cd19"] == "yes"  # flags stay text
    assert isinstance(typed, pd.DataFrame)


def test_per_antigen_control_columns_are_accepted_and_resolved(tmp_path: Path) -> None:
    for name in ("s1.fcs", "fmo_cd22.fcs"):
        (tmp_path / name).write_bytes(b"x")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tpatient_id\tfcs\tcontrol_CD22\nS1\tP1\ts1.fcs\tfmo_cd22.fcs\n")
    frame = read_samples(sheet)
    assert frame.loc["S1", "control_CD22"] == str(tmp_path / "fmo_cd22.fcs")
    bad = tmp_path / "bad.tsv"
    bad.write_text("sample_id\tpatient_id\tfcs\tcontrol_CD22\nS1\tP1\ts1.fcs\tnope.fcs\n")
    with pytest.raises(SheetError, match=r"line 2 \(sample_id=S1\): control_CD22 file nope.fcs"):
        read_samples(bad)


# --------------------------------------------------------------------------------------------
# Paths that are not files, and sheets as spreadsheets save them (issue 14)
# --------------------------------------------------------------------------------------------


def test_fcs_path_that_is_not_a_regular_file_says_what_it_is(tmp_path: Path) -> None:
    """A folder, FIFO or device was "not found", a symlink loop a raw RuntimeError."""
    _fcs(tmp_path, "ok.fcs")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.fcs")
    (tmp_path / "loop1.fcs").symlink_to(tmp_path / "loop2.fcs")
    (tmp_path / "loop2.fcs").symlink_to(tmp_path / "loop1.fcs")
    sheet = _sheet(
        tmp_path,
        SAMPLE_HEADER
        + "S1\tP01\tfolder\t\t\n"
        + "S2\tP01\tpipe.fcs\t\t\n"
        + "S3\tP01\t/dev/zero\t\t\n"
        + "S4\tP01\tok.fcs\tloop1.fcs\t\n",
    )
    lines = _error_lines(sheet)
    assert len(lines) == 4
    expected = [
        (2, "S1", "fcs file folder", "is a directory"),
        (3, "S2", "fcs file pipe.fcs", "is not a regular file (FIFO)"),
        (4, "S3", "fcs file /dev/zero", "is not a regular file (character device)"),
        (5, "S4", "control_fcs file loop1.fcs", "is a symlink loop"),
    ]
    for line, (number, sample_id, column, what) in zip(lines, expected, strict=True):
        assert line.startswith(f"{sheet.resolve()} line {number} (sample_id={sample_id}): ")
        assert column in line and what in line and "not found" not in line


def test_sheet_that_is_a_fifo_is_named(tmp_path: Path) -> None:
    from test_inputs import within_limit

    sheet = tmp_path / "samples.tsv"
    os.mkfifo(sheet)
    with pytest.raises(SheetError, match=r"samples.tsv: sheet is not a regular file \(FIFO\)"):
        within_limit(lambda: read_samples(sheet), (sheet,))


@pytest.mark.parametrize(("separator", "name"), [(",", "comma"), (";", "semicolon")])
def test_csv_sheet_is_one_sentence(tmp_path: Path, separator: str, name: str) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(tmp_path, f"sample_id{separator}patient_id{separator}fcs\nS1,P01,a.fcs\n")
    assert _error_lines(sheet) == [
        f"{sheet.resolve()}: looks {name}-separated; save it as tab-separated text (in Excel: "
        "Save As > Text (Tab delimited)) and keep the .tsv name"
    ]
    patients = _sheet(tmp_path, PATIENT_HEADER.replace("\t", separator) + P01, "patients.tsv")
    with pytest.raises(SheetError, match=f"looks {name}-separated"):
        read_patients(patients)


def test_empty_unnamed_columns_are_dropped_with_a_warning(tmp_path: Path) -> None:
    """Excel's trailing empty columns ("Unnamed: 3") hold nothing: read without them."""
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(tmp_path, "sample_id\tpatient_id\tfcs\t\t\nS1\tP01\ta.fcs\t\t\n")
    with pytest.warns(SheetWarning, match="ignored 2 empty columns without a header") as caught:
        frame = read_samples(sheet)
    assert str(sheet.resolve()) in str(caught[0].message)
    assert not [c for c in frame.columns if "Unnamed" in c]
    patients = _sheet(tmp_path, PATIENT_HEADER.rstrip("\n") + "\t\n" + P01, "patients.tsv")
    with pytest.warns(SheetWarning, match="ignored 1 empty column without"):
        assert list(read_patients(patients).columns) == PATIENT_COLUMNS


def test_unnamed_column_with_values_is_refused(tmp_path: Path) -> None:
    _fcs(tmp_path, "a.fcs")
    sheet = _sheet(tmp_path, "sample_id\tpatient_id\tfcs\t\nS1\tP01\ta.fcs\t\nS2\tP01\ta.fcs\tx\n")
    assert _error_lines(sheet) == [
        f"{sheet.resolve()}: column 4 has no header but holds values (line 3: 'x'); give it a "
        "header or delete the column"
    ]


@pytest.mark.parametrize("value", ["1", "0"])
def test_one_or_zero_in_a_yes_no_column_is_a_plain_sentence(tmp_path: Path, value: str) -> None:
    row = P01.replace("P01\t12\t90\t95\t6\tyes", f"P02\t12\t90\t95\t6\t{value}")
    sheet, lines = _patient_error(tmp_path, PATIENT_HEADER + P01 + row)
    assert lines == [
        f"{sheet} line 3 (patient_id=P02): prior_anti_cd19 {value!r}: write yes or no (or "
        "leave it empty if unknown)"
    ]


def test_specimen_id_defaults_to_the_sample_and_groups_tubes(tmp_path: Path) -> None:
    """Issue 16: rows sharing specimen_id are tubes of one specimen; without it each tube is
    its own specimen."""
    for name in ("a.fcs", "b.fcs", "c.fcs"):
        (tmp_path / name).write_bytes(b"x")
    rows = [
        {"sample_id": "S1-A", "patient_id": "P1", "fcs": "a.fcs", "specimen_id": "S1"},
        {"sample_id": "S1-B", "patient_id": "P1", "fcs": "b.fcs", "specimen_id": "S1"},
        {"sample_id": "S2", "patient_id": "P2", "fcs": "c.fcs", "specimen_id": ""},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    samples = read_samples(tmp_path / "samples.tsv")
    assert dict(samples["specimen_id"]) == {"S1-A": "S1", "S1-B": "S1", "S2": "S2"}
    plain = [{k: v for k, v in r.items() if k != "specimen_id"} for r in rows]
    pd.DataFrame(plain).to_csv(tmp_path / "plain.tsv", sep="\t", index=False)
    assert list(read_samples(tmp_path / "plain.tsv")["specimen_id"]) == ["S1-A", "S1-B", "S2"]


def test_tubes_of_one_specimen_must_share_patient_and_timepoint(tmp_path: Path) -> None:
    for name in ("a.fcs", "b.fcs"):
        (tmp_path / name).write_bytes(b"x")
    rows = [
        {"sample_id": "A", "patient_id": "P1", "fcs": "a.fcs", "specimen_id": "S1",
         "timepoint": "relapse"},
        {"sample_id": "B", "patient_id": "P2", "fcs": "b.fcs", "specimen_id": "S1",
         "timepoint": "relapse"},
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    with pytest.raises(SheetError) as error:
        read_samples(tmp_path / "samples.tsv")
    [line] = str(error.value).splitlines()
    assert "lines 2, 3 (specimen_id=S1)" in line and "must share patient_id" in line
    assert "'P1' and 'P2'" in line
