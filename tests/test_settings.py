"""The run's settings as one frozen object (issue 15): built once from the validated config,
read by the stages instead of the dict, and unchangeable by any of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from antigen_profile.paths import REPO_ROOT
from antigen_profile.settings import Settings, as_settings


def test_settings_are_typed_and_resolved(config: dict[str, Any]) -> None:
    settings = Settings.from_config(config)
    assert settings.quantified == tuple(config["quantified"])
    assert settings.floors.quantify == config["floors"]["quantify"]
    assert settings.positivity.percentile == config["positivity"]["percentile"]
    assert settings.qc.min_events == config["qc"]["min_events"]
    assert settings.max_plot_events == config["report"]["max_plot_events"]
    assert settings.trial == REPO_ROOT / config["trial"] and settings.trial.is_file()
    assert settings.gating_template is not None and settings.gating_template.is_file()
    assert settings.lab_gating is None and settings.compensation_matrix is None
    assert settings.config == config and settings.config is not config  # a copy, for audit


def test_no_stage_can_change_a_setting(config: dict[str, Any]) -> None:
    settings = Settings.from_config(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.quantified = ("CD22",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.logicle["M"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.calibration["channels"]["PE-A"]["lot_values"][0] = 1  # type: ignore[index]
    config["floors"]["quantify"] = 1  # the dict it came from changes later: settings do not
    assert settings.floors.quantify != 1


def test_a_lab_gating_file_replaces_the_template(config: dict[str, Any], tmp_path: Path) -> None:
    config["lab_gating"] = {"file": str(tmp_path / "lab.wsp"), "sample": None,
                            "populations": {"blasts": "Blasts"}}  # fmt: skip
    del config["gating_template"]
    settings = as_settings(config)
    assert settings.lab_gating is not None and settings.lab_gating.file == tmp_path / "lab.wsp"
    assert settings.gating_template is None
    assert as_settings(settings) is settings
