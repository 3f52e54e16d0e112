"""The validated configuration as one typed, frozen object.

Built once when the workflow job or the CLI starts (:meth:`Settings.from_config`), then
passed to the stages instead of the raw dict: a stage reads ``settings.floors.quantify``,
not ``config["floors"]["quantify"]``, so a misspelt key fails where the object is built (and
a type checker sees it), and no stage can change a setting another one reads. The raw dict is
kept (``config``) only for the audit trail, which records and hashes it as it was given.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from antigen_profile.config import resolve
from antigen_profile.mimics import MimicSettings
from antigen_profile.qc import QCSettings
from antigen_profile.quantify import PositivitySettings


@dataclass(frozen=True)
class Floors:
    """Blast events needed to say blasts are there (``detect``) and to quantify them."""

    detect: int
    quantify: int

    def as_dict(self) -> dict[str, int]:
        return {"detect": self.detect, "quantify": self.quantify}


@dataclass(frozen=True)
class LabGatingSettings:
    """A lab's own gating file and the names of our populations in it."""

    file: Path
    populations: Mapping[str, str]
    sample: str | None


@dataclass(frozen=True)
class Settings:
    """Every setting of one run (see config/config.yaml for what each means)."""

    #: The validated configuration as given, for the audit trail only.
    config: Mapping[str, Any]
    markers: Mapping[str, tuple[str, ...]]
    scatter: Mapping[str, tuple[str, ...]]
    quantified: tuple[str, ...]
    blast_require: Mapping[str, str]
    positive_controls: Mapping[str, Mapping[str, Any]]
    b_lineage_markers: tuple[str, ...]
    mimics: MimicSettings
    logicle: Mapping[str, Any]
    positivity: PositivitySettings
    qc: QCSettings
    floors: Floors
    calibration: Mapping[str, Any]
    max_plot_events: int
    trial: Path
    #: ``None`` only where a lab's gating replaces it (a workflow job then declares no template)
    gating_template: Path | None
    lab_gating: LabGatingSettings | None
    compensation_matrix: Path | None
    bead_fcs: Path | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings of a validated ``config`` (its file paths resolved against the
        repository when relative, as :func:`~antigen_profile.config.resolve` does)."""
        raw = copy.deepcopy(dict(config))
        lab = raw.get("lab_gating") or {}
        calibration = raw.get("calibration") or {}
        matrix = (raw.get("compensation") or {}).get("matrix")
        return cls(
            config=raw,
            markers=_aliases(raw["markers"]),
            scatter=_aliases(raw["scatter"]),
            quantified=tuple(raw["quantified"]),
            blast_require=_frozen((raw.get("blast_definition") or {}).get("require") or {}),
            positive_controls=_frozen(raw["positive_controls"]),
            b_lineage_markers=tuple(raw["b_lineage_markers"]),
            mimics=MimicSettings.from_config(raw),
            logicle=_frozen(raw["logicle"]),
            positivity=PositivitySettings.from_config(raw),
            qc=QCSettings.from_config(raw),
            floors=Floors(int(raw["floors"]["detect"]), int(raw["floors"]["quantify"])),
            calibration=_frozen(calibration),
            max_plot_events=int(raw["report"]["max_plot_events"]),
            trial=resolve(raw["trial"]),
            gating_template=(
                resolve(raw["gating_template"]) if raw.get("gating_template") else None
            ),
            lab_gating=(
                LabGatingSettings(
                    resolve(lab["file"]), _frozen(lab["populations"]), lab.get("sample")
                )
                if lab.get("file")
                else None
            ),
            compensation_matrix=resolve(matrix) if matrix else None,
            bead_fcs=resolve(calibration["bead_fcs"]) if calibration.get("bead_fcs") else None,
        )


def as_settings(config: Settings | Mapping[str, Any]) -> Settings:
    """``config`` as :class:`Settings` (built once here if a caller still has the dict)."""
    return config if isinstance(config, Settings) else Settings.from_config(config)


def _aliases(section: Mapping[str, Any]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({str(k): tuple(v) for k, v in section.items()})


def _frozen(value: Any) -> Any:
    """A read-only copy: mappings become read-only views, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
