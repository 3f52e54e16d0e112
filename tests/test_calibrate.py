"""Bead calibration: peaks found, standard curves fitted or refused, cells turned into molecules.

Real beads come from FlowCal's MEF example, read in place from ``../shared/fcs-corpus`` (never
copied). Synthetic QuantiBRITE-style files are written with ``simulate.write_fcs`` through a
known instrument response, so the molecules they should give back are known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, corpus_skip_reason

from antigen_profile.calibrate import (
    CalibrationError,
    CalibrationSettings,
    StandardCurve,
    calibrate_file,
    densest_region,
    density_fields,
    density_summary,
    find_bead_peaks,
    fit_standard_curve,
    settings_mismatch,
)
from antigen_profile.fcs import read_fcs
from antigen_profile.simulate import Lognormal, write_fcs

MEF_EXAMPLE = CORPUS / "flowcal" / "mef-example"
MEFL = [0, 792, 2079, 6588, 16471, 47497, 137049, 271647]
QUANTIBRITE = [474, 5359, 23843, 62336]  # PE molecules per bead, a typical lot
TOP = 262143.0
K, B = 0.25, 0.95  # synthetic instrument: MFI = K * molecules ** B


def _corpus_file(name: str) -> Path:
    path = MEF_EXAMPLE / name
    if not path.is_file():
        pytest.skip(corpus_skip_reason(path))
    return path


# --------------------------------------------------------------------------------------------
# Synthetic beads and cells
# --------------------------------------------------------------------------------------------


def _response(molecules: np.ndarray) -> np.ndarray:
    return K * np.asarray(molecules, dtype=float) ** B


def _bead_events(
    rng: np.random.Generator,
    mfi: Sequence[float],
    counts: Sequence[int],
    cv: float = 0.07,
    noise_sd: float = 15.0,
    junk_share: float = 0.08,
) -> np.ndarray:
    """FSC-A, SSC-A, PE-A of singlet beads at the given MFIs, plus doublets and debris."""
    rows = []
    for level, n in zip(mfi, counts, strict=True):
        pe = Lognormal(level, cv).draw(rng, n) + rng.normal(0, noise_sd, n)
        fsc = rng.normal(60_000, 2_000, n)
        ssc = rng.normal(25_000, 1_200, n)
        rows.append(np.column_stack([fsc, ssc, pe]))
    singlets = np.vstack(rows)
    n_junk = int(junk_share * len(singlets))
    pairs = singlets[rng.integers(0, len(singlets), (n_junk, 2))]
    doublets = pairs.sum(axis=1)  # two beads: scatter and fluorescence add up
    debris = np.column_stack(
        [
            rng.uniform(2_000, 30_000, n_junk),
            rng.uniform(500, 12_000, n_junk),
            rng.exponential(200.0, n_junk),
        ]
    )
    events = np.vstack([singlets, doublets, debris])
    events[:, 2] = np.minimum(events[:, 2], TOP)  # the detector clips at its range
    return rng.permutation(events)


def _write(path: Path, events: np.ndarray, voltage: str = "520") -> Path:
    keywords = {f"$P{i}R": "262144" for i in (1, 2, 3)}
    keywords["$P3V"] = voltage
    return write_fcs(path, events, ["FSC-A", "SSC-A", "PE-A"], ["", "", "CD22 PE"], keywords)


@pytest.fixture(scope="module")
def quantibrite_beads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    events = _bead_events(rng, _response(np.array(QUANTIBRITE)), [5000, 5000, 5000, 5000])
    return _write(tmp_path_factory.mktemp("beads") / "quantibrite.fcs", events)


# --------------------------------------------------------------------------------------------
# 1. Real beads: FlowCal's 8-peak rainbow beads, FL1 in MEFL
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flowcal_curves() -> dict[str, object]:
    beads = _corpus_file("sample001.fcs")
    # FL1 alone merges the three dim peaks; FL3 separates them (FlowCal clusters on both too).
    settings = CalibrationSettings(units="MEFL", cluster_channels=("FL3",))
    return {
        model: calibrate_file(beads, "FL1", MEFL, settings, model=model)
        for model in ("autofluorescence", "loglog")
    }


def test_flowcal_beads_autofluorescence_model_recovers_every_peak(flowcal_curves):
    curve = flowcal_curves["autofluorescence"]
    assert curve.ok, curve.reason
    assert curve.peaks is not None and curve.peaks.found_modes >= 8
    # the top peak sits against the top of the 4-decade log scale: flagged, not fitted
    assert curve.peaks.peaks[-1].saturated and not curve.used[-1]
    # the blank is reported (what it reads as), not fitted
    assert not curve.used[0] and curve.predicted[0] is not None
    used = [e for e, u in zip(curve.error_pct, curve.used, strict=True) if u]
    assert len(used) >= 6
    assert max(abs(e) for e in used) <= 7.0, curve.error_pct
    assert curve.r2 is not None and curve.r2 > 0.999
    assert curve.params["autofluorescence"] > 0
    record = json.loads(json.dumps(curve.to_json()))  # serialisable as it is
    again = StandardCurve.from_json(record)
    values = np.array([-5.0, 0.0, 13.3, 216.7, 9000.0])
    assert np.array_equal(again.to_molecules(values), curve.to_molecules(values))
    assert again.to_json() == record


def test_flowcal_beads_straight_loglog_line_is_much_worse(flowcal_curves):
    """Why the autofluorescence term matters: the dim peaks sit on the beads' own
    fluorescence, which a straight log-log line cannot follow."""
    line = flowcal_curves["loglog"]
    assert line.max_abs_error_pct is not None and line.max_abs_error_pct > 20.0
    assert not line.ok and "beyond the 15% limit" in line.reason
    assert line.r2 is not None  # still reported


def test_flowcal_cells_converted_to_mefl(flowcal_curves):
    curve = flowcal_curves["autofluorescence"]
    medians_raw, medians_mef = [], []
    for name in ("sample006.fcs", "sample015.fcs"):
        data = read_fcs(_corpus_file(name))
        raw = data.events[:, data.channels.index("FL1")]
        mef = curve.to_molecules(raw)
        assert np.all(np.isfinite(mef)) and np.all(mef > 0)
        order = np.argsort(raw, kind="stable")
        assert np.all(np.diff(mef[order]) >= 0)  # monotone: no event changes rank
        medians_raw.append(float(np.median(raw)))
        medians_mef.append(float(np.median(mef)))
        # same cytometer, day and FL1 voltage as the beads: nothing to warn about
        assert settings_mismatch(curve, data.keywords, data.channels, "FL1") == []
    assert medians_raw[0] < medians_raw[1] and medians_mef[0] < medians_mef[1]
    # FlowCal 1.3.1 (examples/analyze_mef.py steps) gives 161 and 3236 MEFL for these medians
    assert medians_mef[0] == pytest.approx(161.4, rel=0.15)
    assert medians_mef[1] == pytest.approx(3236.0, rel=0.15)


def test_fl1_alone_cannot_tell_the_dim_peaks_apart():
    curve = calibrate_file(_corpus_file("sample001.fcs"), "FL1", MEFL)
    assert not curve.ok
    assert curve.reason.startswith("found ") and "cluster_channels" in curve.reason
    assert "\n" not in curve.reason


# --------------------------------------------------------------------------------------------
# 2. Synthetic QuantiBRITE PE: cells of known ABC come back within 10%
# --------------------------------------------------------------------------------------------


def test_quantibrite_recovers_known_abc(quantibrite_beads, tmp_path):
    curve = calibrate_file(quantibrite_beads, "PE-A", QUANTIBRITE, model="loglog", units="ABC")
    assert curve.ok, curve.reason
    assert curve.params["b"] == pytest.approx(B, abs=0.02)
    assert curve.r2 is not None and curve.r2 > 0.999
    assert curve.max_abs_error_pct is not None and curve.max_abs_error_pct < 3.0
    record = curve.to_json()
    assert record["units"] == "ABC" and record["ok"] is True
    assert record["source"]["settings"]["voltage"] == "520"
    json.dumps(record)

    rng = np.random.default_rng(11)
    truth = {"low": 2000.0, "high": 8000.0}
    cells = {k: Lognormal(v, 0.3).draw(rng, 4000) for k, v in truth.items()}
    events = np.vstack(
        [
            np.column_stack(
                [
                    rng.normal(90_000, 8_000, abc.size),
                    rng.normal(30_000, 4_000, abc.size),
                    _response(abc) + rng.normal(0, 15.0, abc.size),
                ]
            )
            for abc in cells.values()
        ]
    )
    tube = read_fcs(_write(tmp_path / "cells.fcs", events))
    assert settings_mismatch(curve, tube.keywords, tube.channels, "PE-A") == []
    abc = curve.to_molecules(tube.events[:, tube.channels.index("PE-A")])
    for i, (name, value) in enumerate(truth.items()):
        part = abc[i * 4000 : (i + 1) * 4000]
        summary = density_summary(part)
        assert summary["median"] == pytest.approx(value, rel=0.10), name
        assert summary["q25"] < summary["median"] < summary["q75"]
    low = density_fields(abc[:4000], low_density_below=3000)
    assert low["low_density"] is True and set(low) == {
        "abc_median",
        "abc_q25",
        "abc_q75",
        "low_density",
    }
    assert density_fields(abc[4000:], low_density_below=3000)["low_density"] is False
    assert density_fields(abc[4000:])["low_density"] is None  # no limit configured


def test_other_voltage_is_reported(quantibrite_beads, tmp_path):
    curve = calibrate_file(quantibrite_beads, "PE-A", QUANTIBRITE, model="loglog")
    rng = np.random.default_rng(3)
    tube = read_fcs(_write(tmp_path / "other.fcs", rng.uniform(1, 1000, (200, 3)), "600"))
    notes = settings_mismatch(curve, tube.keywords, tube.channels, "PE-A")
    assert notes == ["voltage differs from the bead file (600 vs 520)"]


# --------------------------------------------------------------------------------------------
# 3. Refusals: one line, with R² and residuals still reported
# --------------------------------------------------------------------------------------------


def test_mislabelled_lot_value_is_refused(quantibrite_beads):
    wrong = [474, 5359, 12000, 62336]
    curve = calibrate_file(quantibrite_beads, "PE-A", wrong, model="loglog")
    assert not curve.ok
    assert "peak 3 (stated 12000)" in curve.reason and "\n" not in curve.reason
    assert curve.r2 is not None and all(e is not None for e in curve.error_pct)
    with pytest.raises(CalibrationError, match="refused"):
        curve.to_molecules(np.array([100.0]))


def test_stated_values_in_wrong_order_are_refused(quantibrite_beads):
    curve = calibrate_file(quantibrite_beads, "PE-A", QUANTIBRITE[::-1], model="loglog")
    assert not curve.ok
    assert "do not increase" in curve.reason and "\n" not in curve.reason
    assert curve.r2 is not None and all(e is not None for e in curve.error_pct)


def test_missing_peak_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    three = _response(np.array(QUANTIBRITE[:2] + QUANTIBRITE[3:]))
    path = _write(tmp_path / "three.fcs", _bead_events(rng, three, [5000, 5000, 5000]))
    curve = calibrate_file(path, "PE-A", QUANTIBRITE, model="loglog")
    assert not curve.ok
    assert curve.reason.startswith("found 3 distinct bead populations where 4 are stated")
    assert curve.r2 is not None  # the forced 4-peak fit is still shown


def test_too_few_usable_peaks_and_low_r2_are_refused():
    medians = _response(np.array(QUANTIBRITE, dtype=float))
    curve = fit_standard_curve(medians, QUANTIBRITE, "loglog", use=[True, True, False, False])
    assert not curve.ok and "only 2 usable bead peaks, 3 needed" in curve.reason
    noisy = medians * np.array([1.0, 1.9, 0.6, 1.0])
    bad = fit_standard_curve(noisy, QUANTIBRITE, "loglog", min_r2=0.995)
    assert not bad.ok and "below the minimum 0.995" in bad.reason
    # three parameters cannot be checked with three peaks
    af = fit_standard_curve(medians[:3], QUANTIBRITE[:3], "autofluorescence")
    assert not af.ok and "4 needed for the autofluorescence model" in af.reason


def test_peak_count_mismatch_raises():
    with pytest.raises(CalibrationError, match="3 bead peaks but 4 stated values"):
        fit_standard_curve([1.0, 2.0, 3.0], QUANTIBRITE, "loglog")


def test_unreadable_bead_file_raises(tmp_path):
    broken = tmp_path / "broken.fcs"
    broken.write_bytes(b"not an fcs file at all, " * 4)
    with pytest.raises(CalibrationError, match=r"broken\.fcs"):
        calibrate_file(broken, "PE-A", QUANTIBRITE)


def test_missing_channel_raises(quantibrite_beads):
    with pytest.raises(CalibrationError, match="no detector APC-A"):
        calibrate_file(quantibrite_beads, "APC-A", QUANTIBRITE)


# --------------------------------------------------------------------------------------------
# 4. Peak finding: saturated top peak, unequal sizes, too few events
# --------------------------------------------------------------------------------------------


def test_peaks_with_saturated_top_and_unequal_sizes():
    rng = np.random.default_rng(21)
    mfi = [40.0, 300.0, 1500.0, 9000.0, 60000.0, 245000.0]  # the top one runs off the scale
    counts = [6000, 400, 2500, 900, 4000, 1500]
    events = _bead_events(rng, mfi, counts, cv=0.06)
    beads = find_bead_peaks(events[:, 2], 6, scatter=events[:, :2], top=TOP, min_events=200)
    assert beads.found_modes >= 6 and not beads.missing_modes
    top = beads.peaks[-1]
    assert top.saturated and top.clipped_share > 0.05 and not top.usable
    for peak, level, n in zip(beads.peaks[:-1], mfi[:-1], counts[:-1], strict=True):
        assert peak.usable, peak
        assert peak.median == pytest.approx(level, rel=0.05 if level > 100 else 0.25)
        # the singlet gate keeps about half of the singlets (default fraction 0.5)
        assert 0.25 * n < peak.events < 0.9 * n
    assert beads.scale.startswith("asinh")  # noise puts dim beads below zero
    json.dumps(beads.to_json())


def test_fully_saturated_top_peak_is_still_one_peak():
    rng = np.random.default_rng(4)
    events = _bead_events(rng, [500.0, 5000.0, 50000.0, 400000.0], [3000] * 4, junk_share=0)
    beads = find_bead_peaks(events[:, 2], 4, scatter=events[:, :2], top=TOP)
    assert [p.saturated for p in beads.peaks] == [False, False, False, True]
    assert beads.peaks[-1].clipped_share == pytest.approx(1.0)


def test_small_peak_is_flagged_too_few():
    rng = np.random.default_rng(8)
    events = _bead_events(rng, [500.0, 5000.0, 50000.0], [4000, 300, 4000], junk_share=0)
    beads = find_bead_peaks(events[:, 2], 3, top=TOP, min_events=500)
    assert [p.too_few for p in beads.peaks] == [False, True, False]
    assert "fewer than 500" in beads.peaks[1].excluded
    assert beads.peaks[1].median == pytest.approx(5000.0, rel=0.05)


def test_densest_region_drops_doublets_and_debris():
    rng = np.random.default_rng(2)
    singlets = rng.normal([60_000, 25_000], [2_000, 1_200], (8000, 2))
    doublets = rng.normal([120_000, 50_000], [3_000, 2_000], (800, 2))
    debris = rng.uniform([2_000, 500], [30_000, 12_000], (800, 2))
    keep = densest_region(np.vstack([singlets, doublets, debris]), fraction=0.5)
    assert keep[:8000].sum() > 3500 and keep[8000:].sum() == 0


def test_density_summary_without_events():
    assert density_summary(np.array([np.nan])) == {
        "events": 0,
        "median": None,
        "q25": None,
        "q75": None,
    }
    assert density_summary(np.array([100.0, 200.0, 300.0]), background=100.0)["median"] == 100.0
