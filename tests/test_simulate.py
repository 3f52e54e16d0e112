"""Tests of the FCS writer, the event generator and the demo cohort's ground truth."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import flowio
import numpy as np
import pytest

from antigen_profile import simulate
from antigen_profile.simulate import (
    DEMO_PANEL,
    DEMO_SPILLOVER,
    Channel,
    Expression,
    Lognormal,
    Population,
    TubeSpec,
    demo_tube_names,
    load_truth,
    simulate_events,
    write_demo_cohort,
    write_demo_tube,
    write_fcs,
)

QUANTIFIED = ("CD19", "CD22", "CD123", "CD38", "CD10", "CD20")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The demo cohort written once for the module, with the time it took."""
    out = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    write_demo_cohort(out)
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def truth_json(cohort: tuple[Path, float]) -> dict[str, dict]:
    return json.loads((cohort[0] / "truth.json").read_text())


def _read(path: Path) -> tuple[flowio.FlowData, np.ndarray]:
    data = flowio.FlowData(str(path))
    return data, data.as_array(preprocess=False)


def _spillover(text: dict[str, str]) -> tuple[list[str], np.ndarray]:
    parts = text["spillover"].split(",")
    k = int(parts[0])
    return parts[1 : 1 + k], np.array(parts[1 + k :], dtype=float).reshape(k, k)


def _compensate(data: flowio.FlowData, events: np.ndarray) -> tuple[list[str], np.ndarray]:
    names, matrix = _spillover(data.text)
    cols = [data.pnn_labels.index(n) for n in names]
    return names, events[:, cols] @ np.linalg.inv(matrix)


def _small_tube(**kwargs: object) -> TubeSpec:
    channels = (
        Channel("FSC-A", "FSC-A"),
        Channel("FSC-H", "FSC-H"),
        Channel("SSC-A", "SSC-A"),
        Channel("FL1-A", marker="CD22", label="CD22 PE"),
        Channel("FL2-A", marker="CD45", label="CD45"),
        Channel("TIME", "Time"),
    )
    pops = (
        Population(
            "blasts",
            0.6,
            Lognormal(80000, 0.1),
            Lognormal(28000, 0.2),
            {"CD45": Expression(1.0, 700, 0.35), "CD22": Expression(0.3, 2000, 0.3)},
        ),
        Population(
            "lymphocytes",
            0.35,
            Lognormal(60000, 0.1),
            Lognormal(20000, 0.2),
            {"CD45": Expression(1.0, 25000, 0.2)},
        ),
        Population("doublets", 0.05, fsc_h_ratio=(0.55, 0.05), doublet=True),
    )
    spec = {"channels": channels, "populations": pops, "spillover": ((1, 0.2), (0.05, 1))}
    spec.update(kwargs)
    return TubeSpec(**spec)  # type: ignore[arg-type]


# ------------------------------------------------------------------ write_fcs


def test_write_fcs_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    events = rng.normal(1000, 300, (257, 4)) * np.array([1, 10, 100, 0.001])
    path = write_fcs(
        tmp_path / "sub" / "x.fcs",
        events,
        ["FSC-A", "PE-A", "APC-A", "Time"],
        ["", "CD22 PE", None, ""],
        {"$CYT": "test cytometer", "$TIMESTEP": "0.01", "$P2R": "1024", "CUSTOM": "a/b"},
    )
    data, back = _read(path)
    assert path == tmp_path / "sub" / "x.fcs"
    assert back.shape == events.shape
    np.testing.assert_array_equal(back, events.astype(np.float32))
    assert data.pnn_labels == ["FSC-A", "PE-A", "APC-A", "Time"]
    assert data.pns_labels == ["", "CD22 PE", "", ""]
    assert "p2s" in data.text and "p1s" not in data.text and "p3s" not in data.text
    assert data.text["cyt"] == "test cytometer"
    assert data.text["timestep"] == "0.01"
    assert data.text["fil"] == "x.fcs"
    assert data.text["p2r"] == "1024"
    assert data.text["custom"] == "a/b"  # the delimiter inside a value survives
    assert data.version == "3.1"
    assert not list(tmp_path.glob("sub/.*"))  # no temporary file left behind


def test_write_fcs_without_labels_writes_no_pns(tmp_path: Path) -> None:
    path = write_fcs(tmp_path / "x.fcs", np.ones((3, 2)), ["A", "B"], None)
    data, _ = _read(path)
    assert not [k for k in data.text if k.startswith("p") and k.endswith("s")]


@pytest.mark.parametrize(
    ("events", "labels", "keywords"),
    [
        (np.ones((3, 3)), None, None),  # wrong column count
        (np.ones(6), None, None),  # not a matrix
        (np.ones((3, 2)), ["x"], None),  # wrong label count
        (np.ones((3, 2)), None, {"$COM": ""}),  # empty value would corrupt TEXT
    ],
)
def test_write_fcs_rejects_bad_input(
    tmp_path: Path, events: np.ndarray, labels: list[str] | None, keywords: dict | None
) -> None:
    with pytest.raises(ValueError):
        write_fcs(tmp_path / "x.fcs", events, ["A", "B"], labels, keywords)
    assert not list(tmp_path.iterdir())


def test_write_fcs_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.fcs"
    target.write_bytes(b"previous complete file")

    def crash(handle, *args, **kwargs):
        handle.write(b"FCS3.1 half a header")
        raise RuntimeError("disk gone")

    monkeypatch.setattr(flowio, "create_fcs", crash)
    with pytest.raises(RuntimeError):
        write_fcs(target, np.ones((3, 2)), ["A", "B"], None)
    assert target.read_bytes() == b"previous complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["x.fcs"]


# ------------------------------------------------------------------ generator


def test_simulate_events_counts_scatter_and_time() -> None:
    spec = _small_tube()
    events, truth = simulate_events(spec, 10_000, np.random.default_rng(3))
    assert events.shape == (10_000, 6)
    assert truth.counts() == {"blasts": 6000, "lymphocytes": 3500, "doublets": 500}
    ratio = events[:, 1] / events[:, 0]
    singles = ~truth.mask("doublets")
    assert abs(np.median(ratio[singles]) - 0.95) < 0.01
    assert abs(np.median(ratio[~singles]) - 0.55) < 0.02
    # doublets carry about two cells' worth of forward scatter (x 0.9)
    assert np.median(events[~singles, 0]) > 1.5 * np.median(events[truth.mask("blasts"), 0])
    t = events[:, 5]
    assert np.all(np.diff(t) > 0)
    # Poisson acquisition at 2000 events/s in units of 0.01 s: ~500 units for 10,000 events
    assert 450 < t[-1] < 550
    assert events.max() <= simulate.MAX_VALUE


def test_simulate_events_positivity_matches_fraction_and_signal() -> None:
    spec = _small_tube(spillover=None, noise_sd=0.0)
    events, truth = simulate_events(spec, 20_000, np.random.default_rng(4))
    blasts = truth.mask("blasts")
    cd22 = truth.is_positive("CD22")
    assert abs(cd22[blasts].mean() - 0.3) < 0.02
    assert not cd22[truth.mask("lymphocytes")].any()
    # without spillover or noise the file holds the true fluorescence exactly (float32)
    np.testing.assert_allclose(events[:, 3:5], truth.fluorescence, rtol=1e-6)
    pos = events[blasts & cd22, 3]
    neg = events[blasts & ~cd22, 3]
    assert np.median(pos) > 10 * np.median(neg)
    # a doublet is positive when either of its cells is
    doublets = truth.mask("doublets")
    assert 0 < cd22[doublets].mean() < 1
    assert truth.is_positive("CD45")[doublets].all()


def test_simulate_events_is_seeded() -> None:
    a, ta = simulate_events(_small_tube(), 2000, np.random.default_rng(7))
    b, tb = simulate_events(_small_tube(), 2000, np.random.default_rng(7))
    c, _ = simulate_events(_small_tube(), 2000, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta.positive, tb.positive)
    assert not np.array_equal(a, c)


def test_simulate_events_rejects_bad_specs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sum to 1"):
        bad = _small_tube().populations[:2]
        simulate_events(_small_tube(populations=bad), 100, rng)
    stray = Population("x", 1.0, Lognormal(1, 0.1), Lognormal(1, 0.1), {"CD99": Expression(1, 5)})
    with pytest.raises(ValueError, match="CD99"):
        simulate_events(_small_tube(populations=(stray,)), 100, rng)
    with pytest.raises(ValueError):
        Expression(1.5, 100)


# ------------------------------------------------------------------ demo tubes


def test_demo_tube_names_cover_stained_and_control() -> None:
    names = demo_tube_names()
    ids = [s.sample_id for s in simulate.DEMO_SAMPLES]
    assert names == [n for i in ids for n in (i, f"{i}_control")]


def test_demo_tube_is_byte_identical_and_seeded_by_name(tmp_path: Path) -> None:
    first = write_demo_tube("P03-R1", tmp_path / "a")
    second = write_demo_tube("P03-R1", tmp_path / "b")
    assert first == tmp_path / "a" / "fcs" / "P03-R1.fcs"
    assert first.read_bytes() == second.read_bytes()
    npz = "fcs/P03-R1.truth.npz"
    assert (tmp_path / "a" / npz).read_bytes() == (tmp_path / "b" / npz).read_bytes()
    other = write_demo_tube("P07-R1", tmp_path / "a")
    assert other.read_bytes() != first.read_bytes()


def test_stained_tube_panel_and_keywords(cohort: tuple[Path, float]) -> None:
    data, events = _read(cohort[0] / "fcs" / "P01-R1.fcs")
    assert events.shape == (50_000, 12)
    assert data.pnn_labels == [c.name for c in DEMO_PANEL]
    assert data.pns_labels == [
        "",
        "",
        "",
        "CD20 FITC",
        "CD22-PE",
        "CD34 PerCP-Cy5.5",
        "PE-Cy7 CD19",
        "CD123 APC",
        "CD38 APC-H7",
        "cd10 BV421",
        "CD45 V500-C",
        "",
    ]
    assert data.text["cyt"] == "antigen-profile demo cytometer"
    assert data.text["fil"] == "P01-R1.fcs"
    assert data.text["timestep"] == "0.01"
    assert all(data.text[f"p{i}r"] == "262144" for i in range(1, 13))
    assert not any(k in data.text for k in ("date", "btim", "etim", "last_modified"))
    assert events.max() <= 262143
    assert np.all(np.diff(events[:, 11]) >= 0)  # float32 ticks may repeat, never go back


def test_file_events_match_truth(cohort: tuple[Path, float]) -> None:
    """The events in the file are the events the truth describes (same order, same count)."""
    out = cohort[0]
    data, events = _read(out / "fcs" / "P02-R1.fcs")
    truth = load_truth(out / "fcs" / "P02-R1.truth.npz")
    regenerated, _ = simulate.demo_tube_events("P02-R1")
    np.testing.assert_array_equal(events, regenerated.astype(np.float32))
    assert len(truth.population) == len(events)
    assert truth.detectors == tuple(data.pnn_labels[3:11])


def test_spillover_compensation_recovers_true_fluorescence(cohort: tuple[Path, float]) -> None:
    out = cohort[0]
    data, events = _read(out / "fcs" / "P01-R1.fcs")
    truth = load_truth(out / "fcs" / "P01-R1.truth.npz")
    names, matrix = _spillover(data.text)
    assert names == list(truth.detectors)
    np.testing.assert_allclose(matrix, np.array(DEMO_SPILLOVER))
    assert np.all(np.diag(matrix) == 1)
    _, compensated = _compensate(data, events)
    unclipped = (events[:, 3:11] < 262143).all(axis=1)
    residual = compensated[unclipped] - truth.fluorescence[unclipped]
    # what is left is detector noise (sd 15, a little amplified by the inverse)
    assert np.all(np.abs(np.median(residual, axis=0)) < 3)
    assert np.all(residual.std(axis=0) < 25)
    # without compensation the PE detector is off by the FITC (18%) and other spill
    raw_pe = events[unclipped, 4] - truth.fluorescence[unclipped, 1]
    assert raw_pe.std() > 5 * residual[:, 1].std()


def test_background_tail_and_separability(cohort: tuple[Path, float]) -> None:
    """The negative background is tight enough for a 99.5th-percentile threshold."""
    out = cohort[0]
    data, events = _read(out / "fcs" / "P02-R1_control.fcs")
    truth = load_truth(out / "fcs" / "P02-R1_control.truth.npz")
    _, comp = _compensate(data, events)
    pe = comp[truth.mask("blasts"), 1]
    ratio = np.percentile(pe, 99.5) / np.median(pe)
    assert 2.5 < ratio < 4.0
    # P02's dim CD22 sits above that threshold for nearly every truly positive blast
    sdata, sevents = _read(out / "fcs" / "P02-R1.fcs")
    struth = load_truth(out / "fcs" / "P02-R1.truth.npz")
    _, scomp = _compensate(sdata, sevents)
    blasts = struth.mask("blasts")
    above = scomp[blasts, 1] > np.percentile(pe, 99.5)
    true = struth.is_positive("CD22")[blasts]
    assert abs(100 * above.mean() - 100 * true.mean()) < 1.0


def test_control_tube(cohort: tuple[Path, float], truth_json: dict[str, dict]) -> None:
    out = cohort[0]
    for sample_id, record in truth_json.items():
        data, events = _read(out / "fcs" / f"{sample_id}_control.fcs")
        assert events.shape == (20_000, 12)
        assert not [k for k in data.text if k.startswith("p") and k.endswith("s")]
        assert data.pns_labels == [""] * 12
        assert data.pnn_labels == [c.name for c in DEMO_PANEL]
        assert _spillover(data.text)[0] == list(data.pnn_labels[3:11])
        truth = load_truth(out / "fcs" / f"{sample_id}_control.truth.npz")
        for marker in QUANTIFIED:
            assert not truth.is_positive(marker).any()
        assert truth.is_positive("CD45")[truth.mask("blasts")].all()
        if record["blast_events"] >= 50:
            cd34 = truth.is_positive("CD34")[truth.mask("blasts")].mean()
            stained = load_truth(out / "fcs" / f"{sample_id}.truth.npz")
            expected = stained.is_positive("CD34")[stained.mask("blasts")].mean()
            assert abs(cd34 - expected) < 0.03
        assert record["control"]["blast_events"] == int(truth.mask("blasts").sum())
        assert abs(record["control"]["blast_pct_leukocytes"] - record["blast_pct_leukocytes"]) < 0.5


# ------------------------------------------------------------------ demo truth and sheets


def test_truth_json_equals_truth_arrays(cohort: tuple[Path, float], truth_json: dict) -> None:
    out = cohort[0]
    assert list(truth_json) == [s.sample_id for s in simulate.DEMO_SAMPLES]
    for sample_id, record in truth_json.items():
        truth = load_truth(out / "fcs" / f"{sample_id}.truth.npz")
        blasts = truth.mask("blasts")
        leukocytes = np.isin(
            truth.population,
            [
                truth.population_names.index(p)
                for p in ("blasts", "lymphocytes", "monocytes", "granulocytes")
            ],
        )
        assert record["blast_events"] == int(blasts.sum())
        assert record["leukocyte_events"] == int(leukocytes.sum())
        assert record["blast_pct_leukocytes"] == 100 * blasts.sum() / leukocytes.sum()
        assert sum(record["population_events"].values()) == record["events"] == 50_000
        for marker in QUANTIFIED:
            pos = truth.is_positive(marker)[blasts]
            assert record["antigens"][marker]["positive_events"] == int(pos.sum())
            assert record["antigens"][marker]["pct_positive"] == 100 * pos.sum() / blasts.sum()


def _clinical_status(row: dict[str, str], cd19_negative: bool) -> str:
    """Trial entry rules, written independently of the hand-set spec values."""

    def num(key: str) -> float | None:
        return float(row[key]) if row[key] else None

    def yes(key: str) -> bool | None:
        return None if not row[key] else row[key] == "yes"

    checks = [
        (num("age_years"), lambda v: 0.5 <= v <= 75),
        (num("kps"), lambda v: v > 80),
        (num("hgb_g_per_l"), lambda v: v > 80),
        (num("life_expectancy_months"), lambda v: v > 1),
    ]
    outcomes = [None if v is None else rule(v) for v, rule in checks]
    prior = yes("prior_anti_cd19")
    outcomes.append(True if (prior or cd19_negative) else (None if prior is None else False))
    for key in (
        "active_infection",
        "hiv",
        "hbv_hcv_active",
        "pregnant_or_nursing",
        "systemic_steroids_last_7d",
    ):
        value = yes(key)
        outcomes.append(None if value is None else not value)
    if False in outcomes:
        return "excluded"
    return "undetermined" if None in outcomes else "eligible"


def test_sheets(cohort: tuple[Path, float], truth_json: dict) -> None:
    out = cohort[0]
    with (out / "samples.tsv").open() as handle:
        samples = list(csv.DictReader(handle, delimiter="\t"))
    with (out / "patients.tsv").open() as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        assert reader.fieldnames == list(simulate.PATIENT_COLUMNS)
        patients = {row["patient_id"]: row for row in reader}
    assert list(samples[0]) == ["sample_id", "patient_id", "fcs", "control_fcs", "timepoint"]
    assert len(samples) == 8
    for row in samples:
        assert row["fcs"] == f"fcs/{row['sample_id']}.fcs"
        assert row["control_fcs"] == f"fcs/{row['sample_id']}_control.fcs"
        assert (out / row["fcs"]).is_file() and (out / row["control_fcs"]).is_file()
        assert row["timepoint"] == "relapse"
        record = truth_json[row["sample_id"]]
        assert record["patient_id"] == row["patient_id"]
        patient = patients[row["patient_id"]]
        for key, value in patient.items():
            if key != "patient_id":
                assert value in ("", "yes", "no") or float(value) >= 0
        cd19_negative = record["antigens"]["CD19"]["pct_positive"] < 20
        assert record["clinical_status"] == _clinical_status(patient, cd19_negative)
    assert patients["P08"]["hgb_g_per_l"] == ""


def test_cohort_covers_every_scenario(truth_json: dict[str, dict]) -> None:
    t = truth_json
    summary = {s: (r["antigen_status"], r["clinical_status"], r["decision"]) for s, r in t.items()}
    assert summary == {
        "P01-R1": ("ok", "eligible", "candidate"),
        "P02-R1": ("ok", "eligible", "candidate"),
        "P03-R1": ("ok", "eligible", "candidate"),
        "P04-R1": ("ok", "eligible", "candidate"),
        # No target, and negative for every B-lineage marker: a possible lineage switch is a
        # reviewer's call, never a plain "not a candidate".
        "P05-R1": ("ok", "eligible", "needs_review"),
        "P06-R1": ("insufficient_blasts", "eligible", "needs_review"),
        "P07-R1": ("ok", "excluded", "not_candidate"),
        "P08-R1": ("ok", "undetermined", "needs_review"),
    }

    def pct(sample: str, marker: str) -> float:
        return t[sample]["antigens"][marker]["pct_positive"]

    # P01: CD19-negative relapse, bright CD22
    assert t["P01-R1"]["cd19_status"] == "negative"
    assert t["P01-R1"]["eligible_targets"] == ["CD10", "CD22", "CD38"]
    assert pct("P01-R1", "CD22") > 90
    assert t["P01-R1"]["antigens"]["CD22"]["positive_median_ratio"] > 40
    # P02: dim but separable CD22, partial CD19
    cd22 = t["P02-R1"]["antigens"]["CD22"]
    assert 6 <= cd22["positive_median_ratio"] <= 12 and cd22["separable"]
    assert t["P02-R1"]["cd19_status"] == "partial"
    assert "CD22" in t["P02-R1"]["eligible_targets"]
    # P03: partial CD20
    assert t["P03-R1"]["antigens"]["CD20"]["call"] == "partial"
    assert "CD20" in t["P03-R1"]["eligible_targets"]
    # P04: CD123-positive
    assert t["P04-R1"]["eligible_targets"] == ["CD123", "CD38"]
    # P05: nothing at or above 5%
    assert t["P05-R1"]["eligible_targets"] == []
    assert all(pct("P05-R1", m) <= 5 for m in QUANTIFIED)
    # P06: ~30 blasts, detectable but not quantifiable
    assert 20 <= t["P06-R1"]["blast_events"] < 50
    assert t["P06-R1"]["eligible_targets"] == []
    assert t["P06-R1"]["cd19_status"] == "insufficient_events"
    # P07 and P08 have targets; their clinical status decides
    assert t["P07-R1"]["eligible_targets"] and t["P08-R1"]["eligible_targets"]
    assert {"CD20", "CD22"} <= set(t["P08-R1"]["eligible_targets"])
    for sample, record in t.items():
        if sample != "P06-R1":
            assert 30 <= record["blast_pct_leukocytes"] <= 80
            assert record["blast_events"] >= 50
        targets = record["eligible_targets"]
        assert targets == sorted(targets)
        assert targets == sorted(
            m
            for m in ("CD22", "CD123", "CD38", "CD10", "CD20")
            if record["antigen_status"] == "ok" and pct(sample, m) >= 20
        )
        for marker in QUANTIFIED:
            assert record["antigens"][marker]["separable"]


def test_fixed_gates_recover_populations(cohort: tuple[Path, float]) -> None:
    """The template's fixed regions recover blasts and lymphocytes almost purely (gates in
    linear units: logicle 0.28 / 0.58 / 0.70 = CD45 198 / 3470 / 11806)."""
    out = cohort[0]
    for name in ("P01-R1", "P04-R1", "P06-R1", "P05-R1_control"):
        data, events = _read(out / "fcs" / f"{name}.fcs")
        truth = load_truth(out / "fcs" / f"{name}.truth.npz")
        _, comp = _compensate(data, events)
        fsc_a, fsc_h, ssc = events[:, 0], events[:, 1], events[:, 2]
        cd45 = comp[:, 7]
        singlets = (fsc_a >= 40000) & (fsc_h / fsc_a > 0.78) & (fsc_h / fsc_a < 1.3)
        blasts = singlets & (cd45 >= 198) & (cd45 <= 3470) & (ssc >= 5000) & (ssc <= 70000)
        lymphs = singlets & (cd45 >= 11806) & (ssc >= 5000) & (ssc <= 50000)
        for gate, pop in ((blasts, "blasts"), (lymphs, "lymphocytes")):
            true = truth.mask(pop)
            assert (gate & true).sum() >= 0.99 * gate.sum()
            assert (gate & true).sum() >= 0.99 * true.sum()
        assert (singlets & truth.leukocytes()).sum() >= 0.995 * truth.leukocytes().sum()
        assert not (singlets & truth.mask("doublets")).any()


def test_cohort_writes_in_a_few_seconds(cohort: tuple[Path, float]) -> None:
    out, seconds = cohort
    assert seconds < 10
    stems = sorted(p.name.removesuffix(".fcs") for p in (out / "fcs").glob("*.fcs"))
    assert stems == sorted(demo_tube_names())
    assert len(list((out / "fcs").glob("*.truth.npz"))) == 16
