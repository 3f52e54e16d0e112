"""Tests of ingest: marker finding, spillover parsing, reading FCS files into a Tube."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import flowio
import numpy as np
import pytest
from conftest import CORPUS, corpus_skip_reason

from antigen_profile import ingest
from antigen_profile.config import load_config
from antigen_profile.fcs_write import format_spillover, write_fcs
from antigen_profile.ingest import (
    IngestError,
    find_markers,
    map_control,
    read_tube,
)

CONFIG = load_config()
MARKERS: dict[str, list[str]] = CONFIG["markers"]
SCATTER: dict[str, list[str]] = CONFIG["scatter"]

CHANNELS = ["FSC-A", "FSC-H", "SSC-A", "PE-A", "APC-A", "V500-C-A"]
LABELS = ["", "", "", "CD22-PE", "CD123 APC", "CD45 V500-C"]
SPILL = np.array([[1.0, 0.12, 0.01], [0.02, 1.0, 0.0], [0.0, 0.03, 1.0]])
FLUO = ["PE-A", "APC-A", "V500-C-A"]


def _find(
    labels: Sequence[str],
    channels: Sequence[str] | None = None,
    markers: Mapping[str, Sequence[str]] | None = None,
    scatter: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """find_markers with generic detector names unless given; config aliases by default."""
    chans = list(channels) if channels is not None else [f"FL{i}-A" for i in range(len(labels))]
    match = find_markers(
        chans,
        list(labels),
        MARKERS if markers is None else markers,
        SCATTER if scatter is None else scatter,
    )
    return match.markers, match.notes


def _events(n: int = 500, p: int = len(CHANNELS), seed: int = 0) -> np.ndarray:
    """Random events that survive the float32 round trip exactly."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 200_000.0, (n, p)).astype(np.float32).astype(np.float64)


def _write(
    path: Path,
    events: np.ndarray | None = None,
    channels: Sequence[str] = CHANNELS,
    labels: Sequence[str | None] | None = LABELS,
    keywords: Mapping[str, str] | None = None,
) -> Path:
    data = _events(p=len(channels)) if events is None else events
    return write_fcs(path, data, list(channels), labels, keywords)


def _corpus(relative: str) -> Path:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(corpus_skip_reason(path))
    return path


# --------------------------------------------------------------------------------------------
# find_markers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "marker"),
    [
        ("CD22 PE", "CD22"),
        ("CD22-PE", "CD22"),
        ("PE CD22", "CD22"),
        ("PE-CD22", "CD22"),
        ("cd22", "CD22"),
        ("PE-Cy7 CD19", "CD19"),
        ("CALLA BV421", "CD10"),
        ("IL-3RA APC", "CD123"),
        ("il3ra APC", "CD123"),
    ],
)
def test_marker_found_in_free_text(label: str, marker: str) -> None:
    found, notes = _find(["", label], channels=["FSC-A", "FL2-A"])
    assert found.get(marker) == "FL2-A"
    # nothing else is claimed by this label
    assert [m for m, c in found.items() if c == "FL2-A"] == [marker]
    assert notes == []


@pytest.mark.parametrize("label", ["CD220 PE", "CD22PE", "aCD22 PE", "CD2 PE"])
def test_marker_is_matched_as_a_whole_word_only(label: str) -> None:
    found, _ = _find([label])
    assert "CD22" not in found


def test_alias_with_hyphen_matches_spacing_variants() -> None:
    markers = {"HLA-DR": ["HLA-DR"]}
    for label in ("HLA-DR APC", "HLA DR APC", "HLADR APC", "APC hla-dr"):
        found, _ = _find([label], markers=markers)
        assert found == {"HLA-DR": "FL0-A"}, label


def test_cd3_does_not_match_cd34_and_cd10_not_cd100() -> None:
    markers = {"CD3": ["CD3"], "CD10": ["CD10"], "CD34": ["CD34"]}
    found, _ = _find(["CD34 PerCP", "CD100 PE"], markers=markers)
    assert found == {"CD34": "FL0-A"}
    found, _ = _find(["CD34 PerCP", "CD100 PE", "CD3 FITC", "CD10 BV421"], markers=markers)
    assert found == {"CD34": "FL0-A", "CD3": "FL2-A", "CD10": "FL3-A"}


def test_scatter_found_by_detector_name_aliases() -> None:
    channels = ["FS INT", "FS PEAK", "SS INT", "FL1 INT", "TIME"]
    found, notes = _find(["", "", "", "CD45 KrO", ""], channels=channels)
    assert found == {
        "FSC-A": "FS INT",
        "FSC-H": "FS PEAK",
        "SSC-A": "SS INT",
        "Time": "TIME",
        "CD45": "FL1 INT",
    }
    assert notes == []
    found, _ = _find(["", "", ""], channels=["FSC-A", "SSC-A", "SSC-H"])
    assert found == {"FSC-A": "FSC-A", "SSC-A": "SSC-A", "SSC-H": "SSC-H"}


def test_scatter_alias_order_is_the_preference_order() -> None:
    # "FSC" and "FSC-A" are both aliases of FSC-A; the first alias wins, not the first column
    found, _ = _find(["", ""], channels=["FSC", "FSC-A"])
    assert found["FSC-A"] == "FSC-A"


def test_marker_found_in_detector_name_when_pns_is_empty() -> None:
    found, _ = _find(["", "", ""], channels=["FSC-A", "CD22 PE-A", "FL3-A"])
    assert found["CD22"] == "CD22 PE-A"


def test_pns_is_preferred_to_pnn() -> None:
    found, _ = _find(["", "CD22 PE"], channels=["CD22-A", "PE-A"])
    assert found["CD22"] == "PE-A"


def test_scatter_detectors_are_not_taken_by_markers() -> None:
    # a stain description on a scatter detector must not steal it for a marker
    found, _ = _find(["CD45", "CD45 V500"], channels=["SSC-A", "V500-A"])
    assert found["SSC-A"] == "SSC-A"
    assert found["CD45"] == "V500-A"


@pytest.mark.parametrize("channels", [["PE-H", "PE-A"], ["PE-A", "PE-H"]])
def test_ambiguity_prefers_area_detector(channels: list[str]) -> None:
    found, notes = _find(["CD22 PE", "CD22 PE"], channels=channels)
    assert found["CD22"] == "PE-A"
    assert notes == []  # the area rule resolves it: no tie left to report


def test_remaining_ambiguity_is_a_warning_naming_both_detectors() -> None:
    found, notes = _find(["CD22 PE", "CD22 APC"], channels=["PE-A", "APC-A"])
    assert found["CD22"] == "PE-A"
    assert len(notes) == 1
    assert "CD22" in notes[0] and "PE-A" in notes[0] and "APC-A" in notes[0]


def test_unknown_marker_is_simply_absent() -> None:
    found, notes = _find(["CD7 FITC"])
    assert found == {}
    assert notes == []


# --------------------------------------------------------------------------------------------
# read_tube on files written by fcs_write.write_fcs
# --------------------------------------------------------------------------------------------


def test_read_tube_round_trip(tmp_path: Path) -> None:
    events = _events()
    keywords = {
        "$SPILLOVER": format_spillover(FLUO, SPILL),
        "$CYT": "Test cytometer",
        "$P4R": "1024",
    }
    path = _write(tmp_path / "tube.fcs", events, keywords=keywords)
    tube = read_tube(path, MARKERS, SCATTER)

    assert tube.path == path
    assert tube.n_events == 500
    assert tube.events.dtype == np.float64
    np.testing.assert_array_equal(tube.events, events)
    assert tube.channels == CHANNELS
    assert tube.labels == LABELS
    assert tube.markers == {
        "FSC-A": "FSC-A",
        "FSC-H": "FSC-H",
        "SSC-A": "SSC-A",
        "CD22": "PE-A",
        "CD123": "APC-A",
        "CD45": "V500-C-A",
    }
    np.testing.assert_array_equal(tube.column("CD123"), events[:, 4])
    assert tube.spillover_source == "$SPILLOVER"
    assert tube.spillover is not None
    assert list(tube.spillover.index) == FLUO
    assert list(tube.spillover.columns) == FLUO
    np.testing.assert_allclose(tube.spillover.to_numpy(), SPILL)
    assert tube.ranges["PE-A"] == 1023.0  # top of a 1024-channel scale, in event units
    assert tube.ranges["FSC-A"] == 262143.0
    assert set(tube.ranges) == set(CHANNELS)
    assert tube.cytometer == "Test cytometer"
    assert tube.version == "3.1"
    assert tube.warnings == []


def test_read_tube_spill_keyword(tmp_path: Path) -> None:
    text = format_spillover(FLUO, SPILL)
    path = _write(tmp_path / "bd.fcs", keywords={"SPILL": text})
    tube = read_tube(path, MARKERS, SCATTER)
    assert tube.spillover_source == "SPILL"
    assert tube.spillover is not None
    np.testing.assert_allclose(tube.spillover.loc[FLUO, FLUO].to_numpy(), SPILL)


def test_spillover_keyword_wins_over_spill(tmp_path: Path) -> None:
    other = np.eye(3) + 0.5 * np.eye(3, k=1)
    keywords = {
        "$SPILLOVER": format_spillover(FLUO, SPILL),
        "SPILL": format_spillover(FLUO, other),
    }
    tube = read_tube(_write(tmp_path / "both.fcs", keywords=keywords), MARKERS, SCATTER)
    assert tube.spillover_source == "$SPILLOVER"
    assert tube.spillover is not None
    np.testing.assert_allclose(tube.spillover.to_numpy(), SPILL)


def test_read_tube_dollar_spill_keyword(tmp_path: Path) -> None:
    path = _write(tmp_path / "spill.fcs", keywords={"$SPILL": format_spillover(FLUO, SPILL)})
    tube = read_tube(path, MARKERS, SCATTER)
    assert tube.spillover is not None
    assert tube.spillover_source != "none"
    np.testing.assert_allclose(tube.spillover.loc[FLUO, FLUO].to_numpy(), SPILL)


def test_malformed_spillover_falls_back_with_a_warning(tmp_path: Path) -> None:
    keywords = {
        "$SPILLOVER": "3,PE-A,APC-A,1,0,0,1",
        "SPILL": format_spillover(FLUO, SPILL),
    }
    tube = read_tube(_write(tmp_path / "bad.fcs", keywords=keywords), MARKERS, SCATTER)
    assert tube.spillover_source == "SPILL"
    assert any("$SPILLOVER" in w for w in tube.warnings)


def test_no_spillover_keyword(tmp_path: Path) -> None:
    tube = read_tube(_write(tmp_path / "none.fcs"), MARKERS, SCATTER)
    assert tube.spillover is None
    assert tube.spillover_source == "none"


def test_spillover_from_config_csv_overrides_the_file(tmp_path: Path) -> None:
    csv = tmp_path / "spill.csv"
    csv.write_text("detector,PE-A,APC-A\nPE-A,1,0.25\nAPC-A,0,1\n")
    keywords = {"$SPILLOVER": format_spillover(FLUO, SPILL)}
    path = _write(tmp_path / "tube.fcs", keywords=keywords)
    tube = read_tube(path, MARKERS, SCATTER, spillover_csv=csv)
    assert tube.spillover_source == "config"
    assert tube.spillover is not None
    assert tube.spillover.loc["PE-A", "APC-A"] == pytest.approx(0.25)


def test_read_tube_checksum_and_file_untouched(tmp_path: Path) -> None:
    path = _write(tmp_path / "tube.fcs", keywords={"$SPILLOVER": format_spillover(FLUO, SPILL)})
    before = path.read_bytes()
    stat = path.stat()
    tube = read_tube(path, MARKERS, SCATTER)
    assert tube.sha256 == hashlib.sha256(before).hexdigest()
    assert path.read_bytes() == before
    after = path.stat()
    assert after.st_mtime_ns == stat.st_mtime_ns
    assert after.st_size == stat.st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tube.fcs"]  # nothing written beside


def test_missing_required_marker_is_one_line_naming_file_and_marker(tmp_path: Path) -> None:
    path = _write(tmp_path / "no-cd45.fcs", labels=["", "", "", "CD22 PE", "CD123 APC", ""])
    with pytest.raises(IngestError) as info:
        read_tube(path, MARKERS, SCATTER, required=["FSC-A", "SSC-A", "CD45"])
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "CD45" in message
    assert "SSC-A" not in message  # only the missing marker is named


def test_required_markers_present_reads(tmp_path: Path) -> None:
    tube = read_tube(_write(tmp_path / "ok.fcs"), MARKERS, SCATTER, required=["CD45", "FSC-H"])
    assert tube.markers["CD45"] == "V500-C-A"


def test_unknown_marker_column_is_an_ingest_error(tmp_path: Path) -> None:
    tube = read_tube(_write(tmp_path / "ok.fcs"), MARKERS, SCATTER)
    with pytest.raises(IngestError, match="CD38"):
        tube.column("CD38")


def test_missing_file_is_an_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.fcs"
    with pytest.raises(IngestError) as info:
        read_tube(path, MARKERS, SCATTER)
    assert str(path) in str(info.value)


def _one_line_error(path: Path) -> str:
    with pytest.raises(IngestError) as info:
        read_tube(path, MARKERS, SCATTER)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_garbage_file_is_a_one_line_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.fcs"
    path.write_bytes(b"not an FCS file at all\n" * 50)
    _one_line_error(path)


def test_truncated_file_is_a_one_line_ingest_error(tmp_path: Path) -> None:
    whole = _write(tmp_path / "whole.fcs").read_bytes()
    path = tmp_path / "truncated.fcs"
    path.write_bytes(whole[: len(whole) // 2])
    _one_line_error(path)


def test_non_finite_events_are_an_ingest_error(tmp_path: Path) -> None:
    events = _events()
    events[7, 3] = np.nan
    assert "non-finite" in _one_line_error(_write(tmp_path / "nan.fcs", events))


@pytest.mark.parametrize("row", [0, 130, 499])
def test_non_finite_events_are_found_in_every_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: int
) -> None:
    """The check goes block by block (bounded memory): a value in the first, a middle or the
    last, partial block is found all the same."""
    monkeypatch.setattr(ingest, "FINITE_BLOCK", 64)
    events = _events()
    events[row, 5] = np.inf
    assert "non-finite" in _one_line_error(_write(tmp_path / "inf.fcs", events))
    assert read_tube(_write(tmp_path / "ok.fcs"), MARKERS, SCATTER).events.flags.f_contiguous


def test_file_without_events_is_an_ingest_error(tmp_path: Path) -> None:
    events = np.zeros((0, len(CHANNELS)))
    assert "no events" in _one_line_error(_write(tmp_path / "empty.fcs", events))


def test_map_control_maps_through_the_stained_tubes_detectors(tmp_path: Path) -> None:
    stained = read_tube(_write(tmp_path / "stained.fcs"), MARKERS, SCATTER)
    control_path = _write(tmp_path / "control.fcs", labels=None, events=_events(seed=3))
    control = read_tube(control_path, {}, {}, ())
    assert control.markers == {}
    mapped = map_control(control, stained)
    assert mapped.markers == stained.markers
    np.testing.assert_array_equal(mapped.column("CD22"), _events(seed=3)[:, 3])


def test_map_control_notes_a_detector_the_control_lacks(tmp_path: Path) -> None:
    stained = read_tube(_write(tmp_path / "stained.fcs"), MARKERS, SCATTER)
    channels = [c for c in CHANNELS if c != "APC-A"]
    control = read_tube(
        _write(tmp_path / "control.fcs", channels=channels, labels=None), {}, {}, ()
    )
    mapped = map_control(control, stained)
    assert "CD123" not in mapped.markers
    assert mapped.markers["CD22"] == "PE-A"
    assert any("APC-A" in w and "CD123" in w for w in mapped.warnings)


# --------------------------------------------------------------------------------------------
# Real-instrument corpus
# --------------------------------------------------------------------------------------------


def test_corpus_attune_with_spillover() -> None:
    path = _corpus("flowio/G11.fcs")
    tube = read_tube(path, MARKERS, SCATTER)
    assert tube.n_events == flowio.FlowData(str(path)).event_count
    assert tube.spillover_source == "$SPILLOVER"
    assert tube.spillover is not None
    assert set(tube.spillover.index) <= set(tube.channels)
    assert "Attune" in tube.cytometer
    assert {"FSC-A", "SSC-A", "FSC-H"} <= set(tube.markers)


def test_corpus_facsaria_with_spill() -> None:
    path = _corpus("flowkit/100715.fcs")
    tube = read_tube(path, MARKERS, SCATTER)
    flow = flowio.FlowData(str(path))
    assert tube.n_events == flow.event_count
    assert tube.spillover_source == "SPILL"
    assert tube.spillover is not None
    assert set(tube.spillover.index) <= set(tube.channels)
    # the detector carrying $PnS "CD19", read independently with FlowIO
    cd19 = [
        flow.channels[k]["pnn"]
        for k in flow.channels
        if flow.channels[k].get("pns", "").strip() == "CD19"
    ]
    assert cd19 and tube.markers["CD19"] == cd19[0]


def test_corpus_off_by_one_offset_is_read_with_a_warning() -> None:
    path = _corpus("flowkit/test_comp_example.fcs")
    tube = read_tube(path, MARKERS, SCATTER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = flowio.FlowData(str(path), ignore_offset_error=True).event_count
    assert tube.n_events == expected
    assert any("off by one" in w for w in tube.warnings)


@pytest.mark.parametrize(
    "relative", ["fcsparser/corrupted/corrupted.fcs", "fcsparser/cytek-nl-2000/sample_header.fcs"]
)
def test_corpus_unreadable_files_give_a_one_line_ingest_error(relative: str) -> None:
    _one_line_error(_corpus(relative))


# --------------------------------------------------------------------------------------------
# Vendor presets, shared stains and refusals (issue 13)
# --------------------------------------------------------------------------------------------

#: BD and Attune name every pulse measure alike: each role finds the channel of its own name.
EVERY_PULSE = {r: r for r in ("FSC-A", "FSC-H", "FSC-W", "SSC-A", "SSC-H", "SSC-W", "Time")}
#: Each vendor's scatter/time spelling in a real corpus file, and the roles the default config
#: must find in it.
VENDOR_FILES = {
    "BD FACSDiva, width only": (
        "fcsparser/FACS_Diva/facs_diva_test.fcs",
        {"FSC-A": "FSC-A", "FSC-W": "FSC-W", "SSC-A": "SSC-A", "Time": "Time"},
    ),
    "BD LSR II": (
        "fcsparser/HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs",
        EVERY_PULSE,
    ),
    "BD FACSCalibur, heights only": (
        "flowcal/Data001.fcs",
        {"FSC-A": "FSC-H", "SSC-A": "SSC-H", "Time": "Time"},
    ),
    "Beckman Navios LMD (FCS 2.0)": (
        "fcsparser/fake_bitmask_error/fcs1_cleaned.lmd",
        {"FSC-A": "FS INT LIN", "SSC-A": "SS INT LIN"},
    ),
    "Beckman FC500 LMD (FCS 3.0)": (
        "flowkit/coulter.lmd",
        {"FSC-A": "FS", "SSC-A": "SS", "Time": "TIME"},
    ),
    "Cytek xP5": ("fcsparser/Cytek_xP5/Cytek_xP5.fcs", {"FSC-A": "FSC", "SSC-A": "SSC"}),
    "Thermo Attune NxT": (
        "flowio/G11.fcs",
        EVERY_PULSE,
    ),
    "Miltenyi MACSQuant (FCS 2.0)": (
        "fcsparser/MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs",
        {"FSC-A": "FSC-A", "FSC-H": "FSC-H", "SSC-A": "SSC-A", "Time": "HDR-T"},
    ),
    "Sysmex CyFlow Cube": (
        "fcsparser/cyflow_cube_8/cyflow_cube_8.fcs",
        {"FSC-A": "FSC", "SSC-A": "SSC", "Time": "TIME"},
    ),
}


@pytest.mark.parametrize("vendor", list(VENDOR_FILES), ids=list(VENDOR_FILES))
def test_vendor_scatter_presets_on_real_files(vendor: str) -> None:
    relative, expected = VENDOR_FILES[vendor]
    tube = read_tube(_corpus(relative), MARKERS, SCATTER)
    roles = {k: v for k, v in tube.markers.items() if k in SCATTER}
    for role, channel in expected.items():
        assert roles.get(role) == channel, f"{vendor}: {role} -> {roles.get(role)}"


def test_vendor_spellings_without_a_corpus_file() -> None:
    """Spellings of instruments the corpus has no file of (Navios FCS 3, Cytek Aurora,
    CytoFLEX, Sony): the presets find them with the default config."""
    cases = {
        ("FS INT", "FS PEAK", "SS INT", "SS PEAK", "TIME"): {
            "FSC-A": "FS INT", "FSC-H": "FS PEAK", "SSC-A": "SS INT", "SSC-H": "SS PEAK",
            "Time": "TIME"},
        ("FSC-A", "FSC-H", "SSC-A", "SSC-H", "SSC-B-A", "SSC-B-H", "Time"): {
            "FSC-A": "FSC-A", "FSC-H": "FSC-H", "SSC-A": "SSC-A", "SSC-H": "SSC-H"},
        ("FSC-A", "FSC-H", "FSC-Width", "SSC-A", "SSC-H", "Time"): {
            "FSC-W": "FSC-Width", "SSC-H": "SSC-H"},
        ("FSC-A", "FSC-H", "BSC-A", "BSC-H", "TIME"): {"SSC-A": "BSC-A", "SSC-H": "BSC-H"},
    }  # fmt: skip
    for channels, expected in cases.items():
        found, _ = _find([""] * len(channels), channels=channels)
        for role, channel in expected.items():
            assert found.get(role) == channel, (channels, role, found)


@pytest.mark.parametrize(
    "label", ["CD3/CD19 PE-Cy7", "CD19+CD20 APC", "CD19 CD3 dump", "Kappa/CD19"]
)
def test_a_stain_naming_two_antigens_is_never_used_for_either(label: str) -> None:
    found, notes = _find(["CD22 PE", label, "CD45 V500"])
    assert "CD19" not in found and "CD20" not in found
    assert found["CD22"] == "FL0-A" and found["CD45"] == "FL2-A"
    assert any("FL1-A" in n and "not measured" in n for n in notes), notes


def test_single_antigen_stains_with_numbers_are_not_shared() -> None:
    """A fluorochrome or clone name with digits is not a second antigen."""
    found, _ = _find(["CD19 PE-Cy7", "CD45 V500-C", "CD34 PerCP-Cy5.5", "CD123 BV421 (6H6)"])
    assert set(found) >= {"CD19", "CD45", "CD34", "CD123"}


def _tube_with(tmp_path: Path, channels: list[str], labels: list[str]) -> Path:
    return write_fcs(tmp_path / "t.fcs", _events(p=len(channels)), channels, labels)


def test_refusal_names_the_missing_stain_and_what_the_tube_has(tmp_path: Path) -> None:
    path = _tube_with(tmp_path, ["FSC-A", "SSC-A", "PE-A", "APC-A"], ["", "", "CD22", "CD19"])
    tube = read_tube(path, MARKERS, SCATTER)
    problem = ingest.panel_problem(tube, ["FSC-A", "SSC-A", "CD45"], MARKERS, SCATTER)
    assert problem is not None and str(path) in problem
    assert "no CD45 stain in this tube: the blast gate needs CD45" in problem
    assert "CD22 (PE-A)" in problem and "CD19 (APC-A)" in problem
    assert "add that spelling" not in problem, "no near miss: no spelling advice"
    assert "\n" not in problem


def test_refusal_suggests_a_spelling_only_for_a_near_miss(tmp_path: Path) -> None:
    path = _tube_with(tmp_path, ["FSC-A", "SSC-A", "V500-A"], ["", "", "CD 45 V500"])
    tube = read_tube(path, MARKERS, SCATTER)
    problem = ingest.panel_problem(tube, ["FSC-A", "SSC-A", "CD45"], MARKERS, SCATTER)
    assert problem is not None
    assert "'CD 45 V500' on V500-A looks like CD45" in problem and "markers.CD45" in problem


def test_refusal_for_missing_side_scatter_lists_the_detectors(tmp_path: Path) -> None:
    path = _tube_with(tmp_path, ["FSC-A", "V500-A"], ["", "CD45"])
    problem = ingest.panel_problem(
        read_tube(path, MARKERS, SCATTER), ["FSC-A", "SSC-A", "CD45"], MARKERS, SCATTER
    )
    assert problem is not None and "no side scatter" in problem and "FSC-A, V500-A" in problem


def test_mass_cytometry_file_gets_a_plain_refusal(tmp_path: Path) -> None:
    channels = ["Time", "Event_length", "Ir191Di", "Ir193Di", "Nd144Di"]
    path = _tube_with(tmp_path, channels, ["", "", "DNA1", "DNA2", "CD45"])
    tube = read_tube(path, MARKERS, SCATTER)
    problem = ingest.panel_problem(tube, ["FSC-A", "SSC-A", "CD45"], MARKERS, SCATTER)
    assert problem is not None and "mass cytometry" in problem and "Ir191Di" in problem


def test_unmatched_channels_are_listed(tmp_path: Path) -> None:
    path = _tube_with(
        tmp_path, ["FSC-A", "SSC-A", "V500-A", "PB-A", "PE-Cy7-A"], ["", "", "CD45", "Syto 41",
        "CD3/CD19"]
    )  # fmt: skip
    tube = read_tube(path, MARKERS, SCATTER)
    assert tube.unmatched == ["PB-A"]
    assert tube.shared == {"PE-Cy7-A": ["CD19"]}


def test_all_finite_by_channel_sums_and_value_by_value() -> None:
    """A finite sum per channel proves the tube finite; an infinity, a NaN, or finite values
    whose sum overflows are decided value by value."""
    from antigen_profile.ingest import _all_finite

    events = np.asfortranarray(np.random.default_rng(0).normal(size=(70_000, 5)))
    assert _all_finite(events)
    for bad in (np.inf, -np.inf, np.nan):
        broken = events.copy(order="F")
        broken[65_537, 3] = bad
        assert not _all_finite(broken)
    huge = events.copy(order="F")
    huge[[10, 20], 1] = 1e308  # the sum overflows, every value is finite
    assert _all_finite(huge)
    assert not _all_finite(np.array([np.nan]))
