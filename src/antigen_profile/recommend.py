"""Turn a sample's antigen profile and the patient's clinical facts into a trial recommendation.

Every number a decision rests on comes from the trial file (``config/trials/*.yaml``), never
from this module, so a second trial is a second YAML file. Each rule (one per target antigen,
one per clinical criterion) is evaluated to ``pass``, ``fail`` or ``unknown`` with its inputs,
so a reviewer can see why a sample got its decision. Unknown is never treated as pass: a
missing or unreadable input sends the sample to review instead.

The evaluation is split into conditions (``field op value`` on a mapping of facts) and rules
(conditions combined, with a text and a kind), so that margins near cut-offs, antigen density
rules or combination coverage can be added as new conditions, new fact sources or new result
keys without rewriting what is here. Knows nothing of FCS.
"""

from __future__ import annotations

import csv
import hashlib
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import jsonschema
import pandas as pd
import yaml

from antigen_profile.coverage import CombinationChoice, recommend_combination
from antigen_profile.files import atomic_write
from antigen_profile.paths import repo_path
from antigen_profile.quantify import MEASURED_CALLS

#: recommendations.tsv columns, in contract order (docs/outputs.md): append, never reorder.
RECOMMENDATION_COLUMNS: list[str] = [
    "sample_id",
    "patient_id",
    "blast_events",
    "blast_pct_leukocytes",
    "cd19_status",
    "eligible_targets",
    "antigen_status",
    "clinical_status",
    "clinical_reasons",
    "decision",
    "recommended_combination",
    "combination_coverage_pct",
    "review_reasons",
]

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"

#: Cell texts that mean "not known" in patients.tsv (compared case-insensitively).
MISSING_TOKENS: frozenset[str] = frozenset(
    {"", "na", "n/a", "nan", "none", "null", "unknown", "?", "-", "nd", "not done"}
)
_TRUE_TOKENS = frozenset({"yes", "y", "true", "t"})
_FALSE_TOKENS = frozenset({"no", "n", "false", "f"})


_NUMERIC_OPS = frozenset({">", ">=", "<", "<=", "between"})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_NEGATED_OP = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}

#: Key of parse_patient's output holding {field: why it was unreadable}; never a rule field.
NOTES_KEY = "_notes"


class TrialError(ValueError):
    """A trial file that cannot be used; the message is one line naming the file."""


# --------------------------------------------------------------------------------------------
# Trial rules as data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One ``field op value`` test; the unit every rule (antigen or clinical) is built from."""

    field: str
    op: str
    value: Any

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Condition:
        """Build from a YAML mapping; lists become tuples so the trial stays immutable."""
        value = data["value"]
        if isinstance(value, list):
            value = tuple(value)
        return cls(field=str(data["field"]), op=str(data["op"]), value=value)


@dataclass(frozen=True)
class ClinicalRule:
    """A registry criterion: one condition, or several of which any may pass (``any_of``)."""

    id: str
    kind: str  # inclusion | exclusion (a label: every rule is a condition the patient must meet)
    text: str
    conditions: tuple[Condition, ...]
    any_of: bool = False
    source: str | None = None


@dataclass(frozen=True)
class TargetRule:
    """When a target antigen counts as present on the blasts (share of positive blasts)."""

    target: str
    min_pct_positive: float
    text: str
    source: str | None = None
    #: A share within this many points of the cut-off is not a clean call (review).
    margin_pct: float = 0.0

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """Conditions on the target's antigens.tsv row; density rules would be added here."""
        return (Condition("pct_positive", ">=", self.min_pct_positive),)


@dataclass(frozen=True)
class Trial:
    """One trial's entry rules, loaded from its YAML file by :func:`load_trial`."""

    name: str
    version: str
    registry_id: str
    targets: tuple[str, ...]
    cd19_marker: str
    target_rules: tuple[TargetRule, ...]
    max_products: int
    clinical_rules: tuple[ClinicalRule, ...]
    #: Share of blasts a recommended combination must cover (the trial file's number).
    min_coverage_pct: float | None = None
    registry_url: str | None = None
    description: str | None = None
    path: str | None = None
    sha256: str | None = None

    def target_rule(self, target: str) -> TargetRule:
        """Return the positivity rule of ``target``."""
        for rule in self.target_rules:
            if rule.target == target:
                return rule
        raise KeyError(f"{target} is not a target of trial {self.name}")

    def fields(self) -> dict[str, str]:
        """Return the clinical fields the rules read and the type each expects.

        Types (``number``, ``boolean``, ``text``) follow the rule values, so
        :func:`parse_patient` can flag an unreadable cell without a field list in code.
        """
        types: dict[str, str] = {}
        for rule in self.clinical_rules:
            for cond in rule.conditions:
                types.setdefault(cond.field, _expected_type(cond))
        return types

    def summary(self) -> dict[str, Any]:
        """Return the trial block of decision.json (what a reader needs to find the rules)."""
        return {
            "name": self.name,
            "version": self.version,
            "registry_id": self.registry_id,
            "file": self.path,
            "sha256": self.sha256,
            "targets": list(self.targets),
            "max_products": self.max_products,
            "min_coverage_pct": self.min_coverage_pct,
        }


@lru_cache(maxsize=1)
def _trial_validator() -> jsonschema.protocols.Validator:
    """Load the trial schema once; a broken schema is a bug, so it raises as is."""
    schema_path = repo_path("workflow/schemas/trial.schema.yaml")
    schema = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace so an error stays on one line (logs, Snakemake messages)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_path(path: Iterable[Any]) -> str:
    """Render a jsonschema error path as ``clinical_rules[2].op``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_trial(path: str | Path) -> Trial:
    """Load and validate a trial file.

    Raises
    ------
    TrialError
        One line naming the file and the first problem found, so a broken file stops the
        workflow before any job runs instead of producing wrong decisions.
    """
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise TrialError(f"{path}: cannot read trial file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TrialError(_one_line(f"{path}: not valid YAML{where}: {problem}")) from exc
    if not isinstance(data, dict):
        raise TrialError(f"{path}: a trial file must be a YAML mapping, got {type(data).__name__}")

    error = jsonschema.exceptions.best_match(_trial_validator().iter_errors(data))
    if error is not None:
        message = error.message
        if message.startswith("False schema does not allow"):  # the schema's any_of branch
            message = "give either field/op/value or any_of, not both"
        raise TrialError(_one_line(f"{path}: {_json_path(error.absolute_path)}: {message}"))

    targets = tuple(data["targets"])
    positivity = data["positivity"]
    per_target = positivity.get("per_target") or {}
    stray = sorted(set(per_target) - set(targets))
    if stray:
        raise TrialError(f"{path}: positivity.per_target names non-targets: {', '.join(stray)}")
    ids = [rule["id"] for rule in data["clinical_rules"]]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise TrialError(f"{path}: clinical_rules: duplicate id(s): {', '.join(duplicated)}")

    default_text = positivity.get("text", "{target} on at least {min}% of blasts")
    target_rules = []
    for target in targets:
        spec = {**positivity, **per_target.get(target, {})}
        minimum = float(spec["min_pct_positive"])
        text = str(spec.get("text", default_text))
        target_rules.append(
            TargetRule(
                target=target,
                min_pct_positive=minimum,
                text=text.replace("{target}", target).replace("{min}", _fmt(minimum)),
                source=spec.get("source"),
                margin_pct=float(spec.get("margin_pct", 0.0)),
            )
        )

    clinical = []
    for rule in data["clinical_rules"]:
        any_of = "any_of" in rule
        specs = rule["any_of"] if any_of else [rule]
        clinical.append(
            ClinicalRule(
                id=rule["id"],
                kind=rule["kind"],
                text=rule["text"],
                conditions=tuple(Condition.from_mapping(s) for s in specs),
                any_of=any_of,
                source=rule.get("source"),
            )
        )

    return Trial(
        name=str(data["name"]),
        version=str(data["version"]),
        registry_id=str(data["registry_id"]),
        targets=targets,
        cd19_marker=str(data["cd19_marker"]),
        target_rules=tuple(target_rules),
        max_products=int(data["max_products"]),
        clinical_rules=tuple(clinical),
        min_coverage_pct=(float(data["min_coverage_pct"]) if "min_coverage_pct" in data else None),
        registry_url=data.get("registry_url"),
        description=data.get("description"),
        path=str(path),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )


# --------------------------------------------------------------------------------------------
# Patient facts
# --------------------------------------------------------------------------------------------


def _expected_type(cond: Condition) -> str:
    """Infer what a field must hold from the rule value (number, boolean or text)."""
    if cond.op in _NUMERIC_OPS:
        return "number"
    values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(_is_number(v) for v in values):
        return "number"
    return "text"


def _is_number(value: Any) -> bool:
    """True for real numbers, excluding bools (which Python counts as ints)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_missing(value: Any) -> bool:
    """True for None, NaN and the texts patients.tsv uses for "not known"."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TOKENS
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_bool(value: Any) -> bool | None:
    """Read yes/no, true/false, y/n (any case) or a real bool; None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        token = value.strip().lower()
        if token in _TRUE_TOKENS:
            return True
        if token in _FALSE_TOKENS:
            return False
    return None


def _as_number(value: Any) -> float | None:
    """Read a finite number from a number or its text; None when it is not one."""
    if isinstance(value, bool):
        return None
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


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
        if _is_missing(raw):
            facts[key] = None
            continue
        text = raw.strip() if isinstance(raw, str) else raw
        if _is_identifier(key):
            facts[key] = str(text)
            continue
        kind = expected.get(key)
        if kind == "number":
            number = _as_number(text)
            facts[key] = number
            if number is None:
                notes[key] = f"{key} {text!r} is not a number"
        elif kind == "boolean":
            flag = _as_bool(text)
            facts[key] = flag
            if flag is None:
                notes[key] = f"{key} {text!r} is not yes/no"
        elif kind == "text":
            facts[key] = str(text)
        else:
            flag = _as_bool(text)
            number = _as_number(text) if flag is None else None
            facts[key] = flag if flag is not None else (number if number is not None else text)
    if notes:
        facts[NOTES_KEY] = notes
    return facts


# --------------------------------------------------------------------------------------------
# Rule evaluation
# --------------------------------------------------------------------------------------------


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
        return _jsonable(
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
        return _jsonable(out)

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
                details.append(
                    f"{cond.field} = {_fmt(cond.value)}, needs {cond.op} {_fmt(cond.threshold)}"
                )
        return f"{self.text}: {self.outcome} ({'; '.join(details)})"


def _coerce_like(expected: Any, value: Any) -> tuple[bool, Any]:
    """Bring ``value`` to the type of the rule value ``expected``; (False, None) if it can't.

    Typed comparison matters: in Python ``0 == False``, so a yes/no rule must never accept a
    number, and text compares case-insensitively.
    """
    if isinstance(expected, bool):
        flag = _as_bool(value)
        return (flag is not None, flag)
    if _is_number(expected):
        number = _as_number(value)
        return (number is not None, number)
    if isinstance(value, bool):
        return (True, "yes" if value else "no")
    if _is_number(value):
        return (True, _fmt(value).lower())
    return (True, str(value).strip().lower())


def _norm_expected(expected: Any) -> Any:
    """Rule values in comparable form (text lower-cased, numbers as floats)."""
    if isinstance(expected, bool):
        return expected
    if _is_number(expected):
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
    if _is_missing(value):
        result.value = None
        result.note = (notes or {}).get(cond.field) or f"{cond.field} missing"
        return result

    if cond.op in _NUMERIC_OPS:
        number = _as_number(value)
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


def combine(outcomes: Sequence[str], any_of: bool) -> str:
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
    call = None if row is None else _str_or_none(row.get("call"))
    note = None
    if unusable is not None:
        note = unusable
    elif row is None:
        note = f"{rule.target} not quantified on this sample"
    elif call is not None and call not in MEASURED_CALLS:
        row_note = _str_or_none(row.get("note"))
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
    value = _as_number(conditions[0].value) if conditions else None
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


# --------------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------------


@dataclass
class Decision:
    """A sample's recommendation with every rule's inputs and outcome (decision.json)."""

    sample_id: str
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

    def to_dict(self) -> dict[str, Any]:
        """decision.json content: JSON-serialisable, NaN written as null."""
        return _jsonable(
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
            }
        )

    def to_row(self) -> dict[str, Any]:
        """recommendations.tsv row (see :func:`recommendation_row`)."""
        return recommendation_row(self.to_dict())


def decide(
    sample_id: str,
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
) -> Decision:
    """Decide whether a sample supports a trial candidacy and say why.

    With the sample's ``coverage`` table, the smallest combination of eligible products (at
    most ``trial.max_products``) that covers ``trial.min_coverage_pct`` of blasts is named; it
    informs the clinical team and does not change the decision. A raised QC warning or
    gating flag (``flags`` from profile.json), or a target within its rule's margin of the
    cut-off, turns a clean candidate / not-candidate into ``needs_review`` (a clinical
    exclusion stands: the patient cannot enter whatever the antigens show).

    The order of checks follows what can overrule what: a clinical exclusion ends candidacy
    whatever the antigens; an unusable profile (QC failed, too few blasts) or an unknown
    target cannot give a "no target" verdict; a clinical unknown cannot give a "candidate".
    """
    floor = int(floors["quantify"])
    qc_status = _str_or_none(qc.get("status")) if qc else None
    blast_events, blast_pct = _blast_counts(populations)

    # --- antigen status ---------------------------------------------------------------------
    antigen_reasons: list[str] = []
    if qc_status == "fail":
        antigen_status = "qc_failed"
        why = "; ".join(str(r) for r in (qc.get("reasons") or [])) or "no reason given"
        antigen_reasons.append(f"QC failed: {why}")
    elif blast_events is None:
        antigen_status = "insufficient_blasts"
        antigen_reasons.append("No blast population was found")
    elif blast_events < floor:
        antigen_status = "insufficient_blasts"
        antigen_reasons.append(
            f"{blast_events} blast events, fewer than the {floor} needed to quantify antigens"
        )
    else:
        antigen_status = "ok"

    rows = _antigen_rows(antigens)
    cd19_row = rows.get(trial.cd19_marker)
    if antigen_status == "qc_failed":
        cd19_status = "qc_failed"
    elif cd19_row is not None and _str_or_none(cd19_row.get("call")):
        cd19_status = str(cd19_row["call"])
    elif antigen_status == "insufficient_blasts":
        cd19_status = "insufficient_events"
    else:
        cd19_status = "not_measured"

    # --- targets ------------------------------------------------------------------------------
    unusable = None if antigen_status == "ok" else f"antigen profile not usable ({antigen_status})"
    target_results = [
        evaluate_target_rule(trial.target_rule(t), rows.get(t), unusable) for t in trial.targets
    ]
    eligible = sorted(r.target for r in target_results if r.outcome == PASS and r.target)
    unknown_targets = sorted(r.target for r in target_results if r.outcome == UNKNOWN and r.target)
    if antigen_status != "ok":
        eligible = []

    # --- clinical -----------------------------------------------------------------------------
    facts, sources = _clinical_facts(patient, cd19_status)
    missing_note = None if patient is not None else f"patient {patient_id} not in patients.tsv"
    clinical_results = [
        evaluate_clinical_rule(rule, facts, sources, missing_note) for rule in trial.clinical_rules
    ]
    failed = [r for r in clinical_results if r.outcome == FAIL]
    unknown = [r for r in clinical_results if r.outcome == UNKNOWN]
    if failed:
        clinical_status = "excluded"
    elif unknown:
        clinical_status = "undetermined"
    else:
        clinical_status = "eligible"
    clinical_reasons = [r.reason() for r in failed + unknown]

    # --- decision -----------------------------------------------------------------------------
    if clinical_status == "excluded":
        decision = "not_candidate"
        headline = "Not a candidate: clinically excluded"
    elif antigen_status != "ok":
        decision = "needs_review"
        headline = f"Needs review: antigen profile not usable ({antigen_status})"
    elif not eligible and not unknown_targets:
        decision = "not_candidate"
        headline = f"Not a candidate: no {trial.name} target reaches its cut-off on the blasts"
    elif not eligible:
        decision = "needs_review"
        headline = (
            "Needs review: no target reaches its cut-off and "
            f"{', '.join(unknown_targets)} could not be assessed"
        )
    elif clinical_status == "undetermined":
        decision = "needs_review"
        headline = (
            f"Needs review: eligible target(s) {', '.join(eligible)} but "
            f"{len(unknown)} clinical rule(s) could not be checked"
        )
    else:
        decision = "candidate"
        headline = f"Candidate for {trial.name}: eligible target(s) {', '.join(eligible)}"

    review: list[str] = []
    if antigen_status == "ok":
        for result in target_results:
            if result.extra.get("near_cutoff"):
                cond = result.conditions[0]
                review.append(
                    f"{result.target} on {_fmt(cond.value)}% of blasts is within "
                    f"{_fmt(result.extra['margin_pct'])} points of its {_fmt(cond.threshold)}% "
                    "cut-off: not a clean call"
                )
    review += [f"Flag ({f.get('code', 'flag')}): {f.get('message', '')}" for f in flags]
    if qc_status == "warn":
        warnings = [str(w) for w in (qc.get("warnings") or [])]
        review.append("QC warning: " + ("; ".join(warnings) or "see qc.json"))
    if review and decision != "needs_review" and clinical_status != "excluded":
        decision = "needs_review"
        headline = f"Needs review (otherwise {headline[0].lower()}{headline[1:]})"
    if decision == "needs_review":
        review_reasons = [*antigen_reasons, *review]
        if antigen_status == "ok" and not eligible and unknown_targets:
            review_reasons.append(f"not assessable: {', '.join(unknown_targets)}")
        review_reasons += [r.reason() for r in unknown]
    else:
        review_reasons = []

    choice = None
    combinations_rule = trial.min_coverage_pct is not None
    if (
        combinations_rule
        and antigen_status == "ok"
        and coverage is not None
        and not coverage.empty
        and eligible
    ):
        choice = recommend_combination(
            coverage, trial.max_products, trial.min_coverage_pct, allowed=eligible
        )
    if choice is not None and choice.combination is None and decision != "not_candidate":
        # A candidate whose eligible products cannot reach the trial's coverage goal is still a
        # candidate, but recommendations.tsv is what a team reads: say it there, not only in
        # the JSON. One reason per "; "-separated item, so the sentence keeps no "; ".
        text = choice.reason.replace("; ", ", ")
        review_reasons.append(text[:1].upper() + text[1:])
    reasons = [headline, *antigen_reasons]
    if choice is not None:
        reasons.append(f"Combination: {choice.reason}")
    reasons.extend(r for r in review if r not in reasons)
    if antigen_status == "ok":
        reasons.extend(_target_sentence(r) for r in target_results)
    reasons.extend(r.reason() for r in failed + unknown)
    if clinical_status == "eligible":
        reasons.append(f"All {len(clinical_results)} clinical rules pass")

    return Decision(
        sample_id=str(sample_id),
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
    )


def _target_sentence(result: RuleResult) -> str:
    """Sentence for a target: "CD22 positive on 95.1% of blasts (>= 20%)", or why not."""
    cond = result.conditions[0]
    if result.outcome == PASS:
        return (
            f"{result.target} positive on {_fmt(cond.value)}% of blasts "
            f"({cond.op} {_fmt(cond.threshold)}%)"
        )
    if result.outcome == FAIL:
        return (
            f"{result.target} on {_fmt(cond.value)}% of blasts, below the cut-off "
            f"({cond.op} {_fmt(cond.threshold)}%)"
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
    if _is_missing(facts.get("cd19_status")) and cd19_status in MEASURED_CALLS:
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
    events = _as_number(rows.loc["blasts", "events"])
    if events is None:
        return None, None
    pct = _as_number(rows.loc["blasts", "pct_parent"])
    if "leukocytes" in rows.index:
        leukocytes = _as_number(rows.loc["leukocytes", "events"])
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


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def recommendation_row(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One recommendations.tsv row from a decision.json dict.

    Lists are joined (targets by ",", reasons by "; "), percentages rounded to 2 decimals,
    counts kept as integers, unknown values left empty.
    """
    events = decision.get("blast_events")
    pct = _as_number(decision.get("blast_pct_leukocytes"))
    combo = decision.get("combination") or {}
    return {
        "sample_id": decision.get("sample_id"),
        "patient_id": decision.get("patient_id"),
        "blast_events": None if _is_missing(events) else int(events),
        "blast_pct_leukocytes": None if pct is None else round(pct, 2),
        "cd19_status": decision.get("cd19_status"),
        "eligible_targets": ",".join(decision.get("eligible_targets") or []),
        "antigen_status": decision.get("antigen_status"),
        "clinical_status": decision.get("clinical_status"),
        "clinical_reasons": "; ".join(decision.get("clinical_reasons") or []),
        "decision": decision.get("decision"),
        "recommended_combination": combo.get("label") or "",
        "combination_coverage_pct": combo.get("coverage_pct") if combo.get("label") else None,
        "review_reasons": "; ".join(decision.get("review_reasons") or []),
    }


def write_recommendations(decisions: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write recommendations.tsv (contract columns, one row per sample, sorted by sample_id)."""
    rows = sorted((recommendation_row(d) for d in decisions), key=lambda r: str(r["sample_id"]))

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(
            handle, fieldnames=RECOMMENDATION_COLUMNS, delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in RECOMMENDATION_COLUMNS})

    return atomic_write(path, write)


def _str_or_none(value: Any) -> str | None:
    """A cell as text, or None when empty/NaN (a call or status column, not a patient fact)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() != "nan" else None


def _fmt(value: Any) -> str:
    """Numbers for sentences: 20.0 -> "20", 95.123 -> "95.12"; bools as yes/no."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        number = float(value)
        if math.isnan(number):
            return "missing"
        if number.is_integer():
            return str(int(number))
        return f"{round(number, 2):g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _jsonable(value: Any) -> Any:
    """Make a value safe for json.dump with allow_nan=False: NaN/inf -> None, NumPy scalars ->
    Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if hasattr(value, "item"):  # NumPy bool_ and other 0-d scalars
        return _jsonable(value.item())
    return value
