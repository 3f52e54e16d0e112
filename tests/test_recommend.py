"""Tests for the recommend stage: trial rules as data, patient parsing, rule outcomes and the
decision matrix. Tables are built by hand so each test states the case it checks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from antigen_profile.cohort import RECOMMENDATION_COLUMNS, write_recommendations
from antigen_profile.coverage import coverage_table
from antigen_profile.decision import Decision, decide, parse_patient
from antigen_profile.evaluate import FAIL, PASS, UNKNOWN, evaluate_clinical_rule, evaluate_condition
from antigen_profile.paths import repo_path
from antigen_profile.trial import ClinicalRule, Condition, Trial, TrialError, load_trial

FLOORS = {"detect": 20, "quantify": 50}
QC_PASS: dict[str, Any] = {"status": "pass", "reasons": []}
NAN = float("nan")

ELIGIBLE_PATIENT = {
    "patient_id": "P01",
    "age_years": "34",
    "prior_anti_cd19": "yes",
    "cd19_status": "",
    "kps": "90",
    "hgb_g_per_l": "95",
    "life_expectancy_months": "6",
    "active_infection": "no",
    "hiv": "no",
    "hbv_hcv_active": "No",
    "pregnant_or_nursing": "n",
    "systemic_steroids_last_7d": "false",
}


@pytest.fixture(scope="module")
def trial() -> Trial:
    """The shipped 4SCAR rules."""
    return load_trial(repo_path("config/trials/4scar.yaml"))


def antigen_row(marker: str, pct: float, call: str | None = None, note: str = "") -> dict:
    """One antigens.tsv row on the blasts; the call follows the default 20/80 limits."""
    if call is None:
        call = "negative" if pct < 20 else ("partial" if pct < 80 else "positive")
    measured = call in {"negative", "partial", "positive"}
    return {
        "sample_id": "S1",
        "population": "blasts",
        "marker": marker,
        "events": 1000,
        "positive_events": round(10 * pct) if measured else 0,
        "pct_positive": pct if measured else NAN,
        "median": 1500.0,
        "rmfi": 3.0 if measured else NAN,
        "threshold": 800.0 if measured else NAN,
        "threshold_source": "internal:lymphocytes" if measured else "none",
        "call": call,
        "note": note,
    }


def antigens(**pcts: float | tuple[float, str]) -> pd.DataFrame:
    """antigens.tsv from marker=pct (or marker=(nan, call)) keywords."""
    rows = []
    for marker, spec in pcts.items():
        if isinstance(spec, tuple):
            rows.append(antigen_row(marker, spec[0], spec[1]))
        else:
            rows.append(antigen_row(marker, spec))
    return pd.DataFrame(rows)


def populations(blast_events: int = 31234, blast_pct: float = 62.1) -> pd.DataFrame:
    """populations.tsv with a blasts row; the leukocytes make the blasts ``blast_pct``%."""
    leukocytes = round(blast_events * 100 / blast_pct)
    return pd.DataFrame(
        [
            {"population": "cells", "parent": "", "events": 48000, "pct_parent": 96.0},
            {
                "population": "leukocytes",
                "parent": "singlets",
                "events": leukocytes,
                "pct_parent": 95,
            },
            {
                "population": "blasts",
                "parent": "leukocytes",
                "events": blast_events,
                "pct_parent": blast_pct,
                "pct_total": 60.0,
            },
        ]
    )


def typical_antigens() -> pd.DataFrame:
    """CD19-negative relapse with CD22 and CD10 on the blasts."""
    return antigens(CD19=2.0, CD22=95.1, CD123=5.0, CD38=12.0, CD10=40.0, CD20=1.0)


def run(
    trial: Trial,
    patient: dict | None = None,
    table: pd.DataFrame | None = None,
    pops: pd.DataFrame | None = None,
    qc: dict | None = None,
) -> Decision:
    """decide() with the typical sample, overriding what a test is about."""
    facts = parse_patient(patient if patient is not None else ELIGIBLE_PATIENT, trial)
    return decide(
        "S1",
        "P01",
        typical_antigens() if table is None else table,
        populations() if pops is None else pops,
        QC_PASS if qc is None else qc,
        facts,
        trial,
        FLOORS,
        timepoint="relapse",
    )


def rule(decision: Decision, rule_id: str) -> dict:
    """A rule entry of decision.json by id."""
    return next(r for r in decision.to_dict()["rules"] if r["id"] == rule_id)


# --- trial file -------------------------------------------------------------------------------


def test_4scar_trial_loads_with_its_rules(trial: Trial) -> None:
    assert trial.name == "4SCAR"
    assert trial.registry_id == "NCT04430530"
    assert trial.targets == ("CD22", "CD123", "CD38", "CD10", "CD20")
    assert trial.cd19_marker == "CD19"
    assert trial.max_products == 2
    assert {r.target: r.min_pct_positive for r in trial.target_rules} == dict.fromkeys(
        trial.targets, 20.0
    )
    ids = [r.id for r in trial.clinical_rules]
    assert ids[:5] == ["age", "post_cd19_or_cd19_negative", "kps", "hemoglobin", "life_expectancy"]
    assert {r.kind for r in trial.clinical_rules} == {"inclusion", "exclusion"}
    age = trial.clinical_rules[0]
    assert age.conditions == (Condition("age_years", "between", (0.5, 75)),)
    assert trial.clinical_rules[1].any_of


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL_TRIAL = """\
name: TANDEM
version: 1
registry_id: NCT00000000
targets: [CD19, CD22]
cd19_marker: CD19
positivity: {min_pct_positive: 30}
max_products: 1
clinical_rules:
  - {id: kps, kind: inclusion, text: "Karnofsky at least 60", field: kps, op: ">=", value: 60}
"""


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (MINIMAL_TRIAL.replace('op: ">="', 'op: "=>"'), "clinical_rules[0].op"),
        (MINIMAL_TRIAL.replace("min_pct_positive: 30", "min_pct_positive: 130"), "positivity"),
        (MINIMAL_TRIAL.replace("targets: [CD19, CD22]\n", ""), "'targets' is a required"),
        (MINIMAL_TRIAL.replace("field: kps, ", ""), "clinical_rules[0]"),
        (MINIMAL_TRIAL.replace("value: 60", "value: [1, 2, 3]"), "clinical_rules[0]"),
        (MINIMAL_TRIAL.replace("kind: inclusion", "kind: maybe"), "clinical_rules[0].kind"),
        (MINIMAL_TRIAL + "colour: blue\n", "colour"),
        (MINIMAL_TRIAL.replace("max_products: 1", "max_products: 0"), "max_products"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "must be a YAML mapping"),
    ],
)
def test_broken_trial_file_is_rejected_in_one_line(
    tmp_path: Path, broken: str, problem: str
) -> None:
    path = write_yaml(tmp_path / "broken.yaml", broken)
    with pytest.raises(TrialError) as info:
        load_trial(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert problem in message


def test_between_needs_two_numbers(tmp_path: Path) -> None:
    text = MINIMAL_TRIAL.replace('op: ">=", value: 60', "op: between, value: [1]")
    with pytest.raises(TrialError, match=r"clinical_rules\[0\]"):
        load_trial(write_yaml(tmp_path / "t.yaml", text))


def test_rule_with_both_field_and_any_of_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL_TRIAL.replace(
        "value: 60}", "value: 60, any_of: [{field: hiv, op: '==', value: no}]}"
    )
    with pytest.raises(TrialError, match=r"t\.yaml: clinical_rules\[0\]: give either"):
        load_trial(write_yaml(tmp_path / "t.yaml", text))


def test_semantic_checks_name_the_file(tmp_path: Path) -> None:
    text = MINIMAL_TRIAL.replace(
        "positivity: {min_pct_positive: 30}",
        "positivity: {min_pct_positive: 30, per_target: {CD38: {min_pct_positive: 10}}}",
    )
    with pytest.raises(TrialError, match=r"t\.yaml: positivity\.per_target .*CD38"):
        load_trial(write_yaml(tmp_path / "t.yaml", text))
    duplicated = MINIMAL_TRIAL + MINIMAL_TRIAL.splitlines(keepends=True)[-1]
    with pytest.raises(TrialError, match="duplicate id"):
        load_trial(write_yaml(tmp_path / "t.yaml", duplicated))
    with pytest.raises(TrialError, match="cannot read"):
        load_trial(tmp_path / "absent.yaml")


# --- patient facts ------------------------------------------------------------------------------


def test_parse_patient_types_values(trial: Trial) -> None:
    row = {
        "patient_id": "007",
        "age_years": " 34.5 ",
        "prior_anti_cd19": "YES",
        "kps": "90",
        "hiv": "False",
        "hbv_hcv_active": "y",
        "pregnant_or_nursing": "N",
        "active_infection": "NA",
        "systemic_steroids_last_7d": None,
        "cd19_status": "Negative",
        "hgb_g_per_l": "nan",
        "life_expectancy_months": "",
    }
    for given in (None, trial):
        facts = parse_patient(row, given)
        assert facts["patient_id"] == "007"
        assert facts["age_years"] == 34.5
        assert facts["prior_anti_cd19"] is True
        assert facts["kps"] == 90.0
        assert facts["hiv"] is False
        assert facts["hbv_hcv_active"] is True
        assert facts["pregnant_or_nursing"] is False
        for missing in (
            "active_infection",
            "systemic_steroids_last_7d",
            "hgb_g_per_l",
            "life_expectancy_months",
        ):
            assert facts[missing] is None
        assert facts["cd19_status"] == "Negative"
        assert "_notes" not in facts


def test_bad_values_become_unknown_with_a_note(trial: Trial) -> None:
    bad = {**ELIGIBLE_PATIENT, "kps": "ninety", "hiv": "maybe"}
    facts = parse_patient(bad, trial)
    assert facts["kps"] is None and facts["hiv"] is None
    assert facts["_notes"] == {
        "kps": "kps 'ninety' is not a number",
        "hiv": "hiv 'maybe' is not yes/no",
    }
    decision = run(trial, bad)
    assert rule(decision, "kps")["outcome"] == UNKNOWN
    assert "Karnofsky score above 80: unknown (kps 'ninety' is not a number)" in (
        decision.clinical_reasons
    )
    assert decision.clinical_status == "undetermined"
    # Without the trial the cell stays text and evaluation reports the same problem.
    untyped = parse_patient(bad)
    assert untyped["kps"] == "ninety"
    result = evaluate_condition(Condition("kps", ">", 80), untyped)
    assert result.outcome == UNKNOWN and result.note == "kps 'ninety' is not a number"
    result = evaluate_condition(Condition("hiv", "==", False), untyped)
    assert result.outcome == UNKNOWN and result.note == "hiv 'maybe' is not yes/no"


# --- conditions: every op, every outcome -----------------------------------------------------


@pytest.mark.parametrize(
    ("op", "threshold", "passing", "failing"),
    [
        (">", 80, 90, 80),
        (">=", 80, 80, 79.9),
        ("<", 5, 4, 5),
        ("<=", 5, 5, 6),
        ("==", 3, 3, 4),
        ("!=", 3, 4, 3),
        ("between", (0.5, 75), 0.5, 75.5),
        ("in", (1, 2), 2, 3),
    ],
)
def test_numeric_ops(op: str, threshold: Any, passing: float, failing: float) -> None:
    cond = Condition("x", op, threshold)
    assert evaluate_condition(cond, {"x": passing}).outcome == PASS
    assert evaluate_condition(cond, {"x": str(passing)}).outcome == PASS
    assert evaluate_condition(cond, {"x": failing}).outcome == FAIL
    for missing in ({}, {"x": None}, {"x": NAN}, {"x": ""}):
        result = evaluate_condition(cond, missing)
        assert result.outcome == UNKNOWN and result.note == "x missing"
    assert evaluate_condition(cond, {"x": "lots"}).outcome == UNKNOWN


def test_between_is_inclusive_at_both_ends() -> None:
    cond = Condition("age_years", "between", (0.5, 75))
    assert [evaluate_condition(cond, {"age_years": v}).outcome for v in (0.4, 0.5, 75, 75.1)] == [
        FAIL,
        PASS,
        PASS,
        FAIL,
    ]


@pytest.mark.parametrize(
    ("op", "threshold", "value", "outcome"),
    [
        ("==", False, False, PASS),
        ("==", False, "no", PASS),
        ("==", False, True, FAIL),
        ("==", False, "maybe", UNKNOWN),
        ("==", False, 0.0, UNKNOWN),  # 0 == False in Python; not in a yes/no rule
        ("!=", True, False, PASS),
        ("!=", True, True, FAIL),
        ("in", ("negative",), "Negative", PASS),
        ("in", ("negative", "dim"), "positive", FAIL),
        ("in", ("negative",), None, UNKNOWN),
        ("==", "negative", "NEGATIVE ", PASS),
        ("!=", "negative", "negative", FAIL),
    ],
)
def test_boolean_and_text_ops(op: str, threshold: Any, value: Any, outcome: str) -> None:
    assert evaluate_condition(Condition("f", op, threshold), {"f": value}).outcome == outcome


def test_any_of_passes_on_one_pass_and_is_unknown_before_failing() -> None:
    any_rule = ClinicalRule(
        id="cd19",
        kind="inclusion",
        text="Post anti-CD19 or CD19-negative",
        conditions=(
            Condition("prior_anti_cd19", "==", True),
            Condition("cd19_status", "in", ("negative",)),
        ),
        any_of=True,
    )

    def outcome(facts: dict) -> str:
        return evaluate_clinical_rule(any_rule, facts).outcome

    assert outcome({"prior_anti_cd19": True, "cd19_status": None}) == PASS
    assert outcome({"prior_anti_cd19": None, "cd19_status": "negative"}) == PASS
    assert outcome({"prior_anti_cd19": False, "cd19_status": "positive"}) == FAIL
    assert outcome({"prior_anti_cd19": False, "cd19_status": None}) == UNKNOWN
    assert outcome({}) == UNKNOWN
    result = evaluate_clinical_rule(any_rule, {"prior_anti_cd19": False}).to_dict()
    assert result["op"] == "any_of"
    assert [c["outcome"] for c in result["any_of"]] == [FAIL, UNKNOWN]


def test_measured_cd19_call_stands_in_when_patients_tsv_is_silent(trial: Trial) -> None:
    patient = {**ELIGIBLE_PATIENT, "prior_anti_cd19": "no", "cd19_status": ""}
    decision = run(trial, patient)
    entry = rule(decision, "post_cd19_or_cd19_negative")
    assert entry["outcome"] == PASS
    assert entry["any_of"][1]["value"] == "negative"
    assert entry["any_of"][1]["value_source"] == "measured (antigens.tsv)"
    # A CD19-positive sample with no prior anti-CD19 therapy fails the rule.
    positive = typical_antigens()
    positive.loc[positive["marker"] == "CD19", ["pct_positive", "call"]] = [97.0, "positive"]
    decision = run(trial, patient, table=positive)
    assert rule(decision, "post_cd19_or_cd19_negative")["outcome"] == FAIL
    assert decision.decision == "not_candidate"


# --- decision matrix ----------------------------------------------------------------------------


def test_candidate(trial: Trial) -> None:
    decision = run(trial)
    assert decision.antigen_status == "ok"
    assert decision.cd19_status == "negative"
    assert decision.eligible_targets == ["CD10", "CD22"]
    assert decision.clinical_status == "eligible"
    assert decision.clinical_reasons == []
    assert decision.decision == "candidate"
    assert "CD22 positive on 95.1% of blasts (>= 20%)" in decision.decision_reasons
    assert decision.blast_events == 31234
    assert decision.blast_pct_leukocytes == pytest.approx(62.1, abs=0.001)
    cd22 = rule(decision, "target_CD22")
    assert (cd22["kind"], cd22["field"], cd22["op"], cd22["threshold"], cd22["value"]) == (
        "antigen",
        "pct_positive",
        ">=",
        20,
        95.1,
    )
    assert (cd22["outcome"], cd22["call"]) == (PASS, "positive")
    assert rule(decision, "target_CD123")["outcome"] == FAIL
    kps = rule(decision, "kps")
    assert (kps["kind"], kps["op"], kps["threshold"], kps["value"]) == ("clinical", ">", 80, 90.0)
    assert kps["text"] == "Karnofsky score above 80"


def test_qc_failed_needs_review(trial: Trial) -> None:
    empty_antigens = pd.DataFrame(columns=list(antigen_row("CD22", 1)))
    empty_pops = pd.DataFrame(columns=["population", "parent", "events", "pct_parent", "pct_total"])
    qc = {"status": "fail", "reasons": ["only 1200 events (< 5000)"]}
    decision = run(trial, table=empty_antigens, pops=empty_pops, qc=qc)
    assert decision.antigen_status == "qc_failed"
    assert decision.cd19_status == "qc_failed"
    assert decision.eligible_targets == []
    assert decision.blast_events is None
    assert decision.decision == "needs_review"
    assert decision.antigen_reasons == ["QC failed: only 1200 events (< 5000)"]
    assert all(rule(decision, f"target_{t}")["outcome"] == UNKNOWN for t in trial.targets)


def test_insufficient_blasts_needs_review(trial: Trial) -> None:
    table = antigens(
        CD19=(NAN, "insufficient_events"),
        CD22=(NAN, "insufficient_events"),
        CD123=(NAN, "insufficient_events"),
        CD38=(NAN, "insufficient_events"),
        CD10=(NAN, "insufficient_events"),
        CD20=(NAN, "insufficient_events"),
    )
    decision = run(trial, table=table, pops=populations(blast_events=12, blast_pct=0.03))
    assert decision.antigen_status == "insufficient_blasts"
    assert decision.cd19_status == "insufficient_events"
    assert decision.eligible_targets == []
    assert decision.decision == "needs_review"
    assert "12 blast events" in decision.antigen_reasons[0]


def test_floor_comes_from_config(trial: Trial) -> None:
    facts = parse_patient(ELIGIBLE_PATIENT, trial)
    args = ("S1", "P01", typical_antigens(), populations(blast_events=80), QC_PASS, facts, trial)
    assert decide(*args, {"quantify": 50}).antigen_status == "ok"
    assert decide(*args, {"quantify": 100}).antigen_status == "insufficient_blasts"


def test_excluded_is_not_candidate_even_with_targets(trial: Trial) -> None:
    decision = run(trial, {**ELIGIBLE_PATIENT, "hiv": "yes", "kps": "70"})
    assert decision.clinical_status == "excluded"
    assert decision.eligible_targets == ["CD10", "CD22"]
    assert decision.decision == "not_candidate"
    assert decision.clinical_reasons == [
        "Karnofsky score above 80: fail (kps = 70, needs > 80)",
        "HIV infection: fail (hiv = yes, needs == no)",
    ]
    # An exclusion also overrules an unusable antigen profile.
    decision = run(trial, {**ELIGIBLE_PATIENT, "hiv": "yes"}, qc={"status": "fail"})
    assert decision.decision == "not_candidate"


def test_no_target_is_not_candidate(trial: Trial) -> None:
    table = antigens(CD19=1.0, CD22=3.0, CD123=2.0, CD38=12.0, CD10=0.5, CD20=0.0)
    decision = run(trial, table=table)
    assert decision.eligible_targets == []
    assert decision.decision == "not_candidate"
    assert decision.review_reasons == []
    assert rule(decision, "target_CD38")["outcome"] == FAIL


@pytest.mark.parametrize(("cd20", "eligible"), [(19.0, []), (21.0, ["CD20"]), (24.9, ["CD20"])])
def test_a_share_near_its_cut_off_needs_review(
    trial: Trial, cd20: float, eligible: list[str]
) -> None:
    """A CD20 at 19% is not a clean "no" (nor 21% a clean "yes"): within the trial's margin
    (5 points for 4SCAR) the sample goes to review, and says why."""
    table = antigens(CD19=1.0, CD22=3.0, CD123=2.0, CD38=2.0, CD10=0.5, CD20=cd20)
    decision = run(trial, table=table)
    assert decision.eligible_targets == eligible
    assert decision.decision == "needs_review"
    assert any("CD20 on" in r and "cut-off" in r for r in decision.review_reasons)
    assert decision.to_row()["review_reasons"].startswith("CD20 on")


def test_no_margin_in_the_trial_file_means_clean_calls(trial: Trial, tmp_path: Path) -> None:
    text = repo_path("config/trials/4scar.yaml").read_text().replace("margin_pct: 5", "")
    no_margin = load_trial(write_yaml(tmp_path / "strict.yaml", text))
    table = antigens(CD19=1.0, CD22=3.0, CD123=2.0, CD38=2.0, CD10=0.5, CD20=19.0)
    assert run(no_margin, table=table).decision == "not_candidate"


def test_gating_flags_and_qc_warnings_send_a_candidate_to_review(trial: Trial) -> None:
    facts = parse_patient(ELIGIBLE_PATIENT, trial)
    flag = {"code": "possible_lineage_switch", "message": "blasts negative for CD19, CD22"}
    flagged = decide(
        "S1", "P01", typical_antigens(), populations(), QC_PASS, facts, trial, FLOORS,
        flags=[flag],
    )  # fmt: skip
    assert flagged.decision == "needs_review"
    assert flagged.review_reasons == [
        "Flag (possible_lineage_switch): blasts negative for CD19, CD22"
    ]
    warned = run(trial, qc={"status": "warn", "warnings": ["PE-A: 4.0% saturated"]})
    assert warned.decision == "needs_review"
    assert warned.review_reasons == ["QC warning: PE-A: 4.0% saturated"]
    # A clinical exclusion stands whatever is flagged.
    excluded = decide(
        "S1", "P01", typical_antigens(), populations(), QC_PASS,
        parse_patient({**ELIGIBLE_PATIENT, "hiv": "yes"}, trial), trial, FLOORS, flags=[flag],
    )  # fmt: skip
    assert excluded.decision == "not_candidate"


def test_unknown_target_without_eligible_needs_review(trial: Trial) -> None:
    table = antigens(CD19=1.0, CD22=3.0, CD123=2.0, CD38=(NAN, "no_reference"), CD10=0.5, CD20=0)
    decision = run(trial, table=table)
    assert rule(decision, "target_CD38")["outcome"] == UNKNOWN
    assert decision.unknown_targets == ["CD38"]
    assert decision.decision == "needs_review"
    # A target missing from the panel is unknown too.
    decision = run(trial, table=table[table["marker"] != "CD38"])
    assert rule(decision, "target_CD38")["note"] == "CD38 not quantified on this sample"
    assert decision.decision == "needs_review"


def test_unknown_target_with_an_eligible_one_is_still_candidate(trial: Trial) -> None:
    table = antigens(CD19=1.0, CD22=60.0, CD123=2.0, CD38=(NAN, "no_reference"), CD10=0, CD20=0)
    decision = run(trial, table=table)
    assert decision.eligible_targets == ["CD22"]
    assert decision.decision == "candidate"


def test_unknown_clinical_needs_review(trial: Trial) -> None:
    decision = run(trial, {**ELIGIBLE_PATIENT, "kps": ""})
    assert decision.clinical_status == "undetermined"
    assert decision.decision == "needs_review"
    assert decision.clinical_reasons == ["Karnofsky score above 80: unknown (kps missing)"]
    assert "Karnofsky score above 80: unknown (kps missing)" in decision.decision_reasons


def test_missing_patient_makes_every_clinical_rule_unknown(trial: Trial) -> None:
    decision = decide("S1", "P99", typical_antigens(), populations(), QC_PASS, None, trial, FLOORS)
    clinical = [r for r in decision.to_dict()["rules"] if r["kind"] == "clinical"]
    assert len(clinical) == len(trial.clinical_rules)
    assert {r["outcome"] for r in clinical} == {UNKNOWN}
    assert decision.clinical_status == "undetermined"
    assert decision.decision == "needs_review"
    assert len(decision.clinical_reasons) == len(trial.clinical_rules)
    assert all("P99 not in patients.tsv" in r for r in decision.clinical_reasons)


# --- outputs ------------------------------------------------------------------------------------


def _has_nan(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return isinstance(value, float) and not math.isfinite(value)


def test_decision_json_has_no_nan(trial: Trial) -> None:
    table = antigens(CD19=(NAN, "no_reference"), CD22=95.1, CD38=(NAN, "no_reference"))
    pops = populations()
    pops.loc[pops["population"] == "leukocytes", "events"] = NAN
    decisions = [
        run(trial, table=table, pops=pops),
        run(trial, qc={"status": "fail", "reasons": []}, pops=pops.iloc[0:0]),
        decide("S1", "P01", table, pops, QC_PASS, None, trial, FLOORS),
    ]
    for decision in decisions:
        data = decision.to_dict()
        assert not _has_nan(data)
        text = json.dumps(data, allow_nan=False)
        assert json.loads(text) == data
    assert decisions[0].to_dict()["blast_pct_leukocytes"] is None


def test_rows_and_recommendations_tsv(trial: Trial, tmp_path: Path) -> None:
    first = run(trial)
    first.sample_id = first.specimen_id = "S2"
    first.tubes = ["S2"]
    second = run(trial, {**ELIGIBLE_PATIENT, "kps": "", "hgb_g_per_l": "x"})
    second.blast_pct_leukocytes = 62.12345
    row = second.to_row()
    assert list(row) == RECOMMENDATION_COLUMNS
    assert row["eligible_targets"] == "CD10,CD22"
    assert row["blast_pct_leukocytes"] == 62.12
    assert row["clinical_reasons"] == (
        "Karnofsky score above 80: unknown (kps missing); "
        "Haemoglobin above 80 g/L: unknown (hgb_g_per_l 'x' is not a number)"
    )
    path = write_recommendations(
        [first.to_dict(), json.loads(json.dumps(second.to_dict()))], tmp_path / "out" / "r.tsv"
    )
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == RECOMMENDATION_COLUMNS
    assert list(table["sample_id"]) == ["S1", "S2"]
    assert list(table["specimen_id"]) == ["S1", "S2"] and list(table["tubes"]) == ["S1", "S2"]
    assert list(table["decision"]) == ["needs_review", "candidate"]
    assert table.loc[1, "blast_events"] == "31234"
    assert table.loc[1, "clinical_reasons"] == ""


def _coverage(cd22_until: int, cd10_from: int, n: int = 10_000) -> pd.DataFrame:
    """coverage.tsv for blasts 0..cd22_until CD22-positive and cd10_from..9130 CD10-positive."""
    cd22 = np.zeros(n, bool)
    cd10 = np.zeros(n, bool)
    cd22[:cd22_until] = True
    cd10[cd10_from:9130] = True
    return coverage_table(pd.DataFrame({"CD22": cd22, "CD10": cd10}), "S1")


def test_a_candidate_no_combination_covers_says_why_in_the_table(
    trial: Trial, tmp_path: Path
) -> None:
    """CD22 and CD10 are eligible, but together they leave 8.7% of blasts uncovered: still a
    candidate (the combination informs, it does not decide), and recommendations.tsv, where
    the team looks, says that no combination reaches the trial's 95% in one reason."""
    facts = parse_patient(ELIGIBLE_PATIENT, trial)
    short = decide(
        "S1", "P01", typical_antigens(), populations(), QC_PASS, facts, trial, FLOORS,
        coverage=_coverage(6000, 5870),
    )  # fmt: skip
    assert short.decision == "candidate"
    assert short.combination is not None and short.combination.combination is None
    assert short.review_reasons == [
        "No combination of at most 2 eligible products covers 95% of blasts with 95% "
        "confidence, the best, CD22+CD10, covers 91.3% (uncovered 8.7%, 95% CI 8.15-9.27%)"
    ]
    path = write_recommendations([short.to_dict()], tmp_path / "r.tsv")
    row = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).iloc[0]
    assert row["recommended_combination"] == ""
    assert row["review_reasons"].split("; ") == short.review_reasons
    # One that reaches the goal leaves nothing to say.
    covered = decide(
        "S1", "P01", typical_antigens(), populations(), QC_PASS, facts, trial, FLOORS,
        coverage=_coverage(10_000, 9130),
    )  # fmt: skip
    assert covered.decision == "candidate" and covered.combination is not None
    assert covered.combination.label == "CD22" and covered.review_reasons == []


# --- a second trial is a second file --------------------------------------------------------------


TANDEM_TRIAL = """\
# A CD19/CD22 tandem CAR study: other targets, a stricter cut-off, CD19 itself a target.
name: TANDEM-19-22
version: "0.1"
registry_id: NCT99999999
targets: [CD19, CD22]
cd19_marker: CD19
positivity:
  min_pct_positive: 30
  per_target:
    CD22: {min_pct_positive: 90}
max_products: 1
clinical_rules:
  - {id: age, kind: inclusion, text: "Age 1 to 25 years", field: age_years, op: between,
     value: [1, 25]}
  - {id: kps, kind: inclusion, text: "Karnofsky at least 60", field: kps, op: ">=", value: 60}
"""


def test_second_trial_changes_decisions_without_code_change(trial: Trial, tmp_path: Path) -> None:
    tandem = load_trial(write_yaml(tmp_path / "tandem.yaml", TANDEM_TRIAL))
    assert tandem.targets == ("CD19", "CD22")
    assert tandem.target_rule("CD22").min_pct_positive == 90

    child = {**ELIGIBLE_PATIENT, "age_years": "12", "kps": "70"}
    table = antigens(CD19=35.0, CD22=85.0, CD123=60.0, CD38=5.0, CD10=50.0, CD20=0.0)
    four = run(trial, child, table=table)
    two = run(tandem, child, table=table)

    # 4SCAR: KPS 70 excludes the patient; the tandem study accepts KPS >= 60.
    assert four.decision == "not_candidate" and four.clinical_status == "excluded"
    assert two.clinical_status == "eligible"
    # CD19 at 35% is a target for the tandem study; CD22 at 85% misses its 90% cut-off.
    assert four.eligible_targets == ["CD10", "CD123", "CD22"]
    assert two.eligible_targets == ["CD19"]
    assert two.decision == "candidate"
    assert rule(two, "target_CD22")["threshold"] == 90
    assert two.to_dict()["trial"]["name"] == "TANDEM-19-22"

    adult = {**ELIGIBLE_PATIENT, "age_years": "34"}
    assert run(trial, adult, table=table).decision == "candidate"
    assert run(tandem, adult, table=table).decision == "not_candidate"


def test_blast_pct_is_against_leukocytes_even_with_backbone_gates(trial: Trial) -> None:
    """With CD34+ required, blasts sit below a blasts_region gate; the percentage must still
    be of leukocytes, not of the region."""
    pops = pd.DataFrame(
        [
            {"population": "leukocytes", "parent": "singlets", "events": 40000, "pct_parent": 99},
            {"population": "blasts_region", "parent": "leukocytes", "events": 20000,
             "pct_parent": 50.0},
            {"population": "blasts", "parent": "blasts_region", "events": 18000,
             "pct_parent": 90.0},
        ]
    )  # fmt: skip
    decision = run(trial, pops=pops)
    assert decision.blast_events == 18000
    assert decision.blast_pct_leukocytes == 45.0
