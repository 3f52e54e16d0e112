"""Tests of the FCS reader: every valid corpus file, every quirk, every refusal.

Each corpus file is compared with an independent reference: FlowIO itself (with the option
or in-memory fix it needs), FlowIO's truth arrays, or, for the 24-bit Cytek files no library
reads, a byte-by-byte decoder written here plus FlowIO's preprocessing of the same integers.
Corpus files are read in place from ``../shared/fcs-corpus`` and never copied.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tracemalloc
import warnings
from collections.abc import Mapping
from pathlib import Path

import flowio
import numpy as np
import pytest
from conftest import CORPUS, NO_CORPUS, corpus_skip_reason

from antigen_profile import fcs
from antigen_profile.fcs import (
    FCSError,
    find_spillover,
    find_spillover_keyword,
    parse_spillover,
    read_fcs,
    read_header_and_text,
)
from antigen_profile.fcs_write import format_spillover, write_fcs

BROKEN = ("fcsparser/corrupted/corrupted.fcs", "fcsparser/cytek-nl-2000/sample_header.fcs")
CYTEK_24BIT = (
    "fcsparser/Cytek_xP5/Cytek_xP5.fcs",
    "flowcal/Data003.fcs",
    "flowcal/mef-example/sample001.fcs",
    "flowcal/mef-example/sample006.fcs",
    "flowcal/mef-example/sample015.fcs",
)
OFF_BY_ONE = (
    "fcsparser/MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Add_Well_A1.001.fcs",
    "fcsparser/MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Without_Add_Well_A1.001.fcs",
    "fcsparser/MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs",
    "fcsparser/MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs",
    "flowkit/test_comp_example.fcs",
)
STRATEDIGM = (
    "flowio/variable_int_example.fcs",
    "flowkit/data_start_offset_discrepancy_example.fcs",
    "flowkit/data_stop_offset_discrepancy_example.fcs",
)


def _corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    found = [
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.suffix.lower() in (".fcs", ".lmd") and "gml" not in p.relative_to(CORPUS).parts
    ]
    return sorted(found)


ALL_FILES = _corpus_files()
VALID_FILES = [f for f in ALL_FILES if f not in BROKEN]


def _params(names: list[str]) -> list[object]:
    """One parameter per corpus file (id = its path), or one skipped one without a corpus."""
    if not names:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS))]
    return [pytest.param(n, id=n) for n in names]


def _corpus(relative: str) -> Path:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(corpus_skip_reason(path))
    return path


# --------------------------------------------------------------------------------------------
# Building FCS files by hand (also used by the fuzz test)
# --------------------------------------------------------------------------------------------

_PLACEHOLDER = "0" * 12
_STRUCTURAL = ("$BEGINDATA", "$ENDDATA", "$BEGINSTEXT", "$ENDSTEXT", "$NEXTDATA")


def build_fcs(
    keywords: Mapping[str, str],
    data: bytes = b"",
    *,
    version: str = "FCS3.1",
    delimiter: bytes = b"/",
    header_data: str | tuple[int, int] = "match",
    text_offsets: bool = True,
    stext: Mapping[str, str] | None = None,
    nextdata: int = 0,
    escape: bool = True,
    text_start: int = 58,
) -> bytes:
    """Bytes of one FCS data set: HEADER, TEXT (keywords as given, in order), optional
    supplemental TEXT, DATA.

    ``header_data``: ``"match"`` (HEADER DATA offsets = TEXT's), ``"blank"`` (spaces),
    ``"zero"``, or explicit ``(begin, end)``. ``text_offsets`` adds ``$BEGINDATA``/
    ``$ENDDATA`` (and ``$BEGINSTEXT``/``$ENDSTEXT``, ``$NEXTDATA`` for FCS 3.x). Values have
    the delimiter doubled unless ``escape`` is False.
    """

    def pair(key: str, value: str) -> bytes:
        k, v = key.encode(), value.encode()
        if escape:
            k = k.replace(delimiter, delimiter * 2)
            v = v.replace(delimiter, delimiter * 2)
        return k + delimiter + v + delimiter

    items = dict(keywords)
    if text_offsets:
        for key in _STRUCTURAL:
            if key != "$NEXTDATA" or version != "FCS2.0":
                items.setdefault(key, _PLACEHOLDER)
    if nextdata:
        items["$NEXTDATA"] = _PLACEHOLDER
    text = delimiter + b"".join(pair(k, v) for k, v in items.items())
    text_begin = text_start
    text_end = text_begin + len(text) - 1
    stext_bytes = b""
    if stext:
        stext_bytes = delimiter + b"".join(pair(k, v) for k, v in stext.items())
    stext_begin = text_end + 1 if stext_bytes else 0
    stext_end = stext_begin + len(stext_bytes) - 1 if stext_bytes else 0
    data_begin = text_end + 1 + len(stext_bytes)
    data_end = data_begin + len(data) - 1
    values = {
        "$BEGINDATA": data_begin,
        "$ENDDATA": data_end,
        "$BEGINSTEXT": stext_begin,
        "$ENDSTEXT": stext_end,
        "$NEXTDATA": nextdata,
    }
    for key, value in values.items():
        marker = delimiter + key.encode() + delimiter + _PLACEHOLDER.encode() + delimiter
        if marker in text:
            text = text.replace(
                marker, delimiter + key.encode() + delimiter + f"{value:012d}".encode() + delimiter
            )
    if header_data == "match":
        hb, he = f"{data_begin:8d}", f"{data_end:8d}"
    elif header_data == "blank":
        hb, he = " " * 8, " " * 8
    elif header_data == "zero":
        hb, he = f"{0:8d}", f"{0:8d}"
    else:
        hb, he = f"{header_data[0]:8d}", f"{header_data[1]:8d}"
    header = f"{version}    {text_begin:8d}{text_end:8d}{hb}{he}{0:8d}{0:8d}".encode()
    assert len(header) == 58
    gap = b" " * (text_begin - 58)
    return header + gap + text + stext_bytes + data


def channel_keywords(
    names: list[str],
    bits: int | list[int],
    ranges: int | float | list[float],
    *,
    datatype: str = "I",
    byteord: str = "1,2,3,4",
    tot: int,
    extra: Mapping[str, str] | None = None,
    amplification: list[str] | None = None,
) -> dict[str, str]:
    """Required keywords of a list-mode data set with these channels."""
    n = len(names)
    widths = bits if isinstance(bits, list) else [bits] * n
    tops = ranges if isinstance(ranges, list) else [ranges] * n
    kw = {
        "$BYTEORD": byteord,
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$PAR": str(n),
        "$TOT": str(tot),
    }
    for i, name in enumerate(names, start=1):
        kw[f"$P{i}N"] = name
        kw[f"$P{i}B"] = str(widths[i - 1])
        top = float(tops[i - 1])
        kw[f"$P{i}R"] = str(int(top)) if top.is_integer() else repr(top)
        kw[f"$P{i}E"] = amplification[i - 1] if amplification else "0,0"
    kw.update(extra or {})
    return kw


def _write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _flowio(content: bytes, **options: bool) -> np.ndarray:
    """FlowIO's preprocessed events of in-memory FCS bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flowio.FlowData(io.BytesIO(content), **options).as_array(preprocess=True)


def _one_line_error(exc: pytest.ExceptionInfo[FCSError], path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: ")
    assert "; " in message, "message must say what is wrong and what to do"
    assert "Traceback" not in message
    return message


# --------------------------------------------------------------------------------------------
# References for the corpus
# --------------------------------------------------------------------------------------------


def _patched(path: Path, old: bytes, new: bytes) -> bytes:
    content = path.read_bytes()
    assert len(old) == len(new) and content.count(old) == 1
    return content.replace(old, new)


def _decode_24bit(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """Big-endian 24-bit integers decoded byte by byte (independent of the reader), with
    FlowIO's own parse of the TEXT segment."""
    text = flowio.FlowData(path, only_text=True).text
    par, tot = int(text["par"]), int(text["tot"])
    begin = int(text["begindata"])
    assert text["byteord"] == "4,3,2,1"
    assert all(text[f"p{i}b"] == "24" for i in range(1, par + 1))
    content = path.read_bytes()
    values = [
        int.from_bytes(content[begin + 3 * k : begin + 3 * k + 3], "big") for k in range(par * tot)
    ]
    return np.array(values, dtype=np.uint64).reshape(tot, par), text


def _reference_24bit(path: Path) -> np.ndarray:
    """Rewrite the same integers as 32-bit and let FlowIO mask and preprocess them."""
    raw, text = _decode_24bit(path)
    par, tot = raw.shape[1], raw.shape[0]
    kw = {
        "$BYTEORD": "4,3,2,1",
        "$DATATYPE": "I",
        "$MODE": "L",
        "$PAR": str(par),
        "$TOT": str(tot),
    }
    if "timestep" in text:
        kw["$TIMESTEP"] = text["timestep"]
    for i in range(1, par + 1):
        for letter in "NSRGE":
            if f"p{i}{letter.lower()}" in text:
                kw[f"$P{i}{letter}"] = text[f"p{i}{letter.lower()}"]
        kw[f"$P{i}B"] = "32"
    return _flowio(build_fcs(kw, raw.astype(">u4").tobytes(), version="FCS3.0"))


def _reference(relative: str) -> np.ndarray:
    """FlowIO's preprocessed events, with the option or in-memory fix each file needs."""
    path = CORPUS / relative
    name = path.name
    if relative in CYTEK_24BIT:
        return _reference_24bit(path)
    if relative in OFF_BY_ONE:
        return _flowio(path.read_bytes(), ignore_offset_error=True)
    if relative == "flowkit/coulter.lmd":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = flowio.read_multiple_data_sets(path, ignore_offset_error=True)
        return sets[1].as_array(preprocess=True)  # we read the FCS 3.0 data set
    if relative in STRATEDIGM:
        # FlowIO stops on $TIMESTEP 'xxxxxxxxx'; a step of 1 is what "unscaled" means
        content = _patched(path, b"$TIMESTEP\\xxxxxxxxx\\", b"$TIMESTEP\\1.0000000\\")
        return _flowio(content, ignore_offset_discrepancy="discrepancy" in name)
    if relative == "fcsparser/fake_large_fcs/fake_large_fcs.fcs":
        # FlowIO cannot parse blank HEADER offsets: fill in the TEXT's ones
        content = bytearray(path.read_bytes())
        assert content[26:42] == b" " * 16
        content[26:42] = f"{2462:8d}{512201:8d}".encode()
        return _flowio(bytes(content))
    return _flowio(path.read_bytes())


def _flowio_keywords(relative: str, offset: int = 0) -> dict[str, str]:
    """FlowIO's TEXT of the data set at ``offset`` (blank HEADER offsets filled in memory)."""
    content = bytearray((CORPUS / relative).read_bytes())
    if relative == "fcsparser/fake_large_fcs/fake_large_fcs.fcs":
        content[26:42] = f"{2462:8d}{512201:8d}".encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flowio.FlowData(
            io.BytesIO(bytes(content)),
            only_text=True,
            ignore_offset_discrepancy=True,
            nextdata_offset=offset,
        ).text


def _folded(keywords: Mapping[str, str]) -> dict[str, str]:
    """Our keywords as FlowIO spells them: lower-case keys, every ``$`` dropped."""
    return {k.replace("$", "").lower(): v.replace("$", "") for k, v in keywords.items()}


# --------------------------------------------------------------------------------------------
# Corpus, file by file
# --------------------------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    if not ALL_FILES:
        pytest.skip(NO_CORPUS)
    assert len(ALL_FILES) == 36
    assert len(VALID_FILES) == 34


@pytest.mark.parametrize("relative", _params(VALID_FILES))
def test_corpus_file_loads_with_the_reference_events(relative: str) -> None:
    path = _corpus(relative)
    data = read_fcs(path)
    tot, par = int(data.keywords["$TOT"]), int(data.keywords["$PAR"])
    assert data.events.shape == (tot, par)
    assert data.events.dtype == np.float64
    assert np.all(np.isfinite(data.events))
    assert data.version in fcs.VERSIONS
    assert len(data.channels) == len(set(data.channels)) == par
    assert len(data.labels) == len(data.ranges) == len(data.scale_tops) == par
    assert all("\n" not in w for w in data.warnings)
    expected = _reference(relative)
    assert expected.shape == data.events.shape
    np.testing.assert_allclose(data.events, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("relative", _params(VALID_FILES))
def test_corpus_file_reads_the_same_in_small_chunks(
    relative: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DATA is decoded chunk by chunk into the output; chunk edges (here at odd byte counts,
    so mid-way through most layouts' natural blocks) must not change a single value."""
    whole = read_fcs(_corpus(relative))
    monkeypatch.setattr(fcs, "CHUNK_BYTES", 4099)
    for order in ("C", "F"):
        chunked = read_fcs(_corpus(relative), order=order)
        np.testing.assert_array_equal(chunked.events, whole.events)
        assert chunked.warnings == whole.warnings
        assert chunked.events.dtype == np.float64
        assert (
            chunked.events.flags.c_contiguous if order == "C" else chunked.events.flags.f_contiguous
        )


@pytest.mark.parametrize("chunk", [1, 3 * 15 + 2, 1 << 20])
def test_chunked_decoding_of_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Mixed widths, masks, 24-bit integers, log amplification, gain and $TIMESTEP, read one
    event at a time, a few events at a time and all at once: the same events."""
    rng = np.random.default_rng(7)
    n = 301
    dtype = np.dtype([("a", ">u1"), ("b", ">u2"), ("c", ">u4"), ("t", ">u2")])
    rows = np.zeros(n, dtype=dtype)
    for name, top in (("a", 255), ("b", 65535), ("c", 2**32 - 1), ("t", 65535)):
        rows[name] = rng.integers(0, top, n, endpoint=True)
    rows["t"] = np.sort(rows["t"])
    width24 = [int(v).to_bytes(3, "big") for v in rng.integers(0, 2**24, n)]
    payload = b"".join(r.tobytes() + w for r, w in zip(rows, width24, strict=True))
    kw = channel_keywords(
        ["A", "B", "C", "Time", "D"],
        [8, 16, 32, 16, 24],
        [128, 1024, 2**32, 65536, 1024],
        byteord="4,3,2,1",
        tot=n,
        amplification=["0,0", "4,0", "0,0", "0,0", "3,1"],
        extra={"$P1G": "2", "$P4G": "0.5", "$TIMESTEP": "0.01"},
    )
    path = _write_bytes(tmp_path / "a.fcs", build_fcs(kw, payload))
    monkeypatch.setattr(fcs, "CHUNK_BYTES", chunk)
    data = read_fcs(path, order="F")
    raw = read_fcs(path, preprocess=False)
    expected = np.column_stack(
        [
            (rows["a"] & 127) / 2,
            10 ** (4 * (rows["b"] & 1023) / 1024),
            rows["c"].astype(float),
            rows["t"] * 0.01,
            10 ** (3 * (np.array([int.from_bytes(w, "big") for w in width24]) & 1023) / 1024),
        ]
    )
    np.testing.assert_allclose(data.events, expected, rtol=1e-12)
    np.testing.assert_array_equal(raw.events[:, 0], rows["a"] & 127)
    assert data.events.flags.f_contiguous and raw.events.flags.c_contiguous
    with pytest.raises(ValueError, match="order"):
        read_fcs(path, order="K")  # type: ignore[arg-type]


@pytest.mark.parametrize("relative", _params(VALID_FILES))
def test_corpus_keywords_agree_with_flowio(relative: str) -> None:
    """FlowIO lower-cases keys and drops every ``$``; apart from that the TEXT must match."""
    path = _corpus(relative)
    theirs = _flowio_keywords(relative)
    ours = read_header_and_text(path, data_set=1).keywords
    folded = _folded(ours)
    differing = {k: (v, folded.get(k)) for k, v in theirs.items() if folded.get(k) != v}
    if relative == "gatingml-compliance/data1.fcs":
        # the last keyword has an empty value ("\\&13Analysis Doc.\\\\"), which FlowIO's
        # regex glues into its key; we read it as a keyword with an empty value
        assert ours["&13ANALYSIS DOC."] == ""
        differing.pop("&13analysis doc.\\", None)
        # same for three more, which FlowIO glues into one key "&5...\\&6...\\&7...\\&8..."
        assert [ours[f"&{i}DATA FILE PREFIX PART #{i - 4}"] for i in (5, 6, 7)] == [""] * 3
        assert ours["&8ACQUISITION DOC."] == "LYMPH SUBSET ACQ"
        glued = [k for k in differing if k.startswith("&5")]
        assert len(glued) == 1
        differing.pop(glued[0])
    assert not differing


def test_flowio_truth_arrays() -> None:
    b01 = read_fcs(_corpus("flowio/B01 KC-A-W---91-US.fcs"))
    truth = np.load(CORPUS / "flowio/truth/B01 KC-A-W---91-US_preprocessed_events.npy")
    np.testing.assert_allclose(b01.events, truth.reshape(b01.events.shape), rtol=1e-6)
    path = _corpus("gatingml-compliance/data1.fcs")
    processed = read_fcs(path)
    original = read_fcs(path, preprocess=False)
    # "original" is the stored channel values, without gain or log scaling
    truth = np.load(CORPUS / "flowio/truth/data1_preprocessed.npy")
    np.testing.assert_allclose(processed.events, truth, rtol=1e-6)
    truth = np.load(CORPUS / "flowio/truth/data1_original_events.npy")
    np.testing.assert_array_equal(original.events, truth)
    assert original.scale_tops == [1023.0] * 8


@pytest.mark.parametrize("relative", _params([f for f in ALL_FILES if f in BROKEN]))
def test_corpus_broken_files_raise_one_line_error(relative: str) -> None:
    path = _corpus(relative)
    with pytest.raises(FCSError) as exc:
        read_fcs(path)
    _one_line_error(exc, path)


def test_truncated_aurora_header_still_gives_its_metadata() -> None:
    """``inspect`` can show what a truncated file was, without reading DATA."""
    path = _corpus("fcsparser/cytek-nl-2000/sample_header.fcs")
    meta = read_header_and_text(path)
    assert meta.version == "FCS3.1"
    assert meta.keywords["$CYT"] == "Aurora"
    assert meta.keywords["$TOT"] == "20000"
    with pytest.raises(FCSError, match=r"runs? past the end"):
        read_fcs(path)


@pytest.mark.parametrize("relative", _params([f for f in CYTEK_24BIT if f in ALL_FILES]))
def test_cytek_24bit_integers_are_10bit_data(relative: str) -> None:
    """Cytek xP3/xP5 store 10-bit values in 24-bit integers ($PnB 24, $PnR 1024)."""
    path = _corpus(relative)
    raw = read_fcs(path, preprocess=False)
    decoded, _text = _decode_24bit(path)
    masks = [fcs._next_power_of_two(int(r)) - 1 for r in raw.ranges]
    np.testing.assert_array_equal(raw.events, decoded & np.array(masks, dtype=np.uint64))
    for column, top in zip(raw.events.T, raw.ranges, strict=True):
        assert column.min() >= 0
        assert column.max() < fcs._next_power_of_two(int(top))
    fluorescence = [i for i, c in enumerate(raw.channels) if c.startswith("FL")]
    assert raw.events[:, fluorescence].max() < 1024
    assert raw.keywords["$P2B"] == "24"
    processed = read_fcs(path)
    time = raw.channels.index("TIME")
    step = float(raw.keywords["$TIMESTEP"])
    np.testing.assert_allclose(processed.events[:, time], raw.events[:, time] * step)


def test_cytek_xp5_time_channel_is_masked_to_15_bits() -> None:
    data = read_fcs(_corpus("fcsparser/Cytek_xP5/Cytek_xP5.fcs"), preprocess=False)
    assert data.keywords["$P1R"] == "30000"  # not a power of two: mask 2**15 - 1
    assert data.events.shape == (23126, 8)
    assert data.events[:, 0].max() < 32768


def test_mef_bead_file_shows_its_bead_peaks_on_a_log_scale() -> None:
    data = read_fcs(_corpus("flowcal/mef-example/sample001.fcs"))
    fl1 = data.events[:, data.channels.index("FL1")]
    assert data.scale_tops[data.channels.index("FL1")] == pytest.approx(10 ** (4 * 1023 / 1024))
    counts, _edges = np.histogram(np.log10(fl1[fl1 > 1]), bins=60)
    peaks = [
        i
        for i in range(1, 59)
        if counts[i] >= counts[i - 1] and counts[i] > counts[i + 1] and counts[i] > 200
    ]
    assert len(peaks) >= 6  # 8 bead populations; the dimmest sit on the floor


def test_navios_bit_mask_quirk() -> None:
    """Every stored value carries a flag in bit 14; $PnR 1024 says only 10 bits count."""
    path = _corpus("fcsparser/fake_bitmask_error/fcs1_cleaned.lmd")
    data = read_fcs(path, preprocess=False)
    stored = np.frombuffer(path.read_bytes(), "<u2", count=50000 * 7, offset=4232)
    stored = stored.reshape(50000, 7)
    assert np.all(stored & 16384)
    np.testing.assert_array_equal(data.events, stored & 1023)
    assert data.events.max() <= 1023
    assert data.n_data_sets == 1  # NEXTDATA 0: a single data set, despite the .lmd
    assert data.keywords["$CYT"] == "Navios"


def test_coulter_lmd_two_data_sets() -> None:
    path = _corpus("flowkit/coulter.lmd")
    data = read_fcs(path)
    assert (data.data_set, data.n_data_sets, data.version) == (2, 2, "FCS3.0")
    assert any("holds 2 data sets" in w and "read data set 2 (FCS3.0)" in w for w in data.warnings)
    assert data.channels == ["FS", "SS", "FL1", "FL2", "FL3", "FL4", "FL5", "TIME"]
    assert data.events[:, :7].max() < 2**20  # flags above bit 20 masked off
    first = read_fcs(path, data_set=1)
    assert (first.version, first.data_set) == ("FCS2.0", 1)
    assert first.channels[2] == "FL1 Log"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = flowio.read_multiple_data_sets(path, ignore_offset_error=True)
    np.testing.assert_allclose(first.events, sets[0].as_array(True), rtol=1e-6)
    assert any("DATA end offset is off by one" in w for w in first.warnings)
    with pytest.raises(FCSError) as exc:
        read_fcs(path, data_set=3)
    assert "holds 2" in _one_line_error(exc, path)
    meta = read_header_and_text(path)
    assert meta.data_set == 2
    theirs = _flowio_keywords("flowkit/coulter.lmd", offset=int(first.keywords["$NEXTDATA"]))
    assert _folded(meta.keywords) == theirs


def test_blank_header_offsets_of_large_files() -> None:
    data = read_fcs(_corpus("fcsparser/fake_large_fcs/fake_large_fcs.fcs"))
    same = read_fcs(_corpus("fcsparser/Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"))
    np.testing.assert_array_equal(data.events, same.events)
    assert "HEADER DATA offsets are blank; used $BEGINDATA/$ENDDATA from TEXT" in data.warnings


def test_stratedigm_offset_discrepancies_and_bad_timestep() -> None:
    start = read_fcs(_corpus("flowkit/data_start_offset_discrepancy_example.fcs"))
    stop = read_fcs(_corpus("flowkit/data_stop_offset_discrepancy_example.fcs"))
    plain = read_fcs(_corpus("flowio/variable_int_example.fcs"))
    np.testing.assert_array_equal(start.events, plain.events)
    np.testing.assert_array_equal(stop.events, plain.events)
    assert (
        "HEADER and TEXT disagree on DATA start (5555 vs 6081); used TEXT, which matches "
        "$TOT x event size and the file size" in start.warnings
    )
    assert any("DATA end (6944 vs 6188); used TEXT" in w for w in stop.warnings)
    for data in (start, stop, plain):
        assert any("$TIMESTEP is 'xxxxxxxxx'" in w and "unscaled" in w for w in data.warnings)


def test_variable_integer_widths() -> None:
    data = read_fcs(_corpus("flowio/variable_int_example.fcs"), preprocess=False)
    assert [data.keywords[f"$P{i}B"] for i in (1, 25, 26)] == ["16", "16", "32"]
    assert data.events.shape == (2, 26)
    assert data.events[:, 25].max() < 2**24  # $P26R 11209599: masked to 24 bits
    assert data.events[:, 25].max() > 65535  # and wider than the 16-bit channels
    cube = read_fcs(_corpus("fcsparser/cyflow_cube_8/cyflow_cube_8.fcs"), preprocess=False)
    assert [cube.keywords[f"$P{i}B"] for i in (1, 9, 10)] == ["16", "32", "8"]
    assert cube.events[:, 9].max() <= 255
    assert any("supplemental TEXT" in w and "binary" in w for w in cube.warnings)


def test_miltenyi_off_by_one_supplemental_text_and_names_only_spillover() -> None:
    path = _corpus(OFF_BY_ONE[2])
    data = read_fcs(path)
    assert any("DATA end offset is off by one" in w for w in data.warnings)
    assert any("merged" in w and "supplemental TEXT" in w for w in data.warnings)
    assert data.keywords["@MB_P1_USERNAME"] == "HDR-T"  # from the supplemental TEXT
    assert find_spillover_keyword(data.keywords) == "$SPILLOVER"
    spill, notes = find_spillover(data.keywords, data.channels)
    assert spill is None
    assert notes == [
        "$SPILLOVER lists 6 channel names but no values; the matrix is unusable; $SPILLOVER ignored"
    ]


def test_escaped_delimiters_in_macsquant_names() -> None:
    """The "Duplicate_Names" file has no duplicate channel names once the escaped delimiter
    in ``GFP//FITC-A`` is honoured (a naive split made both $P8S and $P9S "GFP")."""
    data = read_fcs(_corpus(OFF_BY_ONE[3]))
    assert data.labels[7:] == ["GFP/FITC-A", "GFP/FITC-H"]
    assert data.keywords["$P4F"] == "561//10 nm"
    assert data.channels[-2:] == ["FL7-A", "FL7-H"]
    assert any("$VOL appears 2 times" in w for w in data.warnings)


def test_spill_keywords_of_the_corpus() -> None:
    aria = read_fcs(_corpus("flowkit/100715.fcs"))
    spill, notes = find_spillover(aria.keywords, aria.channels)
    assert spill is not None and spill.keyword == "SPILL" and not notes
    assert spill.matrix.shape == (13, 13)
    assert spill.names[0] == "B515-A"
    np.testing.assert_allclose(np.diag(spill.matrix), 1.0)
    attune = read_fcs(_corpus("flowio/G11.fcs"))
    spill, _ = find_spillover(attune.keywords, attune.channels)
    assert spill is not None and spill.keyword == "$SPILLOVER"
    assert spill.names == ["BL1-A", "YL2-A", "VL1-A", "VL1-H", "VL1-W"]
    stratedigm = read_fcs(_corpus("flowio/variable_int_example.fcs"))
    spill, notes = find_spillover(stratedigm.keywords, stratedigm.channels)
    assert spill is None and "not in the file" in notes[0]


def test_text_quirks_of_the_corpus() -> None:
    diva = read_fcs(_corpus("fcsparser/FACS_Diva/facs_diva_test.fcs"))  # form-feed delimiter
    assert diva.keywords["$TOT"] == "83411              "  # verbatim, trailing spaces
    assert diva.events.shape[0] == 83411
    comp = read_header_and_text(_corpus("flowkit/test_comp_example.fcs"))  # NUL padding
    assert comp.keywords["$CYT"] == "LSRII"
    data1 = read_header_and_text(_corpus("gatingml-compliance/data1.fcs"))
    assert any("empty value" in w for w in data1.warnings)


def test_reading_never_changes_the_file(tmp_path: Path) -> None:
    for path in (
        _corpus("flowkit/coulter.lmd"),
        write_fcs(tmp_path / "x.fcs", np.ones((10, 2)), ["A", "B"], None),
    ):
        before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        read_fcs(path)
        read_header_and_text(path)
        after = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        assert before == after


# --------------------------------------------------------------------------------------------
# Written files: each quirk on its own
# --------------------------------------------------------------------------------------------


def test_write_fcs_round_trip_with_spillover(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    events = rng.uniform(-100, 250_000, (300, 4)).astype(np.float32).astype(np.float64)
    matrix = np.array([[1.0, 0.1], [0.02, 1.0]])
    path = write_fcs(
        tmp_path / "a.fcs",
        events,
        ["FSC-A", "SSC-A", "PE-A", "APC-A"],
        ["", "", "CD22 PE", "CD123 APC"],
        {"$SPILLOVER": format_spillover(["PE-A", "APC-A"], matrix), "$CYT": "demo"},
    )
    data = read_fcs(path)
    np.testing.assert_array_equal(data.events, events)
    assert data.version == "FCS3.1"
    assert data.labels == ["", "", "CD22 PE", "CD123 APC"]
    assert data.keywords["$CYT"] == "demo"
    assert data.warnings == []
    spill, notes = find_spillover(data.keywords, data.channels)
    assert spill is not None and spill.names == ["PE-A", "APC-A"] and not notes
    np.testing.assert_allclose(spill.matrix, matrix)


@pytest.mark.parametrize(
    ("byteord", "dtype"),
    [("1,2", "<u2"), ("2,1", ">u2"), ("1,2,3,4", "<u2"), ("4,3,2,1", ">u2")],
)
def test_16bit_integers_either_byte_order_with_log_and_gain(
    tmp_path: Path, byteord: str, dtype: str
) -> None:
    stored = np.array([[0, 512, 1023, 5], [1023 | 4096, 1, 0, 1023]], dtype=np.uint16)
    kw = channel_keywords(
        ["FSC-H", "FL1-H", "FL2-H", "Time"],
        16,
        1024,
        byteord=byteord,
        tot=2,
        amplification=["0,0", "4,0", "4,1", "0,0"],
        extra={"$P1G": "2", "$P4G": "0.5", "$TIMESTEP": "0.1"},
    )
    content = build_fcs(kw, stored.astype(dtype).tobytes(), version="FCS2.0")
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    masked = (stored & 1023).astype(float)
    expected = np.column_stack(
        [
            masked[:, 0] / 2,
            10 ** (4 * masked[:, 1] / 1024),
            10 ** (4 * masked[:, 2] / 1024),
            masked[:, 3] * 0.1,  # time: $TIMESTEP, never the gain
        ]
    )
    np.testing.assert_allclose(data.events, expected, rtol=1e-12)
    np.testing.assert_allclose(data.events, _flowio(content), rtol=1e-12)
    assert data.scale_tops == pytest.approx(
        [1023 / 2, 10 ** (4 * 1023 / 1024), 10 ** (4 * 1023 / 1024), 102.3]
    )
    assert any("log offset 0 for FL1-H" in w for w in data.warnings)


@pytest.mark.parametrize("order", ["1,2,3,4", "4,3,2,1"])
def test_24bit_integers(tmp_path: Path, order: str) -> None:
    values = np.array([[1, 0xABCDEF], [0x123456, 0xFFFFFF]], dtype=np.uint32)
    big = order == "4,3,2,1"
    payload = b"".join(int(v).to_bytes(3, "big" if big else "little") for v in values.ravel())
    kw = channel_keywords(["A", "B"], 24, [2**24, 1024], byteord=order, tot=2)
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", build_fcs(kw, payload)))
    np.testing.assert_array_equal(data.events, [[1, 0xABCDEF & 1023], [0x123456, 1023]])


def test_mixed_widths_8_16_32_64_with_masks(tmp_path: Path) -> None:
    rows = [(200, 0xF3FF, 0xFFFFFFFF, 2**63 + 5), (7, 3, 1, 2)]
    dtype = np.dtype([("a", ">u1"), ("b", ">u2"), ("c", ">u4"), ("d", ">u8")])
    payload = np.array(rows, dtype=dtype).tobytes()
    kw = channel_keywords(
        ["A", "B", "C", "D"], [8, 16, 32, 64], [128, 1024, 2**32, 1000], byteord="4,3,2,1", tot=2
    )
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", build_fcs(kw, payload)))
    np.testing.assert_array_equal(data.events, [[200 & 127, 1023, 2**32 - 1, 5], [7, 3, 1, 2]])
    # FlowIO handles 8/16/32 bits (not 64): same answer without the last channel
    kw = channel_keywords(["A", "B", "C"], [8, 16, 32], [128, 1000, 2**31], tot=2)
    payload = np.array([row[:3] for row in rows], dtype=[("a", "<u1"), ("b", "<u2"), ("c", "<u4")])
    content = build_fcs(kw, payload.tobytes())
    data = read_fcs(_write_bytes(tmp_path / "b.fcs", content))
    np.testing.assert_array_equal(data.events, [[72, 1023, 2**31 - 1], [7, 3, 1]])
    np.testing.assert_array_equal(data.events, _flowio(content))


@pytest.mark.parametrize("order", ["<", ">"])
def test_double_precision(tmp_path: Path, order: str) -> None:
    values = np.array([[1.5, -2.25], [1e300, 3.0]])
    byteord = "1,2,3,4,5,6,7,8" if order == "<" else "8,7,6,5,4,3,2,1"
    kw = channel_keywords(["A", "B"], 64, 1e6, datatype="D", byteord=byteord, tot=2)
    data = read_fcs(
        _write_bytes(tmp_path / "a.fcs", build_fcs(kw, values.astype(order + "f8").tobytes()))
    )
    np.testing.assert_array_equal(data.events, values)


def test_fcs32_per_channel_data_types_without_mode(tmp_path: Path) -> None:
    kw = channel_keywords(["A", "B"], [32, 16], [1e6, 1024], datatype="F", tot=2)
    del kw["$MODE"]
    kw["$P2DATATYPE"] = "I"
    payload = np.array([(1.5, 1024 + 7), (-2.0, 3)], dtype=[("a", "<f4"), ("b", "<u2")])
    data = read_fcs(
        _write_bytes(tmp_path / "a.fcs", build_fcs(kw, payload.tobytes(), version="FCS3.2"))
    )
    np.testing.assert_array_equal(data.events, [[1.5, 7], [-2.0, 3]])
    assert data.version == "FCS3.2"
    assert not any("$MODE" in w for w in data.warnings)


def test_blank_and_zero_header_offsets(tmp_path: Path) -> None:
    kw = channel_keywords(["A"], 32, 1024, datatype="F", tot=3)
    payload = np.array([1, 2, 3], "<f4").tobytes()
    for mode, note in [("blank", "blank"), ("zero", "are 0")]:
        content = build_fcs(kw, payload, version="FCS3.0", header_data=mode)
        data = read_fcs(_write_bytes(tmp_path / f"{mode}.fcs", content))
        np.testing.assert_array_equal(data.events[:, 0], [1, 2, 3])
        assert any(note in w and "used $BEGINDATA/$ENDDATA from TEXT" in w for w in data.warnings)


def test_header_and_text_disagree_and_off_by_one(tmp_path: Path) -> None:
    kw = channel_keywords(["A", "B"], 16, 1024, tot=4)
    payload = np.arange(8, dtype="<u2").tobytes()
    good = build_fcs(kw, payload)
    begin, end = (int(x) for x in good[26:42].split())
    wrong_start = build_fcs(kw, payload, header_data=(begin - 100, end))
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", wrong_start))
    assert data.events.ravel().tolist() == list(range(8))
    assert (
        f"HEADER and TEXT disagree on DATA start ({begin - 100} vs {begin}); used TEXT, "
        "which matches $TOT x event size and the file size" in data.warnings
    )
    plus_one = build_fcs(kw, payload + b"\x00", header_data=(begin, end + 1))
    plus_one = plus_one.replace(f"{end:012d}".encode(), f"{end + 1:012d}".encode())
    data = read_fcs(_write_bytes(tmp_path / "b.fcs", plus_one))
    assert data.events.ravel().tolist() == list(range(8))
    assert any("DATA end offset is off by one" in w for w in data.warnings)


def test_fcs2_header_wins_over_text_when_both_fit(tmp_path: Path) -> None:
    kw = channel_keywords(["A"], 8, 256, tot=2)
    content = build_fcs(kw, b"\x01\x02\x03\x04", version="FCS2.0", header_data="match")
    begin, end = (int(x) for x in content[26:42].split())
    content = content.replace(f"{end:012d}".encode(), f"{begin + 1:012d}".encode())  # TEXT
    content = content[:26] + f"{begin + 2:8d}{end:8d}".encode() + content[42:]  # HEADER
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.events[:, 0].tolist() == [3, 4]  # FCS 2.0: the HEADER is authoritative
    assert any("used HEADER, as FCS2.0 prescribes" in w for w in data.warnings)
    content = b"FCS3.0" + content[6:]
    data = read_fcs(_write_bytes(tmp_path / "b.fcs", content))
    assert data.events[:, 0].tolist() == [1, 2]  # FCS 3: TEXT, as FlowIO
    assert any("used TEXT, as FCS3.0 prescribes" in w for w in data.warnings)


def test_escaped_delimiters_and_trailing_spaces(tmp_path: Path) -> None:
    kw = channel_keywords(["FL1/A", "FL2"], 32, 1024, datatype="F", tot=1)
    kw["$P1S"] = "CD22/PE"
    kw["ENDS/"] = "with a delimiter/"
    kw["$TOT"] = "1     "
    kw["$P2R"] = "  1024  "
    content = build_fcs(kw, np.array([1, 2], "<f4").tobytes())
    assert b"CD22//PE" in content and b"ENDS///with a delimiter///" in content
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.channels == ["FL1/A", "FL2"]
    assert data.labels == ["CD22/PE", ""]
    assert data.keywords["ENDS/"] == "with a delimiter/"
    assert data.keywords["$TOT"] == "1     "
    assert data.ranges == [1024.0, 1024.0]
    assert data.warnings == []


def test_empty_values_written_as_doubled_delimiters(tmp_path: Path) -> None:
    kw = channel_keywords(["A"], 32, 1024, datatype="F", tot=1)
    kw["$COM"] = ""
    content = build_fcs(kw, np.array([5], "<f4").tobytes(), escape=False)
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.keywords["$COM"] == ""
    assert data.events.tolist() == [[5.0]]
    assert any("empty values" in w for w in data.warnings)


def test_shifted_keyword_value_pairs_are_refused(tmp_path: Path) -> None:
    """A lost delimiter shifts every later pair: values become keyword names."""
    content = _float_file()
    lost = content.replace(b"/$P1N/A/", b"/$P1NA/", 1)
    message = _refused(tmp_path, lost, "out of step")
    assert "a delimiter is missing or doubled" in message


def test_supplemental_text_is_merged_primary_wins(tmp_path: Path) -> None:
    kw = channel_keywords(["A"], 32, 1024, datatype="F", tot=1, extra={"$CYT": "primary"})
    content = build_fcs(
        kw, np.array([5], "<f4").tobytes(), stext={"$CYT": "other", "$SPILLOVER": "1,A,1"}
    )
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.keywords["$CYT"] == "primary"
    assert data.keywords["$SPILLOVER"] == "1,A,1"
    assert any("kept the primary TEXT values" in w for w in data.warnings)


def test_two_data_sets(tmp_path: Path) -> None:
    first_kw = channel_keywords(["A"], 16, 1024, tot=2, byteord="1,2")
    second_kw = channel_keywords(["A"], 32, 1024, datatype="F", tot=2)
    second = build_fcs(second_kw, np.array([7, 8], "<f4").tobytes(), version="FCS3.1")
    size = len(build_fcs(first_kw, b"\x01\x00\x02\x00", version="FCS2.0", nextdata=1))
    first = build_fcs(first_kw, b"\x01\x00\x02\x00", version="FCS2.0", nextdata=size)
    path = _write_bytes(tmp_path / "two.lmd", first + second)
    data = read_fcs(path)
    assert (data.data_set, data.n_data_sets, data.version) == (2, 2, "FCS3.1")
    assert data.events[:, 0].tolist() == [7, 8]
    assert (
        "file holds 2 data sets (FCS2.0, FCS3.1); read data set 2 (FCS3.1), the first "
        "FCS 3 one" in data.warnings
    )
    assert read_fcs(path, data_set=1).events[:, 0].tolist() == [1, 2]
    # two FCS 2.0 data sets: the first one, and say so
    other = build_fcs(first_kw, b"\x03\x00\x04\x00", version="FCS2.0")
    path = _write_bytes(tmp_path / "two2.lmd", first + other)
    data = read_fcs(path)
    assert data.data_set == 1 and data.events[:, 0].tolist() == [1, 2]
    assert any("read data set 1 (FCS2.0)" in w for w in data.warnings)
    # a $NEXTDATA beyond the end of the file is ignored with a warning
    path = _write_bytes(tmp_path / "dangling.lmd", first)
    data = read_fcs(path)
    assert data.n_data_sets == 1 and any("$NEXTDATA" in w for w in data.warnings)


def test_duplicate_channel_names_are_made_unique(tmp_path: Path) -> None:
    kw = channel_keywords(["FL1-A", "FL1-A", "FL1-A_2", "FL1-A"], 32, 1024, datatype="F", tot=1)
    content = build_fcs(kw, np.array([1, 2, 3, 4], "<f4").tobytes())
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.channels == ["FL1-A", "FL1-A_3", "FL1-A_2", "FL1-A_4"]
    assert sum("repeated" in w for w in data.warnings) == 2


def test_missing_tot_is_counted_from_the_data(tmp_path: Path) -> None:
    kw = channel_keywords(["A", "B"], 16, 1024, tot=0)
    del kw["$TOT"]
    content = build_fcs(kw, np.arange(6, dtype="<u2").tobytes(), version="FCS2.0")
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.events.shape == (3, 2)
    assert any("$TOT is missing; counted 3 events" in w for w in data.warnings)


def test_zero_events(tmp_path: Path) -> None:
    kw = channel_keywords(["A", "B"], 32, 1024, datatype="F", tot=0)
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", build_fcs(kw, b"")))
    assert data.events.shape == (0, 2)


def test_unparseable_timestep_leaves_time_unscaled(tmp_path: Path) -> None:
    kw = channel_keywords(
        ["FSC", "Time"], 32, 1024, datatype="F", tot=1, extra={"$TIMESTEP": "n/a", "$P2G": "9"}
    )
    data = read_fcs(
        _write_bytes(tmp_path / "a.fcs", build_fcs(kw, np.array([3, 4], "<f4").tobytes()))
    )
    assert data.events.tolist() == [[3.0, 4.0]]
    assert any("$TIMESTEP is 'n/a'" in w for w in data.warnings)
    assert any("gain 9 of the time channel ignored" in w for w in data.warnings)


def test_latin1_text_of_older_files(tmp_path: Path) -> None:
    kw = channel_keywords(["A"], 32, 1024, datatype="F", tot=1)
    content = build_fcs({**kw, "$COM": "5 um"}, np.array([1], "<f4").tobytes(), version="FCS3.0")
    content = content.replace(b"5 um", b"5 \xb5m")
    data = read_fcs(_write_bytes(tmp_path / "a.fcs", content))
    assert data.keywords["$COM"] == "5 \u00b5m"
    assert any("Latin-1" in w for w in data.warnings)


# --------------------------------------------------------------------------------------------
# Refusals: each with its own one-line FCSError
# --------------------------------------------------------------------------------------------


def _refused(tmp_path: Path, content: bytes, pattern: str) -> str:
    path = _write_bytes(tmp_path / "bad.fcs", content)
    with pytest.raises(FCSError) as exc:
        read_fcs(path)
    message = _one_line_error(exc, path)
    assert re.search(pattern, message), message
    return message


def _float_file(**changes: str | None) -> bytes:
    kw = channel_keywords(["A", "B"], 32, 1024, datatype="F", tot=2)
    for key, value in changes.items():
        key = key.replace("_", "$", 1) if key.startswith("_") else key
        if value is None:
            kw.pop(key, None)
        else:
            kw[key] = value
    return build_fcs(kw, np.arange(4, dtype="<f4").tobytes())


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"_DATATYPE": "A"}, r"ASCII data \(\$DATATYPE A\) not supported"),
        ({"_DATATYPE": "X"}, r"\$DATATYPE is 'X'"),
        ({"_PAR": "0"}, r"\$PAR is 0; it must be between 1 and 10000"),
        ({"_PAR": "99999"}, r"\$PAR is 99999"),
        ({"_PAR": "two"}, r"\$PAR is 'two', not a whole number"),
        ({"_PAR": None}, r"required keyword \$PAR is missing"),
        ({"_P2R": None}, r"required keyword \$P2R is missing"),
        ({"_P1N": None}, r"required keyword \$P1N is missing"),
        ({"_P1N": "  "}, r"\$P1N .* is blank"),
        ({"_P1B": "64"}, r"\$P1B is 64 bits but data type F stores 32-bit values"),
        ({"_TOT": "-1"}, r"\$TOT is -1"),
        ({"_TOT": "999999999999"}, r"cannot locate the DATA segment"),
        ({"_MODE": "U"}, r"only list-mode data"),
        ({"_BYTEORD": "3,4,1,2"}, r"\$BYTEORD '3,4,1,2' is neither"),
        ({"_BEGINDATA": "99999999999"}, r"cannot locate the DATA segment"),
        ({"_BEGINDATA": "-5"}, r"cannot locate the DATA segment"),
    ],
)
def test_refused_text(tmp_path: Path, changes: dict[str, str | None], pattern: str) -> None:
    content = _float_file(**changes)
    if "_BEGINDATA" in changes:  # also break the HEADER copy of the offsets
        content = content[:26] + f"{0:8d}{0:8d}".encode() + content[42:]
    _refused(tmp_path, content, pattern)


@pytest.mark.parametrize(("bits", "pattern"), [(7, "7 bits"), (128, "128 bits"), (12, "12 bits")])
def test_refused_integer_widths(tmp_path: Path, bits: int, pattern: str) -> None:
    kw = channel_keywords(["A"], bits, 1024, tot=1)
    _refused(tmp_path, build_fcs(kw, b"\x00" * 16), pattern + r"; integer data must use whole")


def test_refused_headers(tmp_path: Path) -> None:
    good = _float_file()
    _refused(tmp_path, b"NOTFCS" + good[6:], "does not start with an FCS version")
    _refused(tmp_path, b"FCS1.0" + good[6:], r"FCS1\.0 is not supported")
    _refused(tmp_path, good[:10] + b"   abcde" + good[18:], "no readable TEXT offsets")
    _refused(tmp_path, good[:10] + f"{58:8d}{10**7:8d}".encode() + good[26:], "TEXT at bytes")
    _refused(tmp_path, good[:40], "too short to be FCS")
    _refused(tmp_path, good[: len(good) - 3], "cannot locate the DATA segment")


def test_refused_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FCSError, match="file not found; check the path"):
        read_fcs(tmp_path / "nope.fcs")
    with pytest.raises(FCSError, match="folder"):
        read_fcs(tmp_path)


def test_absurd_tot_allocates_nothing(tmp_path: Path) -> None:
    path = _write_bytes(tmp_path / "a.fcs", _float_file(_TOT="4000000000"))
    tracemalloc.start()
    with pytest.raises(FCSError):
        read_fcs(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000


def test_unexpected_errors_become_fcs_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_fcs(tmp_path / "a.fcs", np.ones((3, 2)), ["A", "B"], None)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise IndexError("list index out of range\nsecond line")

    monkeypatch.setattr(fcs, "_decode", boom)
    with pytest.raises(FCSError) as exc:
        read_fcs(path)
    assert "unexpected IndexError" in _one_line_error(exc, path)
    monkeypatch.setattr(fcs, "_merge_supplemental_text", boom)
    with pytest.raises(FCSError) as exc:
        read_header_and_text(path)
    _one_line_error(exc, path)


def test_read_header_and_text_skips_data(tmp_path: Path) -> None:
    content = _float_file()
    path = _write_bytes(tmp_path / "a.fcs", content[: len(content) - 8])  # DATA cut short
    version, keywords, warnings_, data_set, n_sets = read_header_and_text(path)
    assert (version, keywords["$PAR"], data_set, n_sets) == ("FCS3.1", "2", 1, 1)
    assert warnings_ == []
    with pytest.raises(FCSError):
        read_fcs(path)


# --------------------------------------------------------------------------------------------
# Spillover
# --------------------------------------------------------------------------------------------

CHANNELS = ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "Time"]


def test_parse_spillover_names_and_numbers() -> None:
    names, matrix = parse_spillover("2,FL1-A,FL2-A,1,0.1,0.2,1", CHANNELS)
    assert names == ["FL1-A", "FL2-A"]
    np.testing.assert_array_equal(matrix, [[1, 0.1], [0.2, 1]])
    names, _ = parse_spillover(" 2 , 3 , 4 , 1 , 0 , 0 , 1 ,", CHANNELS)
    assert names == ["FL1-A", "FL2-A"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "is empty"),
        ("x,FL1-A,1", "does not start with a channel count"),
        ("0", "does not start with a channel count"),
        ("2,FL1-A,FL2-A", "lists 2 channel names but no values"),
        ("2,FL1-A,FL2-A,1,0,0", "so 7 items, but holds 6"),
        ("2,FL1-A,PE-A,1,0,0,1", "names channel 'PE-A', which is not in the file"),
        ("2,FL1-A,FL1-A,1,0,0,1", "names a channel twice"),
        ("2,FL1-A,FL2-A,1,0,x,1", "not a number"),
        ("2,FL1-A,FL2-A,1,0,0,1,5", "holds 8"),
    ],
)
def test_parse_spillover_refuses(text: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse_spillover(text, CHANNELS)


def test_comp_without_names() -> None:
    """FCS 3.0 ``$COMP`` has no names: all $PAR channels (Beckman writes n = $PAR) or, when n
    matches them, the fluorescence channels in order."""
    six = "6," + ",".join(str(v) for v in np.eye(6).ravel())
    names, _ = parse_spillover(six, CHANNELS, keyword="$COMP")
    assert names == CHANNELS
    three = "3," + ",".join(str(v) for v in np.eye(3).ravel())
    names, _ = parse_spillover(three, CHANNELS, keyword="$COMP")
    assert names == ["FL1-A", "FL2-A", "FL3-A"]
    spill, notes = find_spillover({"$COMP": three}, CHANNELS)
    assert spill is not None and spill.keyword == "$COMP"
    assert notes == ["$COMP carries no channel names; applied it to FL1-A, FL2-A, FL3-A in order"]
    with pytest.raises(ValueError, match="matching neither"):
        parse_spillover("2,1,0,0,1", CHANNELS, keyword="$COMP")
    with pytest.raises(ValueError, match="holds 5"):
        parse_spillover("2,1,0,0,1", CHANNELS)  # only $COMP may omit the names


def test_find_spillover_keyword_order_and_fallback() -> None:
    good = "2,FL1-A,FL2-A,1,0,0,1"
    assert find_spillover_keyword({}) is None
    assert find_spillover_keyword({"$SPILLOVER": "  ", "SPILL": good}) == "SPILL"
    lowest_first = ["SPILLOVER", "$COMP", "$SPILL", "SPILL", "$SPILLOVER"]
    for i, key in enumerate(lowest_first):
        assert find_spillover_keyword(dict.fromkeys(lowest_first[: i + 1], good)) == key
    spill, notes = find_spillover({"$SPILLOVER": "6,A,B,C,D,E,F", "SPILL": good}, CHANNELS)
    assert spill is not None and spill.keyword == "SPILL"
    assert notes == [
        "$SPILLOVER lists 6 channel names but no values; the matrix is unusable; $SPILLOVER ignored"
    ]


def test_reading_is_deterministic(tmp_path: Path) -> None:
    """Reading is deterministic: the same bytes give the same events and warnings."""
    path = write_fcs(tmp_path / "a.fcs", np.arange(12.0).reshape(6, 2), ["A", "B"], None)
    first, second = read_fcs(path), read_fcs(os.fspath(path))
    np.testing.assert_array_equal(first.events, second.events)
    assert first.warnings == second.warnings and first.path == second.path
