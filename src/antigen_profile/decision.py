"""Decide: a sample's antigen profile and the patient's clinical facts against a trial.

:func:`parse_patient` turns a patients.tsv row into typed facts; :func:`decide` evaluates every
rule of the trial (:mod:`antigen_profile.evaluate`: one per target antigen on the blasts'
antigens.tsv rows, one per clinical criterion on the facts) and gives the :class:`Decision`
(decision.json) with its reasons, so a reviewer can see why a sample got its decision. Unknown
is never treated as pass: a missing or unreadable input sends the sample to review instead.
Knows nothing of FCS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from antigen_profile.cells import (
    as_bool,
    as_number,
    is_missing,
    jsonable,
    sentence_value,
    text_or_none,
)
from antigen_profile.cohort import recommendation_row
from antigen_profile.coverage import CombinationChoice, recommend_combination, stain_together
from antigen_profile.evaluate import (
    FAIL,
    NOTES_KEY,
    PASS,
    UNKNOWN,
    RuleResult,
    evaluate_clinical_rule,
    evaluate_target_rule,
)
from antigen_profile.trial import Trial
from antigen_profile.vocabulary import (
    MEASURED_CALLS,
    AntigenStatus,
    Call,
    ClinicalStatus,
    QCStatus,
    Verdict,
)

# --------------------------------------------------------------------------------------------
# Patient facts
# --------------------------------------------------------------------------------------------


def _is_identifier(key: str) -> bool:
    """Identifier columns stay text: patient "007" is not the number 7."""
    return key in {"patient_id", "sample_id", "timepoint"} or key.endswith("_id")


def parse_patient(row: Mapping[str, str | None], trial: Trial | None = None) -> dict[str, Any]:
    """Turn a patients.tsv row (strings) into typed facts the rules can compare.

    Numbers become floats, yes/no (also true/false, y/n; any case) become bools, empty or
    NA cells become None (unknown). With ``trial``, a field a rule reads is read as the type
    that rule needs; an unreadable cell (kps "ninety") becomes None and its reason is kept
    under ``"_notes"`` ({field: note}), so the rule is reported unknown with that note rather
    than crashing or silently failing. Without ``trial`` the type is guessed per cell and the
    same check happens when the rule is evaluated.
    """
    expected = trial.fields() if trial is not None else {}
    facts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for raw_key, raw in row.items():
        key = str(raw_key).strip()
        if not key or key == NOTES_KEY:
            continue
        if is_missing(raw):
            facts[key] = None
            continue
        text = raw.strip() if isinstance(raw, str) else raw
        if _is_identifier(key):
            facts[key] = str(text)
            continue
        kind = expected.get(key)
        if kind == "number":
            number = as_number(text)
            facts[key] = number
            if number is None:
                notes[key] = f"{key} {text!r} is not a number"
        elif kind == "boolean":
            flag = as_bool(text)
            facts[key] = flag
            if flag is None:
                notes[key] = f"{key} {text!r} is not yes/no"
        elif kind == "text":
            facts[key] = str(text)
        else:
            flag = as_bool(text)
            number = as_number(text) if flag is None else None
            facts[key] = flag if flag is not None else (number if number is not None else text)
    if notes:
        facts[NOTES_KEY] = notes
    return facts


# --------------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------------


@dataclass
class Decision:
    """A sample's recommendation with every rule's inputs and outcome (decision.json)."""

    sample_id: str | None
    patient_id: str
    timepoint: str | None
    trial: dict[str, Any]
    blast_events: int | None
    blast_pct_leukocytes: float | None
    cd19_status: str
    eligible_targets: list[str]
    antigen_status: str
    antigen_reasons: list[str]
    clinical_status: str
    clinical_reasons: list[str]
    decision: str
    decision_reasons: list[str]
    rules: list[RuleResult]
    unknown_targets: list[str] = field(default_factory=list)
    qc_status: str | None = None
    combination: CombinationChoice | None = None
    review_reasons: list[str] = field(default_factory=list)
    #: The specimen (one draw) the decision is for, and the tubes it was made from.
    specimen_id: str | None = None
    tubes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """decision.json content: JSON-serialisable, NaN written as null."""
        return jsonable(
            {
                "sample_id": self.sample_id,
                "patient_id": self.patient_id,
                "timepoint": self.timepoint,
                "trial": self.trial,
                "blast_events": self.blast_events,
                "blast_pct_leukocytes": self.blast_pct_leukocytes,
                "cd19_status": self.cd19_status,
                "eligible_targets": self.eligible_targets,
                "antigen_status": self.antigen_status,
                "antigen_reasons": self.antigen_reasons,
                "clinical_status": self.clinical_status,
                "clinical_reasons": self.clinical_reasons,
                "decision": self.decision,
                "decision_reasons": self.decision_reasons,
                "rules": [r.to_dict() for r in self.rules],
                "unknown_targets": self.unknown_targets,
                "qc_status": self.qc_status,
                "combination": None if self.combination is None else self.combination.to_dict(),
                "review_reasons": self.review_reasons,
                "specimen_id": self.specimen_id,
                "tubes": self.tubes,
            }
        )

    def to_row(self) -> dict[str, Any]:
        """recommendations.tsv row (see :func:`recommendation_row`)."""
        return recommendation_row(self.to_dict())


def decide(
    sample_id: str | None,
    patient_id: str,
    antigens: pd.DataFrame,
    populations: pd.DataFrame,
    qc: Mapping[str, Any],
    patient: Mapping[str, Any] | None,
    trial: Trial,
    floors: Mapping[str, int],
    timepoint: str | None = None,
    coverage: pd.DataFrame | None = None,
    flags: Sequence[Mapping[str, str]] = (),
    specimen_id: str | None = None,
    tubes: Sequence[str] | None = None,
) -> Decision:
    """Decide whether a sample supports a trial candidacy and say why.

    With the sample's ``coverage`` table, the smallest combination of eligible products (at
    most ``trial.max_products``) that covers ``trial.min_coverage_pct`` of blasts is named; it
    informs the clinical team and does not change the decision. A raised QC warning or
    gating flag (``flags`` from profile.json), or a target within its rule's margin of the
    cut-off, turns a clean candidate / not-candidate into ``needs_review`` (a clinical
    exclusion stands: the patient cannot enter whatever the antigens show).

    A specimen of several tubes is decided here too, on its merged tables
    (:mod:`antigen_profile.specimen`): ``sample_id`` is then None, ``tubes`` lists them, and
    a combination stained in different tubes counts by its lower bound.

    The order of checks follows what can overrule what: a clinical exclusion ends candidacy
    whatever the antigens; an unusable profile (QC failed, too few blasts) or an unknown
    target cannot give a "no target" verdict; a clinical unknown cannot give a "candidate".
    """
    floor = int(floors["quantify"])
    qc_status = text_or_none(qc.get("status")) if qc else None
    blast_events, blast_pct = _blast_counts(populations)

    # --- antigen status ---------------------------------------------------------------------
    antigen_reasons: list[str] = []
    antigen_status: AntigenStatus
    if qc_status == QCStatus.FAIL:
        antigen_status = AntigenStatus.QC_FAILED
        why = "; ".join(str(r) for r in (qc.get("reasons") or [])) or "no reason given"
        antigen_reasons.append(f"QC failed: {why}")
    elif blast_events is None:
        antigen_status = AntigenStatus.INSUFFICIENT_BLASTS
        antigen_reasons.append("No blast population was found")
    elif blast_events < floor:
        antigen_status = AntigenStatus.INSUFFICIENT_BLASTS
        antigen_reasons.append(
            f"{blast_events} blast events, fewer than the {floor} needed to quantify antigens"
        )
    else:
        antigen_status = AntigenStatus.OK

    rows = _antigen_rows(antigens)
    cd19_row = rows.get(trial.cd19_marker)
    cd19_status: str
    if antigen_status == AntigenStatus.QC_FAILED:
        cd19_status = AntigenStatus.QC_FAILED
    elif cd19_row is not None and text_or_none(cd19_row.get("call")):
        cd19_status = str(cd19_row["call"])
    elif antigen_status == AntigenStatus.INSUFFICIENT_BLASTS:
        cd19_status = Call.INSUFFICIENT_EVENTS
    else:
        cd19_status = Call.NOT_MEASURED

    # --- targets ------------------------------------------------------------------------------
    unusable = (
        None
        if antigen_status == AntigenStatus.OK
        else f"antigen profile not usable ({antigen_status})"
    )
    target_results = [
        evaluate_target_rule(trial.target_rule(t), rows.get(t), unusable) for t in trial.targets
    ]
    eligible = sorted(r.target for r in target_results if r.outcome == PASS and r.target)
    unknown_targets = sorted(r.target for r in target_results if r.outcome == UNKNOWN and r.target)
    if antigen_status != AntigenStatus.OK:
        eligible = []

    # --- clinical -----------------------------------------------------------------------------
    facts, sources = _clinical_facts(patient, cd19_status)
    missing_note = None if patient is not None else f"patient {patient_id} not in patients.tsv"
    clinical_results = [
        evaluate_clinical_rule(rule, facts, sources, missing_note) for rule in trial.clinical_rules
    ]
    failed = [r for r in clinical_results if r.outcome == FAIL]
    unknown = [r for r in clinical_results if r.outcome == UNKNOWN]
    clinical_status: ClinicalStatus
    if failed:
        clinical_status = ClinicalStatus.EXCLUDED
    elif unknown:
        clinical_status = ClinicalStatus.UNDETERMINED
    else:
        clinical_status = ClinicalStatus.ELIGIBLE
    clinical_reasons = [r.reason() for r in failed + unknown]

    # --- decision -----------------------------------------------------------------------------
    decision: Verdict
    if clinical_status == ClinicalStatus.EXCLUDED:
        decision = Verdict.NOT_CANDIDATE
        headline = "Not a candidate: clinically excluded"
    elif antigen_status != AntigenStatus.OK:
        decision = Verdict.NEEDS_REVIEW
        headline = f"Needs review: antigen profile not usable ({antigen_status})"
    elif not eligible and not unknown_targets:
        decision = Verdict.NOT_CANDIDATE
        headline = f"Not a candidate: no {trial.name} target reaches its cut-off on the blasts"
    elif not eligible:
        decision = Verdict.NEEDS_REVIEW
        headline = (
            "Needs review: no target reaches its cut-off and "
            f"{', '.join(unknown_targets)} could not be assessed"
        )
    elif clinical_status == ClinicalStatus.UNDETERMINED:
        decision = Verdict.NEEDS_REVIEW
        headline = (
            f"Needs review: eligible target(s) {', '.join(eligible)} but "
            f"{len(unknown)} clinical rule(s) could not be checked"
        )
    else:
        decision = Verdict.CANDIDATE
        headline = f"Candidate for {trial.name}: eligible target(s) {', '.join(eligible)}"

    review: list[str] = []
    if antigen_status == AntigenStatus.OK:
        for result in target_results:
            if result.extra.get("near_cutoff"):
                cond = result.conditions[0]
                review.append(
                    f"{result.target} on {sentence_value(cond.value)}% of blasts is within "
                    f"{sentence_value(result.extra['margin_pct'])} points of its "
                    f"{sentence_value(cond.threshold)}% cut-off: not a clean call"
                )
    review += [f"Flag ({f.get('code', 'flag')}): {f.get('message', '')}" for f in flags]
    if qc_status == QCStatus.WARN:
        warnings = [str(w) for w in (qc.get("warnings") or [])]
        review.append("QC warning: " + ("; ".join(warnings) or "see qc.json"))
    if review and decision != Verdict.NEEDS_REVIEW and clinical_status != ClinicalStatus.EXCLUDED:
        decision = Verdict.NEEDS_REVIEW
        headline = f"Needs review (otherwise {headline[0].lower()}{headline[1:]})"
    if decision == Verdict.NEEDS_REVIEW:
        review_reasons = [*antigen_reasons, *review]
        if antigen_status == AntigenStatus.OK and not eligible and unknown_targets:
            review_reasons.append(f"not assessable: {', '.join(unknown_targets)}")
        review_reasons += [r.reason() for r in unknown]
    else:
        review_reasons = []

    choice = None
    combinations_rule = trial.min_coverage_pct is not None
    if (
        combinations_rule
        and antigen_status == AntigenStatus.OK
        and coverage is not None
        and not coverage.empty
        and eligible
    ):
        choice = recommend_combination(
            coverage, trial.max_products, trial.min_coverage_pct, allowed=eligible
        )
    if choice is not None and choice.combination is None and decision != Verdict.NOT_CANDIDATE:
        # A candidate whose eligible products cannot reach the trial's coverage goal is still a
        # candidate, but recommendations.tsv is what a team reads: say it there, not only in
        # the JSON. One reason per "; "-separated item, so the sentence keeps no "; ".
        text = choice.reason.replace("; ", ", ")
        review_reasons.append(text[:1].upper() + text[1:])
        review_reasons += [
            s.replace("; ", ", ")
            for s in stain_together(
                coverage, trial.max_products, float(trial.min_coverage_pct or 0), eligible
            )
        ]
    reasons = [headline, *antigen_reasons]
    if choice is not None:
        reasons.append(f"Combination: {choice.reason}")
    reasons.extend(r for r in review if r not in reasons)
    if antigen_status == AntigenStatus.OK:
        reasons.extend(_target_sentence(r) for r in target_results)
    reasons.extend(r.reason() for r in failed + unknown)
    if clinical_status == ClinicalStatus.ELIGIBLE:
        reasons.append(f"All {len(clinical_results)} clinical rules pass")

    return Decision(
        sample_id=None if sample_id is None else str(sample_id),
        patient_id=str(patient_id),
        timepoint=timepoint,
        trial=trial.summary(),
        blast_events=blast_events,
        blast_pct_leukocytes=blast_pct,
        cd19_status=cd19_status,
        eligible_targets=eligible,
        antigen_status=antigen_status,
        antigen_reasons=antigen_reasons,
        clinical_status=clinical_status,
        clinical_reasons=clinical_reasons,
        decision=decision,
        decision_reasons=reasons,
        rules=[*target_results, *clinical_results],
        unknown_targets=unknown_targets,
        qc_status=qc_status,
        combination=choice,
        review_reasons=review_reasons,
        specimen_id=specimen_id if specimen_id is not None else sample_id,
        tubes=list(tubes) if tubes is not None else [str(sample_id)],
    )


def _target_sentence(result: RuleResult) -> str:
    """Sentence for a target: "CD22 positive on 95.1% of blasts (>= 20%)", or why not."""
    cond = result.conditions[0]
    if result.outcome == PASS:
        return (
            f"{result.target} positive on {sentence_value(cond.value)}% of blasts "
            f"({cond.op} {sentence_value(cond.threshold)}%)"
        )
    if result.outcome == FAIL:
        return (
            f"{result.target} on {sentence_value(cond.value)}% of blasts, below the cut-off "
            f"({cond.op} {sentence_value(cond.threshold)}%)"
        )
    return f"{result.target} could not be assessed: {result.note or 'not measured'}"


def _clinical_facts(
    patient: Mapping[str, Any] | None, cd19_status: str
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Patient facts plus measured facts the rules may read, with where each came from.

    The sample's CD19 call stands in for ``cd19_status`` only when patients.tsv leaves it
    empty, and only when it is a real call (negative/partial/positive).
    """
    if patient is None:
        return None, {}
    facts = dict(patient)
    sources = {k: "patients.tsv" for k, v in facts.items() if k != NOTES_KEY and v is not None}
    if is_missing(facts.get("cd19_status")) and cd19_status in MEASURED_CALLS:
        facts["cd19_status"] = cd19_status
        sources["cd19_status"] = "measured (antigens.tsv)"
    return facts, sources


def _blast_counts(populations: pd.DataFrame | None) -> tuple[int | None, float | None]:
    """Blast events and % of leukocytes from populations.tsv (None when there is no row).

    The percentage is blasts over the ``leukocytes`` row, not the blasts' ``pct_parent``:
    backbone markers can put gates between the two.
    """
    if populations is None or populations.empty or "population" not in populations:
        return None, None
    rows = populations.set_index(populations["population"].astype(str))
    if "blasts" not in rows.index:
        return None, None
    events = as_number(rows.loc["blasts", "events"])
    if events is None:
        return None, None
    pct = as_number(rows.loc["blasts", "pct_parent"])
    if "leukocytes" in rows.index:
        leukocytes = as_number(rows.loc["leukocytes", "events"])
        pct = round(100.0 * events / leukocytes, 4) if leukocytes else None
    return int(events), pct


def _antigen_rows(antigens: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """antigens.tsv rows on the blasts, keyed by marker (first row wins)."""
    if antigens is None or antigens.empty or "marker" not in antigens:
        return {}
    table = antigens
    if "population" in table:
        table = table[table["population"].astype(str) == "blasts"]
    rows: dict[str, dict[str, Any]] = {}
    for record in table.to_dict("records"):
        rows.setdefault(str(record["marker"]), record)
    return rows
