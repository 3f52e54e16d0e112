"""Shared fixtures: the demo cohort is generated once per test session (about 2 s).

Also the one place that says where the real-file FCS corpus is, so that a run without it
says so at its start and end instead of skipping dozens of tests quietly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from antigen_profile.config import load_config
from antigen_profile.paths import REPO_ROOT
from antigen_profile.simulate import write_demo_cohort

#: Environment variable naming the corpus folder, for a corpus kept anywhere else.
CORPUS_ENV = "ANTIGEN_PROFILE_CORPUS"
#: Where the corpus is looked for without ``CORPUS_ENV``: beside the repository.
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "fcs-corpus"
#: The real-file FCS corpus (instrument files, FlowJo workspaces, the ISAC Gating-ML suite);
#: every test that reads it uses this constant.
CORPUS = (
    Path(os.environ[CORPUS_ENV]).expanduser().absolute()
    if os.environ.get(CORPUS_ENV)
    else DEFAULT_CORPUS
)
#: The skip reason of every test that needs the corpus when it is absent.
NO_CORPUS = (
    f"real-file FCS corpus not found at {CORPUS} "
    f"(put it there or set {CORPUS_ENV}=/path/to/fcs-corpus)"
)


def corpus_skip_reason(path: Path) -> str:
    """Why a test that needs ``path`` from the corpus skips: the whole corpus is missing, or
    only this file (an older or partial copy)."""
    if not CORPUS.is_dir():
        return NO_CORPUS
    return f"{path} not found in the FCS corpus at {CORPUS} (an incomplete copy?)"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say at the start of the run whether the real-file tests can run, and how to make them."""
    if CORPUS.is_dir():
        return [f"FCS corpus: {CORPUS}"]
    return [
        f"WARNING: FCS corpus NOT FOUND at {CORPUS}: the real-instrument tests will be SKIPPED.",
        f"WARNING: put the corpus there, or set {CORPUS_ENV}=/path/to/fcs-corpus",
    ]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Repeat it at the end, with the number of tests it cost, where the eye lands."""
    if CORPUS.is_dir():
        return
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and NO_CORPUS in str(report.longrepr[-1])
    ]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} test{'s' * (len(skipped) != 1)} SKIPPED: {NO_CORPUS}",
            yellow=True,
            bold=True,
        )


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
