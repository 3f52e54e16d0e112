"""Shared fixtures: the demo cohort is generated once per test session (about 2 s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from antigen_profile.config import load_config
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import write_demo_cohort

SHARED = REPO_ROOT.parent / "shared"
CORPUS = SHARED / "fcs-corpus"


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated demo cohort: ``fcs/``, ``samples.tsv``, ``patients.tsv``,
    ``truth.json``."""
    folder = tmp_path_factory.mktemp("demo")
    write_demo_cohort(folder)
    return folder


@pytest.fixture(scope="session")
def demo_truth(demo_cohort: Path) -> dict[str, Any]:
    return json.loads((demo_cohort / "truth.json").read_text())


@pytest.fixture()
def config() -> dict[str, Any]:
    """The repository's default configuration (a fresh copy per test)."""
    return load_config()
