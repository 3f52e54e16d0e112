"""Fuzz test of the FCS reader: thousands of damaged files, each either loads consistently or
raises a one-line FCSError, fast and without large allocations.

Mutations (seeded, deterministic): bit flips (anywhere, or in the HEADER/TEXT), truncation,
TEXT values replaced (same length, keeping the layout, or not), delimiters removed, HEADER
offsets replaced with absurd values. Sources: small real-instrument corpus files and files
written here covering the quirks (16/24/mixed-width integers, both byte orders, two data
sets, supplemental TEXT).
"""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
from conftest import CORPUS
from test_fcs import build_fcs, channel_keywords

from antigen_profile.fcs import FCSError, read_fcs, read_header_and_text

SEED = 20250601
VARIANTS = 3000
MAX_SECONDS = 1.0
MAX_PEAK_BYTES = 200 * 1024 * 1024

CORPUS_SOURCES = (
    "fcsparser/Cytek_xP5/Cytek_xP5.fcs",
    "fcsparser/cyflow_cube_8/cyflow_cube_8.fcs",
    "fcsparser/MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs",
    "fcsparser/fake_large_fcs/fake_large_fcs.fcs",
    "fcsparser/fake_bitmask_error/fcs1_cleaned.lmd",
    "flowio/B01 KC-A-W---91-US.fcs",
    "flowio/G11.fcs",
    "flowio/variable_int_example.fcs",
    "flowkit/coulter.lmd",
    "flowkit/data_start_offset_discrepancy_example.fcs",
    "flowkit/index_sorted_example.fcs",
    "flowjo-workspaces/simple_line_example/data_set_simple_line_100.fcs",
    "gatingml-compliance/data1.fcs",
)

KEYS = (
    "$TOT",
    "$PAR",
    "$P1B",
    "$P2B",
    "$P1R",
    "$P1E",
    "$P1N",
    "$BEGINDATA",
    "$ENDDATA",
    "$NEXTDATA",
    "$BEGINSTEXT",
    "$ENDSTEXT",
    "$DATATYPE",
    "$BYTEORD",
    "$TIMESTEP",
    "$MODE",
)
VALUES = (
    "999999999999",
    "4294967296",
    "0",
    "-1",
    "-58",
    "7",
    "128",
    "24",
    "64",
    "10001",
    "abc",
    " ",
    "1e308",
    "nan",
    "A",
    "D",
    "3,4,1,2",
    "4,0",
    "99,1",
    "1",
    "58",
)
HEADER_FIELDS = (
    b"99999999",
    b"       0",
    b"        ",
    b"-0000001",
    b"abcdefgh",
    b"      57",
    b"      58",
    b"00000001",
    b"9999999 ",
)


def _written_sources() -> list[bytes]:
    """Small files covering each quirk, written by hand."""
    rng = np.random.default_rng(7)
    sources = []
    ints = rng.integers(0, 4096, (40, 3)).astype(np.uint16)
    for order, dtype in (("1,2", "<u2"), ("4,3,2,1", ">u2")):
        kw = channel_keywords(
            ["FSC-H", "FL1-H", "Time"],
            16,
            1024,
            byteord=order,
            tot=40,
            amplification=["0,0", "4,0", "0,0"],
            extra={"$TIMESTEP": "0.1", "$P1G": "2"},
        )
        sources.append(build_fcs(kw, ints.astype(dtype).tobytes(), version="FCS2.0"))
    payload = b"".join(int(v).to_bytes(3, "big") for v in ints.ravel())
    kw = channel_keywords(["A", "B", "C"], 24, 1024, byteord="4,3,2,1", tot=40)
    sources.append(build_fcs(kw, payload, version="FCS3.0", header_data="blank"))
    rows = np.zeros(40, dtype=[("a", "<u1"), ("b", "<u2"), ("c", "<u4"), ("d", "<u8")])
    kw = channel_keywords(["A", "B", "C", "D"], [8, 16, 32, 64], [128, 1000, 2**20, 2**40], tot=40)
    sources.append(build_fcs(kw, rows.tobytes(), stext={"$CYT": "x", "@NOTE": "a//b"}))
    floats = rng.normal(size=(40, 2)).astype("<f4")
    kw = channel_keywords(["FSC-A", "PE-A"], 32, 262144, datatype="F", tot=40)
    kw["$SPILLOVER"] = "1,PE-A,1"
    second = build_fcs(kw, floats.tobytes())
    first_kw = channel_keywords(["A", "B", "C"], 16, 1024, tot=40, byteord="1,2")
    size = len(build_fcs(first_kw, ints.tobytes(), version="FCS2.0", nextdata=1))
    first = build_fcs(first_kw, ints.tobytes(), version="FCS2.0", nextdata=size)
    sources.append(first + second)
    return sources


def _sources() -> list[bytes]:
    corpus = [(CORPUS / name).read_bytes() for name in CORPUS_SOURCES if (CORPUS / name).is_file()]
    return corpus + _written_sources()


def _text_span(content: bytes) -> tuple[int, int]:
    """Where the first TEXT segment is, by the (unmutated) HEADER; a guess when unreadable."""
    try:
        begin, end = int(content[10:18]), int(content[18:26])
    except ValueError:
        return 58, min(len(content), 4096) - 1
    return begin, min(end, len(content) - 1)


def _mutate(content: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random damage; returns its kind and the damaged bytes."""
    data = bytearray(content)
    begin, end = _text_span(content)
    kind = str(rng.choice(["flip", "flip_text", "truncate", "value", "value_resize", "delim",
                           "header"]))  # fmt: skip
    if kind in ("flip", "flip_text"):
        lo, hi = (0, len(data)) if kind == "flip" else (0, end + 1)
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(lo, hi))
            data[position] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind in ("value", "value_resize"):
        delim = re.escape(bytes(data[begin : begin + 1]) or b"/")
        key = re.escape(str(rng.choice(KEYS)).encode())
        match = re.search(delim + key + delim + rb"(.*?)" + delim, bytes(data[begin : end + 1]))
        new = str(rng.choice(VALUES)).encode()
        if match is None:
            kind += "_missing"
        else:
            start, stop = begin + match.start(1), begin + match.end(1)
            if kind == "value":  # same length: the layout stays valid
                width = stop - start
                new = new[:width].ljust(width) if width else new[:0]
            data[start:stop] = new
    elif kind == "delim":
        delimiter = data[begin] if begin < len(data) else ord("/")
        positions = [i for i in range(begin + 1, end + 1) if data[i] == delimiter]
        if positions:
            for _ in range(int(rng.integers(1, 4))):
                del data[positions.pop(int(rng.integers(0, len(positions))))]
                if not positions:
                    break
    else:
        field = int(rng.integers(0, 6))
        value = HEADER_FIELDS[int(rng.integers(0, len(HEADER_FIELDS)))]
        if rng.random() < 0.4:
            value = f"{int(rng.integers(0, 2 * len(data))):8d}".encode()
        data[10 + 8 * field : 18 + 8 * field] = value
    return kind, bytes(data)


def _whole(value: str) -> int:
    return int(float(value.strip()))


def test_fuzzed_files_load_consistently_or_fail_cleanly(tmp_path: Path) -> None:
    sources = _sources()  # written files only when ../shared/fcs-corpus is absent
    rng = np.random.default_rng(SEED)
    path = tmp_path / "fuzzed.fcs"
    loads = errors = 0
    worst_time = worst_peak = 0.0
    worst_case = ""
    failures: list[str] = []
    kinds: dict[str, int] = {}
    tracemalloc.start()
    try:
        for variant in range(VARIANTS):
            source = int(rng.integers(0, len(sources)))
            kind, content = _mutate(sources[source], rng)
            kinds[kind] = kinds.get(kind, 0) + 1
            path.write_bytes(content)
            tracemalloc.reset_peak()
            started = time.perf_counter()
            try:
                data = read_fcs(path)
            except FCSError as exc:
                errors += 1
                message = str(exc)
                if "\n" in message or not message.startswith(f"{path}: "):
                    failures.append(f"{variant} ({kind}): malformed message {message!r}")
                if "not enough memory" in message or "unexpected" in message:
                    failures.append(f"{variant} ({kind}): {message}")
            except Exception as exc:  # anything else is a bug in the reader
                failures.append(f"{variant} ({kind}, source {source}): {type(exc).__name__} {exc}")
            else:
                loads += 1
                kw = data.keywords
                expected = (_whole(kw["$TOT"]) if "$TOT" in kw else None, _whole(kw["$PAR"]))
                if data.events.ndim != 2 or data.events.shape[1] != expected[1]:
                    failures.append(f"{variant} ({kind}): shape {data.events.shape}")
                elif expected[0] is not None and data.events.shape[0] != expected[0]:
                    failures.append(f"{variant} ({kind}): shape {data.events.shape} vs {expected}")
                if data.events.dtype != np.float64 or any("\n" in w for w in data.warnings):
                    failures.append(f"{variant} ({kind}): dtype or warnings malformed")
            try:  # the metadata-only read must be just as safe
                read_header_and_text(path)
            except FCSError:
                pass
            except Exception as exc:
                failures.append(f"{variant} ({kind}): header read {type(exc).__name__} {exc}")
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            if elapsed > worst_time:
                worst_time, worst_case = elapsed, f"variant {variant} ({kind}, source {source})"
            worst_peak = max(worst_peak, peak)
    finally:
        tracemalloc.stop()
    print(
        f"\nfuzz: {VARIANTS} variants from {len(sources)} sources, {loads} loaded, {errors} "
        f"FCSError, max {worst_time * 1000:.0f} ms ({worst_case}), max peak "
        f"{worst_peak / 2**20:.1f} MiB; mutations {dict(sorted(kinds.items()))}"
    )
    assert not failures, f"{len(failures)} failures, first: " + "; ".join(failures[:5])
    assert loads + errors == VARIANTS
    assert loads > VARIANTS // 10 and errors > VARIANTS // 10  # both paths really exercised
    assert worst_time < MAX_SECONDS, worst_case  # read_fcs + read_header_and_text
    assert worst_peak < MAX_PEAK_BYTES
