"""The benchmark's FlowKit reference and our per-sample analysis give the same answers.

``benchmarks/bench_sample.py`` times :func:`antigen_profile.pipeline.profile_sample` against a
reference written with FlowKit's public API (``benchmarks/flowkit_reference.py``); a speed-up
only counts if both compute the same thing. On a small generated tube (the demo panel scaled
to 20,000 events) they must agree exactly on every gate count, positive count and the blasts
no target covers, and to 1e-9 relative on thresholds and medians (FlowKit compensates with
``np.linalg.solve``, we with the inverse matrix: the same numbers up to rounding).
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
bench_sample: Any = importlib.import_module("bench_sample")
flowkit_reference: Any = importlib.import_module("flowkit_reference")

#: ``pytest -m benchmark`` selects the benchmark scripts' tests, ``-m "not benchmark"`` skips them.
pytestmark = pytest.mark.benchmark

N_EVENTS = 20_000
REL = 1e-9


@pytest.fixture(scope="module")
def tube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "bench.fcs"
    bench_sample.generate_tube(N_EVENTS, path)
    return path


@pytest.fixture(scope="module")
def both(tube: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    """Our analysis (with unrounded medians and positives) and the reference on its gates."""
    ours = bench_sample.run_ours(tube, tmp_path_factory.mktemp("ours"), exact=True)
    reference = bench_sample.run_reference(tube, ours["gates_xml"], ours["model_thresholds"])
    return ours, reference


def test_qc_keeps_every_event_so_both_gate_the_same_events(both: tuple[dict, Any]) -> None:
    ours, _ = both
    assert ours["qc_status"] != "fail"
    assert ours["events_kept"] == ours["events_total"] == N_EVENTS


def test_gate_counts_agree_exactly(both: tuple[dict, Any]) -> None:
    ours, reference = both
    assert {"cells", "singlets", "leukocytes", "blasts", "lymphocytes"} <= set(ours["counts"])
    assert ours["counts"]["blasts"] > 1000, "enough blasts to quantify"
    assert ours["counts"] == reference.counts


def test_thresholds_medians_and_positives_agree(both: tuple[dict, Any]) -> None:
    ours, reference = both
    assert set(reference.markers) == {"CD19", "CD22", "CD123", "CD38", "CD10", "CD20"}
    sources = {m: s.threshold_source for m, s in reference.markers.items()}
    assert sources["CD38"] == "model" and sources["CD22"] == "internal:lymphocytes"
    for marker, stats in reference.markers.items():
        mine = ours["markers"][marker]
        exact = ours["exact"][marker]
        assert mine["events"] == stats.events == ours["counts"]["blasts"]
        assert math.isclose(ours["thresholds"][marker], stats.threshold, rel_tol=REL), marker
        assert exact["positive_events"] == mine["positive_events"] == stats.positive_events
        assert math.isclose(exact["median"], stats.median, rel_tol=REL), marker
        assert mine["median"] == round(stats.median, 2)
        assert mine["pct_positive"] == round(stats.pct_positive, 2)


def test_blasts_no_target_covers_agree(both: tuple[dict, Any]) -> None:
    ours, reference = both
    assert sorted(ours["assessed_targets"]) == sorted(reference.assessed_targets)
    assert len(reference.assessed_targets) == 5
    assert ours["uncovered_all"] == reference.uncovered_all


def test_compare_finds_no_difference_and_would_see_one(both: tuple[dict, Any]) -> None:
    ours, reference = both
    assert bench_sample.compare(ours, reference) == []
    doc = reference.to_json()
    doc["counts"]["blasts"] += 1
    doc["markers"]["CD22"]["positive_events"] += 1
    changed = flowkit_reference.ReferenceResult.from_json(doc)
    problems = bench_sample.compare(ours, changed)
    assert "population counts" in problems[0]
    assert [p for p in problems[1:] if not p.startswith("CD22: ")] == []


def test_read_floor_reads_the_numbers_our_reader_reads(tube: Path) -> None:
    from antigen_profile.fcs import read_fcs

    floor = bench_sample.read_floor(tube)
    assert floor.shape == (N_EVENTS, 12)
    assert np.array_equal(floor.astype(np.float64), read_fcs(tube, preprocess=False).events)


def test_results_section_keeps_other_sections(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n## Slurm\n\nqueue numbers\n")
    bench_sample.write_section(results, "## Per-sample analysis\n\nfirst\n")
    bench_sample.write_section(results, "## Per-sample analysis\n\nsecond\n")
    text = results.read_text()
    assert "## Slurm\n\nqueue numbers" in text and "second" in text and "first" not in text
    with results.open("a") as handle:
        handle.write("\n## Later\n\nkept\n")
    bench_sample.write_section(results, "## Per-sample analysis\n\nthird\n")
    text = results.read_text()
    assert text.index("## Slurm") < text.index("third") < text.index("## Later")
    assert "kept" in text and "second" not in text
    fresh = tmp_path / "new.md"
    bench_sample.write_section(fresh, "## Per-sample analysis\n\nonly\n")
    assert fresh.read_text().startswith("# Benchmarks\n\n## Per-sample analysis")


def test_every_profiled_stage_still_resolves() -> None:
    """The per-stage profile wraps functions by where the pipeline looks them up; a stage
    that moved module would silently drop out of benchmarks/RESULTS.md."""
    recorder = bench_sample.StageRecorder(1)
    recorder.install()
    try:
        assert recorder.missing == []
    finally:
        recorder.uninstall()
