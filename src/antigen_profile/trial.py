"""The trial's entry rules as data: the rule model, its schema check and loading.

Every number a decision rests on comes from the trial file (``config/trials/*.yaml``), never
from code, so a second trial is a second YAML file. A rule is conditions (``field op value``)
combined, with a text and a kind, so that margins near cut-offs, antigen density rules or
combination coverage can be added as new conditions without rewriting the decision. The
profile step reads only the trial's targets from here; :mod:`antigen_profile.evaluate` gives
each rule's outcome and :mod:`antigen_profile.decision` weighs them. Knows nothing of FCS,
patients or antigen tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from antigen_profile.cells import is_number, sentence_value
from antigen_profile.errors import AntigenProfileError
from antigen_profile.paths import repo_path

#: Operators that compare numbers (the field must hold a number).
NUMERIC_OPS = frozenset({">", ">=", "<", "<=", "between"})


class TrialError(AntigenProfileError, ValueError):
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
                text=text.replace("{target}", target).replace("{min}", sentence_value(minimum)),
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


def _expected_type(cond: Condition) -> str:
    """Infer what a field must hold from the rule value (number, boolean or text), so a
    patient cell is read as the type its rule compares."""
    if cond.op in NUMERIC_OPS:
        return "number"
    values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(is_number(v) for v in values):
        return "number"
    return "text"
