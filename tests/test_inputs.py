"""Input files that are not regular files (issue 14): a FIFO, ``/dev/zero``, a folder or a
symlink loop is named in one line and never blocks a reader.

A call that could block is run in a thread with a generous limit, so that a regression fails
the test instead of hanging the suite; nothing depends on how fast a call is.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from antigen_profile import inputs
from antigen_profile.inputs import (
    InputFileError,
    file_problem,
    open_regular,
    read_gating_bytes,
    read_regular_bytes,
    require_regular_file,
    sha256_regular,
)
from antigen_profile.pipeline import profile_sample

T = TypeVar("T")
#: Only a call that blocks comes near this.
LIMIT_S = 120.0


def within_limit(call: Callable[[], T], fifos: tuple[Path, ...] = ()) -> T:
    """``call()``, run in a daemon thread: a test fails, not hangs, when it blocks. A reader
    blocked on one of ``fifos`` is released afterwards (a writer opens and closes it)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    if thread.is_alive():
        for fifo in fifos:
            _release(fifo)
        pytest.fail(f"still running after {LIMIT_S:g} s: the call blocks on its input")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


#: What the one-line refusal says for each special file :func:`special_file` makes.
SPECIAL_WORDS = {"fifo": "(FIFO)", "dev-zero": "(character device)", "directory": "is a directory"}


def special_file(path: Path, kind: str) -> tuple[Path, ...]:
    """Make ``path`` a FIFO, a link to ``/dev/zero`` or a directory; returns the FIFOs that
    :func:`within_limit` must release if the reader blocks on them."""
    if kind == "fifo":
        os.mkfifo(path)
        return (path,)
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    return ()


def _release(fifo: Path) -> None:
    """Give a reader blocked on ``fifo`` an end of file."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader: nothing blocks
        return
    os.close(fd)


@pytest.fixture()
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tube.fcs"
    os.mkfifo(path)
    yield path
    _release(path)


@pytest.fixture()
def loop(tmp_path: Path) -> Path:
    first, second = tmp_path / "a.fcs", tmp_path / "b.fcs"
    first.symlink_to(second)
    second.symlink_to(first)
    return first


def test_file_problem_says_what_the_path_is(tmp_path: Path, fifo: Path, loop: Path) -> None:
    regular = tmp_path / "ok.fcs"
    regular.write_bytes(b"x")
    zero_link = tmp_path / "zero.fcs"
    zero_link.symlink_to("/dev/zero")
    assert file_problem(regular) is None
    assert file_problem(tmp_path) == "is a directory"
    assert file_problem(fifo) == "is not a regular file (FIFO)"
    assert file_problem(zero_link) == "is not a regular file (character device)"
    assert file_problem(loop) == "is a symlink loop"
    assert file_problem(tmp_path / "absent.fcs") == "not found"
    assert file_problem(regular / "below") == "not found"  # a file where a folder should be


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "loop"])
def test_readers_refuse_without_blocking(tmp_path: Path, fifo: Path, loop: Path, kind: str) -> None:
    path = {"fifo": fifo, "dev-zero": Path("/dev/zero"), "directory": tmp_path, "loop": loop}[kind]
    expected = {
        "fifo": "is not a regular file (FIFO)",
        "dev-zero": "is not a regular file (character device)",
        "directory": "is a directory",
        "loop": "is a symlink loop",
    }[kind]
    readers: list[Callable[[], object]] = [
        lambda: sha256_regular(path),
        lambda: read_regular_bytes(path, "trial file"),
        lambda: read_gating_bytes(path, "lab gating file"),
        lambda: require_regular_file(path, "trial file"),
    ]
    for reader in readers:
        with pytest.raises(InputFileError) as error:
            within_limit(reader, (fifo,))
        text = str(error.value)
        assert "\n" not in text
        assert text.startswith(f"{path}: ") and expected in text
        assert error.value.problem == expected and error.value.fix in text


def test_open_regular_yields_the_file_and_its_size(tmp_path: Path) -> None:
    path = tmp_path / "ok.txt"
    path.write_bytes(b"hello")
    with open_regular(path) as (handle, size):
        assert size == 5 and handle.read() == b"hello"
    assert read_regular_bytes(path) == b"hello"


def test_gating_files_are_capped_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse file over the cap is refused from its size alone (nothing is read), with
    the file, its size, the cap and what to do; the cap is one module constant."""
    big = tmp_path / "huge.wsp"
    with open(big, "wb") as handle:
        os.truncate(handle.fileno(), inputs.MAX_GATING_BYTES + 1)
    with pytest.raises(InputFileError) as error:
        read_gating_bytes(big, "lab gating file")
    text = str(error.value)
    assert str(big) in text and "50.0 MB" in text and "over the" in text
    assert "only the gates" in text and "\n" not in text
    with pytest.raises(InputFileError, match="over the"):
        require_regular_file(big, max_bytes=inputs.MAX_GATING_BYTES)
    small = tmp_path / "small.xml"
    small.write_bytes(b"<a/>" * 10)
    monkeypatch.setattr(inputs, "MAX_GATING_BYTES", 16)
    with pytest.raises(InputFileError, match="40 bytes, over the 16 bytes limit"):
        read_gating_bytes(small)


# --------------------------------------------------------------------------------------------
# profile_sample: an input that is not a regular file fails that sample, as unreadable
# --------------------------------------------------------------------------------------------


def _failed(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    qc = json.loads((out / "qc.json").read_text())
    profile = json.loads((out / "profile.json").read_text())
    return qc, profile


def test_profile_of_a_fifo_or_dev_zero_is_failed_qc_not_a_hang(
    config: dict[str, Any], tmp_path: Path, fifo: Path
) -> None:
    for name, tube, kind in (("fifo", fifo, "FIFO"), ("zero", Path("/dev/zero"), "device")):
        out = tmp_path / name
        result = within_limit(lambda t=tube, o=out: profile_sample("S1", t, o, config), (fifo,))
        assert result.qc_status == "fail"
        qc, profile = _failed(out)
        assert qc["failure"] == "unreadable"
        reason = qc["reasons"][0]
        assert reason.startswith(f"{tube}: FCS file is not a regular file") and kind in reason
        assert "\n" not in reason
        sample = next(i for i in profile["inputs"] if i["role"] == "sample")
        assert sample["sha256"] is None  # never hashed
        others = [i for i in profile["inputs"] if i["role"] != "sample"]
        assert all(i["sha256"] for i in others)  # the regular ones still are


@pytest.mark.parametrize(
    ("role", "what"),
    [
        ("control", "control FCS file"),
        ("control:CD22", "CD22 control FCS file"),
        ("beads", "bead FCS file"),
        ("gating_template", "gating template"),
        ("lab_gating", "lab gating file"),
        ("trial", "trial file"),
        ("compensation_matrix", "compensation matrix"),
    ],
)
def test_every_input_is_checked_before_anything_reads_it(
    demo_cohort: Path, config: dict[str, Any], tmp_path: Path, fifo: Path, role: str, what: str
) -> None:
    """A FIFO as any input: this sample fails as unreadable, named in one line; nothing
    blocks (the template used to be parsed, the trial read, before any check)."""
    fcs = demo_cohort / "fcs" / "P01-R1.fcs"
    kwargs: dict[str, Any] = {}
    if role == "control":
        kwargs["control"] = fifo
    elif role == "control:CD22":
        kwargs["marker_controls"] = {"CD22": fifo}
    elif role == "beads":
        kwargs["bead_fcs"] = fifo
    elif role == "lab_gating":
        config["lab_gating"] = {"file": str(fifo), "populations": {}}
    elif role == "compensation_matrix":
        config["compensation"] = {**(config.get("compensation") or {}), "matrix": str(fifo)}
    else:
        config[role] = str(fifo)
    out = tmp_path / "out"
    result = within_limit(lambda: profile_sample("S1", fcs, out, config, **kwargs), (fifo,))
    assert result.qc_status == "fail"
    qc, _ = _failed(out)
    assert qc["failure"] == "unreadable"
    assert qc["reasons"] == [
        f"{fifo}: {what} is not a regular file (FIFO); copy the data into a regular file "
        "and give that file's path"
    ]


def test_a_lab_gating_file_over_the_cap_fails_the_sample(
    demo_cohort: Path, config: dict[str, Any], tmp_path: Path
) -> None:
    big = tmp_path / "lab.wsp"
    with open(big, "wb") as handle:
        os.truncate(handle.fileno(), inputs.MAX_GATING_BYTES + 1)
    config["lab_gating"] = {"file": str(big), "populations": {}}
    out = tmp_path / "out"
    result = profile_sample("S1", demo_cohort / "fcs" / "P01-R1.fcs", out, config)
    assert result.qc_status == "fail"
    qc, _ = _failed(out)
    assert qc["failure"] == "unreadable"
    assert str(big) in qc["reasons"][0] and "over the 50.0 MB limit" in qc["reasons"][0]
