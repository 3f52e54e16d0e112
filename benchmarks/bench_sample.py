"""Per-sample analysis benchmark: our pipeline against a FlowKit reference and the read floor.

One command generates synthetic tubes of the demo panel (``P01-R1`` scaled to each size, FCS
3.1, float32, 12 channels, ``$SPILLOVER``), and on the same files measures

* the **read floor**: ``np.fromfile`` of the DATA segment, nothing else;
* **ours**: :func:`antigen_profile.pipeline.profile_sample` with the default config (20,000
  events per plot; the look-alike screen takes nothing out, see :func:`bench_config`), i.e.
  ingest, QC, compensation, transforms, fitted gating, quantification, coverage and every
  per-sample output file except the HTML report;
* the **FlowKit reference** (``benchmarks/flowkit_reference.py``): FlowKit's public API gating
  the file with the sample's own exported ``gates.xml`` (the same fitted gates,
  ``compensation-ref="FCS"``) and computing the same counts, medians and positives.

Every run is a fresh subprocess (``--repeats`` of each, interleaved, median reported). A run's
time covers the analysis only (imports are timed separately: a fixed cost per job); its memory
is the process's peak resident set (``VmHWM``, the same figure as ``ru_maxrss`` but never
inherited from the parent), also given above the baseline measured after the imports. At the
largest size (or ``--profile-size``) one instrumented run attributes time and memory to the
pipeline's stages and one run under cProfile lists the hottest functions (``--no-profile``
skips both).

Usage::

    python benchmarks/bench_sample.py --sizes 1e5 1e6 5e6 --repeats 3 --out benchmarks/RESULTS.md

The files are written to a temporary folder and deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import importlib
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: flowkit_reference sits beside this file
    sys.path.insert(0, str(HERE))

#: Demo tube whose populations and panel are scaled to each size.
DEMO_TUBE = "P01-R1"
SAMPLE_ID = "BENCH"
#: Events drawn per plot: the default configuration's (the report's panels).
PLOT_EVENTS = 20000
SECTION = "## Per-sample analysis"
RESULT_TAG = "RESULT "
MIB = 1024.0 * 1024.0

#: Targets of issue 9, checked at the largest size.
FLOOR_FACTOR = 10.0
#: Issue 19's targets: the analysis of 5e6 events, the whole command (2e6 events and a 2e6-event
#: control, its report included), and both reports of one sample.
ANALYSIS_TARGET_S = 1.5
ANALYSIS_TARGET_EVENTS = 5_000_000
COMMAND_TARGET_S = 3.0
REPORTS_TARGET_S = 0.5
SPEEDUP = 25.0
MEMORY_FACTOR = 1.6
#: Cost grows linearly: time per event may rise by at most this factor from one size to the
#: next (a log-log slope of about 1.1 over a fivefold step).
LINEAR_TOLERANCE = 1.2


# ---------------------------------------------------------------------------------------------
# Memory and machine
# ---------------------------------------------------------------------------------------------


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB (``ru_maxrss`` where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    return _status_mib("VmRSS")


def peak_mib() -> float:
    """Peak resident set size of this process so far (``VmHWM``), MiB."""
    return _status_mib("VmHWM")


def machine() -> dict[str, str]:
    """CPU, cores, RAM, OS and the versions that shape the numbers."""
    from importlib import metadata

    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {}
    for package in ("numpy", "flowkit", "flowio", "flowutils", "scikit-learn", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    blas = "unknown"
    with contextlib.suppress(Exception):
        deps = np.__config__.CONFIG["Build Dependencies"]["blas"]  # type: ignore[attr-defined]
        blas = f"{deps['name']} {deps['version']}"
    return {
        "cpu": cpu,
        "cores": str(cores),
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "blas": blas,
        **versions,
    }


def load_average() -> str:
    """The 1/5/15-minute load averages: the machine may be shared while the benchmark runs."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Test files
# ---------------------------------------------------------------------------------------------


def panel_detectors() -> dict[str, str]:
    """Marker -> ``$PnN`` detector of the demo panel, from the panel description itself."""
    from antigen_profile.simulate import DEMO_PANEL

    return {c.marker: c.name for c in DEMO_PANEL if c.marker}


def generate_tube(n_events: int, path: str | Path, name: str = DEMO_TUBE) -> dict[str, Any]:
    """Write a demo tube scaled to ``n_events`` (same populations, panel and spillover as
    ``name``, seeded from the name and size). Returns the file's size and shape."""
    import zlib

    from antigen_profile.simulate import demo_tube_spec, simulate_events, write_fcs

    spec, _ = demo_tube_spec(name)
    rng = np.random.default_rng([zlib.crc32(name.encode("utf-8")), n_events])
    events, _truth = simulate_events(spec, n_events, rng)
    del _truth
    write_fcs(
        path,
        events,
        [c.name for c in spec.channels],
        [c.label for c in spec.channels],
        spec.keywords(),
    )
    return {
        "events": n_events,
        "channels": len(spec.channels),
        "bytes": Path(path).stat().st_size,
    }


# ---------------------------------------------------------------------------------------------
# Read floor
# ---------------------------------------------------------------------------------------------


def data_segment(path: str | Path) -> tuple[int, np.dtype, int, int]:
    """Where the DATA segment starts, its dtype, events and channels (uniform-width files).

    Only what the floor needs: HEADER offsets (or ``$BEGINDATA`` for large files), ``$TOT``,
    ``$PAR``, ``$DATATYPE``, ``$BYTEORD`` and ``$P1B``.
    """
    with open(path, "rb") as handle:
        header = handle.read(58)
        text_begin, text_end = int(header[10:18]), int(header[18:26])
        data_begin = int(header[26:34].strip() or 0)
        handle.seek(text_begin)
        text = handle.read(text_end - text_begin + 1).decode("latin-1")
    delimiter = text[0]
    items = text[1:].split(delimiter)
    keys = {items[i].upper(): items[i + 1] for i in range(0, len(items) - 1, 2)}
    if data_begin == 0:
        data_begin = int(keys["$BEGINDATA"])
    order = "<" if keys["$BYTEORD"].strip().startswith("1") else ">"
    kind = keys["$DATATYPE"].strip().upper()
    bits = int(keys["$P1B"])
    code = {"F": "f4", "D": "f8"}.get(kind, f"u{bits // 8}")
    return data_begin, np.dtype(order + code), int(keys["$TOT"]), int(keys["$PAR"])


def read_floor(path: str | Path) -> np.ndarray:
    """The events as stored: one ``np.fromfile`` of the DATA segment (the floor)."""
    offset, dtype, n_events, n_channels = data_segment(path)
    data = np.fromfile(path, dtype=dtype, count=n_events * n_channels, offset=offset)
    return data.reshape(n_events, n_channels)


# ---------------------------------------------------------------------------------------------
# Our analysis
# ---------------------------------------------------------------------------------------------


def bench_config(max_plot_events: int = PLOT_EVENTS) -> dict[str, Any]:
    """The default configuration, but for the look-alike screen's exclusion: the FlowKit
    reference gates blasts without the screen, so basophils and pDCs that our screen would
    take out of the blasts (a handful of events at 5e6) would make the two disagree. The
    screen still runs (its cost is in the times); its CD123-bright fold is set out of reach."""
    from antigen_profile.config import load_config

    config = load_config()
    config["report"] = {**config["report"], "max_plot_events": int(max_plot_events)}
    screen = config["blast_mimics"]["basophils_pdcs"]
    config["blast_mimics"]["basophils_pdcs"] = {**screen, "cd123_bright_fold": 1e12}
    return config


@contextlib.contextmanager
def _spy(module: Any, name: str, record: Callable[..., None]) -> Iterator[None]:
    """Call ``record(result, *args)`` after every call of ``module.name``; restore on exit."""
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        record(result, *args, **kwargs)
        return result

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def run_ours(
    fcs: str | Path,
    out_dir: str | Path,
    config: Mapping[str, Any] | None = None,
    exact: bool = False,
) -> dict[str, Any]:
    """Run :func:`profile_sample` on ``fcs`` and collect what the reference must reproduce.

    The per-antigen thresholds are recorded unrounded as the pipeline applies them (a spy on
    ``thresholds_from_references``, which only records its result), with the ones that come
    from a model (``model_thresholds``) for the reference to reuse. With ``exact`` the
    unrounded blast medians and positive counts are also recorded (a spy on ``antigen_table``
    keeps the blast arrays until the run ends, so this is off when memory is measured).
    Returns ``seconds`` (``profile_sample`` alone) and the results.
    """
    from antigen_profile import pipeline

    config = dict(config or bench_config())
    seen: dict[str, Any] = {}

    def on_thresholds(result: Any, table: Any, references: Any, *rest: Any, **kw: Any) -> None:
        seen["thresholds"] = {m: None if t is None else float(t) for m, t in result.items()}
        seen["model_thresholds"] = {
            m: float(r.threshold)
            for m, r in references.items()
            if r is not None and r.threshold is not None and result.get(m) is not None
        }
        seen["sources"] = {m: None if r is None else r.source for m, r in references.items()}

    def on_table(result: Any, sample_id: Any, blasts: Any, *rest: Any, **kw: Any) -> None:
        seen["blasts"] = dict(blasts)

    with contextlib.ExitStack() as stack:
        stack.enter_context(_spy(pipeline, "thresholds_from_references", on_thresholds))
        if exact:
            stack.enter_context(_spy(pipeline, "antigen_table", on_table))
        start, cpu = time.perf_counter(), time.process_time()
        result = pipeline.profile_sample(SAMPLE_ID, fcs, out_dir, config)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = Path(out_dir)
    ours: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "qc_status": result.qc_status,
        "reasons": list(result.reasons),
        **read_outputs(out),
        "thresholds": seen.get("thresholds", {}),
        "model_thresholds": seen.get("model_thresholds", {}),
        "sources": seen.get("sources", {}),
        "gates_xml": str(out / "gates.xml"),
    }
    if exact and "blasts" in seen:
        thresholds = ours["thresholds"]
        exact_stats = {}
        for marker, values in seen.pop("blasts").items():
            threshold = thresholds.get(marker)
            exact_stats[marker] = {
                "median": float(np.median(values)) if values.size else float("nan"),
                "positive_events": None
                if threshold is None
                else int(np.count_nonzero(values > threshold)),
            }
        ours["exact"] = exact_stats
    return ours


def read_outputs(out: Path) -> dict[str, Any]:
    """Counts, antigen rows and the all-targets escape from one sample's output folder."""
    import pandas as pd

    populations = pd.read_csv(out / "populations.tsv", sep="\t")
    antigens = pd.read_csv(out / "antigens.tsv", sep="\t")
    coverage = pd.read_csv(out / "coverage.tsv", sep="\t")
    qc = json.loads((out / "qc.json").read_text())
    markers = {}
    for row in antigens.to_dict("records"):
        markers[str(row["marker"])] = {
            key: (None if isinstance(row[key], float) and math.isnan(row[key]) else row[key])
            for key in ("events", "positive_events", "pct_positive", "median", "threshold")
        }
    uncovered = None
    targets: list[str] = []
    if len(coverage):
        widest = coverage[coverage["n_products"] == coverage["n_products"].max()].iloc[0]
        uncovered = int(widest["uncovered_events"])
        targets = str(widest["combination"]).split("+")
    return {
        "counts": {
            str(p): int(e)
            for p, e in zip(populations["population"], populations["events"], strict=True)
        },
        "markers": markers,
        "uncovered_all": uncovered,
        "assessed_targets": targets,
        "events_total": int(qc["events_total"]),
        "events_kept": int(qc["events_kept"]),
    }


def run_reference(
    fcs: str | Path,
    gates_xml: str | Path,
    model_thresholds: Mapping[str, float],
    config: Mapping[str, Any] | None = None,
) -> Any:
    """The FlowKit reference on ``fcs`` with the settings of ``config``."""
    from flowkit_reference import reference_profile

    from antigen_profile.config import resolve
    from antigen_profile.trial import load_trial

    config = config or bench_config()
    return reference_profile(
        fcs,
        gates_xml,
        panel_detectors(),
        list(config["quantified"]),
        dict(config["positivity"]["internal_negative"]),
        float(config["positivity"]["percentile"]),
        model_thresholds,
        load_trial(resolve(config["trial"])).targets,
    )


def compare(ours: Mapping[str, Any], reference: Any, rel: float = 1e-9) -> list[str]:
    """Where ``ours`` (from :func:`run_ours`) and the reference differ; empty when they agree.

    Counts, positives and the escape count must be equal; thresholds and medians equal within
    ``rel`` (the two compensate with different but exact linear algebra); ``antigens.tsv``'s
    rounded median and % positive must equal the reference's rounded the same way.
    """
    problems = []
    if ours["events_kept"] != ours["events_total"]:
        problems.append(
            f"QC dropped {ours['events_total'] - ours['events_kept']} events; the reference "
            "gates them all"
        )
    if ours["counts"] != reference.counts:
        problems.append(
            f"population counts differ: ours {ours['counts']}, FlowKit {reference.counts}"
        )
    for marker, stats in reference.markers.items():
        mine = ours["markers"].get(marker)
        if mine is None:
            problems.append(f"{marker}: not quantified by ours")
            continue
        if mine["events"] != stats.events:
            problems.append(f"{marker}: {mine['events']} blast events vs {stats.events}")
        threshold = ours["thresholds"].get(marker)
        if (threshold is None) != (stats.threshold is None) or (
            threshold is not None and not math.isclose(threshold, stats.threshold, rel_tol=rel)
        ):
            problems.append(f"{marker}: threshold {threshold!r} vs {stats.threshold!r}")
        if mine["positive_events"] != stats.positive_events:
            problems.append(
                f"{marker}: {mine['positive_events']} positive blasts vs {stats.positive_events}"
            )
        if stats.pct_positive is not None and mine["pct_positive"] != round(stats.pct_positive, 2):
            problems.append(f"{marker}: {mine['pct_positive']}% positive vs {stats.pct_positive}")
        if mine["median"] != round(stats.median, 2):
            problems.append(f"{marker}: median {mine['median']} vs {stats.median}")
        exact = ours.get("exact", {}).get(marker)
        if exact is not None:
            if not math.isclose(exact["median"], stats.median, rel_tol=rel):
                problems.append(
                    f"{marker}: unrounded median {exact['median']!r} vs {stats.median!r}"
                )
            if exact["positive_events"] != stats.positive_events:
                problems.append(f"{marker}: unrounded positives differ")
    if ours["uncovered_all"] != reference.uncovered_all:
        problems.append(
            f"blasts negative for every target: {ours['uncovered_all']} vs "
            f"{reference.uncovered_all}"
        )
    if sorted(ours["assessed_targets"]) != sorted(reference.assessed_targets):
        problems.append(f"targets {ours['assessed_targets']} vs {reference.assessed_targets}")
    return problems


# ---------------------------------------------------------------------------------------------
# Workers: each measurement runs in a fresh interpreter
# ---------------------------------------------------------------------------------------------


def _import_heavy() -> float:
    """Import everything the analysis imports lazily; returns the seconds it took."""
    start = time.perf_counter()
    for module in (
        "pandas",
        "antigen_profile.pipeline",
        "sklearn.mixture",
        "scipy.stats",
        "flowutils.transforms",
        "flowutils.gating",
        "lxml.etree",
        "threadpoolctl",
    ):
        importlib.import_module(module)
    return time.perf_counter() - start


def _worker_generate(job: Mapping[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    info = generate_tube(int(job["n"]), job["path"], job.get("name", DEMO_TUBE))
    return {**info, "seconds": time.perf_counter() - start}


def _worker_floor(job: Mapping[str, Any]) -> dict[str, Any]:
    baseline = rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    data = read_floor(job["path"])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "shape": list(data.shape),
        "baseline_mib": baseline,
        "peak_mib": peak_mib(),
    }


def _worker_ours(job: Mapping[str, Any]) -> dict[str, Any]:
    imports = _import_heavy()
    config = bench_config()
    baseline = rss_mib()
    ours = run_ours(job["path"], job["out"], config, exact=bool(job.get("exact")))
    return {**ours, "imports": imports, "baseline_mib": baseline, "peak_mib": peak_mib()}


def _worker_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    importlib.import_module("flowkit")
    imports = time.perf_counter() - start
    config = bench_config()
    baseline = rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    result = run_reference(job["path"], job["gates"], job["model_thresholds"], config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "imports": imports,
        "baseline_mib": baseline,
        "peak_mib": peak_mib(),
        "result": result.to_json(),
    }


#: (module or class path, attribute, label, depth): the stages of profile_sample in call order;
#: depth 1 marks a step inside the stage above it (or, for logicle and membership, calls made
#: from several stages).
STAGES: list[tuple[str, str, str, int]] = [
    ("antigen_profile.provenance", "audit_entry", "audit trail: sha256 of the inputs", 0),
    ("antigen_profile.pipeline", "read_tube", "ingest: read_tube", 0),
    ("antigen_profile.ingest", "read_fcs", "FCS parse + decode to float64", 1),
    ("antigen_profile.pipeline", "check_acquisition", "QC: acquisition + time stability", 0),
    ("antigen_profile.pipeline", "keep_events", "QC-kept events (in place)", 0),
    ("antigen_profile.pipeline", "compensate_inplace", "compensation (in place)", 0),
    ("antigen_profile.pipeline", "negative_pileups", "QC: negative pile-ups", 0),
    ("antigen_profile.gating_engine:Gater", "gate", "gating (all of it)", 0),
    ("antigen_profile.gating:GatingTemplate", "_fit", "fit gates to the sample", 1),
    ("antigen_profile.gatefit", "fit_clusters", "GMM clusters (5k events)", 1),
    ("antigen_profile.gating", "membership", "gate membership (flowutils), all calls", 1),
    ("antigen_profile.transforms:LogicleTable", "__call__", "logicle (table), all calls", 1),
    ("antigen_profile.gating_engine", "export_gatingml", "export gates.xml", 1),
    ("antigen_profile.gating_engine", "gate_to_json", "gates.json entries", 1),
    ("antigen_profile.pipeline", "choose_references", "quantify: negative references", 0),
    ("antigen_profile.references", "mixture_reference", "mixture reference (CD38)", 1),
    ("antigen_profile.pipeline", "antigen_table", "quantify: antigens.tsv", 0),
    ("antigen_profile.pipeline", "add_density", "quantify: bead density (none here)", 0),
    ("antigen_profile.pipeline", "thresholds_from_references", "coverage: thresholds", 0),
    ("antigen_profile.pipeline", "positive_matrix", "coverage: positive matrix", 0),
    ("antigen_profile.pipeline", "coverage_table", "coverage: coverage.tsv", 0),
    ("antigen_profile.pipeline", "upset_data", "coverage: coexpression.tsv", 0),
    ("antigen_profile.pipeline", "positive_controls", "quantify: positive_controls.tsv", 0),
    ("antigen_profile.pipeline", "antigen_plot_data", "plot data: antigen intensities", 0),
    ("antigen_profile.sample_profile", "write_tsv", "write outputs", 0),
    ("antigen_profile.sample_profile", "write_json", "write outputs", 0),
    ("antigen_profile.sample_profile", "write_npz", "write outputs", 0),
    ("antigen_profile.sample_profile", "write_text", "write outputs", 0),
]


class StageRecorder:
    """Wraps the functions of :data:`STAGES` to time them and follow memory.

    Per label, in order of first call: calls, inclusive seconds (an inner call of the same
    label is not counted twice), the largest growth of the resident set over one call, the
    peak (``VmHWM``) after the last call, and how many calls got an array of every event.
    """

    def __init__(self, n_events: int) -> None:
        self.n_events = n_events
        self.stats: dict[str, dict[str, float]] = {}
        self.order: list[str] = []
        self.active: dict[str, int] = {}
        self.missing: list[str] = []
        self.depth: dict[str, int] = {}
        self._restore: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for where, attr, label, depth in STAGES:
            self.depth[label] = depth
            module_name, _, class_name = where.partition(":")
            try:
                owner: Any = importlib.import_module(module_name)
                if class_name:
                    owner = getattr(owner, class_name)
                original = getattr(owner, attr)
            except (ImportError, AttributeError):
                self.missing.append(f"{where}.{attr}")
                continue
            self._restore.append((owner, attr, original))
            setattr(owner, attr, self._wrap(original, label))

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._restore):
            setattr(owner, attr, original)
        self._restore.clear()

    def _wrap(self, original: Callable[..., Any], label: str) -> Callable[..., Any]:
        recorder = self

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = recorder.active.get(label, 0) == 0
            recorder.active[label] = recorder.active.get(label, 0) + 1
            if label not in recorder.order:
                recorder.order.append(label)
            before = rss_mib()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                recorder.active[label] -= 1
                if outer:
                    entry = recorder.stats.setdefault(
                        label,
                        {"calls": 0, "seconds": 0.0, "rise_mib": 0.0, "full_calls": 0},
                    )
                    entry["calls"] += 1
                    entry["seconds"] += seconds
                    entry["rise_mib"] = max(entry["rise_mib"], rss_mib() - before)
                    entry["peak_after_mib"] = peak_mib()
                    sizes = [a.shape[0] for a in args if getattr(a, "ndim", 0) > 0]
                    if sizes and max(sizes) >= recorder.n_events:
                        entry["full_calls"] += 1

        return wrapper


def _worker_stages(job: Mapping[str, Any]) -> dict[str, Any]:
    imports = _import_heavy()
    from antigen_profile.pipeline import profile_sample

    config = bench_config()
    baseline = rss_mib()
    recorder = StageRecorder(int(job["n"]))
    recorder.install()
    try:
        start = time.perf_counter()
        profile_sample(SAMPLE_ID, job["path"], job["out"], config)
        total = time.perf_counter() - start
    finally:
        recorder.uninstall()
    stages = [
        {"label": label, "depth": recorder.depth[label], **recorder.stats[label]}
        for label in recorder.order
    ]
    return {
        "seconds": total,
        "imports": imports,
        "baseline_mib": baseline,
        "peak_mib": peak_mib(),
        "stages": stages,
        "missing": recorder.missing,
    }


def _worker_cprofile(job: Mapping[str, Any]) -> dict[str, Any]:
    import cProfile
    import pstats

    _import_heavy()
    from antigen_profile.pipeline import profile_sample

    config = bench_config()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    profile_sample(SAMPLE_ID, job["path"], job["out"], config)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "tottime": tottime,
                "cumtime": cumtime,
            }
        )
    rows.sort(key=lambda r: -r["tottime"])
    return {"seconds": total, "top": rows[: int(job.get("top", 20))]}


#: Runs a command in a fresh parent and prints its wall seconds and the kernel's figures for
#: that child alone (RUSAGE_CHILDREN of a parent with no other child): the whole process.
_WHOLE_PROBE = """\
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "seconds": wall,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_mib": usage.ru_maxrss / 1024, "stderr": done.stderr[-2000:]}))
"""


def whole_process(argv: Sequence[str], timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    """``argv`` run as a user runs it, measured from outside: ``seconds`` (wall),
    ``cpu_seconds`` (user + system), ``peak_mib`` (the kernel's peak resident set), ``load``
    (1-minute load average at the start); ``{"error": ...}`` when it fails."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WHOLE_PROBE, *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return {"error": str(exc)}
    out = json.loads(done.stdout)
    if out["rc"] != 0:
        return {"error": f"exit {out['rc']}: {out['stderr']}"}
    return {k: out[k] for k in ("seconds", "cpu_seconds", "peak_mib")} | {"load": load}


def run_command(stained: str, control: str, out: str, timeout: float) -> dict[str, Any]:
    """``antigen-profile profile STAINED --control CONTROL --out OUT`` as a user runs it: the
    whole process (start, imports, analysis, decision, report, exit)."""
    cli = Path(sys.executable).with_name("antigen-profile")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "antigen_profile.cli"]
    return whole_process(
        [*command, "profile", stained, "--control", control, "--out", out], timeout
    )


def _worker_reports(job: Mapping[str, Any]) -> dict[str, Any]:
    """Both reports of one profiled tube, as the per-sample job writes them (the sample's, then
    its one-tube specimen's), timed after their imports."""
    start = time.perf_counter()
    from antigen_profile.config import load_config
    from antigen_profile.outputs import DECISION_READS
    from antigen_profile.steps import decide_specimen, write_sample_report, write_specimen_report

    importlib.import_module("antigen_profile.report.sample_plots")
    imports = time.perf_counter() - start
    config = load_config()
    out = Path(job["out"])
    sample_id = json.loads((out / "profile.json").read_text(encoding="utf-8"))["sample_id"]
    specimen = out / "specimen"
    specimen.mkdir(exist_ok=True)
    start = time.perf_counter()
    write_sample_report(out, config)
    sample_s = time.perf_counter() - start
    start = time.perf_counter()
    from antigen_profile.outputs import sample_paths

    decide_specimen(
        sample_id, {sample_id: sample_paths(out, DECISION_READS)}, sample_id, None,
        config["trial"], config, specimen,
    )  # fmt: skip
    decide_s = time.perf_counter() - start
    start = time.perf_counter()
    write_specimen_report(specimen, config, profile_files={sample_id: out / "profile.json"})
    specimen_s = time.perf_counter() - start
    return {
        "imports": imports,
        "sample_report_s": sample_s,
        "specimen_decision_s": decide_s,
        "specimen_report_s": specimen_s,
    }


WORKERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "reports": _worker_reports,
    "generate": _worker_generate,
    "floor": _worker_floor,
    "ours": _worker_ours,
    "reference": _worker_reference,
    "stages": _worker_stages,
    "cprofile": _worker_cprofile,
}


def run_worker(kind: str, job: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; ``{"error": ...}`` when it fails."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--job",
        json.dumps(job),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - started
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG) :]), "wall": wall, "load": load}
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_size(n: int, folder: Path, repeats: int, timeout: float, profile: bool) -> dict[str, Any]:
    """Every measurement at one size; the file is deleted at the end."""
    path = folder / f"bench_{n}.fcs"
    _log(f"[{n:,}] generating {path.name}")
    info = run_worker("generate", {"n": n, "path": str(path)}, timeout)
    if "error" in info:
        return {"n": n, "error": f"generation failed: {info['error']}"}
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "ours": [], "reference": []}
    first: dict[str, Any] | None = None
    for r in range(repeats):
        floor = run_worker("floor", {"path": str(path)}, timeout)
        runs["floor"].append(floor)
        out = folder / f"ours_{n}_{r}"
        ours = run_worker("ours", {"path": str(path), "out": str(out)}, timeout)
        runs["ours"].append(ours)
        if first is None and "error" not in ours:
            first = ours
        if r > 0:
            shutil.rmtree(out, ignore_errors=True)
        if first is not None:
            job = {
                "path": str(path),
                "gates": first["gates_xml"],
                "model_thresholds": first["model_thresholds"],
            }
            runs["reference"].append(run_worker("reference", job, timeout))
        _log(
            f"[{n:,}] repeat {r + 1}/{repeats}: floor {floor.get('seconds', float('nan')):.3f} s, "
            f"ours {ours.get('seconds', float('nan')):.2f} s, reference "
            f"{(runs['reference'] or [{}])[-1].get('seconds', float('nan')):.2f} s"
        )
    result: dict[str, Any] = {"n": n, "file": info, "runs": runs}
    if first is not None and runs["reference"] and "result" in runs["reference"][0]:
        from flowkit_reference import ReferenceResult

        reference = ReferenceResult.from_json(runs["reference"][0]["result"])
        result["agreement"] = compare(first, reference)
        result["counts"] = first["counts"]
    if profile and first is not None:
        _log(f"[{n:,}] instrumented run (stages)")
        result["stages"] = run_worker(
            "stages", {"path": str(path), "out": str(folder / f"stages_{n}"), "n": n}, timeout
        )
        _log(f"[{n:,}] cProfile run")
        result["cprofile"] = run_worker(
            "cprofile",
            {"path": str(path), "out": str(folder / f"cprofile_{n}"), "top": 20},
            timeout,
        )
    for leftover in folder.glob(f"*_{n}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    path.unlink(missing_ok=True)
    return result


def bench_command(n: int, folder: Path, repeats: int, timeout: float) -> dict[str, Any]:
    """The whole ``antigen-profile profile`` command on an ``n``-event tube with an ``n``-event
    control (``repeats`` times), then both reports timed alone on its outputs."""
    stained, control = folder / f"command_{n}.fcs", folder / f"command_{n}_control.fcs"
    _log(f"[command {n:,}] generating the tube and its control")
    for path, name in ((stained, DEMO_TUBE), (control, f"{DEMO_TUBE}_control")):
        info = run_worker("generate", {"n": n, "path": str(path), "name": name}, timeout)
        if "error" in info:
            return {"n": n, "error": f"generation failed: {info['error']}"}
    runs = []
    out = folder / f"command_{n}_out"
    for r in range(repeats):
        runs.append(run_command(str(stained), str(control), str(out), timeout))
        _log(f"[command {n:,}] repeat {r + 1}/{repeats}: {runs[-1].get('seconds', 'failed')}")
    reports = [run_worker("reports", {"out": str(out)}, timeout) for _ in range(repeats)]
    shutil.rmtree(out, ignore_errors=True)
    stained.unlink(missing_ok=True)
    control.unlink(missing_ok=True)
    return {"n": n, "runs": runs, "reports": reports}


def render_command(result: Mapping[str, Any]) -> list[str]:
    """The ``### The whole command`` table."""
    n = int(result["n"])
    title = f"### The whole command: {_events(n)} events and a {_events(n)}-event control"
    if "error" in result:
        return [title, "", f"Failed: {result['error']}"]
    runs = [r for r in result["runs"] if "error" not in r]
    reports = [r for r in result["reports"] if "error" not in r]
    errors = [r["error"] for r in [*result["runs"], *result["reports"]] if "error" in r]
    seconds = _median([r["seconds"] for r in runs])
    sample_s = _median([r["sample_report_s"] for r in reports])
    specimen_s = _median([r["specimen_report_s"] for r in reports])
    both = sample_s + specimen_s

    def met(flag: bool) -> str:
        return "**met**" if flag else "**not met**"

    lines = [
        title,
        "",
        f"`antigen-profile profile STAINED --control CONTROL --out OUT` as a user runs it, "
        f"median of {len(runs)}: the whole process, from start to exit (interpreter, imports, "
        "analysis of both tubes, decision, the sample's report). Then, each in a fresh process "
        "after its imports, the two reports the workflow's per-sample job writes: the "
        "sample's (20,000 events per panel) and its one-tube specimen's.",
        "",
        "| measure | value | target | |",
        "|:---|---:|---:|:---|",
        f"| whole command, wall (s) | {_fmt(seconds)} | {_fmt(COMMAND_TARGET_S, 1)} "
        f"| {met(seconds <= COMMAND_TARGET_S)} |",
        f"| whole command, CPU (s) | {_fmt(_median([r['cpu_seconds'] for r in runs]))} | | |",
        f"| whole command, peak memory (MiB) | {_fmt(_median([r['peak_mib'] for r in runs]), 0)} "
        "| | |",
        f"| sample report (s) | {_fmt(sample_s)} | | |",
        f"| specimen report (s) | {_fmt(specimen_s)} | | |",
        f"| both reports (s) | {_fmt(both)} | {_fmt(REPORTS_TARGET_S, 1)} "
        f"| {met(both <= REPORTS_TARGET_S)} |",
        f"| the reports' imports, once per job (s) "
        f"| {_fmt(_median([r['imports'] for r in reports]))} | | |",
        f"| load (1 min) at the runs' start | {_fmt(_median([r['load'] for r in runs]), 1)} | | |",
    ]
    if errors:
        lines += ["", "Failed runs: " + "; ".join(errors)]
    return lines


def summarise(result: Mapping[str, Any]) -> dict[str, Any]:
    """Medians over the repeats of one size, and the derived ratios."""
    n = int(result["n"])
    info = result["file"]
    matrix = n * int(info["channels"]) * 8 / MIB

    def ok(kind: str) -> list[dict[str, Any]]:
        return [r for r in result["runs"][kind] if "error" not in r]

    floor, ours, ref = ok("floor"), ok("ours"), ok("reference")
    row: dict[str, Any] = {"n": n, "file_mib": info["bytes"] / MIB, "matrix_mib": matrix}
    for name, runs in (("floor", floor), ("ours", ours), ("ref", ref)):
        row[f"{name}_s"] = _median([r["seconds"] for r in runs])
        row[f"{name}_cpu"] = _median([r.get("cpu_seconds", float("nan")) for r in runs])
        row[f"{name}_peak"] = _median([r["peak_mib"] for r in runs])
        row[f"{name}_above"] = _median([r["peak_mib"] - r["baseline_mib"] for r in runs])
        row[f"{name}_imports"] = _median([r.get("imports", 0.0) for r in runs])
        row[f"{name}_runs"] = len(runs)
    row["load"] = _median([r["load"] for k in (floor, ours, ref) for r in k if "load" in r])
    row["errors"] = [r["error"] for kind in result["runs"].values() for r in kind if "error" in r]
    row["agreement"] = result.get("agreement")
    return row


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _events(n: int) -> str:
    return f"{n:,}"


def render(
    results: Sequence[Mapping[str, Any]],
    command: str,
    info: Mapping[str, str],
    load: tuple[str, str],
    started: str,
    minutes: float,
    command_result: Mapping[str, Any] | None = None,
) -> str:
    """The ``## Per-sample analysis`` section of RESULTS.md."""
    rows = [summarise(r) for r in results if "error" not in r]
    lines = [SECTION, ""]
    lines += [
        f"Run on {started} with `{command}` ({minutes:.1f} min in all).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}; "
        f"Python {info['python']}, NumPy {info['numpy']} ({info['blas']}), FlowKit "
        f"{info['flowkit']}, FlowIO {info['flowio']}, flowutils {info['flowutils']}, "
        f"scikit-learn {info['scikit-learn']}, pandas {info['pandas']}. Load average (1/5/15 min) "
        f"at the start {load[0]}, at the end {load[1]}: the machine is shared, so a load above "
        "zero means other jobs ran at the same time and the times are upper bounds.",
        "",
        "Files: the demo tube P01-R1 scaled to each size (same populations, 12 channels "
        "stored as float32, `$SPILLOVER`), generated in a temporary folder, read from the page "
        "cache, deleted afterwards. **Ours** = `profile_sample` (ingest, QC, compensation, "
        f"logicle, fitted gating, quantification, coverage, every output file except the HTML "
        f"report; `report.max_plot_events` = {PLOT_EVENTS}, no control tube: thresholds from "
        "the lymphocytes, CD38 from the blasts' mixture model; the look-alike screen runs but "
        "takes no basophil or pDC out of the blasts, as the reference cannot). **FlowKit** = "
        "`benchmarks/flowkit_reference.py`: `Sample(path)`, `gate_sample` with the sample's "
        'exported `gates.xml` (`compensation-ref="FCS"`), `apply_compensation`, then counts, '
        "medians, 99.5th-percentile thresholds (CD38's model threshold handed over) and "
        "positives. **Floor** = `np.fromfile` of the DATA segment. Each run is a fresh process; "
        "seconds are the median of the repeats and cover the analysis only (imports are a "
        "fixed cost per job, listed below); peak memory is the process's VmHWM "
        "(= `ru_maxrss`), and *above baseline* subtracts the resident set after the imports. "
        "*load* is the median 1-minute load average when the runs started (2 cores: above 2, "
        "other jobs competed for the CPU); *CPU s* is the process's user + system time over "
        "the same span (all threads), less sensitive to competing jobs than wall time.",
        "",
        "| events | FCS file (MiB) | floor (s) | ours (s) | ours (events/s) | ours / floor "
        "| FlowKit (s) | FlowKit / ours | same results | load | CPU s: ours, FlowKit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|",
    ]
    for row in rows:
        agreement = row["agreement"]
        same = "n/a" if agreement is None else ("yes" if not agreement else "**no**")
        lines.append(
            f"| {_events(row['n'])} | {_fmt(row['file_mib'], 0)} | {_fmt(row['floor_s'], 3)} "
            f"| {_fmt(row['ours_s'])} | {_fmt(row['n'] / row['ours_s'], 0)} "
            f"| {_fmt(row['ours_s'] / row['floor_s'], 0)} | {_fmt(row['ref_s'])} "
            f"| {_fmt(row['ref_s'] / row['ours_s'])} | {same} | {_fmt(row['load'], 1)} "
            f"| {_fmt(row['ours_cpu'])}, {_fmt(row['ref_cpu'])} |"
        )
    lines += [
        "",
        "| events | float64 matrix (MiB) | ours peak (MiB) | ours above baseline | "
        "ours above baseline / matrix | FlowKit peak | FlowKit above baseline | floor peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {_events(row['n'])} | {_fmt(row['matrix_mib'], 0)} | {_fmt(row['ours_peak'], 0)} "
            f"| {_fmt(row['ours_above'], 0)} | {_fmt(row['ours_above'] / row['matrix_mib'])} "
            f"| {_fmt(row['ref_peak'], 0)} | {_fmt(row['ref_above'], 0)} "
            f"| {_fmt(row['floor_peak'], 0)} |"
        )
    if rows:
        last = rows[-1]
        lines += [
            "",
            f"Imports per job (not in the times above): ours {_fmt(last['ours_imports'])} s, "
            f"FlowKit {_fmt(last['ref_imports'])} s.",
        ]
    for row in rows:
        if row["errors"]:
            lines.append(f"Failed runs at {_events(row['n'])}: " + "; ".join(row["errors"]))
        if row["agreement"]:
            lines.append(f"Disagreements at {_events(row['n'])}: " + "; ".join(row["agreement"]))
    lines += ["", *render_targets(rows)]
    if command_result is not None:
        lines += ["", *render_command(command_result)]
    profiled = next((r for r in reversed(results) if "stages" in r), None)
    if profiled is not None:
        lines += ["", *render_profile(profiled)]
    return "\n".join(lines).rstrip() + "\n"


def render_targets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The targets at the largest size (issue 19's and, for the record, issue 9's), and the
    scaling between sizes."""
    if not rows:
        return ["No size completed."]
    last = rows[-1]
    floor_ratio = last["ours_s"] / last["floor_s"]
    speedup = last["ref_s"] / last["ours_s"]
    memory = last["ours_above"] / last["matrix_mib"]
    memory_abs = last["ours_peak"] / last["matrix_mib"]
    per_event = [(r["n"], r["ours_s"] / r["n"] * 1e6) for r in rows]
    steps = [(a[0], b[0], b[1] / a[1]) for a, b in itertools.pairwise(per_event)]
    slopes = [
        (a["n"], b["n"], math.log(b["ours_s"] / a["ours_s"]) / math.log(b["n"] / a["n"]))
        for a, b in itertools.pairwise(rows)
    ]
    linear = all(step <= LINEAR_TOLERANCE for _, _, step in steps) if steps else None
    at_target = [r for r in rows if r["n"] == ANALYSIS_TARGET_EVENTS]
    analysis = at_target[0]["ours_s"] if at_target else None

    def met(flag: bool | None) -> str:
        return "n/a" if flag is None else ("**met**" if flag else "**not met**")

    lines = [
        f"### Targets at {_events(last['n'])} events",
        "",
        "| target | measured | |",
        "|:---|:---|:---|",
        f"| the analysis of {_events(ANALYSIS_TARGET_EVENTS)} events in at most "
        f"{ANALYSIS_TARGET_S:g} s (issue 19) | {_fmt(analysis)} s "
        f"| {met(None if analysis is None else analysis <= ANALYSIS_TARGET_S)} |",
        f"| ours within {FLOOR_FACTOR:g}x the read floor (issue 9) | {_fmt(floor_ratio, 0)}x "
        f"({_fmt(last['ours_s'])} s vs {_fmt(last['floor_s'], 3)} s) "
        f"| {met(floor_ratio <= FLOOR_FACTOR)} |",
        f"| ours at least {SPEEDUP:g}x faster than FlowKit (issue 9) | {_fmt(speedup)}x "
        f"({_fmt(last['ref_s'])} s vs {_fmt(last['ours_s'])} s) | {met(speedup >= SPEEDUP)} |",
        f"| peak memory at most {MEMORY_FACTOR:g}x the float64 matrix "
        f"({_fmt(last['matrix_mib'], 0)} MiB; issue 19) | {_fmt(memory)}x above baseline "
        f"({_fmt(last['ours_above'], 0)} MiB); {_fmt(memory_abs)}x counting the interpreter "
        f"({_fmt(last['ours_peak'], 0)} MiB) | {met(memory <= MEMORY_FACTOR)} |",
        "| cost grows linearly with events | time per event "
        + ", ".join(f"{_fmt(us, 1)} us at {_events(n)}" for n, us in per_event)
        + "; log-log slopes "
        + ", ".join(f"{_fmt(s)} ({_events(a)}->{_events(b)})" for a, b, s in slopes)
        + f" | {met(linear)} |",
        "",
        f"Linear means the time per event grows by at most {LINEAR_TOLERANCE:g}x from one size "
        "to the next (fixed costs such as the GMM fits make small files dearer per event, which "
        "is not a failure).",
    ]
    return lines


def render_profile(result: Mapping[str, Any]) -> list[str]:
    """Stage breakdown and cProfile's hottest functions."""
    n = int(result["n"])
    stages = result.get("stages", {})
    lines = [f"### Where the time and memory go ({_events(n)} events, one instrumented run)", ""]
    if "error" in stages:
        lines.append(f"Instrumented run failed: {stages['error']}")
    else:
        total = stages["seconds"]
        lines += [
            f"`profile_sample` took {_fmt(total)} s in this run (imports before it: "
            f"{_fmt(stages['imports'])} s, resident set after them "
            f"{_fmt(stages['baseline_mib'], 0)} MiB, peak {_fmt(stages['peak_mib'], 0)} MiB). "
            "Stages are listed in order of first call; seconds are inclusive: an indented "
            "stage is part of the unindented one above it (the logicle and membership rows "
            "gather their calls wherever they were made). *RSS rise* is how much the resident "
            "set grew over one call (the largest over calls); *peak after* is the process's "
            "high-water mark when the stage last returned: where it jumps, the peak was reached.",
            "",
            "| stage (in call order) | calls | on all events | s | % of total | RSS rise "
            "(MiB) | peak after (MiB) |",
            "|:---|---:|---:|---:|---:|---:|---:|",
        ]
        for stage in stages["stages"]:
            indent = "&nbsp;&nbsp;&nbsp;&nbsp;" * int(stage["depth"])
            lines.append(
                f"| {indent}{stage['label']} | {int(stage['calls'])} | {int(stage['full_calls'])} "
                f"| {_fmt(stage['seconds'])} | {_fmt(100 * stage['seconds'] / total, 1)} "
                f"| {_fmt(stage['rise_mib'], 0)} | {_fmt(stage.get('peak_after_mib', 0), 0)} |"
            )
        rest = total - sum(s["seconds"] for s in stages["stages"] if s["depth"] == 0)
        lines.append(
            f"| (not in a stage: `_marker_data`, blast arrays, profile.json, ...) "
            f"| | | {_fmt(rest)} | {_fmt(100 * rest / total, 1)} | | |"
        )
        if stages.get("missing"):
            lines.append("")
            lines.append("Not instrumented (not found): " + ", ".join(stages["missing"]))
    cprofile = result.get("cprofile", {})
    if "top" in cprofile:
        lines += [
            "",
            f"cProfile, the 20 functions with the most own time ({_fmt(cprofile['seconds'])} s "
            "under the profiler):",
            "",
            "| function | calls | own s | cumulative s |",
            "|:---|---:|---:|---:|",
        ]
        for row in cprofile["top"]:
            name = row["function"].replace("|", "\\|")
            lines.append(
                f"| `{name}` | {row['calls']} | {_fmt(row['tottime'])} | {_fmt(row['cumtime'])} |"
            )
    return lines


def write_section(path: Path, section: str, title: str = SECTION) -> None:
    """Put ``section`` into ``path``: create the file if missing, replace an earlier section
    headed ``title`` (``## Per-sample analysis``), else append; every other section is kept
    as it is."""
    header = "# Benchmarks\n\n"
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(header + section)
        return
    except FileExistsError:
        pass
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == title), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=float,
        default=[1e5, 1e6, 5e6],
        help="events per file (default: 1e5 1e6 5e6)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--out", type=Path, help="RESULTS.md to write the section into")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed per run (default 1800)"
    )
    parser.add_argument(
        "--profile-size", type=float, help="profile at this size (default: the largest)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the profile runs")
    parser.add_argument(
        "--command-events",
        type=float,
        default=2e6,
        help="events in the tube and in the control the whole command runs on (0: skip)",
    )
    parser.add_argument("--json", type=Path, help="also write every raw measurement here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        import resource

        result = WORKERS[args.worker](json.loads(args.job))
        result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    sizes = sorted({int(s) for s in args.sizes})
    profile_at = None if args.no_profile else int(args.profile_size or sizes[-1])
    command = "python benchmarks/bench_sample.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    info = machine()
    load_start = load_average()
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    clock = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="antigen-profile-bench-") as folder:
        for n in sizes:
            result = bench_size(n, Path(folder), args.repeats, args.timeout, n == profile_at)
            results.append(result)
            if "error" in result:
                _log(f"[{n:,}] {result['error']}")
        whole = None
        if args.command_events >= 1:
            whole = bench_command(
                int(args.command_events), Path(folder), args.repeats, args.timeout
            )
    minutes = (time.perf_counter() - clock) / 60
    section = render(results, command, info, (load_start, load_average()), started, minutes, whole)
    print(section)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "results": results, "command": whole}, indent=1)
        )
    if args.out:
        write_section(args.out, section)
        _log(f"wrote the {SECTION!r} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
