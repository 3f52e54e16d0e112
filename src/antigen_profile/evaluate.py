"""Evaluate a trial's rules on facts: pass, fail or unknown, with the inputs each one saw.

A condition (``field op value``, :mod:`antigen_profile.trial`) is compared typed: a yes/no rule
never accepts a number, text compares case-insensitively, and a missing or unreadable input is
``unknown`` with a note saying which, never a pass. A rule combines its conditions
(:func:`combine`); its :class:`RuleResult` is what decision.json lists under ``rules`` and
what the reasons are written from. Knows nothing of files, nor of how the decision weighs
the outcomes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from antigen_profile.cells import (
    as_bool,
    as_number,
    is_missing,
    is_number,
    jsonable,
    sentence_value,
    text_or_none,
)
from antigen_profile.trial import NUMERIC_OPS, ClinicalRule, Condition, TargetRule
from antigen_profile.vocabulary import MEASURED_CALLS, Outcome

#: Rule outcomes by their short names, as the rules read.
PASS, FAIL, UNKNOWN = Outcome.PASS, Outcome.FAIL, Outcome.UNKNOWN

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

#: Key of parse_patient's output holding {field: why it was unreadable}; never a rule field.
NOTES_KEY = "_notes"


@dataclass
class ConditionResult:
    """Outcome of one condition with the value it saw, so reports can show the inputs."""

    field: str
    op: str
    threshold: Any
    value: Any
    outcome: str
    note: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists, NaN as null)."""
        return jsonable(
            {
                "field": self.field,
                "op": self.op,
                "threshold": self.threshold,
                "value": self.value,
                "outcome": self.outcome,
                "note": self.note,
                "value_source": self.source,
            }
        )


@dataclass
class RuleResult:
    """Outcome of one trial rule (a target's positivity or a clinical criterion).

    ``extra`` holds additional keys (the antigen call, later a margin to the cut-off) so new
    information is an addition to decision.json, not a new result type.
    """

    id: str
    kind: str  # antigen | clinical
    text: str
    outcome: str
    conditions: list[ConditionResult]
    any_of: bool = False
    criterion: str | None = None  # inclusion | exclusion for clinical rules
    target: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """decision.json ``rules`` entry: field/op/threshold/value flat for a single condition,
        ``op: any_of`` with the conditions listed for a combined rule."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        if self.criterion is not None:
            out["criterion"] = self.criterion
        if self.target is not None:
            out["target"] = self.target
        out["text"] = self.text
        if self.any_of:
            out.update(field=None, op="any_of", threshold=None, value=None)
            out["any_of"] = [c.to_dict() for c in self.conditions]
            out["outcome"] = self.outcome
            out["note"] = self.note
        else:
            single = self.conditions[0].to_dict()
            out.update({k: single[k] for k in ("field", "op", "threshold", "value")})
            out["outcome"] = self.outcome
            out["note"] = single["note"]
            if single["value_source"] is not None:
                out["value_source"] = single["value_source"]
        out["source"] = self.source
        out.update(self.extra)
        return jsonable(out)

    @property
    def note(self) -> str | None:
        """Why the rule did not pass, joined over its conditions."""
        notes = [c.note for c in self.conditions if c.note]
        return "; ".join(notes) if notes else None

    def reason(self) -> str:
        """One plain sentence for reports: "Karnofsky score above 80: unknown (kps missing)"."""
        details = []
        for cond in self.conditions:
            if cond.outcome == UNKNOWN:
                details.append(cond.note or f"{cond.field} unknown")
            else:
                value, threshold = sentence_value(cond.value), sentence_value(cond.threshold)
                details.append(f"{cond.field} = {value}, needs {cond.op} {threshold}")
        return f"{self.text}: {self.outcome} ({'; '.join(details)})"


def _coerce_like(expected: Any, value: Any) -> tuple[bool, Any]:
    """Bring ``value`` to the type of the rule value ``expected``; (False, None) if it can't.

    Typed comparison matters: in Python ``0 == False``, so a yes/no rule must never accept a
    number, and text compares case-insensitively.
    """
    if isinstance(expected, bool):
        flag = as_bool(value)
        return (flag is not None, flag)
    if is_number(expected):
        number = as_number(value)
        return (number is not None, number)
    if isinstance(value, bool):
        return (True, "yes" if value else "no")
    if is_number(value):
        return (True, sentence_value(value).lower())
    return (True, str(value).strip().lower())


def _norm_expected(expected: Any) -> Any:
    """Rule values in comparable form (text lower-cased, numbers as floats)."""
    if isinstance(expected, bool):
        return expected
    if is_number(expected):
        return float(expected)
    return str(expected).strip().lower()


def evaluate_condition(
    cond: Condition,
    facts: Mapping[str, Any],
    notes: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> ConditionResult:
    """Evaluate ``cond`` on ``facts``: pass, fail, or unknown when the input is missing or not
    of the type the rule needs (with a note saying which)."""
    value = facts.get(cond.field)
    source = (sources or {}).get(cond.field)
    result = ConditionResult(cond.field, cond.op, cond.value, value, UNKNOWN, source=source)
    if is_missing(value):
        result.value = None
        result.note = (notes or {}).get(cond.field) or f"{cond.field} missing"
        return result

    if cond.op in NUMERIC_OPS:
        number = as_number(value)
        if number is None:
            result.note = f"{cond.field} {value!r} is not a number"
            return result
        if cond.op == "between":
            low, high = cond.value
            ok = float(low) <= number <= float(high)
        else:
            ok = _COMPARE[cond.op](number, float(cond.value))
        result.value = number
        result.outcome = PASS if ok else FAIL
        return result

    candidates = cond.value if cond.op == "in" else (cond.value,)
    matched = False
    readable = False
    for expected in candidates:
        ok, coerced = _coerce_like(expected, value)
        if not ok:
            continue
        readable = True
        if coerced == _norm_expected(expected):
            matched = True
            break
    if not readable:
        wanted = "yes/no" if any(isinstance(c, bool) for c in candidates) else "a number"
        result.note = f"{cond.field} {value!r} is not {wanted}"
        return result
    ok = matched if cond.op in ("==", "in") else not matched
    result.outcome = PASS if ok else FAIL
    return result


def combine(outcomes: Sequence[str], any_of: bool) -> Outcome:
    """Combine condition outcomes: any_of passes on one pass, all_of fails on one fail;
    otherwise an unknown keeps the rule unknown (never guessed)."""
    if any_of:
        if PASS in outcomes:
            return PASS
        return UNKNOWN if UNKNOWN in outcomes else FAIL
    if FAIL in outcomes:
        return FAIL
    return UNKNOWN if UNKNOWN in outcomes else PASS


def evaluate_clinical_rule(
    rule: ClinicalRule,
    facts: Mapping[str, Any] | None,
    sources: Mapping[str, str] | None = None,
    missing_note: str | None = None,
) -> RuleResult:
    """Evaluate a clinical rule; with ``facts`` None (patient unknown) every condition is
    unknown with ``missing_note``."""
    if facts is None:
        conditions = [
            ConditionResult(c.field, c.op, c.value, None, UNKNOWN, note=missing_note)
            for c in rule.conditions
        ]
    else:
        notes = facts.get(NOTES_KEY) or {}
        conditions = [evaluate_condition(c, facts, notes, sources) for c in rule.conditions]
    return RuleResult(
        id=rule.id,
        kind="clinical",
        text=rule.text,
        outcome=combine([c.outcome for c in conditions], rule.any_of),
        conditions=conditions,
        any_of=rule.any_of,
        criterion=rule.kind,
        source=rule.source,
    )


def evaluate_target_rule(
    rule: TargetRule, row: Mapping[str, Any] | None, unusable: str | None = None
) -> RuleResult:
    """Evaluate a target's positivity on its antigens.tsv row.

    Unknown when the profile is unusable (``unusable`` says why), the marker was not
    quantified, or its call says the number cannot be trusted (``no_reference``,
    ``insufficient_events``): no number is better than a wrong one.
    """
    call = None if row is None else text_or_none(row.get("call"))
    note = None
    if unusable is not None:
        note = unusable
    elif row is None:
        note = f"{rule.target} not quantified on this sample"
    elif call is not None and call not in MEASURED_CALLS:
        row_note = text_or_none(row.get("note"))
        note = f"{rule.target} call is {call}" + (f": {row_note}" if row_note else "")

    if note is not None:
        conditions = [
            ConditionResult(c.field, c.op, c.value, None, UNKNOWN, note=note)
            for c in rule.conditions
        ]
    else:
        facts = {k: row[k] for k in row} if row is not None else {}
        conditions = [evaluate_condition(c, facts) for c in rule.conditions]
        for cond in conditions:
            if cond.outcome == UNKNOWN:
                cond.note = f"{rule.target} {cond.field} not measured"
    outcome = combine([c.outcome for c in conditions], any_of=False)
    extra: dict[str, Any] = {"call": call}
    value = as_number(conditions[0].value) if conditions else None
    if outcome != UNKNOWN and value is not None and rule.margin_pct > 0:
        extra["margin_pct"] = rule.margin_pct
        extra["near_cutoff"] = abs(value - rule.min_pct_positive) < rule.margin_pct
    return RuleResult(
        id=f"target_{rule.target}",
        kind="antigen",
        text=rule.text,
        outcome=outcome,
        conditions=conditions,
        target=rule.target,
        source=rule.source,
        extra=extra,
    )
