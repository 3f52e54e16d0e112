"""Tests of acquisition QC: tubes written with fcs_write.write_fcs and read with ingest, and demo
cells acquired along a controlled time course (clogs, gaps, bursts, shifts)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import flowio
import numpy as np
import pandas as pd
import pytest
from conftest import CORPUS, corpus_skip_reason

from antigen_profile.compensate import compensate
from antigen_profile.config import ConfigError, load_config, resolve
from antigen_profile.fcs_write import format_spillover, write_fcs
from antigen_profile.gating import GatingTemplate
from antigen_profile.ingest import Tube, find_markers, read_tube
from antigen_profile.qc import (
    QCResult,
    QCSettings,
    check_acquisition,
    compensation_warnings,
    densest_population,
    failed_qc,
    gating_shares,
    gating_warnings,
    negative_pileups,
)
from antigen_profile.simulate import (
    demo_tube_events,
    demo_tube_names,
    demo_tube_spec,
    simulate_events,
)

CONFIG = load_config()
CHANNELS = ["FSC-A", "SSC-A", "PE-A", "APC-A", "Time"]
LABELS = ["", "", "CD22 PE", "CD123 APC", ""]
SPILLOVER = {"$SPILLOVER": format_spillover(["PE-A", "APC-A"], np.array([[1, 0.1], [0.02, 1]]))}
SETTINGS = QCSettings.from_config(CONFIG)


def _events(n: int, seed: int = 0) -> np.ndarray:
    """Clean events well inside the 0..262143 range; Time increasing."""
    rng = np.random.default_rng(seed)
    events = rng.uniform(100.0, 150_000.0, (n, len(CHANNELS)))
    events[:, -1] = np.arange(n, dtype=float)
    return events


def _tube(
    tmp_path: Path,
    events: np.ndarray,
    keywords: Mapping[str, str] | None = None,
    name: str = "tube.fcs",
) -> Tube:
    path = write_fcs(tmp_path / name, events, CHANNELS, LABELS, keywords)
    return read_tube(path, CONFIG["markers"], CONFIG["scatter"])


def test_settings_from_config() -> None:
    assert (SETTINGS.min_events, SETTINGS.max_saturated_fraction) == (5000, 0.02)


def test_clean_tube_passes(tmp_path: Path) -> None:
    qc = check_acquisition(_tube(tmp_path, _events(6000), SPILLOVER), SETTINGS)
    assert qc.status == "pass"
    assert qc.reasons == []
    assert qc.warnings == []
    assert qc.events_total == 6000
    assert qc.events_kept == 6000
    assert qc.keep.dtype == bool and qc.keep.shape == (6000,)
    assert qc.metrics["spillover_source"] == "$SPILLOVER"
    assert set(qc.metrics["saturated_fraction"]) == {"FSC-A", "SSC-A", "PE-A", "APC-A"}
    assert all(v == 0.0 for v in qc.metrics["saturated_fraction"].values())


def test_too_few_events_fails(tmp_path: Path) -> None:
    qc = check_acquisition(_tube(tmp_path, _events(4999), SPILLOVER), SETTINGS)
    assert qc.status == "fail"
    assert len(qc.reasons) == 1
    assert "4999" in qc.reasons[0] and "5000" in qc.reasons[0]


def test_exactly_min_events_does_not_fail(tmp_path: Path) -> None:
    qc = check_acquisition(_tube(tmp_path, _events(5000), SPILLOVER), SETTINGS)
    assert qc.status == "pass"


def test_min_events_comes_from_settings(tmp_path: Path) -> None:
    tube = _tube(tmp_path, _events(600), SPILLOVER)
    # 600 events fill 12 bins of 50 (the default 100 per bin would leave too few bins)
    small = {"min_events_per_bin": 50}
    assert check_acquisition(tube, QCSettings(min_events=500, **small)).status == "pass"
    assert check_acquisition(tube, QCSettings(min_events=601, **small)).status == "fail"


def test_saturated_channel_warns(tmp_path: Path) -> None:
    events = _events(6000)
    # spread over the run: saturation at the start only would also be a signal shift
    events[::33][:180, 2] = 262143.0  # 3% of PE-A at the top of its 262144 range
    events[::100][:60, 3] = 262143.0  # 1% of APC-A: under the 2% limit
    qc = check_acquisition(_tube(tmp_path, events, SPILLOVER), SETTINGS)
    assert qc.status == "warn"
    assert qc.reasons == []
    assert qc.metrics["saturated_fraction"]["PE-A"] == pytest.approx(0.03)
    assert qc.metrics["saturated_fraction"]["APC-A"] == pytest.approx(0.01)
    assert len(qc.warnings) == 1
    assert "PE-A" in qc.warnings[0] and "3.0%" in qc.warnings[0]


def test_saturation_uses_the_channel_range(tmp_path: Path) -> None:
    events = _events(6000)
    events[:, 3] = np.minimum(events[:, 3], 500.0)
    events[:300, 3] = 1023.0  # 5% at the top of a 1024-channel scale
    qc = check_acquisition(_tube(tmp_path, events, {**SPILLOVER, "$P4R": "1024"}), SETTINGS)
    assert qc.status == "warn"
    assert qc.metrics["saturated_fraction"]["APC-A"] == pytest.approx(0.05)


def test_time_channel_is_not_checked_for_saturation(tmp_path: Path) -> None:
    events = _events(6000)
    events[:, -1] = 262143.0
    qc = check_acquisition(_tube(tmp_path, events, SPILLOVER), SETTINGS)
    assert "Time" not in qc.metrics["saturated_fraction"]
    # a constant clock cannot time the acquisition: that is the only warning, not saturation
    assert qc.status == "warn"
    assert qc.warnings == ["Time channel is constant: acquisition stability not checked"]
    assert qc.events_kept == 6000


def test_missing_spillover_warns(tmp_path: Path) -> None:
    qc = check_acquisition(_tube(tmp_path, _events(6000)), SETTINGS)
    assert qc.status == "warn"
    assert qc.reasons == []
    assert any("spillover" in w for w in qc.warnings)
    assert qc.metrics["spillover_source"] == "none"


def test_fail_wins_over_warn(tmp_path: Path) -> None:
    qc = check_acquisition(_tube(tmp_path, _events(100)), SETTINGS)
    assert qc.status == "fail"
    assert qc.warnings  # the warnings are still reported


def test_ingest_warnings_are_carried(tmp_path: Path) -> None:
    tube = _tube(tmp_path, _events(6000), {"$SPILLOVER": "3,PE-A,APC-A,1,0,0,1"})
    assert tube.warnings  # the malformed $SPILLOVER was ignored with a note
    qc = check_acquisition(tube, SETTINGS)
    assert all(w in qc.warnings for w in tube.warnings)


def test_to_json_keys(tmp_path: Path) -> None:
    events = _events(6000)
    events[::33][:180, 2] = 262143.0
    tube = _tube(tmp_path, events, SPILLOVER)
    doc = check_acquisition(tube, SETTINGS).to_json("S1", str(tube.path))
    assert list(doc) == [
        "sample_id", "file", "status", "failure", "reasons", "warnings", "events_total",
        "events_kept",
        "metrics", "dropped", "time_course",
    ]  # fmt: skip
    assert doc["sample_id"] == "S1"
    assert doc["file"] == str(tube.path)
    assert doc["status"] == "warn"
    assert (doc["events_total"], doc["events_kept"]) == (6000, 6000)
    assert set(doc["metrics"]) == {"saturated_fraction", "spillover_source", "time"}
    assert json.loads(json.dumps(doc)) == doc


def test_failed_qc_document() -> None:
    doc = failed_qc("x.fcs: cannot be read").to_json("S1", "x.fcs")
    assert doc["status"] == "fail"
    assert doc["reasons"] == ["x.fcs: cannot be read"]
    assert (doc["events_total"], doc["events_kept"]) == (0, 0)
    json.dumps(doc)


# --------------------------------------------------------------------------------------------
# Known bug: $PnR is compared with events that are no longer in channel units
# --------------------------------------------------------------------------------------------


def test_saturation_on_a_channel_with_gain(tmp_path: Path) -> None:
    events = _events(6000)
    events[:600, 2] = 262143.0  # 10% of PE-A recorded at the top of the scale
    tube = _tube(tmp_path, events, {**SPILLOVER, "$P3G": "2"})
    qc = check_acquisition(tube, SETTINGS)
    assert qc.metrics["saturated_fraction"]["PE-A"] == pytest.approx(0.1)
    assert qc.status == "warn"


def test_saturation_on_log_amplified_channels() -> None:
    path = CORPUS / "flowcal" / "Data001.fcs"
    if not path.is_file():
        pytest.skip(corpus_skip_reason(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flow = flowio.FlowData(str(path))
    raw = flow.as_array(preprocess=False)
    tube = read_tube(path, CONFIG["markers"], CONFIG["scatter"])
    qc = check_acquisition(tube, SETTINGS)
    measured = qc.metrics["saturated_fraction"]
    expected = {
        channel: float(np.mean(raw[:, i] >= float(flow.text[f"p{i + 1}r"]) - 1))
        for i, channel in enumerate(tube.channels)
        if channel in measured
    }
    assert expected["FL2-H"] > 0.3  # a genuinely saturated channel, measured on the raw data
    assert measured == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------------------------
# Acquisition stability over time (clogs, gaps, bursts, signal shifts)
# --------------------------------------------------------------------------------------------

DEMO_SPEC, _ = demo_tube_spec("P01-R1")
DEMO_CHANNELS = [c.name for c in DEMO_SPEC.channels]
DEMO_LABELS = [c.label for c in DEMO_SPEC.channels]
DEMO_FLUORESCENCE = [c.name for c in DEMO_SPEC.fluorescence]
DEMO_SPILL = pd.DataFrame(
    DEMO_SPEC.spillover_matrix(), index=DEMO_FLUORESCENCE, columns=DEMO_FLUORESCENCE
)
TIME = DEMO_CHANNELS.index("Time")
PE = DEMO_CHANNELS.index("PE-A")
RATE = 500.0  # events per second
DURATION = 120.0


def _times(
    rng: np.random.Generator, pieces: Sequence[tuple[float, float, float]] = ()
) -> np.ndarray:
    """Event times (s) of a Poisson stream at RATE over DURATION; each (start, end, factor)
    multiplies the rate in that period (0 for a gap, 0.05 for a clog, 4 for a burst)."""
    cuts = sorted({0.0, DURATION, *(p[0] for p in pieces), *(p[1] for p in pieces)})
    parts = []
    for a, b in itertools.pairwise(cuts):
        factor = math.prod(f for s, e, f in pieces if s <= a and b <= e)
        parts.append(np.sort(rng.uniform(a, b, rng.poisson(RATE * factor * (b - a)))))
    return np.concatenate(parts)


def _demo_tube(events: np.ndarray, spillover: pd.DataFrame | None = DEMO_SPILL) -> Tube:
    """A Tube as ingest builds it (Time in seconds), without the FCS round trip."""
    markers = find_markers(DEMO_CHANNELS, DEMO_LABELS, CONFIG["markers"], CONFIG["scatter"]).markers
    return Tube(
        path=Path("simulated.fcs"),
        events=events,
        channels=list(DEMO_CHANNELS),
        labels=list(DEMO_LABELS),
        markers=markers,
        spillover=spillover,
        spillover_source="$SPILLOVER" if spillover is not None else "none",
        keywords={},
        ranges={c: 262143.0 for c in DEMO_CHANNELS},
        sha256="0" * 64,
    )


def _run(
    pieces: Sequence[tuple[float, float, float]] = (), seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Demo-tube events (P01-R1 cells) acquired at the times of :func:`_times`."""
    rng = np.random.default_rng(seed)
    times = _times(rng, pieces)
    events, _ = simulate_events(DEMO_SPEC, times.size, rng)
    events[:, TIME] = times
    return events, times


def _bin(qc: QCResult) -> float:
    return float(qc.metrics["time"]["bin_seconds"])


def _assert_dropped_period(qc: QCResult, reason: str, start: float, end: float) -> None:
    """Exactly one dropped period, of this reason, matching [start, end] within one bin."""
    assert [d["reason"] for d in qc.dropped] == [reason], qc.dropped
    period = qc.dropped[0]
    width = _bin(qc)
    assert abs(period["start_s"] - start) <= width, (period, width)
    assert abs(period["end_s"] - end) <= width, (period, width)


def _assert_keep_matches_period(qc: QCResult, times: np.ndarray, start: float, end: float) -> None:
    """Events well inside the period are dropped, events beyond one bin of it are kept."""
    width = _bin(qc)
    inside = (times > start + width) & (times < end - width)
    outside = (times < start - width) | (times > end + width)
    assert not qc.keep[inside].any()
    assert qc.keep[outside].all()
    assert qc.events_kept == int(qc.keep.sum()) == times.size - qc.dropped[0]["events"]


def test_clog_is_dropped_end_to_end(tmp_path: Path) -> None:
    """A 20-s clog (rate at 5%) in a 120-s acquisition, written to FCS with $TIMESTEP 0.01 and
    read back: exactly that period is dropped, with the time in seconds."""
    events, times = _run([(40.0, 60.0, 0.05)])
    ticks = events.copy()
    ticks[:, TIME] = times / 0.01  # the cytometer records 10-ms ticks
    keywords = {
        "$TIMESTEP": "0.01",
        "$SPILLOVER": format_spillover(DEMO_FLUORESCENCE, DEMO_SPILL.to_numpy()),
    }
    path = write_fcs(tmp_path / "clog.fcs", ticks, DEMO_CHANNELS, DEMO_LABELS, keywords)
    tube = read_tube(path, CONFIG["markers"], CONFIG["scatter"])
    assert tube.markers["Time"] == "Time"
    qc = check_acquisition(tube, SETTINGS)

    assert qc.status == "warn" and qc.reasons == []
    assert 0.9 <= _bin(qc) <= 1.1  # ~1-s bins
    _assert_dropped_period(qc, "clog", 40.0, 60.0)
    _assert_keep_matches_period(qc, times, 40.0, 60.0)
    width = _bin(qc)
    surely_in = int(np.count_nonzero((times > 40 + width) & (times < 60 - width)))
    clog_events = int(np.count_nonzero((times >= 40) & (times < 60)))
    assert surely_in <= qc.dropped[0]["events"] <= clog_events + 2 * RATE * width
    assert "flow rate" in qc.dropped[0]["detail"]
    assert len(qc.warnings) == 1 and qc.warnings[0].startswith("clog")
    assert qc.metrics["time"]["stable_time_fraction"] == pytest.approx(100 / 120, abs=0.02)


def test_gap_in_acquisition_is_found_and_its_bins_dropped() -> None:
    events, times = _run([(50.0, 60.0, 0.0)])
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    gaps = qc.metrics["time"]["gaps"]
    assert len(gaps) == 1
    assert gaps[0]["start_s"] == pytest.approx(50.0, abs=0.05)
    assert gaps[0]["end_s"] == pytest.approx(60.0, abs=0.05)
    assert gaps[0]["seconds"] == pytest.approx(10.0, abs=0.1)
    _assert_dropped_period(qc, "gap", 50.0, 60.0)
    _assert_keep_matches_period(qc, times, 50.0, 60.0)
    assert qc.dropped[0]["events"] <= 2 * RATE * _bin(qc)  # only the two bins around it
    assert qc.status == "warn" and qc.reasons == []
    assert any(w.startswith("gap") and "10.0 s at 50.0 s" in w for w in qc.warnings)
    # the gap is not acquisition time: the rest of the run counts as fully stable
    assert qc.metrics["time"]["stable_time_fraction"] > 0.97


def test_burst_is_dropped() -> None:
    events, times = _run([(70.0, 75.0, 4.0)])
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    _assert_dropped_period(qc, "burst", 70.0, 75.0)
    _assert_keep_matches_period(qc, times, 70.0, 75.0)
    rate = re.fullmatch(
        r"flow rate (\d+)% of the run's level \(\d+ events/s\)", qc.dropped[0]["detail"]
    )
    assert rate is not None and int(rate.group(1)) > 100 * SETTINGS.max_rate_factor
    assert qc.status == "warn" and qc.reasons == []


def test_signal_shift_in_one_channel_is_dropped() -> None:
    events, times = _run()
    shifted = (times >= 80.0) & (times < 110.0)
    events[shifted, PE] *= 2.5  # PE detector gain jumps for 30 s
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    _assert_dropped_period(qc, "signal_shift", 80.0, 110.0)
    _assert_keep_matches_period(qc, times, 80.0, 110.0)
    detail = qc.dropped[0]["detail"]
    assert detail.startswith("PE-A +0.") and "decades" in detail
    assert ";" not in detail  # no other channel moved
    assert qc.status == "warn" and qc.reasons == []
    assert "signal shift" in qc.warnings[0] and "(PE-A)" in qc.warnings[0]


def test_each_instability_alone_leaves_the_rest_untouched() -> None:
    """The same run without any instability keeps every event: the flags above are caused by
    the clog, gap, burst or shift, not by the cells or the binning."""
    events, _ = _run()
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert (qc.status, qc.warnings, qc.dropped) == ("pass", [], [])
    assert qc.events_kept == events.shape[0]


@pytest.mark.parametrize("scenario", ["drift", "clogged"])
def test_mostly_unstable_run_fails_with_the_reason(scenario: str) -> None:
    if scenario == "drift":  # PE intensity climbs 0.8 decades over the run
        events, times = _run()
        events[:, PE] *= 10 ** (0.8 * times / DURATION)
    else:  # clogged (rate at 10%) for 70 s of 120
        events, times = _run([(20.0, 90.0, 0.1)])
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "fail"
    stable = qc.metrics["time"]["stable_time_fraction"]
    assert stable < SETTINGS.min_stable_fraction
    reason = "signal_shift" if scenario == "drift" else "clog"
    assert {d["reason"] for d in qc.dropped} == {reason}
    assert any(
        r.startswith(f"only {100 * stable:.0f}% of the acquisition time was stable ({reason})")
        for r in qc.reasons
    ), qc.reasons
    if scenario == "drift":  # most events dropped too
        assert any("% of events were acquired during unstable acquisition" in r for r in qc.reasons)
    doc = qc.to_json("S1", "x.fcs")
    assert doc["status"] == "fail" and doc["reasons"] == qc.reasons


def test_dropped_share_limit_comes_from_settings() -> None:
    events, _ = _run()
    events[:, PE] *= np.where(events[:, TIME] >= 80.0, 2.5, 1.0)  # last 40 s shifted
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "warn"
    share = qc.metrics["time"]["pct_events_dropped"] / 100
    assert 0.3 < share < 0.4
    strict = QCSettings(max_dropped_fraction=0.25)
    qc = check_acquisition(_demo_tube(events), strict)
    assert qc.status == "fail"
    assert qc.reasons[0].startswith(f"{100 * share:.1f}% of events") and "25%" in qc.reasons[0]


def test_no_time_channel_warns_and_keeps_everything() -> None:
    events, _ = _run()
    keep_columns = [i for i in range(len(DEMO_CHANNELS)) if i != TIME]
    tube = _demo_tube(events)
    tube.events = events[:, keep_columns]
    tube.channels = [DEMO_CHANNELS[i] for i in keep_columns]
    tube.labels = [DEMO_LABELS[i] for i in keep_columns]
    del tube.markers["Time"]
    qc = check_acquisition(tube, SETTINGS)
    assert qc.status == "warn"
    assert qc.warnings == ["no Time channel: acquisition stability not checked"]
    assert qc.events_kept == events.shape[0] and qc.keep.all()
    assert qc.dropped == [] and qc.time_course is None
    assert qc.metrics["time"] == {
        "channel": None,
        "checked": False,
        "note": "no Time channel: acquisition stability not checked",
    }


@pytest.mark.parametrize("name", demo_tube_names())
def test_clean_demo_tube_passes_with_nothing_dropped(name: str) -> None:
    """No false positives on the 16 demo tubes (stained 50,000 and control 20,000 events)."""
    spec, n = demo_tube_spec(name)
    events, _ = demo_tube_events(name)
    events[:, TIME] *= spec.timestep  # what ingest does with $TIMESTEP
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert (qc.status, qc.reasons, qc.warnings, qc.dropped) == ("pass", [], [], [])
    assert qc.events_kept == n
    course = qc.time_course
    assert course is not None and all(course["kept"]) and sum(course["events"]) == n
    assert qc.metrics["time"]["gaps"] == []


def test_quantised_clock_gives_no_false_flags() -> None:
    """Old instruments tick once a second; bins of a whole number of ticks stay even."""
    events, times = _run()
    events[:, TIME] = np.floor(times)
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert (qc.status, qc.dropped) == ("pass", [])
    assert qc.metrics["time"]["clock_tick_s"] == 1.0
    assert _bin(qc) == pytest.approx(1.0)


def test_too_coarse_clock_is_not_checked() -> None:
    events, times = _run()
    events[:, TIME] = np.floor(times / 20.0)  # six ticks over the run
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "warn" and qc.keep.all()
    assert "acquisition stability not checked" in qc.warnings[0]
    assert qc.time_course is None and qc.metrics["time"]["checked"] is False


def test_time_counter_wrap_around_is_joined() -> None:
    events, times = _run()
    wrapped = times.copy()
    wrapped[times >= 65.536] -= 65.536  # a 16-bit millisecond counter rolls over
    events[:, TIME] = wrapped
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.dropped == [] and qc.keep.all()
    assert qc.metrics["time"]["time_resets"] == 1
    assert qc.warnings == ["Time channel resets 1 time(s) (counter wrap-around); joined end to end"]


def test_time_out_of_order_is_not_checked() -> None:
    events, _ = _run()
    rng = np.random.default_rng(3)
    events[:, TIME] = rng.permutation(events[:, TIME])
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.keep.all() and qc.dropped == []
    assert qc.warnings[0].startswith("Time channel steps back")


def test_saturated_channel_warns_but_drops_nothing() -> None:
    events, _ = _run()
    fsc = DEMO_CHANNELS.index("FSC-A")
    events[::20, fsc] = 262143.0  # 5% of FSC-A at the top, all through the run
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "warn" and qc.keep.all() and qc.dropped == []
    assert qc.metrics["saturated_fraction"]["FSC-A"] == pytest.approx(0.05, abs=1e-4)
    assert qc.warnings == ["FSC-A: 5.0% of events at the top of the scale (saturated)"]


@pytest.mark.parametrize(("severity", "status"), [("warn", "warn"), ("fail", "fail")])
def test_missing_spillover_severity_is_configurable(severity: str, status: str) -> None:
    events, _ = _run()
    qc = check_acquisition(
        _demo_tube(events, spillover=None), QCSettings(missing_spillover=severity)
    )
    assert qc.status == status
    text = qc.reasons if severity == "fail" else qc.warnings
    assert len(text) == 1 and "no spillover matrix" in text[0]
    assert qc.metrics["spillover_source"] == "none"


def test_missing_spillover_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="missing_spillover"):
        QCSettings(missing_spillover="ignore")
    with pytest.raises(ConfigError, match=r"qc\.missing_spillover"):
        load_config(overrides={"qc": {**CONFIG["qc"], "missing_spillover": "ignore"}})


def test_settings_read_every_qc_group() -> None:
    qc = {
        "min_events": 100,
        "max_saturated_fraction": 0.1,
        "missing_spillover": "fail",
        "time": {"bin_seconds": 0.5, "max_bins": 50, "min_rate_fraction": 0.2},
        "compensation": {"negative_sd": 4},
        "gating": {"max_doublet_fraction": 0.3},
    }
    settings = QCSettings.from_config({"qc": qc})
    assert (settings.min_events, settings.missing_spillover) == (100, "fail")
    assert (settings.bin_seconds, settings.max_bins, settings.min_rate_fraction) == (0.5, 50, 0.2)
    assert (settings.negative_sd, settings.max_doublet_fraction) == (4.0, 0.3)
    assert settings.max_rate_factor == QCSettings().max_rate_factor  # absent: default
    # the shipped config states every default explicitly
    assert QCSettings() == SETTINGS
    assert set(CONFIG["qc"]["time"]) | set(CONFIG["qc"]["compensation"]) | set(
        CONFIG["qc"]["gating"]
    ) | {k for k in CONFIG["qc"] if k not in ("time", "compensation", "gating")} == {
        f.name for f in dataclasses.fields(QCSettings)
    }
    with pytest.raises(ValueError, match="unknown qc setting"):
        QCSettings.from_config({"qc": {**qc, "time": {"bin_secs": 1}}})


def test_time_course_in_json_is_compact_and_strict() -> None:
    events, _ = _run([(40.0, 60.0, 0.05)])
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    qc.metrics["example_nan"] = float("nan")  # a later check might record one
    doc = qc.to_json("S1", "x.fcs")
    text = json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere
    assert json.loads(text)["metrics"]["example_nan"] is None
    course = doc["time_course"]
    assert set(course) == {"bin_seconds", "start_s", "events", "kept"}
    bins = len(course["start_s"])
    assert bins == len(course["events"]) == len(course["kept"]) == doc["metrics"]["time"]["bins"]
    assert bins <= SETTINGS.max_bins
    assert sum(course["events"]) == doc["events_total"]
    dropped_bins = sum(not k for k in course["kept"])
    assert 19 <= dropped_bins <= 22  # the 20-s clog in ~1-s bins
    assert doc["dropped"] == qc.dropped and doc["dropped"][0]["reason"] == "clog"
    assert set(doc["dropped"][0]) == {
        "start_s",
        "end_s",
        "reason",
        "events",
        "pct_events",
        "detail",
    }


def test_bins_are_capped_for_long_acquisitions() -> None:
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0, 3600.0, 60_000))  # one hour at ~17 events/s
    events, _ = simulate_events(DEMO_SPEC, times.size, rng)
    events[:, TIME] = times
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "pass"
    assert qc.metrics["time"]["bins"] <= SETTINGS.max_bins
    duration = qc.metrics["time"]["duration_s"]
    assert qc.metrics["time"]["bin_seconds"] >= duration / SETTINGS.max_bins - 1e-6


# --------------------------------------------------------------------------------------------
# After compensation and after gating
# --------------------------------------------------------------------------------------------


def test_correct_compensation_raises_no_warning() -> None:
    for name in demo_tube_names():
        events, _ = demo_tube_events(name)
        compensated = compensate(events, DEMO_CHANNELS, DEMO_SPILL)
        assert (
            compensation_warnings(
                negative_pileups(compensated, DEMO_CHANNELS, DEMO_FLUORESCENCE, SETTINGS), SETTINGS
            )
            == []
        )


def test_overcompensation_piles_events_below_zero() -> None:
    events, _ = demo_tube_events("P01-R1")  # 95% of blasts bright for CD22 PE
    wrong = DEMO_SPILL.copy()
    wrong.loc["PE-A", "PE-Cy7-A"] = 0.3  # the true PE -> PE-Cy7 spillover is 0.03
    compensated = compensate(events, DEMO_CHANNELS, wrong)
    notes = compensation_warnings(
        negative_pileups(compensated, DEMO_CHANNELS, DEMO_FLUORESCENCE, SETTINGS), SETTINGS
    )
    assert len(notes) == 1 and notes[0].startswith("PE-Cy7-A: ")
    assert "below zero" in notes[0] and "spillover matrix" in notes[0]
    shares = negative_pileups(compensated, DEMO_CHANNELS, DEMO_FLUORESCENCE, SETTINGS)
    assert compensation_warnings(shares, SETTINGS) == notes  # the pipeline's pair of calls
    assert shares["PE-Cy7-A"] > 0.3  # the CD22-bright blasts
    assert max(v for k, v in shares.items() if k != "PE-Cy7-A") <= SETTINGS.max_negative_fraction
    # the limit comes from the settings
    lenient = QCSettings(max_negative_fraction=0.9)
    assert (
        compensation_warnings(
            negative_pileups(compensated, DEMO_CHANNELS, DEMO_FLUORESCENCE, lenient), lenient
        )
        == []
    )


def test_densest_population_ignores_a_distant_population() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(150, 70, 70_000), rng.normal(-2000, 300, 30_000)])
    centre, sd = densest_population(values)
    assert centre == pytest.approx(150, abs=5)
    assert sd == pytest.approx(70, rel=0.05)


def _counts(cells: int, singlets: int, total: int = 10_000) -> pd.DataFrame:
    return pd.DataFrame(
        [
            ["cells", "", cells, round(100 * cells / total, 4), round(100 * cells / total, 4)],
            ["singlets", "cells", singlets, round(100 * singlets / cells, 4), 0.0],
            ["blasts", "singlets", 10, 0.1, 0.1],
        ],
        columns=["population", "parent", "events", "pct_parent", "pct_total"],
    )


def test_gating_shares_and_their_warnings() -> None:
    shares = gating_shares(_counts(cells=9_000, singlets=8_100))
    assert shares == {"debris_fraction": pytest.approx(0.1), "doublet_fraction": pytest.approx(0.1)}
    assert gating_warnings(shares, SETTINGS) == []

    shares = gating_shares(_counts(cells=5_000, singlets=4_000))
    assert shares == {"debris_fraction": pytest.approx(0.5), "doublet_fraction": pytest.approx(0.2)}
    notes = gating_warnings(shares, SETTINGS)
    assert len(notes) == 2
    assert notes[0].startswith("50.0% of events are debris") and "40%" in notes[0]
    assert notes[1].startswith("20.0% of cells are doublets") and "15%" in notes[1]


def test_gating_shares_without_the_gates() -> None:
    empty = pd.DataFrame(columns=["population", "parent", "events", "pct_parent", "pct_total"])
    assert gating_shares(empty) == {"debris_fraction": None, "doublet_fraction": None}
    no_singlets = _counts(9_000, 8_000).query("population != 'singlets'")
    assert gating_shares(no_singlets) == {
        "debris_fraction": pytest.approx(0.1),
        "doublet_fraction": None,
    }
    assert gating_warnings({"debris_fraction": None, "doublet_fraction": None}, SETTINGS) == []


def test_gating_shares_from_the_shipped_template() -> None:
    """The population names gating_shares reads are those the gating template writes."""
    events, truth = demo_tube_events("P01-R1")
    tube = _demo_tube(events)
    compensated = compensate(events, DEMO_CHANNELS, DEMO_SPILL)
    data = {m: compensated[:, DEMO_CHANNELS.index(c)] for m, c in tube.markers.items()}
    counts = GatingTemplate(resolve(CONFIG["gating_template"])).apply(data, "P01-R1").counts()
    shares = gating_shares(counts)
    debris = truth.counts()["debris"] / len(events)
    assert shares["debris_fraction"] == pytest.approx(debris, abs=0.02)
    assert shares["doublet_fraction"] == pytest.approx(0.03, abs=0.02)


def test_findings_after_qc_turn_pass_into_warn() -> None:
    events, _ = _run()
    qc = check_acquisition(_demo_tube(events), SETTINGS)
    assert qc.status == "pass"
    qc.add_findings("compensation", {"PE-A": 0.0}, [])
    assert qc.status == "pass" and qc.metrics["compensation"] == {"PE-A": 0.0}
    qc.add_findings("gating", {"debris_fraction": 0.5}, ["50.0% of events are debris"])
    assert qc.status == "warn" and qc.warnings == ["50.0% of events are debris"]
    assert qc.to_json("S1", "x")["metrics"]["gating"] == {"debris_fraction": 0.5}
    failed = failed_qc("x")
    failed.add_findings("gating", {}, ["late"])
    assert failed.status == "fail"


def test_unmixed_spectral_data_need_no_spillover_matrix(tmp_path: Path) -> None:
    """A spectral analyser writes unmixed data: a missing spillover matrix is not a finding
    there, while the same file from a conventional cytometer is warned about."""
    spectral = check_acquisition(_tube(tmp_path, _events(6000), {"$CYT": "Aurora"}), SETTINGS)
    assert not any("spillover" in w for w in spectral.warnings)
    conventional = check_acquisition(
        _tube(tmp_path, _events(6000), {"$CYT": "FACSCanto II"}, name="c.fcs"), SETTINGS
    )
    assert any("no spillover matrix" in w for w in conventional.warnings)


def test_a_gating_channel_with_one_value_fails_the_tube(tmp_path: Path) -> None:
    events = _events(6000)
    events[:, CHANNELS.index("SSC-A")] = 52.8
    qc = check_acquisition(_tube(tmp_path, events, SPILLOVER), SETTINGS)
    assert qc.status == "fail" and qc.failure == "acquisition"
    assert any("SSC-A = 52.8 in every event: no signal to gate on" in r for r in qc.reasons)
