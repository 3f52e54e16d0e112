"""The instrument profiles' files: our reader gets back what was written, with the keywords
each profile declares, and the cells are the demo's own (same truth, demo bytes untouched)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from antigen_profile import simulate
from antigen_profile.fcs import read_fcs
from antigen_profile.instruments import (
    PROFILES,
    InstrumentProfile,
    encode_events,
    instrument_events,
    write_instrument_tube,
    write_raw_fcs,
)
from antigen_profile.simulate import Channel, demo_tube_events, load_truth, simulate_events

PROFILE_NAMES = list(PROFILES)
#: A profile and the two tubes written with it (stained and control).
Written = tuple[InstrumentProfile, dict[str, Path]]
#: float32 keeps 24 bits of mantissa.
FLOAT_REL = 2.0**-23


def _expected_bounds(prof: InstrumentProfile, data_tops: list[float]) -> list[tuple[float, float]]:
    """(lowest, highest) value each channel can hold, in reader units."""
    bounds = []
    for detector, top in zip(prof.detectors, data_tops, strict=True):
        if detector.log:
            low = prof.log_offset / (detector.gain or 1.0)
        elif prof.datatype == "I":
            low = 0.0
        else:
            low = -np.inf
        bounds.append((low, top))
    return bounds


def _tolerance(prof: InstrumentProfile, index: int, expected: np.ndarray) -> np.ndarray:
    """The encoding's resolution for one channel, per event."""
    detector = prof.detectors[index]
    if detector.log:  # half a channel: a ratio of 10 ** (decades / range / 2)
        step = 10 ** (prof.log_decades / prof.detector_range(detector) / 2) - 1
        return np.abs(expected) * step * 1.001
    if prof.datatype == "I":
        unit = prof.timestep if detector.kind == "Time" else 1.0 / (detector.gain or 1.0)
        return np.full(expected.shape, 0.5 * unit * 1.001)
    return np.abs(expected) * FLOAT_REL + 1e-12


@pytest.fixture(scope="module", params=PROFILE_NAMES)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """One stained tube and its control tube written with each profile."""
    prof = PROFILES[request.param]
    folder = tmp_path_factory.mktemp(prof.name)
    paths = {
        name: write_instrument_tube(name, prof, folder) for name in ("P03-R1", "P03-R1_control")
    }
    return prof, paths


@pytest.mark.parametrize("tube", ["P03-R1", "P03-R1_control"])
def test_reader_returns_the_values_written(written: Written, tube: str) -> None:
    prof, paths = written
    data = read_fcs(paths[tube])
    assert data.warnings == [], f"{prof.name}: reader needed tolerances: {data.warnings}"
    expected, _ = instrument_events(tube, prof)
    raw = read_fcs(paths[tube], preprocess=False)
    np.testing.assert_array_equal(
        raw.events, encode_events(prof, expected).astype(np.float64), err_msg=prof.name
    )
    for col, (low, top) in enumerate(_expected_bounds(prof, data.scale_tops)):
        want = np.clip(expected[:, col], low, top)
        got = data.events[:, col]
        off = np.abs(got - want) - _tolerance(prof, col, want)
        worst = int(np.argmax(off))
        assert off[worst] <= 0, (
            f"{prof.name} {tube} {data.channels[col]}: read {got[worst]!r}, wrote "
            f"{expected[worst, col]!r} (expected {want[worst]!r})"
        )


def test_keywords_are_the_profiles(written: Written) -> None:
    prof, paths = written
    data = read_fcs(paths["P03-R1"])
    keywords = data.keywords
    assert data.version == f"FCS{prof.version}"
    assert keywords["$DATATYPE"] == prof.datatype
    little = prof.byteorder == "little"
    assert keywords["$BYTEORD"].startswith("1,") == little, (prof.name, keywords["$BYTEORD"])
    if prof.version == "2.0":  # Beckman names the value's own bytes: 1,2 for 16 bits
        order = [str(b) for b in range(1, prof.bits // 8 + 1)]
        assert keywords["$BYTEORD"] == ",".join(order if little else order[::-1])
        assert "$BEGINDATA" not in keywords
    else:
        assert keywords["$BYTEORD"] in ("1,2,3,4", "4,3,2,1")
        assert int(keywords["$BEGINDATA"]) > 0
    assert keywords.get("$CYT") == prof.cytometer
    assert data.channels == [d.name for d in prof.detectors]
    for n, detector in enumerate(prof.detectors, start=1):
        assert keywords[f"$P{n}B"] == str(prof.bits)
        assert keywords[f"$P{n}R"] == str(prof.detector_range(detector))
        label = prof.label(detector)
        assert keywords.get(f"$P{n}S", "") == label, (prof.name, detector.name)
        if detector.kind == "fluorescence":
            assert detector.marker in label
        decades = float(keywords[f"$P{n}E"].split(",")[0])
        assert (decades > 0) == detector.log
    spill_keys = {"$SPILLOVER", "SPILL", "$SPILL", "$COMP"} & set(keywords)
    assert spill_keys == ({prof.spillover} if prof.spillover else set()), prof.name
    assert ("$TIMESTEP" in keywords) == (prof.time is not None)
    for key, value in prof.keywords:
        assert keywords[key.upper()] == value
    control = read_fcs(paths["P03-R1_control"]).labels
    stained = [n for n, d in enumerate(prof.detectors) if d.kind == "fluorescence"]
    assert all(control[n] == "" for n in stained), "control tubes carry no stain names"


def test_the_cells_are_the_demos(written: Written) -> None:
    """Same seed, same draws: every event is the demo tube's cell, with the demo's truth."""
    prof, paths = written
    for name, path in paths.items():
        _, demo = demo_tube_events(name)
        truth = load_truth(path.with_suffix(".truth.npz"))
        np.testing.assert_array_equal(truth.population, demo.population, err_msg=prof.name)
        np.testing.assert_array_equal(truth.positive, demo.positive, err_msg=prof.name)
        assert truth.markers == demo.markers
        np.testing.assert_allclose(
            truth.fluorescence, demo.fluorescence * prof.fluorescence_gain, rtol=1e-6
        )
        assert [prof.markers[str(m)].name for m in demo.markers] == list(truth.detectors)


def test_the_same_bytes_every_time(written: Written, tmp_path: Path) -> None:
    prof, paths = written
    again = write_instrument_tube("P03-R1_control", prof, tmp_path)
    assert again.read_bytes() == paths["P03-R1_control"].read_bytes(), prof.name
    truth = again.with_suffix(".truth.npz")
    assert truth.read_bytes() == paths["P03-R1_control"].with_suffix(".truth.npz").read_bytes()


def test_extra_channels_leave_every_other_value_as_it_was() -> None:
    """Widths, side-scatter heights, SSC-B and unstained detectors draw their random numbers
    after the demo's: the demo's own channels come out identical."""
    spec, _ = simulate.demo_tube_spec("P04-R1")
    extra = (
        Channel("FSC-W", "FSC-W"),
        Channel("SSC-H", "SSC-H"),
        Channel("SSC-W", "SSC-W"),
        Channel("SSC-B-A", "SSC-B-A"),
        Channel("SSC-B-H", "SSC-B-H"),
        Channel("FL3", "unstained"),
        Channel("FL7", "unstained"),
    )
    plain, plain_truth = simulate_events(spec, 5000, np.random.default_rng(11))
    more, more_truth = simulate_events(
        replace(spec, channels=spec.channels + extra), 5000, np.random.default_rng(11)
    )
    np.testing.assert_array_equal(more[:, : len(spec.channels)], plain)
    np.testing.assert_array_equal(more_truth.population, plain_truth.population)
    np.testing.assert_array_equal(more_truth.positive, plain_truth.positive)
    names = [c.name for c in spec.channels + extra]
    col = {n: more[:, i] for i, n in enumerate(names)}
    for scatter in ("FSC", "SSC"):  # W = A / H * 65536 (where A is not clipped)
        area, height, width = (col[f"{scatter}-{k}"] for k in "AHW")
        ok = area < spec.max_value
        np.testing.assert_allclose(width[ok], (area / height * simulate.WIDTH_SCALE)[ok])
    doublets = more_truth.mask("doublets")
    singles = more_truth.leukocytes()
    for width in ("FSC-W", "SSC-W"):  # a doublet's pulse is longer: a wider pulse
        assert np.median(col[width][doublets]) > 1.5 * np.median(col[width][singles])
    assert np.median(col["SSC-B-A"] / col["SSC-A"]) == pytest.approx(simulate.SSC_B_FACTOR, 0.02)
    assert not np.array_equal(col["FL3"], col["FL7"])


def test_raw_writer_fcs2_big_endian_integers_and_escaped_delimiters(tmp_path: Path) -> None:
    stored = np.array([[1, 1023], [512, 0], [7, 300]], dtype=">u2")
    keywords = {
        "$P1N": "FS", "$P1R": "1024", "$P1E": "0,0",
        "$P2N": "FL1", "$P2R": "1024", "$P2E": "4,1", "$P2S": "CD22/PE",
        "$CYT": "XL",
    }  # fmt: skip
    path = write_raw_fcs(tmp_path / "x.fcs", stored, keywords, version="2.0", text_start=256)
    data = read_fcs(path)
    assert data.warnings == []
    assert data.version == "FCS2.0" and data.keywords["$BYTEORD"] == "2,1"
    assert data.labels == ["", "CD22/PE"]
    np.testing.assert_array_equal(data.events[:, 0], [1, 512, 7])
    np.testing.assert_allclose(data.events[:, 1], 10 ** (4 * stored[:, 1].astype(float) / 1024))
    assert path.read_bytes()[:10] == b"FCS2.0    "
    with pytest.raises(ValueError, match=r"\$P2R"):
        write_raw_fcs(tmp_path / "y.fcs", stored, {"$P1N": "A", "$P1R": "8", "$P2N": "B"})


def test_raw_writer_puts_data_where_asked(tmp_path: Path) -> None:
    stored = np.arange(12, dtype="<f4").reshape(4, 3)
    keywords = {
        f"$P{n}{k}": v for n in (1, 2, 3) for k, v in (("N", f"C{n}"), ("R", "1024"), ("E", "0,0"))
    }
    path = write_raw_fcs(tmp_path / "z.fcs", stored, keywords, data_start=8192)
    raw = path.read_bytes()
    assert int(raw[26:34]) == 8192 and raw[8192:] == stored.tobytes()
    data = read_fcs(path)
    assert data.warnings == [] and data.keywords["$BEGINDATA"] == "8192"
    np.testing.assert_array_equal(data.events, stored)


def test_flowio_reads_the_same_values(written: Written) -> None:
    """An independent reader agrees: the writer and our reader do not share a mistake."""
    import flowio

    prof, paths = written
    ours = read_fcs(paths["P03-R1"]).events
    theirs = flowio.FlowData(str(paths["P03-R1"])).as_array(preprocess=True)
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, err_msg=prof.name)
