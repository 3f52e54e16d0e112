"""The status words and the error base class: named once, written as plain words, and every
error of ours catchable as one."""

from __future__ import annotations

import csv
import enum
import importlib
import inspect
import io
import json
import pkgutil

import pandas as pd
import pytest

import antigen_profile
from antigen_profile import vocabulary
from antigen_profile.cells import jsonable
from antigen_profile.errors import AntigenProfileError
from antigen_profile.paths import repo_path
from antigen_profile.vocabulary import MEASURED_CALLS, Call, Verdict

WORDS = [
    member
    for _, kind in inspect.getmembers(vocabulary, inspect.isclass)
    if issubclass(kind, enum.StrEnum) and kind is not enum.StrEnum
    for member in kind
]


def test_every_word_is_written_as_the_plain_word() -> None:
    """json, pandas and csv write a member exactly as its string, so outputs written with
    the vocabulary are byte-identical to those written with bare strings."""
    words = [str(w.value) for w in WORDS]
    assert json.dumps(WORDS) == json.dumps(words)
    frame = pd.DataFrame({"word": WORDS})
    assert frame.to_csv(sep="\t", index=False) == pd.DataFrame({"word": words}).to_csv(
        sep="\t", index=False
    )
    handle = io.StringIO()
    csv.writer(handle, delimiter="\t").writerow(WORDS)
    assert handle.getvalue() == "\t".join(words) + "\r\n"
    assert [f"{w}" for w in WORDS] == words


def test_json_ready_values_hold_plain_str() -> None:
    """decision.json's dict holds ``str``, not the enum: a reader that repr()s or YAML-dumps
    it sees the word."""
    ready = jsonable({"decision": Verdict.NEEDS_REVIEW, "calls": [Call.POSITIVE]})
    assert ready == {"decision": "needs_review", "calls": ["positive"]}
    assert type(ready["decision"]) is str
    assert type(ready["calls"][0]) is str


def test_measured_calls_are_the_three_categories() -> None:
    assert {"negative", "partial", "positive"} == MEASURED_CALLS
    assert "positive" in MEASURED_CALLS
    assert "no_reference" not in MEASURED_CALLS


@pytest.mark.parametrize("word", WORDS, ids=str)
def test_every_word_is_explained_in_the_output_contract(word: enum.StrEnum) -> None:
    assert f"`{word}`" in repo_path("docs/outputs.md").read_text(encoding="utf-8")


def _our_exception_classes() -> list[type[BaseException]]:
    classes = []
    for info in pkgutil.walk_packages(antigen_profile.__path__, "antigen_profile."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                classes.append(value)
    return classes


def test_every_error_of_ours_derives_from_the_one_base() -> None:
    """A caller that wants "any problem we described" catches one class. Private signals
    (``fcs._ProblemError``) are turned into a public error before they leave their module;
    warnings are not errors."""
    public = [
        c
        for c in _our_exception_classes()
        if not c.__name__.startswith("_") and not issubclass(c, Warning)
    ]
    assert len(public) >= 10
    outside = [c.__qualname__ for c in public if not issubclass(c, AntigenProfileError)]
    assert outside == []
