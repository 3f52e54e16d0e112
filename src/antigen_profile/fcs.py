"""FCS 2.0/3.0/3.1/3.2 reader that trusts no number in the file.

Why our own reader: FlowKit/FlowIO reject valid recordings from common instruments (24-bit
Cytek integers, Beckman ``.lmd`` files with two data sets, the blank HEADER offsets of files
over 100 MB, DATA ends that are off by one, an unparseable ``$TIMESTEP``), and a clinic cannot
use a pipeline that stops on a valid Cytek, Navios or MACSQuant file. This module reads them
all, records every tolerance it applies in plain words (:attr:`FCSData.warnings`), and turns
anything malformed into a one-line :class:`FCSError` ("{path}: what is wrong; what to do").

Events are preprocessed exactly as FlowIO's ``FlowData.as_array(preprocess=True)`` (which is
what FlowKit calls "raw" events), so results do not change when the pipeline switches readers:
integer data masked to the bits ``$PnR`` uses, the time channel multiplied by ``$TIMESTEP``,
log amplification ``10 ** (f1 * x / R) * f2`` for ``$PnE = f1,f2`` with ``f1 > 0`` (``f2 = 0``
taken as 1), then division by a ``$PnG`` gain other than 0 or 1 (never on the time channel).

Safety: the file is opened read-only and only the HEADER, TEXT, supplemental TEXT and DATA
segments are read. Every offset and count is checked against the file size before anything
is allocated, every loop is bounded by the file size, and any unexpected exception inside the
reader surfaces as :class:`FCSError` naming the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

import numpy as np

from antigen_profile.errors import AntigenProfileError
from antigen_profile.inputs import NOT_FOUND, InputFileError, open_regular

__all__ = [
    "SPILLOVER_KEYWORDS",
    "FCSData",
    "FCSError",
    "HeaderText",
    "Spillover",
    "find_spillover",
    "find_spillover_keyword",
    "parse_spillover",
    "read_fcs",
    "read_header_and_text",
]

HEADER_SIZE = 58
VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")
MAX_PAR = 10_000
MAX_DATA_SETS = 256
MAX_STEXT_BYTES = 16 * 1024 * 1024
#: FCS 3.x: a segment reaching beyond this byte has 0 offsets in the HEADER (spec, not a quirk).
LARGE_FILE_OFFSET = 99_999_999
#: Where the spillover matrix may be, in the order it is looked for.
SPILLOVER_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL", "$COMP", "SPILLOVER")

_PADDING = b" \t\r\n\x00"
_RE_VERSION = re.compile(rb"FCS\d\.\d")
_RE_INT = re.compile(r"[+-]?\d{1,30}")
_REEXPORT = "re-export the file from the acquisition software"
_COPY_AGAIN = "copy the file again from the instrument or re-export it"
_MAX_LISTED = 8


class FCSError(AntigenProfileError):
    """A file that cannot be read as FCS; the message is one line: file, problem, what to do."""


class _ProblemError(Exception):
    """Internal: what is wrong and what to do; the public functions add the file name."""

    def __init__(self, what: str, todo: str = _REEXPORT) -> None:
        super().__init__(what)
        self.what = what
        self.todo = todo


@dataclass
class FCSData:
    """One data set of an FCS file, with events as FlowIO would preprocess them.

    Attributes
    ----------
    path : Path
        The file (opened read-only, never written to).
    version : str
        ``"FCS2.0"``, ``"FCS3.0"``, ``"FCS3.1"`` or ``"FCS3.2"`` (of the data set read).
    keywords : dict of str to str
        TEXT keywords (supplemental TEXT merged), keys upper-cased as written (``"$CYT"``,
        ``"SPILL"``), values verbatim.
    channels : list of str
        ``$PnN``, made unique when the file repeats a name (``"FL1-A"`` -> ``"FL1-A_2"``).
    labels : list of str
        ``$PnS`` or ``""``.
    events : numpy.ndarray
        ``(n_events, n_channels)`` float64, preprocessed (see the module docstring) unless
        read with ``preprocess=False``; row-major unless read with ``order="F"``.
    ranges : list of float
        ``$PnR`` (NaN where a floating-point channel gives no usable value).
    scale_tops : list of float
        ``$PnR - 1`` put through the same scaling as the events: the top of each scale in
        event units, for saturation QC (``inf`` where there is no usable ``$PnR``).
    data_set : int
        1-based index of the data set read.
    n_data_sets : int
        Number of data sets found in the file.
    warnings : list of str
        Every tolerance applied, in plain words.
    """

    path: Path
    version: str
    keywords: dict[str, str]
    channels: list[str]
    labels: list[str]
    events: np.ndarray
    ranges: list[float]
    scale_tops: list[float]
    data_set: int
    n_data_sets: int
    warnings: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        """Number of events (rows of :attr:`events`)."""
        return int(self.events.shape[0])


class HeaderText(NamedTuple):
    """Metadata of one data set, read without its DATA segment (for ``inspect``)."""

    version: str
    keywords: dict[str, str]
    warnings: list[str]
    data_set: int
    n_data_sets: int


class Spillover(NamedTuple):
    """A spillover matrix found in the keywords: rows are the source detectors."""

    keyword: str
    names: list[str]
    matrix: np.ndarray


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def read_fcs(
    path: str | Path,
    *,
    data_set: int | None = None,
    preprocess: bool = True,
    order: Literal["C", "F"] = "C",
) -> FCSData:
    """Read one data set of an FCS file.

    Parameters
    ----------
    path : str or Path
        The FCS file; opened read-only.
    data_set : int, optional
        1-based data set to read. By default the first FCS 3.x data set when the file holds
        several (Beckman ``.lmd`` files keep an FCS 2.0 copy first), else the first.
    preprocess : bool
        Apply ``$TIMESTEP``, log amplification and gain as FlowIO does (default). With
        ``False`` the events are the stored values (integers masked to ``$PnR``).
    order : {"C", "F"}
        Memory layout of the events: row-major (default) or column-major, where each channel
        is contiguous, so that per-channel work (QC, masks, medians, transforms) reads it at
        full speed (the pipeline's choice). Decoding into either costs no extra copy.

    Raises
    ------
    FCSError
        The file cannot be read; the message is one line naming the file.
    """
    if order not in ("C", "F"):  # the caller's mistake, not the file's
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    path = Path(path)
    try:
        return _read(path, data_set, preprocess=preprocess, order=order)
    except FCSError:
        raise
    except _ProblemError as problem:
        raise FCSError(_message(path, problem.what, problem.todo)) from None
    except MemoryError:
        raise FCSError(
            _message(path, "not enough memory to hold its events", "free memory and retry")
        ) from None
    except Exception as exc:  # anything unexpected still names the file, in one line
        raise FCSError(
            _message(
                path,
                f"unexpected {type(exc).__name__} while reading it ({exc})",
                "check that it is a complete FCS 2.0/3.x file; " + _REEXPORT,
            )
        ) from exc


def read_header_and_text(path: str | Path, *, data_set: int | None = None) -> HeaderText:
    """Read the version and keywords of one data set without touching its DATA segment.

    Cheap enough for ``inspect`` on large files; the data set is chosen as in :func:`read_fcs`.
    Returns a :class:`HeaderText` (a tuple: version, keywords, warnings, data_set,
    n_data_sets).
    """
    path = Path(path)
    try:
        with _opened(path) as (handle, size):
            sets, notes = _scan_data_sets(handle, size)
            index = _choose_data_set(sets, data_set, notes)
            chosen = sets[index]
            _merge_supplemental_text(handle, size, chosen)
            return HeaderText(
                chosen.version, chosen.keywords, chosen.warnings + notes, index + 1, len(sets)
            )
    except FCSError:
        raise
    except _ProblemError as problem:
        raise FCSError(_message(path, problem.what, problem.todo)) from None
    except Exception as exc:
        raise FCSError(
            _message(
                path,
                f"unexpected {type(exc).__name__} while reading its TEXT ({exc})",
                "check that it is a complete FCS 2.0/3.x file; " + _REEXPORT,
            )
        ) from exc


def _message(path: Path, what: str, todo: str) -> str:
    text = f"{path}: {what}; {todo}"
    return " ".join(text.split())  # one line, whatever the file put into the values


def _show(value: object, limit: int = 40) -> str:
    """A value from the file, quoted and cut short, safe to put into a one-line message."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _show_bytes(value: bytes) -> str:
    return _show(value.decode("latin-1"))


# --------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------


@contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open read-only and yield ``(handle, size)``; anything but a regular file (a FIFO or
    ``/dev/zero`` would block or never end) and OS errors become a :class:`_ProblemError`."""
    with ExitStack() as stack:
        try:
            handle, size = stack.enter_context(open_regular(path))
        except InputFileError as exc:
            if exc.problem == NOT_FOUND:
                raise _ProblemError(
                    "file not found", "check the path in the sample sheet"
                ) from None
            raise _ProblemError(exc.problem, exc.fix) from None
        if size < HEADER_SIZE:
            raise _ProblemError(
                f"only {size} bytes, too short to be FCS (the HEADER alone is {HEADER_SIZE})",
                _COPY_AGAIN,
            )
        yield handle, size


def _check_inside(size: int, start: int, length: int, what: str) -> None:
    """Refuse a segment that does not lie inside the file, before reading any of it."""
    if start < 0 or length < 0 or start + length > size:
        raise _ProblemError(
            f"{what} (bytes {start}-{start + length - 1}) lies outside the file "
            f"({size} bytes); the file is truncated or its offsets are wrong",
            _COPY_AGAIN,
        )


def _read_bytes(handle: BinaryIO, size: int, start: int, length: int, what: str) -> bytes:
    """Exactly ``length`` bytes at ``start``, after checking they lie inside the file."""
    _check_inside(size, start, length, what)
    handle.seek(start)
    data = handle.read(length)
    if len(data) != length:
        raise _ProblemError(f"{what} could not be read completely (the file changed?)", _COPY_AGAIN)
    return data


# --------------------------------------------------------------------------------------------
# HEADER and TEXT
# --------------------------------------------------------------------------------------------


class _Header(NamedTuple):
    version: str
    text_begin: int
    text_end: int
    data_begin: int | None  # None: blank or unreadable
    data_end: int | None
    data_blank: bool


@dataclass
class _DataSet:
    offset: int  # absolute position of this data set's HEADER
    header: _Header
    keywords: dict[str, str]
    delimiter: bytes
    warnings: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.header.version


def _parse_header(raw: bytes, offset: int, size: int) -> tuple[_Header, list[str]]:
    """Version and segment offsets (relative to ``offset``) from the 58-byte HEADER."""
    notes: list[str] = []
    where = "" if offset == 0 else f" of the data set at byte {offset}"
    if not _RE_VERSION.fullmatch(raw[:6]):
        raise _ProblemError(
            f"HEADER{where} does not start with an FCS version (found {_show_bytes(raw[:6])}); "
            "it is not an FCS file",
            "check that the right file was given",
        )
    version = raw[:6].decode("ascii")
    if version not in VERSIONS:
        raise _ProblemError(
            f"{version} is not supported (only {', '.join(VERSIONS)})",
            "export the data as FCS 3.1",
        )
    fields: list[int | None] = []
    invalid = False
    for i in range(6):
        text = raw[10 + 8 * i : 18 + 8 * i].strip(_PADDING)
        if not text:
            fields.append(None)
        elif text.isdigit():
            fields.append(int(text))
        else:
            fields.append(None)
            invalid = invalid or i < 4
    if invalid:  # some writers shift the fields: fall back to whitespace-separated numbers
        numbers = raw[10:HEADER_SIZE].split()
        if len(numbers) >= 4 and all(n.isdigit() for n in numbers[:4]):
            fields = [int(n) for n in numbers[:4]] + [None, None]
            notes.append(f"HEADER{where} offsets are not in 8-character fields; read them apart")
    text_begin, text_end, data_begin, data_end = fields[:4]
    if text_begin is None or text_end is None:
        raise _ProblemError(
            f"HEADER{where} gives no readable TEXT offsets ({_show_bytes(raw[10:26])})",
            _COPY_AGAIN,
        )
    if text_begin < HEADER_SIZE or text_end < text_begin or offset + text_end >= size:
        raise _ProblemError(
            f"HEADER{where} puts TEXT at bytes {text_begin}-{text_end}, outside the "
            f"{size}-byte file or inside the HEADER",
            _COPY_AGAIN,
        )
    blank = not raw[26:42].strip(_PADDING)
    return _Header(version, text_begin, text_end, data_begin, data_end, blank), notes


def _split_text(raw: bytes, what: str) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """Keyword/value pairs of a TEXT-like segment (its first byte is the delimiter).

    A doubled delimiter is a literal delimiter; keywords and values never start with one
    (FCS 3.1), so in a run of k delimiters an odd k ends the token after (k - 1) / 2 literal
    delimiters and an even k is k / 2 literal delimiters inside the token.
    """
    notes: list[str] = []
    delim = raw[:1]
    body = raw[1:]
    pad = bytes(b for b in _PADDING if bytes([b]) != delim)
    tokens: list[bytes] = []
    current = b""
    position = 0
    for match in re.finditer(re.escape(delim) + b"+", body):
        current += body[position : match.start()]
        run = match.end() - match.start()
        if run % 2:
            tokens.append(current + delim * (run // 2))
            current = b""
        else:
            current += delim * (run // 2)
        position = match.end()
    tail = (current + body[position:]).strip(pad)
    if tail:
        if len(tokens) % 2:
            tokens.append(tail)
            notes.append(f"{what} does not end with its delimiter; read the last value to its end")
        elif tail.endswith(delim) and tail.strip(delim + pad):
            tokens += [tail[:-1], b""]  # "/KEY//": the last keyword has an empty value
            notes.append(f"{what} ends with keyword {_show_bytes(tail[:-1])} with an empty value")
        else:
            notes.append(f"{what} has {len(tail)} stray bytes after its last value; ignored")
    if len(tokens) % 2:
        plain = body.strip(pad)
        plain = plain[:-1] if plain.endswith(delim) else plain
        naive = plain.split(delim)
        if len(naive) % 2 == 0 and delim * 2 in body:
            tokens = naive
            notes.append(
                f"{what} has empty values (written as doubled delimiters); read them as empty"
            )
        else:
            notes.append(
                f"{what} ends with keyword {_show_bytes(tokens[-1])} without a value; ignored"
            )
            tokens = tokens[:-1]
    pairs = []
    dropped = 0
    emptied: list[bytes] = []
    for key, value in zip(tokens[::2], tokens[1::2], strict=True):
        parts = key.split(delim)
        if len(parts) > 1 and all(p.strip(_PADDING) for p in parts):
            # "/K1//K2/V2/": K1 has an empty value, not a key "K1/K2" (never seen in practice)
            pairs += [(p, b"") for p in parts[:-1]]
            emptied += parts[:-1]
            key = parts[-1]
        if key.strip(_PADDING):
            pairs.append((key, value))
        else:
            dropped += 1
    if emptied:
        notes.append(
            f"{what} has empty values written as doubled delimiters (keywords "
            + _listing([_show_bytes(k) for k in emptied])
            + "); read them as empty"
        )
    if dropped:
        notes.append(f"{what} has {dropped} value(s) without a keyword; ignored")
    return pairs, notes


def _decode_pairs(
    pairs: Sequence[tuple[bytes, bytes]], version: str, what: str
) -> tuple[dict[str, str], list[str]]:
    """Decode keys (stripped, upper-cased) and values (verbatim); last duplicate wins."""
    notes: list[str] = []
    codec = "utf-8"
    try:
        for key, value in pairs:
            key.decode("utf-8")
            value.decode("utf-8")
    except UnicodeDecodeError:
        if version in ("FCS2.0", "FCS3.0"):
            codec = "latin-1"
            notes.append(f"{what} is not UTF-8; read it as Latin-1 (usual before FCS 3.1)")
        else:
            notes.append(f"{what} is not valid UTF-8; unreadable characters replaced")
    keywords: dict[str, str] = {}
    repeated: dict[str, int] = {}
    for raw_key, raw_value in pairs:
        key = raw_key.decode(codec, errors="replace").strip().upper()
        value = raw_value.decode(codec, errors="replace")
        if key in keywords:
            repeated[key] = repeated.get(key, 1) + 1
        keywords[key] = value
    for key, count in list(repeated.items())[:_MAX_LISTED]:
        notes.append(f"keyword {key} appears {count} times in {what}; kept the last value")
    if len(repeated) > _MAX_LISTED:
        notes.append(f"{len(repeated) - _MAX_LISTED} more keywords appear more than once")
    return keywords, notes


_RE_KEYWORD_LIKE = re.compile(r"\$[A-Z]+[0-9]*[A-Z]*")


def _out_of_step(keywords: Mapping[str, str], what: str) -> str | None:
    """Why the keyword/value pairs look shifted (a value that is a standard keyword name, as
    when a delimiter was lost or added), or None. No real file in the corpus has one."""
    for key, value in keywords.items():
        if _RE_KEYWORD_LIKE.fullmatch(value.strip()):
            return (
                f"{what} keywords and values are out of step: the value of {_show(key)} is "
                f"{_show(value.strip())}, a keyword name (a delimiter is missing or doubled)"
            )
    return None


def _read_data_set_text(handle: BinaryIO, size: int, offset: int) -> _DataSet:
    """HEADER and primary TEXT of the data set whose HEADER starts at ``offset``."""
    raw_header = _read_bytes(handle, size, offset, HEADER_SIZE, "HEADER")
    header, notes = _parse_header(raw_header, offset, size)
    length = header.text_end - header.text_begin + 1
    raw = _read_bytes(handle, size, offset + header.text_begin, length, "TEXT segment")
    if len(raw) < 2:
        raise _ProblemError("TEXT segment is empty", _REEXPORT)
    pairs, text_notes = _split_text(raw, "TEXT")
    keywords, key_notes = _decode_pairs(pairs, header.version, "TEXT")
    if not keywords:
        raise _ProblemError(
            f"TEXT segment holds no keyword/value pairs (delimiter {_show_bytes(raw[:1])})",
            _COPY_AGAIN,
        )
    shifted = _out_of_step(keywords, "TEXT")
    if shifted:
        raise _ProblemError(shifted, _COPY_AGAIN)
    return _DataSet(offset, header, keywords, raw[:1], notes + text_notes + key_notes)


def _scan_data_sets(handle: BinaryIO, size: int) -> tuple[list[_DataSet], list[str]]:
    """Every data set reachable through ``$NEXTDATA`` (offsets relative to each data set)."""
    sets = [_read_data_set_text(handle, size, 0)]
    notes: list[str] = []
    while True:
        current = sets[-1]
        raw = current.keywords.get("$NEXTDATA", "0").strip()
        if not raw or raw.strip("0") == "":
            break
        step = int(raw) if _RE_INT.fullmatch(raw) else None
        target = None if step is None else current.offset + step
        if step is None or step <= 0 or target is None or target + HEADER_SIZE > size:
            notes.append(
                f"$NEXTDATA {_show(raw)} of data set {len(sets)} points outside the file; ignored"
            )
            break
        if len(sets) >= MAX_DATA_SETS:
            notes.append(f"more than {MAX_DATA_SETS} data sets; the rest ignored")
            break
        try:
            sets.append(_read_data_set_text(handle, size, target))
        except _ProblemError as problem:
            notes.append(
                f"$NEXTDATA of data set {len(sets)} points to byte {target}, where no readable "
                f"data set starts ({problem.what}); ignored"
            )
            break
    return sets, notes


def _choose_data_set(sets: Sequence[_DataSet], wanted: int | None, notes: list[str]) -> int:
    """0-based index of the data set to read; says which one in ``notes``."""
    if wanted is not None:
        if not 1 <= wanted <= len(sets):
            raise _ProblemError(
                f"data set {wanted} requested but the file holds {len(sets)}",
                f"choose a data set from 1 to {len(sets)}",
            )
        index = wanted - 1
    else:
        index = next((i for i, s in enumerate(sets) if s.version != "FCS2.0"), 0)
    if len(sets) > 1:
        versions = ", ".join(s.version for s in sets)
        why = "" if wanted is not None or not index else ", the first FCS 3 one"
        notes.append(
            f"file holds {len(sets)} data sets ({versions}); read data set {index + 1}"
            f" ({sets[index].version}){why}"
        )
    return index


def _merge_supplemental_text(handle: BinaryIO, size: int, data_set: _DataSet) -> None:
    """Add the supplemental TEXT keywords ($BEGINSTEXT..$ENDSTEXT); primary TEXT wins."""
    keywords = data_set.keywords
    if data_set.version == "FCS2.0" or "$BEGINSTEXT" not in keywords:
        return
    begin = _optional_offset(keywords, "$BEGINSTEXT")
    end = _optional_offset(keywords, "$ENDSTEXT")
    notes = data_set.warnings
    if begin is None or end is None or (begin == 0 and end == 0):
        if begin is None or end is None:
            notes.append("$BEGINSTEXT/$ENDSTEXT are not numbers; supplemental TEXT ignored")
        return
    header = data_set.header
    if (begin, end) == (header.text_begin, header.text_end):
        return  # some writers point it at the primary TEXT
    start = data_set.offset + begin
    if begin < HEADER_SIZE or end < begin or data_set.offset + end >= size:
        notes.append(f"supplemental TEXT at bytes {begin}-{end} lies outside the file; ignored")
        return
    if end - begin + 1 > MAX_STEXT_BYTES:
        notes.append(f"supplemental TEXT is {end - begin + 1} bytes, too large; ignored")
        return
    raw = _read_bytes(handle, size, start, end - begin + 1, "supplemental TEXT")
    if b"\x00" in raw.rstrip(b"\x00") or not raw.strip(_PADDING):
        notes.append(
            f"supplemental TEXT (bytes {begin}-{end}) holds binary data, not keywords; ignored"
        )
        return
    if not raw.startswith(data_set.delimiter):
        raw = data_set.delimiter + raw  # FCS 3.1 does not require it to start with one
    pairs, text_notes = _split_text(raw, "supplemental TEXT")
    extra, key_notes = _decode_pairs(pairs, data_set.version, "supplemental TEXT")
    shifted = _out_of_step(extra, "supplemental TEXT")
    if shifted:
        notes.append(shifted + "; supplemental TEXT ignored")
        return
    notes.extend(text_notes + key_notes)
    clashes = [k for k, v in extra.items() if k in keywords and keywords[k] != v]
    added = 0
    for key, value in extra.items():
        if key not in keywords:
            keywords[key] = value
            added += 1
    if added:
        notes.append(f"merged {added} keywords from the supplemental TEXT")
    if clashes:
        notes.append(
            "supplemental TEXT repeats "
            + ", ".join(clashes[:_MAX_LISTED])
            + " with other values; kept the primary TEXT values"
        )


# --------------------------------------------------------------------------------------------
# Numbers from keywords
# --------------------------------------------------------------------------------------------


def _as_int(value: str) -> int | None:
    """A whole number from a keyword value (padded, zero-filled or "1.0"), else None."""
    text = value.strip()
    if _RE_INT.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isfinite(number) and number.is_integer() and abs(number) < 1e18:
        return int(number)
    return None


def _as_float(value: str) -> float | None:
    """A finite number from a keyword value, else None."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _required(keywords: Mapping[str, str], key: str) -> str:
    value = keywords.get(key)
    if value is None:
        raise _ProblemError(f"required keyword {key} is missing from TEXT", _REEXPORT)
    return value


def _required_int(keywords: Mapping[str, str], key: str) -> int:
    value = _required(keywords, key)
    number = _as_int(value)
    if number is None:
        raise _ProblemError(f"{key} is {_show(value)}, not a whole number", _REEXPORT)
    return number


def _optional_offset(keywords: Mapping[str, str], key: str) -> int | None:
    value = keywords.get(key)
    if value is None:
        return None
    return _as_int(value)


# --------------------------------------------------------------------------------------------
# Channels and DATA layout
# --------------------------------------------------------------------------------------------


@dataclass
class _Channel:
    name: str
    label: str
    kind: str  # "I", "F" or "D"
    nbytes: int
    mask: int | None  # integer data: AND mask when $PnR uses fewer bits than $PnB
    range: float  # $PnR (NaN when unusable)
    decades: float
    log0: float
    gain: float


@dataclass
class _Layout:
    channels: list[_Channel]
    order: str  # "<" or ">"
    tot: int | None
    time_index: int | None

    @property
    def event_bytes(self) -> int:
        return sum(c.nbytes for c in self.channels)


def _next_power_of_two(value: int) -> int:
    """Smallest power of two >= ``value``: the bits a ``$PnR`` range uses (as FlowIO)."""
    return 1 if value <= 0 else 1 << (value - 1).bit_length()


def _byte_order(keywords: Mapping[str, str], needed: bool) -> str:
    """NumPy byte-order character from ``$BYTEORD`` (1,2 / 1,2,3,4 / 1,...,8 little, the
    reverse big); mixed orders (3,4,1,2) are refused only when multi-byte values need it."""
    raw = keywords.get("$BYTEORD")
    if raw is None:
        if needed:
            raise _ProblemError("required keyword $BYTEORD is missing from TEXT", _REEXPORT)
        return "<"
    parts = [p.strip() for p in raw.split(",")]
    numbers = [int(p) if p.isdigit() else -1 for p in parts]
    if numbers == list(range(1, len(numbers) + 1)):
        return "<"
    if numbers == list(range(len(numbers), 0, -1)):
        return ">"
    if not needed:
        return "<"
    raise _ProblemError(
        f"$BYTEORD {_show(raw)} is neither little (1,2,3,4) nor big endian (4,3,2,1)",
        "re-export the file in FCS 3.1",
    )


def _layout(data_set: _DataSet, notes: list[str]) -> _Layout:
    """Channels, their storage and scaling, all checked before any DATA is touched."""
    kw = data_set.keywords
    version = data_set.version
    par = _required_int(kw, "$PAR")
    if not 1 <= par <= MAX_PAR:
        raise _ProblemError(f"$PAR is {par}; it must be between 1 and {MAX_PAR}", _REEXPORT)
    datatype = _required(kw, "$DATATYPE").strip().upper()
    if datatype == "A":
        raise _ProblemError(
            "ASCII data ($DATATYPE A) not supported",
            "re-export the file with binary integer or floating-point data",
        )
    if datatype not in ("I", "F", "D"):
        raise _ProblemError(f"$DATATYPE is {_show(datatype)}, not I, F or D", _REEXPORT)
    mode = kw.get("$MODE")
    if mode is None:
        if version != "FCS3.2":  # FCS 3.2 dropped $MODE: list mode is the only one left
            notes.append("$MODE is missing; read the data as list mode")
    elif mode.strip().upper() != "L":
        raise _ProblemError(
            f"$MODE is {_show(mode.strip())}; only list-mode data (L) can be analysed",
            "export list-mode data",
        )
    tot: int | None = None
    if "$TOT" in kw:
        tot = _required_int(kw, "$TOT")
        if tot < 0:
            raise _ProblemError(f"$TOT is {tot}; it cannot be negative", _REEXPORT)

    channels: list[_Channel] = []
    log0_fixed: list[str] = []
    float_log: list[str] = []
    for n in range(1, par + 1):
        name = _required(kw, f"$P{n}N").strip()
        if not name:
            raise _ProblemError(f"$P{n}N (the name of channel {n}) is blank", _REEXPORT)
        label = kw.get(f"$P{n}S", "").strip()
        kind = kw.get(f"$P{n}DATATYPE", datatype).strip().upper()
        if kind not in ("I", "F", "D"):
            raise _ProblemError(f"$P{n}DATATYPE is {_show(kind)}, not I, F or D", _REEXPORT)
        bits = _required_int(kw, f"$P{n}B")
        if kind == "I" and not (bits % 8 == 0 and 8 <= bits <= 64):
            raise _ProblemError(
                f"$P{n}B is {bits} bits; integer data must use whole bytes (8 to 64 bits)",
                "re-export the file with 8-, 16- or 32-bit integers or floating point",
            )
        if kind in ("F", "D") and bits != (32 if kind == "F" else 64):
            raise _ProblemError(
                f"$P{n}B is {bits} bits but data type {kind} stores "
                f"{32 if kind == 'F' else 64}-bit values",
                _REEXPORT,
            )
        raw_range = _required(kw, f"$P{n}R")
        value = _as_float(raw_range)
        mask = None
        if kind == "I":
            if value is None or value < 1:
                raise _ProblemError(
                    f"$P{n}R is {_show(raw_range)}, not a positive number", _REEXPORT
                )
            used = _next_power_of_two(math.ceil(value))
            mask = used - 1 if used < 1 << bits else None
        elif value is None or value <= 0:
            notes.append(f"$P{n}R is {_show(raw_range)}; no scale top for channel {name}")
            value = math.nan
        decades, log0 = _amplification(kw, n, name, kind, value, version, notes)
        if decades > 0 and log0 == 0:
            log0 = 1.0
            log0_fixed.append(name)
        if decades > 0 and kind != "I":
            float_log.append(name)
        gain = 1.0
        if f"$P{n}G" in kw:
            parsed = _as_float(kw[f"$P{n}G"])
            if parsed is None:
                notes.append(f"$P{n}G is {_show(kw[f'$P{n}G'])}; gain of {name} taken as 1")
            else:
                gain = parsed
        channels.append(_Channel(name, label, kind, bits // 8, mask, value, decades, log0, gain))
    if log0_fixed:
        notes.append(
            "$PnE gives log offset 0 for " + _listing(log0_fixed) + "; used 1, as FlowIO does"
        )
    if float_log:
        notes.append(
            "$PnE asks for log amplification of floating-point channels "
            + _listing(float_log)
            + "; applied as FlowIO does"
        )
    time_index = None
    for i, channel in enumerate(channels):
        if channel.name.lower() == "time":
            time_index = i  # the last one, as FlowIO
    needs_order = any(c.nbytes > 1 for c in channels)
    return _Layout(channels, _byte_order(kw, needs_order), tot, time_index)


def _amplification(
    kw: Mapping[str, str],
    n: int,
    name: str,
    kind: str,
    value: float,
    version: str,
    notes: list[str],
) -> tuple[float, float]:
    """``$PnE`` as (decades, offset); (0, 0) is linear."""
    raw = kw.get(f"$P{n}E")
    if raw is None:
        if version != "FCS2.0":
            notes.append(f"$P{n}E is missing; channel {name} read as linear")
        return 0.0, 0.0
    parts = raw.split(",")
    decades, log0 = (_as_float(parts[0]), _as_float(parts[1])) if len(parts) == 2 else (None, None)
    plausible = decades is not None and log0 is not None and 0 <= decades <= 30 and log0 >= 0
    if plausible and decades > 0 and math.isnan(value):
        plausible = False
    if not plausible:
        if kind == "I":
            raise _ProblemError(
                f"$P{n}E is {_show(raw)}, not a usable 'decades,offset' pair",
                _REEXPORT,
            )
        notes.append(f"$P{n}E is {_show(raw)}; channel {name} read as linear")
        return 0.0, 0.0
    assert decades is not None and log0 is not None
    return decades, log0


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _unique_names(names: Sequence[str], notes: list[str]) -> list[str]:
    """``$PnN`` made unique: a repeated name gets ``_2``, ``_3``... (the first keeps it)."""
    seen = set(names)
    counts: dict[str, int] = {}
    unique = []
    for number, name in enumerate(names, start=1):
        counts[name] = counts.get(name, 0) + 1
        if counts[name] == 1:
            unique.append(name)
            continue
        suffix = counts[name]
        while f"{name}_{suffix}" in seen:
            suffix += 1
        new = f"{name}_{suffix}"
        seen.add(new)
        unique.append(new)
        notes.append(f"channel name {name} repeated by $P{number}N; renamed it {new}")
    return unique


# --------------------------------------------------------------------------------------------
# DATA
# --------------------------------------------------------------------------------------------


class _Candidate(NamedTuple):
    source: str  # "HEADER" or "TEXT"
    begin: int
    end: int


def _locate_data(
    data_set: _DataSet, layout: _Layout, size: int, notes: list[str]
) -> tuple[int, int]:
    """Absolute start of the DATA to read and the number of events in it.

    The HEADER and TEXT may disagree (Stratedigm), the end may be one byte too far
    (MACSQuant, LSRII), the HEADER may be blank or zero (files over 100 MB): use the pair
    that is consistent with ``$TOT`` x bytes per event and the file size.
    """
    kw = data_set.keywords
    header = data_set.header
    base = data_set.offset
    event_bytes = layout.event_bytes
    candidates: list[_Candidate] = []
    header_zero = header.data_begin == 0 and header.data_end == 0
    if header.data_begin is not None and header.data_end is not None and not header_zero:
        candidates.append(_Candidate("HEADER", header.data_begin, header.data_end))
    text_begin = _optional_offset(kw, "$BEGINDATA")
    text_end = _optional_offset(kw, "$ENDDATA")
    if ("$BEGINDATA" in kw or "$ENDDATA" in kw) and (text_begin is None or text_end is None):
        shown = [_show(kw[k]) if k in kw else "missing" for k in ("$BEGINDATA", "$ENDDATA")]
        notes.append(f"$BEGINDATA/$ENDDATA ({', '.join(shown)}) are not numbers; ignored")
    elif text_begin is not None and text_end is not None and (text_begin, text_end) != (0, 0):
        candidates.append(_Candidate("TEXT", text_begin, text_end))
    if not candidates:
        raise _ProblemError(
            "neither the HEADER nor TEXT ($BEGINDATA/$ENDDATA) says where the DATA segment is",
            _REEXPORT,
        )
    if len(candidates) == 2 and candidates[0][1:] == candidates[1][1:]:
        candidates = [_Candidate("HEADER and TEXT", candidates[0].begin, candidates[0].end)]

    expected = None if layout.tot is None else layout.tot * event_bytes
    verdicts: list[tuple[int, _Candidate, str]] = []  # (rank, candidate, verdict)
    problems: list[str] = []
    for cand in candidates:
        length = cand.end - cand.begin + 1
        where = f"{cand.source} offsets {cand.begin}-{cand.end}"
        overlaps_text = cand.begin < header.text_end and cand.end >= header.text_begin
        if cand.begin < HEADER_SIZE or length < 0 or overlaps_text:
            problems.append(f"{where} overlap the HEADER or TEXT or are reversed")
            continue
        need = length if expected is None else min(length, expected)
        if base + cand.begin + need > size:
            problems.append(f"{where} run past the end of the {size}-byte file (truncated file?)")
            continue
        if expected is None:
            verdicts.append((0, cand, "unknown"))
        elif length == expected:
            verdicts.append((0, cand, "exact"))
        elif length == expected + 1:
            verdicts.append((1, cand, "plus1"))
        elif length > expected:
            verdicts.append((2, cand, "longer"))
        else:
            problems.append(
                f"{where} hold {length} bytes but $TOT {layout.tot} x {event_bytes} bytes "
                f"per event needs {expected}"
            )
    if not verdicts:
        if any("run past" in p for p in problems):
            todo = "the file is truncated; " + _COPY_AGAIN
        elif any("needs" in p for p in problems):
            todo = "$TOT or the DATA offsets are wrong; " + _REEXPORT
        else:
            todo = "the DATA offsets are wrong; " + _REEXPORT
        raise _ProblemError("cannot locate the DATA segment: " + "; ".join(problems), todo)
    prefer = "HEADER" if data_set.version == "FCS2.0" else "TEXT"
    verdicts.sort(key=lambda v: (v[0], prefer not in v[1].source))
    _rank, chosen, verdict = verdicts[0]

    by_source = {c.source: c for c in candidates}
    if len(by_source) == 2 and by_source["HEADER"][1:] != by_source["TEXT"][1:]:
        hdr, txt = by_source["HEADER"], by_source["TEXT"]
        parts = []
        if hdr.begin != txt.begin:
            parts.append(f"start ({hdr.begin} vs {txt.begin})")
        if hdr.end != txt.end:
            parts.append(f"end ({hdr.end} vs {txt.end})")
        usable = [v for v in verdicts if v[0] == verdicts[0][0]]
        if len(usable) > 1:  # both fit equally well: the version decides
            reason = f"as {data_set.version} prescribes (both fit the file)"
        elif expected is not None:
            reason = "which matches $TOT x event size and the file size"
        else:
            reason = "which lies inside the file"
        notes.append(
            f"HEADER and TEXT disagree on DATA {' and '.join(parts)}; used {chosen.source}, "
            + reason
        )
    if chosen.source == "TEXT" and "HEADER" not in by_source:
        if header.data_blank:
            notes.append("HEADER DATA offsets are blank; used $BEGINDATA/$ENDDATA from TEXT")
        elif header_zero and chosen.end <= LARGE_FILE_OFFSET:
            notes.append("HEADER DATA offsets are 0; used $BEGINDATA/$ENDDATA from TEXT")
        elif not header_zero:
            notes.append("HEADER DATA offsets are unreadable; used $BEGINDATA/$ENDDATA from TEXT")
    length = chosen.end - chosen.begin + 1
    if verdict == "plus1":
        notes.append(
            f"DATA end offset is off by one ({chosen.source} "
            f"{'say' if ' and ' in chosen.source else 'says'} {chosen.end}, one byte past "
            f"the last data byte); read $TOT x event size = {expected} bytes"
        )
    elif verdict == "longer":
        notes.append(
            f"DATA segment ({length} bytes) is longer than $TOT x event size ({expected} "
            "bytes); read the first $TOT events"
        )
    if layout.tot is None:
        n_events, extra = divmod(length, event_bytes)
        notes.append(f"$TOT is missing; counted {n_events} events from the DATA segment size")
        if extra:
            notes.append(f"{extra} bytes at the end of the DATA segment ignored")
    else:
        n_events = layout.tot
    return base + chosen.begin, n_events


_CODES = {("I", 1): "u1", ("I", 2): "u2", ("I", 4): "u4", ("I", 8): "u8", ("F", 4): "f4"}
_CODES[("D", 8)] = "f8"
#: DATA is read and decoded this many bytes at a time: the float64 events plus this buffer is
#: all the reader holds, never the raw DATA and a converted copy of it side by side (issue 9).
CHUNK_BYTES = 4 * 1024 * 1024
#: Events converted per step within a chunk: source and destination stay in the CPU's cache.
DECODE_ROWS = 4096


def _decode(buffer: memoryview | bytes, layout: _Layout, out: np.ndarray) -> None:
    """Stored values of ``out.shape[0]`` events into ``out`` (float64, ``(events, channels)``),
    integers masked to ``$PnR``."""
    channels = layout.channels
    order = layout.order
    n_events, width = out.shape
    if n_events == 0:
        return
    kinds = {(c.kind, c.nbytes) for c in channels}
    if len(kinds) == 1 and next(iter(kinds)) in _CODES:
        kind = next(iter(kinds))
        raw = np.frombuffer(buffer, dtype=order + _CODES[kind], count=n_events * width)
        raw = raw.reshape(n_events, width)
        masks = None
        if kind[0] == "I" and any(c.mask is not None for c in channels):
            full = (1 << (8 * kind[1])) - 1
            masks = np.array([full if c.mask is None else c.mask for c in channels], raw.dtype)
        # rows in cache-sized runs: the stored rows become the events' columns (a transpose
        # when the events are column-major), three times faster than in one assignment
        for first in range(0, n_events, DECODE_ROWS):
            rows = raw[first : first + DECODE_ROWS]
            out[first : first + DECODE_ROWS] = rows if masks is None else rows & masks
        return
    rows = np.frombuffer(buffer, dtype=np.uint8, count=n_events * layout.event_bytes)
    rows = rows.reshape(n_events, layout.event_bytes)
    offset = 0
    for i, channel in enumerate(channels):
        cells = rows[:, offset : offset + channel.nbytes]
        offset += channel.nbytes
        code = _CODES.get((channel.kind, channel.nbytes))
        if code is not None:
            column = np.ascontiguousarray(cells).view(order + code)[:, 0]
        else:  # 3-, 5-, 6- or 7-byte integers (24-bit Cytek): assemble byte by byte
            column = np.zeros(n_events, dtype=np.uint64)
            for k in range(channel.nbytes):
                shift = 8 * (channel.nbytes - 1 - k if order == ">" else k)
                column |= cells[:, k].astype(np.uint64) << np.uint64(shift)
        if channel.mask is not None:
            column = column & np.array(channel.mask, dtype=column.dtype)
        out[:, i] = column


def _read_events(
    handle: BinaryIO,
    size: int,
    start: int,
    n_events: int,
    layout: _Layout,
    step: float | None,
    order: str = "C",
) -> np.ndarray:
    """The DATA segment decoded (and scaled unless ``step`` is None) in chunks of
    :data:`CHUNK_BYTES` straight into the float64 events, laid out in ``order``."""
    width = len(layout.channels)
    event_bytes = layout.event_bytes
    _check_inside(size, start, n_events * event_bytes, "DATA segment")
    events = np.empty((n_events, width), dtype=np.float64, order=order)
    per_chunk = max(1, CHUNK_BYTES // event_bytes)
    buffer = bytearray(min(n_events, per_chunk) * event_bytes)
    handle.seek(start)
    for first in range(0, n_events, per_chunk):
        count = min(per_chunk, n_events - first)
        view = memoryview(buffer)[: count * event_bytes]
        if handle.readinto(view) != count * event_bytes:
            raise _ProblemError(
                "DATA segment could not be read completely (the file changed?)", _COPY_AGAIN
            )
        block = events[first : first + count]
        with np.errstate(invalid="ignore", over="ignore"):  # damaged floats may be NaN
            _decode(view, layout, block)
        if step is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                _scale(block, layout, step)
    return events


def _time_step(keywords: Mapping[str, str], layout: _Layout, notes: list[str]) -> float:
    """``$TIMESTEP`` when there is a time channel to scale, else 1."""
    if layout.time_index is None or "$TIMESTEP" not in keywords:
        return 1.0
    raw = keywords["$TIMESTEP"]
    if not raw.strip():
        return 1.0  # as FlowIO
    step = _as_float(raw)
    if step is None or step <= 0:
        notes.append(f"$TIMESTEP is {_show(raw)}, not a positive number; time left unscaled")
        return 1.0
    return step


def _scale(values: np.ndarray, layout: _Layout, step: float) -> None:
    """FlowIO's preprocessing, in place; ``values`` has one column per channel."""
    time = layout.time_index
    if time is not None and step != 1.0:
        values[..., time] *= step
    for i, channel in enumerate(layout.channels):
        if channel.decades > 0:
            values[..., i] = 10 ** (channel.decades * values[..., i] / channel.range)
            values[..., i] *= channel.log0
        gain = 1.0 if i == time else channel.gain
        if gain not in (0.0, 1.0):
            values[..., i] /= gain


def _read(path: Path, wanted: int | None, *, preprocess: bool, order: str) -> FCSData:
    with _opened(path) as (handle, size):
        sets, notes = _scan_data_sets(handle, size)
        index = _choose_data_set(sets, wanted, notes)
        chosen = sets[index]
        _merge_supplemental_text(handle, size, chosen)
        notes = chosen.warnings + notes
        layout = _layout(chosen, notes)
        if layout.tot == 0:
            start, n_events = 0, 0
        else:
            start, n_events = _locate_data(chosen, layout, size, notes)
        step: float | None = None
        if preprocess:
            step = _time_step(chosen.keywords, layout, notes)
            time = layout.time_index
            if time is not None:
                gain = layout.channels[time].gain
                if gain not in (0.0, 1.0) and not math.isclose(gain, step, rel_tol=1e-6):
                    notes.append(
                        f"gain {gain:g} of the time channel ignored (time is scaled by "
                        "$TIMESTEP only, as FlowIO does)"
                    )
        events = _read_events(handle, size, start, n_events, layout, step, order)
    tops = np.array([c.range - 1.0 for c in layout.channels], dtype=np.float64)
    if step is not None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            _scale(tops, layout, step)
    tops[np.isnan(tops)] = np.inf
    names = _unique_names([c.name for c in layout.channels], notes)
    return FCSData(
        path=path,
        version=chosen.version,
        keywords=chosen.keywords,
        channels=names,
        labels=[c.label for c in layout.channels],
        events=events,
        ranges=[c.range for c in layout.channels],
        scale_tops=[float(t) for t in tops],
        data_set=index + 1,
        n_data_sets=len(sets),
        warnings=notes,
    )


# --------------------------------------------------------------------------------------------
# Spillover
# --------------------------------------------------------------------------------------------


def find_spillover_keyword(keywords: Mapping[str, str]) -> str | None:
    """The keyword that holds the spillover matrix, looked for in the order
    ``$SPILLOVER``, ``SPILL``, ``$SPILL``, ``$COMP``, ``SPILLOVER``; ``None`` when there is
    none (a blank value counts as none)."""
    for key in SPILLOVER_KEYWORDS:
        if keywords.get(key, "").strip():
            return key
    return None


_NOT_FLUORESCENCE = re.compile(r"^(FSC|SSC|FS|SS|TIME|HDR|WIDTH|EVENT|DOUBLET)\b|^(FSC|SSC)", re.I)


def parse_spillover(
    text: str, channels: Sequence[str], *, keyword: str = "$SPILLOVER"
) -> tuple[list[str], np.ndarray]:
    """Parse ``n, name_1..name_n, n*n values`` (row-major, rows are the source detectors).

    Names may be detector names or 1-based channel numbers. ``$COMP`` in FCS 3.0 carries no
    names (``n, n*n values``): it then applies to all ``$PAR`` channels when ``n`` equals their
    number (Beckman), else to the fluorescence channels (not scatter or time) in order when
    ``n`` equals theirs.

    Raises
    ------
    ValueError
        The value is not a usable matrix; the message says why in plain words.
    """
    items = [t.strip() for t in text.replace("\n", ",").split(",")]
    while items and items[-1] == "":
        items.pop()
    if not items or not items[0]:
        raise ValueError(f"{keyword} is empty")
    count = _as_int(items[0])
    if count is None or count < 1:
        raise ValueError(f"{keyword} does not start with a channel count ({_show(items[0])})")
    if count > MAX_PAR:
        raise ValueError(f"{keyword} declares {count} channels, more than any file holds")
    n = count
    if len(items) == 1 + n + n * n:
        names = [_spill_channel(name, channels, keyword) for name in items[1 : 1 + n]]
        values = items[1 + n :]
    elif keyword == "$COMP" and len(items) == 1 + n * n:
        fluorescence = [c for c in channels if not _NOT_FLUORESCENCE.search(c)]
        if n == len(channels):
            names = list(channels)
        elif n == len(fluorescence):
            names = fluorescence
        else:
            raise ValueError(
                f"$COMP gives a {n}x{n} matrix without channel names, matching neither the "
                f"{len(channels)} channels nor the {len(fluorescence)} fluorescence channels"
            )
        values = items[1:]
    elif len(items) == 1 + n:
        raise ValueError(f"{keyword} lists {n} channel names but no values; the matrix is unusable")
    else:
        raise ValueError(
            f"{keyword} declares {n} channels, so {1 + n + n * n} items, but holds {len(items)}"
        )
    if len(set(names)) != n:
        raise ValueError(f"{keyword} names a channel twice")
    numbers = [_as_float(v) for v in values]
    if any(v is None for v in numbers):
        bad = next(v for v, x in zip(values, numbers, strict=True) if x is None)
        raise ValueError(f"{keyword} holds a value that is not a number ({_show(bad)})")
    return names, np.array(numbers, dtype=np.float64).reshape(n, n)


def _names_given(text: str, n: int) -> bool:
    items = [t for t in text.replace("\n", ",").split(",")]
    while items and not items[-1].strip():
        items.pop()
    return len(items) == 1 + n + n * n


def _spill_channel(name: str, channels: Sequence[str], keyword: str) -> str:
    if name in channels:
        return name
    if name.isdigit() and 1 <= int(name) <= len(channels):
        return channels[int(name) - 1]
    raise ValueError(f"{keyword} names channel {_show(name)}, which is not in the file")


def find_spillover(
    keywords: Mapping[str, str], channels: Sequence[str]
) -> tuple[Spillover | None, list[str]]:
    """The first usable spillover matrix (keywords tried in :data:`SPILLOVER_KEYWORDS`
    order) and a warning for every keyword that holds one but is unusable."""
    notes = []
    for key in SPILLOVER_KEYWORDS:
        value = keywords.get(key, "")
        if not value.strip():
            continue
        try:
            names, matrix = parse_spillover(value, channels, keyword=key)
        except ValueError as exc:
            notes.append(f"{exc}; {key} ignored")
            continue
        if key == "$COMP" and not _names_given(value, len(names)):
            notes.append(
                f"$COMP carries no channel names; applied it to {_listing(names)} in order"
            )
        return Spillover(key, names, matrix), notes
    return None, notes
