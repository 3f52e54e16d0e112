"""Sign-off (issue 18): a reviewer's verdict stands beside the computed decision, signed only
while the result keeps the hash the reviewer saw, and a malformed review sheet stops the run.

Specimens are built as the workflow builds them (``steps.decide_specimen`` on tube folders
written by ``test_report.make_sample``); nothing is profiled, so these tests are fast.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_report import make_sample
from test_reruns import COHORT, Run, _planned, run  # noqa: F401 - run: the finished run
from test_workflow import snakemake

from antigen_profile.config import load_config
from antigen_profile.paths import REPO_ROOT
from antigen_profile.review import (
    changed_components,
    read_profiles,
    result_hash,
    review_status,
    tube_profiles,
)
from antigen_profile.sheets import REVIEW_COLUMNS, SheetError, read_review
from antigen_profile.steps import (
    decide_specimen,
    write_cohort_report,
    write_cohort_table,
    write_specimen_report,
)

TRIAL = REPO_ROOT / "config" / "trials" / "4scar.yaml"
TARGETS = ["CD22", "CD123", "CD38", "CD10", "CD20"]
SPECIMENS = ["P01-R1", "P02-R1", "P03-R1"]
HASH = re.compile(r"^r1-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


@pytest.fixture()
def config() -> dict[str, Any]:
    return load_config()


@pytest.fixture()
def results(tmp_path: Path, config: dict[str, Any]) -> Path:
    """Three one-tube specimens, decided as the workflow's specimen step decides them."""
    root = tmp_path / "results"
    for specimen in SPECIMENS:
        tube = make_sample(root, specimen)
        decide_specimen(
            specimen, {specimen: tube}, specimen[:3], None, TRIAL, config,
            out=root / "specimens" / specimen,
        )  # fmt: skip
    return root


def _decision(results: Path, specimen: str) -> dict[str, Any]:
    return json.loads((results / "specimens" / specimen / "decision.json").read_text())


def _hash(results: Path, specimen: str) -> str:
    decision = _decision(results, specimen)
    path = results / "specimens" / specimen / "decision.json"
    return result_hash(decision, read_profiles(tube_profiles(path, decision)))


def _sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    frame = pd.DataFrame(rows, columns=REVIEW_COLUMNS).fillna("")
    frame.to_csv(path, sep="\t", index=False)
    return path


def _reviews(results: Path) -> list[dict[str, str]]:
    """P01-R1 confirmed, P02-R1 overridden to CD22 alone, P03-R1 signed on an older hash."""
    return [
        {"specimen_id": "P01-R1", "reviewer": "A. Reviewer", "verdict": "confirm",
         "final_targets": "", "reason": "", "date": "2026-12-01",
         "result_hash": _hash(results, "P01-R1")},
        {"specimen_id": "P02-R1", "reviewer": "B. Reviewer", "verdict": "override",
         "final_targets": "CD22", "reason": "CD10 call is hematogones", "date": "2026-12-02",
         "result_hash": _hash(results, "P02-R1")},
        {"specimen_id": "P03-R1", "reviewer": "C. Reviewer", "verdict": "confirm",
         "final_targets": "", "reason": "", "date": "2026-12-03",
         "result_hash": "r1-00000000-00000000-00000000-00000000"},
    ]  # fmt: skip


def _change_data(results: Path, specimen: str) -> None:
    """A different tube file: the profile's recorded SHA-256 of the sample changes."""
    path = results / specimen / "profile.json"
    profile = json.loads(path.read_text())
    for entry in profile["inputs"]:
        if entry["role"] == "sample":
            entry["sha256"] = "ef" * 32
    path.write_text(json.dumps(profile))


def _text(fragment: str) -> str:
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _section(html: str, marker: str, end: str = "</section>") -> str:
    start = html.index(marker)
    return html[start : html.index(end, start)]


def test_the_hash_has_four_parts_and_a_data_change_changes_only_the_data(results: Path) -> None:
    before = _hash(results, "P01-R1")
    assert HASH.match(before)
    _change_data(results, "P01-R1")
    after = _hash(results, "P01-R1")
    assert after != before and changed_components(before, after) == ["data"]
    assert changed_components("not-a-hash", after) == ["data", "config", "gates", "result"]


def test_signed_overridden_and_stale_reviews_in_the_tables(
    results: Path, tmp_path: Path, config: dict[str, Any]
) -> None:
    sheet = _sheet(tmp_path / "review.tsv", _reviews(results))
    computed = {s: _decision(results, s) for s in SPECIMENS}
    files = [results / "specimens" / s / "decision.json" for s in SPECIMENS]
    write_cohort_table(files, results, config, review_sheet=sheet)
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str).fillna("")
    assert list(table.columns[-4:]) == ["review_status", "final_decision", "final_targets",
                                        "reviewed_by"]  # fmt: skip
    rows = table.set_index("specimen_id")
    confirm, override, stale = (rows.loc[s] for s in SPECIMENS)
    assert (confirm["review_status"], confirm["final_decision"]) == ("signed", confirm["decision"])
    assert confirm["final_targets"] == confirm["eligible_targets"]
    assert confirm["reviewed_by"] == "A. Reviewer"
    assert (override["review_status"], override["final_decision"]) == ("signed", "candidate")
    assert (override["final_targets"], override["reviewed_by"]) == ("CD22", "B. Reviewer")
    assert override["decision"] == computed["P02-R1"]["decision"]  # computed value untouched
    assert stale["review_status"] == "stale"
    assert stale["final_decision"] == "" and stale["final_targets"] == ""
    # decisions.json: each entry carries its review; the specimens' own files stay computed
    entries = {d["specimen_id"]: d for d in json.loads((results / "decisions.json").read_text())}
    assert entries["P02-R1"]["review"]["reason"] == "CD10 call is hematogones"
    assert entries["P03-R1"]["review"]["changed"] == ["data", "config", "gates", "result"]
    assert HASH.match(entries["P01-R1"]["review"]["result_hash"])
    assert {s: _decision(results, s) for s in SPECIMENS} == computed
    # the cohort index: a Review column
    write_cohort_report(results / "recommendations.tsv", results / "report.html", config)
    index = (results / "report.html").read_text()
    cells = {
        _text(m[1]).split()[0]: _text(m[2])
        for m in re.finditer(r'<tr data-decision="[^"]*"><td[^>]*>(.*?)</td>.*?<td class="review">'
                             r"(.*?)</td></tr>", index, flags=re.S)
    }  # fmt: skip
    assert cells["P01-R1"].startswith("signed final:") and "by A. Reviewer" in cells["P01-R1"]
    # each cell ends with the link to the specimen page's sign-off form
    assert cells["P02-R1"] == "signed final: candidate (CD22) by B. Reviewer sign off"
    assert cells["P03-R1"] == "stale by C. Reviewer sign off"


def test_without_a_review_sheet_every_specimen_is_unreviewed(
    results: Path, config: dict[str, Any]
) -> None:
    files = [results / "specimens" / s / "decision.json" for s in SPECIMENS]
    write_cohort_table(files, results, config)
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str).fillna("")
    assert set(table["review_status"]) == {"unreviewed"}
    assert set(table["final_decision"]) == {""}


@pytest.mark.parametrize("specimen", SPECIMENS)
def test_the_specimen_report_shows_the_review_and_the_hash(
    results: Path, tmp_path: Path, config: dict[str, Any], specimen: str
) -> None:
    rows = {r["specimen_id"]: r for r in _reviews(results)}
    current = _hash(results, specimen)
    path = write_specimen_report(results / "specimens" / specimen, config, review=rows[specimen])
    html = path.read_text()
    section = _text(_section(html, '<section id="review">'))
    assert current in html  # the hash to copy
    if specimen == "P01-R1":
        assert "Review status signed" in section and "Reviewed by A. Reviewer" in section
    elif specimen == "P02-R1":
        assert "Final decision candidate (CD22)" in section
        assert "override (CD10 call is hematogones)" in section
    else:
        assert (
            "Review status stale the data, the configuration, the gates and the result" in section
        )
        assert "Final decision none" in section


def test_a_stale_review_after_new_data_says_the_data_changed(
    results: Path, tmp_path: Path, config: dict[str, Any]
) -> None:
    reviews = _reviews(results)
    sheet = _sheet(tmp_path / "review.tsv", reviews)
    _change_data(results, "P01-R1")
    files = [results / "specimens" / s / "decision.json" for s in SPECIMENS]
    write_cohort_table(files, results, config, review_sheet=sheet)
    entries = {d["specimen_id"]: d for d in json.loads((results / "decisions.json").read_text())}
    review = entries["P01-R1"]["review"]
    assert review["status"] == "stale" and review["final_decision"] is None
    assert review["message"] == "the data changed since the review"
    assert entries["P02-R1"]["review"]["status"] == "signed"
    html = write_specimen_report(results / "specimens/P01-R1", config, review=reviews[0])
    assert "the data changed since the review" in html.read_text()


def test_review_status_needs_no_sheet_for_an_unreviewed_specimen(results: Path) -> None:
    decision = _decision(results, "P01-R1")
    path = results / "specimens/P01-R1/decision.json"
    status = review_status(decision, read_profiles(tube_profiles(path, decision)), None)
    assert status["status"] == "unreviewed" and status["final_decision"] is None


def test_a_malformed_review_sheet_is_refused_one_line_per_problem(tmp_path: Path) -> None:
    good = "r1-" + "-".join(["0123abcd"] * 4)
    rows = [
        {"specimen_id": "P01-R1", "reviewer": "AB", "verdict": "approve", "date": "2026-12-01",
         "result_hash": good},
        {"specimen_id": "P99", "reviewer": "AB", "verdict": "override", "final_targets": "CD99",
         "date": "2026-13-01", "result_hash": good},
        {"specimen_id": "P02-R1", "reviewer": "AB", "verdict": "override", "date": "2026-12-01",
         "result_hash": good},
        {"specimen_id": "P01-R1", "reviewer": "", "verdict": "confirm", "date": "01.12.2026",
         "result_hash": "abc"},
    ]  # fmt: skip
    sheet = _sheet(tmp_path / "review.tsv", rows)
    with pytest.raises(SheetError) as refused:
        read_review(sheet, {"P01-R1", "P02-R1"}, TARGETS)
    lines = str(refused.value).splitlines()
    expected = [
        ("line 2", "verdict: 'approve' is not allowed: write confirm"),
        ("line 3", "specimen_id not in the sample sheet"),
        ("line 3", "final_targets CD99 not in the trial; choose from CD22, CD123"),
        ("line 3", "an override needs a reason"),
        ("line 3", "date 2026-13-01 is not a calendar date"),
        ("line 4", "an override needs a reason"),
        ("line 4", "an override needs final_targets"),
        ("line 5", "reviewer is empty"),
        ("line 5", "date: '01.12.2026' is not allowed: write the date as YYYY-MM-DD"),
        ("line 5", "result_hash: 'abc' is not allowed: copy the result hash"),
        ("line 5", "specimen repeats line 2"),
    ]
    assert len(lines) == len(expected), lines
    for where, what in expected:
        assert any(f"{sheet} {where} " in line and what in line for line in lines), (what, lines)


def test_a_review_sheet_without_its_columns_is_refused_in_one_line(tmp_path: Path) -> None:
    sheet = tmp_path / "review.tsv"
    sheet.write_text("specimen_id\treviewer\tverdict\nP01-R1\tAB\tconfirm\n")
    with pytest.raises(SheetError) as refused:
        read_review(sheet, {"P01-R1"}, TARGETS)
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert "missing: final_targets, reason, date, result_hash" in message


def test_snakemake_refuses_a_malformed_review_sheet_before_any_job(tmp_path: Path) -> None:
    sheet = _sheet(
        tmp_path / "review.tsv",
        [{"specimen_id": "P01-R1", "reviewer": "AB", "verdict": "override", "final_targets":
          "CD22", "date": "2026-12-01", "result_hash": "r1-" + "-".join(["0123abcd"] * 4)},
         {"specimen_id": "NOPE", "reviewer": "AB", "verdict": "confirm", "date": "2026-12-01",
          "result_hash": "r1-" + "-".join(["0123abcd"] * 4)}],
    )  # fmt: skip
    results = tmp_path / "results"
    dry = snakemake("-n", "--config", f"results={results}", f"review={sheet}")
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0
    assert "review sheet rejected, nothing was run:" in output
    lines = [line for line in output.splitlines() if line.startswith(str(sheet))]
    assert len(lines) == 2, output
    assert "line 2 (specimen_id=P01-R1): an override needs a reason" in lines[0]
    assert "line 3 (specimen_id=NOPE): specimen_id not in the sample sheet" in lines[1]
    assert not results.exists()


@pytest.mark.workflow
def test_a_review_row_reruns_its_specimens_job_and_the_cohort_only(run: Run) -> None:  # noqa: F811
    """On a finished run: naming a review sheet reruns the cohort tables and the reviewed
    specimen's job (its row is that job's param; a one-tube specimen's job is its tube's, so
    the tube is analysed again, to the same result hash); editing the row reruns those again
    and nothing else; the tables and the report then show the review signed."""
    results = run.results
    reviews = _reviews(results)[:1]  # P01-R1 confirmed on its current hash
    sheet = _sheet(run.folder / "review.tsv", reviews)
    config = run.config_with(review=str(sheet))
    planned = _planned(run, config)
    assert planned == {("one_tube_specimen", "P01-R1")} | COHORT
    done = snakemake("--configfile", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(results / "recommendations.tsv", sep="\t", dtype=str).fillna("")
    status = dict(zip(table["specimen_id"], table["review_status"], strict=True))
    assert status == {"P01-R1": "signed", "P02-R1": "unreviewed"}
    page = (results / "specimens" / "P01-R1" / "report.html").read_text()
    assert "Reviewed by A. Reviewer" in _text(_section(page, '<section id="review">'))
    index = (results / "report.html").read_text()
    assert "by A. Reviewer" in index
    # one row edited: its specimen's job and the cohort jobs, no other sample
    _sheet(sheet, [{**reviews[0], "reviewer": "A. Reviewer (2nd look)"}])
    assert _planned(run, config) == {("one_tube_specimen", "P01-R1")} | COHORT
