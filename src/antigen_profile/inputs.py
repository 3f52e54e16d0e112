"""Input files: each one is checked to be a regular file before anything opens, hashes or
parses it.

A FIFO blocks a reader forever, ``/dev/zero`` never ends, and a folder or a symlink loop
gives an error that names neither the file nor the fix (issue 14). Every reader of an input
(FCS tubes, gating template, lab gating file, trial, compensation matrix, sheets) goes
through :func:`file_problem` or :func:`open_regular`, so each says, in one line, which file
it is, what it is, and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from antigen_profile.errors import AntigenProfileError

#: Largest gating file (a Gating-ML template, a lab's Gating-ML or FlowJo workspace) read:
#: parsing takes about 8x the file size in memory, and FlowKit as much again for a workspace.
#: A gating strategy is kilobytes; a workspace this large holds thousands of samples.
MAX_GATING_BYTES = 50_000_000

NOT_FOUND = "not found"

_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


class InputFileError(AntigenProfileError, ValueError):
    """An input that is not a readable regular file (or is too large); one line: the file,
    what it is, and the fix. ``problem`` and ``fix`` hold the two parts, for callers that
    word their own message around them."""

    def __init__(self, message: str, problem: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.problem = problem
        self.fix = fix


def _error(path: str | Path, problem: str, what: str = "", fix: str = "") -> InputFileError:
    fix = fix or fix_for(problem)
    return InputFileError(problem_message(path, problem, what, fix), problem, fix)


def _kind_of(mode: int) -> str | None:
    """What a file of this ``st_mode`` is, as a message says it; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    return f"is not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'special file')})"


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NOT_FOUND
    return f"cannot be read ({exc.strerror or exc})"


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file (``"not found"``, ``"is a directory"``,
    ``"is not a regular file (FIFO)"``, ``"is a symlink loop"``, ...), or ``None``.

    Only ``stat`` is called, never ``open``: opening a FIFO to look at it would block.
    """
    try:
        return _kind_of(os.stat(path).st_mode)
    except OSError as exc:
        return _os_problem(exc)


def fix_for(problem: str) -> str:
    """What to do about a :func:`file_problem`, for the end of a one-line message."""
    if problem == NOT_FOUND:
        return "check the path"
    if problem == "is a directory":
        return "give the path of the file itself, not of its folder"
    if problem == "is a symlink loop":
        return "make the symbolic link point to the file"
    if problem.startswith("cannot be read"):
        return "check the file's permissions"
    return "copy the data into a regular file and give that file's path"


def problem_message(path: str | Path, problem: str, what: str = "", fix: str = "") -> str:
    """``{path}: {what} {problem}; {fix}`` on one line."""
    subject = f"{path}: {what} " if what else f"{path}: "
    return " ".join(f"{subject}{problem}; {fix or fix_for(problem)}".split())


def require_regular_file(
    path: str | Path, what: str = "", fix: str = "", max_bytes: int | None = None
) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or :class:`InputFileError` if it is not a
    regular file, or is larger than ``max_bytes`` (``what`` names its role in the message,
    e.g. ``"lab gating file"``). Only ``stat`` is called: the file is not opened."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _error(path, _os_problem(exc), what, fix) from None
    problem = _kind_of(info.st_mode)
    if problem is not None:
        raise _error(path, problem, what, fix)
    if max_bytes is not None and info.st_size > max_bytes:
        raise _too_large(path, info.st_size, max_bytes, what)
    return Path(path)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _too_large(path: str | Path, size: int, limit: int, what: str = "") -> InputFileError:
    """The one line for a gating file over its size cap: file, size, cap and what to do."""
    problem = f"is {_size(size)}, over the {_size(limit)} limit for gating files"
    fix = (
        "save a copy that holds only the gates (for a FlowJo workspace: only the sample whose "
        "gates are used) and give that file"
    )
    return _error(path, problem, what, fix)


@contextmanager
def open_regular(
    path: str | Path, what: str = "", max_bytes: int | None = None
) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` read-only and yield ``(handle, size)``; refuse anything but a regular
    file (checked on the opened descriptor, so a file swapped after a look is caught too)
    and, with ``max_bytes``, a larger one.

    The open does not block: ``O_NONBLOCK`` lets a FIFO without a writer open at once, and
    ``fstat`` then refuses it before any read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _error(path, _os_problem(exc), what) from None
    try:
        info = os.fstat(fd)
        problem = _kind_of(info.st_mode)
        if problem is not None:
            raise _error(path, problem, what)
        if max_bytes is not None and info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes, what)
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle, info.st_size


def read_regular_bytes(path: str | Path, what: str = "", max_bytes: int | None = None) -> bytes:
    """The whole of a regular file, at most ``max_bytes`` (a file that grows past the cap
    while being read is refused too)."""
    with open_regular(path, what, max_bytes) as (handle, _):
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes, what)
    return data


def read_gating_bytes(path: str | Path, what: str = "gating file") -> bytes:
    """A gating file (template or lab gating), under :data:`MAX_GATING_BYTES` as set when
    called (so one assignment raises the cap for every reader)."""
    return read_regular_bytes(path, what, MAX_GATING_BYTES)


def gating_size_limit() -> int:
    """:data:`MAX_GATING_BYTES` as set now."""
    return MAX_GATING_BYTES


def sha256_regular(path: str | Path) -> str:
    """SHA-256 of a regular file, read in blocks; :class:`InputFileError` for anything else
    (hashing a FIFO or ``/dev/zero`` would never end)."""
    digest = hashlib.sha256()
    with open_regular(path) as (handle, _):
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_xml_parser() -> Any:
    """An lxml parser for XML from outside the project: no DTD, no entity expansion, no
    network. A DOCTYPE is still parsed (see :func:`has_doctype`), never acted on."""
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False
    )


def has_doctype(root: Any) -> bool:
    """Whether a parsed document declares a DOCTYPE: neither Gating-ML nor a FlowJo
    workspace ever does, and entities are how XML files attack their readers."""
    info = root.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None
