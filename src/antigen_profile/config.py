"""Load and validate the workflow configuration, the same way for the CLI and Snakemake."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from antigen_profile.paths import REPO_ROOT, repo_path

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
DEFAULT_CONFIG = "config/config.yaml"


class ConfigError(ValueError):
    """A configuration that does not match its schema; one line naming the key."""


def load_yaml(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def validate_config(config: Mapping[str, Any], source: str = "config") -> None:
    """Raise :class:`ConfigError` naming the first offending key."""
    schema = load_yaml(repo_path(CONFIG_SCHEMA))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: {where}: {error.message}")


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


def resolve_paths(config: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """Make every file path in ``config`` absolute against ``base`` (in place, and returned):
    jobs may run in another folder, or on another node, than the one the run started from."""
    for key in ("samples", "patients", "trial", "gating_template"):
        if config.get(key):
            config[key] = str(resolve(config[key], base))
    for section, key in (
        ("compensation", "matrix"),
        ("lab_gating", "file"),
        ("calibration", "bead_fcs"),
    ):
        if (config.get(section) or {}).get(key):
            config[section][key] = str(resolve(config[section][key], base))
    return config
