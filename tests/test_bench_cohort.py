"""The cohort benchmark runs the whole workflow on a generated cohort and reports it.

``benchmarks/bench_cohort.py`` makes issue 9's cohort-scale figures. Here it runs small (three
samples of 20,000 events, without the measurements made outside the run) and its report is
held to what the workflow actually produced: every sample's report and the cohort report,
one benchmark row per job, one table row per rule, and a ``## Cohort scale`` section that
replaces the earlier one and leaves the rest of RESULTS.md alone.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
bench_cohort: Any = importlib.import_module("bench_cohort")

#: Runs Snakemake (``workflow``) for the cohort benchmark script (``benchmark``).
pytestmark = [pytest.mark.workflow, pytest.mark.benchmark]

SAMPLES = 3
EVENTS = 20_000
#: Per tube; each benchmark tube is its own specimen, so its specimen jobs count per sample.
#: One job per sample (issue 19); its benchmark and log are under ``tube/`` (rule
#: one_tube_specimen: these tubes are their own specimens).
PER_SAMPLE_RULES = {"tube"}
COHORT_RULES = {"recommendations", "cohort_report"}
EARLIER = (
    "# Benchmarks\n\n## Per-sample analysis\n\nper-sample figures, kept\n\n"
    "## Cohort scale\n\nold cohort figures\n\n## Something later\n\nalso kept\n"
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """One small benchmark run, files kept; yields the RESULTS.md it wrote and its JSON."""
    folder = tmp_path_factory.mktemp("bench-cohort")
    out, raw = folder / "RESULTS.md", folder / "raw.json"
    out.write_text(EARLIER)
    args = f"--samples {SAMPLES} --events {EVENTS} --cores 2 --no-alone --keep".split()
    args += ["--workdir", str(folder / "work"), "--out", str(out), "--json", str(raw)]
    code = bench_cohort.main(args)
    assert code == 0
    results = json.loads(raw.read_text())
    yield out, results
    # --keep left the run's records in the checkout's .snakemake/metadata: drop them
    done = Path(results["workdir"]) / "results"
    command = bench_cohort.snakemake_command(2, results["cohort"], done)
    bench_cohort.cleanup_metadata(command, done, 120)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_the_cohort_is_generated_as_described(small_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = small_run
    cohort = Path(results["workdir"]) / "cohort"
    samples = _rows(cohort / "samples.tsv")
    patients = {row["patient_id"]: row for row in _rows(cohort / "patients.tsv")}
    demo_sheet = bench_cohort.REPO_ROOT / "resources" / "demo" / "patients.tsv"
    demo = {row["patient_id"]: row for row in _rows(demo_sheet)}
    assert [row["sample_id"] for row in samples] == ["S0001", "S0002", "S0003"]
    for i, row in enumerate(samples):
        demo_patient = f"P{i + 1:02d}"  # sample i is demo sample i mod 8
        patient = patients[row["patient_id"]]
        assert row["patient_id"].startswith(demo_patient + "-")
        assert {k: v for k, v in patient.items() if k != "patient_id"} == {
            k: v for k, v in demo[demo_patient].items() if k != "patient_id"
        }
        stained, control = cohort / row["fcs"], cohort / row["control_fcs"]
        # float32, 12 channels: 48 bytes per event plus the header and TEXT
        assert EVENTS * 48 < stained.stat().st_size < EVENTS * 48 + 20_000
        assert 0.4 * EVENTS * 48 < control.stat().st_size < 0.4 * EVENTS * 48 + 20_000
    assert results["cohort"]["control_events"] == EVENTS * 2 // 5


def test_the_workflow_produced_every_report(small_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = small_run
    out = Path(results["workdir"]) / "results"
    ids = [f"S{i:04d}" for i in range(1, SAMPLES + 1)]
    for sample_id in ids:
        assert (out / sample_id / "report.html").stat().st_size > 10_000
    index = (out / "report.html").read_text()
    assert all(f'href="{sample_id}/report.html"' in index for sample_id in ids)
    assert [row["sample_id"] for row in _rows(out / "recommendations.tsv")] == ids
    assert results["outputs"]["sample_reports"] == SAMPLES
    assert results["outputs"]["cohort_report"] is True
    assert sum(results["outputs"]["decisions"].values()) == SAMPLES


def test_every_job_is_measured_with_positive_numbers(
    small_run: tuple[Path, dict[str, Any]],
) -> None:
    _, results = small_run
    run = results["run"]
    assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["tree_peak_mib"] > 50
    assert results["overhead"]["parse_s"] > 0 and results["overhead"]["dry_run_s"] > 0
    rules = {r["rule"]: r for r in results["rules"]}
    assert set(rules) == PER_SAMPLE_RULES | COHORT_RULES
    assert len(results["jobs"]) == SAMPLES * len(PER_SAMPLE_RULES) + len(COHORT_RULES)
    for name, rule in rules.items():
        assert rule["jobs"] == (SAMPLES if name in PER_SAMPLE_RULES else 1)
        assert rule["traced"] == rule["jobs"], f"{name}: every job process was traced"
        assert rule["median_s"] > 0 and rule["sum_s"] >= rule["median_s"]
        assert rule["median_imports_s"] > 0 and rule["median_preamble_s"] > 0
        assert rule["median_work_s"] > 0 and rule["median_process_peak_mib"] > 50
        # the traced phases fit inside the job's own benchmark time (2 decimals, rounded)
        phases = rule["median_preamble_s"] + rule["median_imports_s"] + rule["median_work_s"]
        assert phases <= rule["median_s"] + 0.05 * rule["jobs"] + 0.5
        assert set(rule["heavy_end"]) <= set(bench_cohort.HEAVY)
    phases = results["timeline"]
    assert all(value >= 0 for value in phases.values())
    assert math.isclose(sum(phases.values()), run["wall_s"], rel_tol=0.02)
    main = results["snakemake_process"]
    assert main is not None and main["cpu_s"] > 0


def test_the_section_has_one_row_per_rule_and_replaces_the_old_one(
    small_run: tuple[Path, dict[str, Any]],
) -> None:
    out, results = small_run
    text = out.read_text()
    assert text.count("## Cohort scale") == 1
    assert "old cohort figures" not in text
    assert "## Per-sample analysis\n\nper-sample figures, kept\n" in text
    assert text.index("## Per-sample analysis") < text.index("## Cohort scale")
    assert text.rstrip().endswith("## Something later\n\nalso kept")
    section = text[text.index("## Cohort scale") : text.index("## Something later")]
    table = section[section.index("### Per rule") :].split("\n\n")[1]
    names = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert sorted(names) == sorted(PER_SAMPLE_RULES | COHORT_RULES)
    assert f"{SAMPLES} samples x {EVENTS:,} events" in section

    bench_cohort.write_cohort_section(out, bench_cohort.render(results))
    assert out.read_text() == text, "a second write replaces the section, nothing else"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        bench_cohort.main(["--samples", "0"])


def test_imports_and_a_noop_job_are_timed(tmp_path: Path) -> None:
    timing = bench_cohort.time_imports("import json", 1)
    assert timing["process_s"] > 0 and timing["s"] >= 0 and "numpy" not in timing["heavy"]
    assert "error" in bench_cohort.time_imports("import no_such_module_here", 1)
    scripts = bench_cohort.rule_scripts()
    assert set(scripts) >= PER_SAMPLE_RULES | COHORT_RULES
    assert all(path.is_file() for path in scripts.values())
    for library, code in bench_cohort.package_heavy_imports().items():
        assert library in bench_cohort.HEAVY_TIMED and library in code
    noop = bench_cohort.noop_jobs(tmp_path / "noop", 2, 120)
    assert noop["per_job_s"] > 0 and noop["median_benchmark_s"] > 0
