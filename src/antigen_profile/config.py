"""Load and validate the workflow configuration, the same way for the CLI and Snakemake."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from antigen_profile.errors import AntigenProfileError
from antigen_profile.paths import REPO_ROOT, repo_path

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
DEFAULT_CONFIG = "config/config.yaml"


class ConfigError(AntigenProfileError, ValueError):
    """A configuration that does not match its schema; one line naming the key."""


def load_yaml(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def validate_config(config: Mapping[str, Any], source: str = "config") -> None:
    """Raise :class:`ConfigError` naming the first offending key, in one line: an unknown
    key with the nearest valid one, otherwise the schema's message without the schema."""
    schema = load_yaml(repo_path(CONFIG_SCHEMA))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: {_one_line(errors[0])}")


def _one_line(error: jsonschema.ValidationError) -> str:
    """A schema error as the key it concerns and what is wrong with it."""
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list((error.schema.get("properties") or {}) if error.schema else {})
        unknown = [k for k in error.instance if k not in allowed]
        if unknown and allowed:
            key = str(unknown[0])
            near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; valid keys: {', '.join(allowed)}"
            if near:
                hint = f" (did you mean {near[0]!r}?)"
            return f"unknown key {'.'.join([*filter(None, [where]), key])!r}{hint}"
    if error.validator == "required":
        return f"{where or '(top level)'}: {error.message}"
    value = json.dumps(error.instance, default=str)
    if len(value) > 60:
        value = value[:57] + "..."
    message = error.message if len(error.message) <= 120 else f"{error.validator} check failed"
    if error.validator in {"type", "enum", "minimum", "maximum", "pattern", "minItems"}:
        expected = error.schema.get(error.validator) if error.schema else None
        message = f"{value} is not valid ({error.validator}: {expected})"
    return f"{where or '(top level)'}: {message}"


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The default config (or ``path``), with top-level ``overrides``, validated."""
    source = Path(path) if path else repo_path(DEFAULT_CONFIG)
    config = dict(load_yaml(source) or {})
    config.update(overrides or {})
    validate_config(config, str(source))
    return config


def resolve(path: str | Path, base: str | Path = REPO_ROOT) -> Path:
    """A config path: absolute as given, else relative to ``base`` (the repository)."""
    path = Path(path)
    return path if path.is_absolute() else Path(base) / path


#: Config files the repository ships: a config copied elsewhere keeps naming them relative
#: to the repository, so a relative path missing where the config is read resolves there.
SHIPPED_FILES = ("trial", "gating_template")
#: Every file path in the config: (section or None, key).
CONFIG_PATHS = (
    (None, "samples"),
    (None, "patients"),
    (None, "review"),
    (None, "trial"),
    (None, "gating_template"),
    ("compensation", "matrix"),
    ("lab_gating", "file"),
    ("calibration", "bead_fcs"),
)


def resolve_paths(config: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """Make every file path in ``config`` absolute against ``base`` (in place, and returned):
    jobs may run in another folder, or on another node, than the one the run started from.
    The shipped trial and template (:data:`SHIPPED_FILES`) fall back to the repository."""
    for section, key in CONFIG_PATHS:
        holder = config if section is None else (config.get(section) or {})
        if not holder.get(key):
            continue
        path = resolve(holder[key], base)
        if not path.exists() and key in SHIPPED_FILES and not Path(holder[key]).is_absolute():
            shipped = resolve(holder[key], REPO_ROOT)
            path = shipped if shipped.exists() else path
        holder[key] = str(path)
    return config


def missing_files(
    config: Mapping[str, Any], source: str = "config", sheets: bool = True
) -> list[str]:
    """One line per file the (resolved) config names that is missing or is not a regular
    file (a FIFO or device would hang whatever reads it next), without the sample and patient
    sheets unless ``sheets``: the CLI analyses one tube without them."""
    from antigen_profile.inputs import NOT_FOUND, file_problem, fix_for

    problems = []
    for section, key in CONFIG_PATHS:
        if not sheets and key in ("samples", "patients", "review"):
            continue
        holder = config if section is None else (config.get(section) or {})
        value = holder.get(key)
        problem = file_problem(value) if value else None
        if problem is None:
            continue
        name = key if section is None else f"{section}.{key}"
        fix = (
            "give a path that exists, absolute or relative to the folder you run from"
            if problem == NOT_FOUND
            else fix_for(problem)
        )
        problems.append(f"{source}: {name} {value} {problem}; {fix}")
    return problems
