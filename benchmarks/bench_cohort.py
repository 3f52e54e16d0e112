"""Cohort-scale benchmark: a generated cohort through the whole workflow, reports included.

One command writes a cohort of ``--samples`` samples cycling over the eight demo samples
(sample *i* is demo sample *i* mod 8: its stained tube scaled to ``--events`` events and its
label-less control tube at the demo's 50,000 : 20,000 ratio, with its patient's clinical
facts under a patient id of its own), runs the workflow on it from the repository as the
README does::

    snakemake --cores N --config samples=... patients=... results=...

with every output in the temporary folder, and measures

* the run's **wall time**, the **peak memory of the process tree** (resident sets of
  Snakemake and all its children summed, sampled every 0.5 s) and its CPU time;
* **per rule**, from the rules' ``benchmark:`` files: jobs, summed and median seconds, CPU
  seconds and ``max_rss``; the serial sum of job time against wall x cores (parallel
  efficiency);
* the **workflow's own overhead**: parsing the workflow and checking the sheets
  (``--list-rules``), planning the DAG (``snakemake -n``), Snakemake's own process during the
  run, and a no-op ``script:`` job;
* **per job, where its time goes**: spawn and interpreter start, Snakemake's ``script:``
  preamble, our imports, and the work. A ``sitecustomize`` module put on ``PYTHONPATH`` for the
  run (:data:`TRACE_HOOK`) records, in every job process, when the interpreter was up, when
  the first ``antigen_profile`` module started importing, when the job opened its log file
  (``job_log``: the first thing each script does after its imports) and when it exited, with
  the heavy modules (flowkit, scikit-learn, matplotlib, scipy, pandas, jinja2, ...) loaded
  after the imports and by the end;
* each job script's imports, and the package's imports of each heavy library, timed alone in
  a fresh interpreter (median of ``--repeats``).

The tubes are generated once per demo tube in ``--cores`` processes (with
``bench_sample.generate_tube``: events seeded from the demo tube's name and size, so samples
of the same demo sample hold the same events) and copied per sample; that time is reported
separately and is not part of the workflow's. Everything generated is deleted afterwards
unless ``--keep``.

Usage::

    python benchmarks/bench_cohort.py --samples 200 --events 1e6 --cores 2 \\
        --out benchmarks/RESULTS.md --json /tmp/bench_cohort.json
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import csv
import datetime as dt
import glob
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: bench_sample sits beside this file
    sys.path.insert(0, str(HERE))

import bench_sample  # noqa: E402
from bench_sample import _fmt, _log, generate_tube, load_average, machine  # noqa: E402

from antigen_profile.paths import REPO_ROOT  # noqa: E402
from antigen_profile.simulate import CONTROL_EVENTS, DEMO_SAMPLES, STAINED_EVENTS  # noqa: E402

SECTION = "## Cohort scale"
MIB = 1024.0 * 1024.0
#: Libraries whose import costs a job noticeable time (numpy: nearly every job needs it).
HEAVY: tuple[str, ...] = (
    "flowkit",
    "flowio",
    "flowutils",
    "sklearn",
    "scipy",
    "matplotlib",
    "pandas",
    "jinja2",
    "numpy",
)
#: Heavy libraries whose import statements in the package are timed alone.
HEAVY_TIMED: tuple[str, ...] = ("flowkit", "sklearn", "scipy", "matplotlib", "pandas", "jinja2")
TRACE_DIR_ENV = "ANTIGEN_PROFILE_BENCH_TRACE"
TRACE_LOGS_ENV = "ANTIGEN_PROFILE_BENCH_LOGS"
#: Interval of the process-tree memory sampler, seconds.
SAMPLE_INTERVAL = 0.5
#: No-op ``script:`` jobs run to measure Snakemake's cost per job.
NOOP_JOBS = 10

#: Written as ``sitecustomize.py`` into a folder put on ``PYTHONPATH`` for the workflow run:
#: every Python process started by Snakemake imports it before its main script. It costs an
#: audit hook (a Python call per audit event; measured: see ``hook_cost_s``) and one small
#: JSON file per process at exit.
TRACE_HOOK = '''\
"""bench_cohort.py trace: when each Python process was up, imported ours, opened its log."""


def _install():
    import atexit
    import json
    import os
    import sys
    import time

    folder = os.environ.get("{dir_env}")
    if not folder:
        return
    logs = os.environ.get("{logs_env}") or "\\0"
    heavy = {heavy!r}
    rec = {{"pid": os.getpid(), "ppid": os.getppid(), "t_site": time.time()}}
    at_ready = set()

    def loaded():
        return [m for m in heavy if m in sys.modules]

    def hook(event, args):
        if event == "import":
            if "t_ours" not in rec and str(args[0]).startswith("antigen_profile"):
                rec["t_ours"] = time.time()
                rec["heavy_before_ours"] = loaded()
        elif event == "open" and "t_ready" not in rec:
            path, mode = args[0], args[1]
            if (
                isinstance(path, str)
                and isinstance(mode, str)
                and any(c in mode for c in "wax+")
                and path.startswith(logs)
            ):
                rec["t_ready"] = time.time()
                rec["log"] = path
                rec["heavy_ready"] = loaded()
                at_ready.update(sys.modules)

    def done():
        rec["t_end"] = time.time()
        times = os.times()
        rec["cpu_s"] = times.user + times.system
        rec["argv"] = list(sys.argv)
        rec["heavy_end"] = loaded()
        if at_ready:
            rec["later_modules"] = [m for m in list(sys.modules) if m not in at_ready]
        try:
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        rec["peak_mib"] = int(line.split()[1]) / 1024.0
        except OSError:
            pass
        name = "%d-%d.json" % (rec["pid"], int(rec["t_site"] * 1e6))
        try:
            with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
                json.dump(rec, handle)
        except OSError:
            pass

    sys.addaudithook(hook)
    atexit.register(done)


try:
    _install()
except Exception:
    pass
'''


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _float(text: str | None) -> float | None:
    """A benchmark-file cell as a float; None for ``NA``, ``-`` or empty."""
    try:
        return float(text) if text not in (None, "", "NA", "-") else None
    except ValueError:
        return None


def _env() -> dict[str, str]:
    """The environment for Snakemake: this interpreter's ``bin`` first, unbuffered output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def git_state() -> str:
    """The checkout's commit and whether the code that runs differs from it (read only)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        paths = ["src", "workflow", "Snakefile", "config"]
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {head}" + (
        " with uncommitted changes in src/, workflow/ or config/" if dirty else ", no changes"
    )


def write_cohort_section(path: Path, section: str) -> None:
    """Put ``section`` (starting with ``## Cohort scale``) into ``path`` with
    ``bench_sample.write_section``: replace the earlier one, else append; others are kept."""
    bench_sample.write_section(path, section, title=SECTION)


# ---------------------------------------------------------------------------------------------
# The cohort
# ---------------------------------------------------------------------------------------------


def _generate(task: tuple[str, int, str]) -> dict[str, Any]:
    """Worker: write one demo tube scaled to ``n`` events; returns its size and seconds."""
    name, n, path = task
    start = time.perf_counter()
    info = generate_tube(n, path, name)
    return {"name": name, **info, "seconds": time.perf_counter() - start}


def write_cohort(
    folder: Path, n_samples: int, n_events: int, control: bool, cores: int
) -> dict[str, Any]:
    """Write ``folder/fcs/*.fcs``, ``samples.tsv`` and ``patients.tsv``; returns what was made.

    Each distinct demo tube is generated once (in ``cores`` processes) into ``folder/tubes``
    and copied to every sample that uses it; the page cache is flushed to disk (``sync``)
    before returning so that writeback does not run during the workflow.
    """
    start = time.perf_counter()
    n_control = max(round(n_events * CONTROL_EVENTS / STAINED_EVENTS), 1) if control else 0
    tubes, fcs = folder / "tubes", folder / "fcs"
    tubes.mkdir(parents=True, exist_ok=True)
    fcs.mkdir(exist_ok=True)
    demos = [DEMO_SAMPLES[i % len(DEMO_SAMPLES)] for i in range(n_samples)]
    tasks = []
    for demo in {d.sample_id: d for d in demos}.values():
        tasks.append((demo.sample_id, n_events, str(tubes / f"{demo.sample_id}.fcs")))
        if n_control:
            name = f"{demo.sample_id}_control"
            tasks.append((name, n_control, str(tubes / f"{name}.fcs")))
    tasks.sort(key=lambda task: -task[1])
    with ProcessPoolExecutor(max_workers=max(1, min(cores, len(tasks)))) as pool:
        made = list(pool.map(_generate, tasks))
    generated = time.perf_counter() - start

    width = max(4, len(str(n_samples)))
    patients = _demo_patients()
    sample_rows, patient_rows = [], []
    total_bytes = 0
    for i, demo in enumerate(demos, start=1):
        sample_id = f"S{i:0{width}d}"
        patient_id = f"{demo.patient_id}-{i:0{width}d}"
        shutil.copyfile(tubes / f"{demo.sample_id}.fcs", fcs / f"{sample_id}.fcs")
        control_cell = ""
        if n_control:
            control_cell = f"fcs/{sample_id}_control.fcs"
            shutil.copyfile(tubes / f"{demo.sample_id}_control.fcs", folder / control_cell)
            total_bytes += (folder / control_cell).stat().st_size
        total_bytes += (fcs / f"{sample_id}.fcs").stat().st_size
        sample_rows.append(
            [sample_id, patient_id, f"fcs/{sample_id}.fcs", control_cell, demo.timepoint]
        )
        patient_rows.append([patient_id, *patients[demo.patient_id][1:]])
    header = ["sample_id", "patient_id", "fcs", "control_fcs", "timepoint"]
    _write_tsv(folder / "samples.tsv", header, sample_rows)
    _write_tsv(folder / "patients.tsv", patients["patient_id"], patient_rows)
    os.sync()
    return {
        "samples": n_samples,
        "events": n_events,
        "control_events": n_control,
        "distinct_tubes": len(made),
        "tubes": made,
        "bytes": total_bytes,
        "bytes_per_sample": total_bytes / n_samples if n_samples else 0,
        "generate_s": generated,
        "seconds": time.perf_counter() - start,
        "sample_ids": [row[0] for row in sample_rows],
        "samples_tsv": str(folder / "samples.tsv"),
        "patients_tsv": str(folder / "patients.tsv"),
    }


def _demo_patients() -> dict[str, list[str]]:
    """The demo's ``patients.tsv`` rows by patient id (header under ``patient_id``)."""
    with open(REPO_ROOT / "resources/demo/patients.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return {row[0]: row for row in rows}


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------------
# Running Snakemake
# ---------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` file)."""
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as handle:
            found.extend(int(p) for p in handle.read().split())
    return found


def tree_rss_mib(root: int) -> tuple[float, int]:
    """Summed resident set of ``root`` and all its descendants (MiB), and how many there are."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, count, todo, seen = 0, 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
                total += int(handle.read().split()[1]) * page
            count += 1
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(_children(pid))
    return total / MIB, count


class TreeSampler(threading.Thread):
    """Samples the process tree's summed resident set every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = SAMPLE_INTERVAL) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_mib, self.peak_processes, self.samples = 0.0, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._stop_event.wait(self.interval):
            mib, count = tree_rss_mib(self.root)
            self.samples += 1
            if mib > self.peak_mib:
                self.peak_mib, self.peak_processes = mib, count

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()


def snakemake_command(cores: int, cohort: Mapping[str, Any], results: Path) -> list[str]:
    """The README's command for this cohort (as argv, this interpreter's Snakemake)."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(cores),
        "--config",
        f"samples={cohort['samples_tsv']}",
        f"patients={cohort['patients_tsv']}",
        f"results={results}",
    ]


def timed(
    argv: Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` to completion; its wall seconds and the completed process."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env or _env()),
    )
    return time.perf_counter() - start, done


def plan(command: Sequence[str], timeout: float) -> dict[str, Any]:
    """Seconds to parse the workflow and check the sheets (``--list-rules``) and to plan the
    DAG (``-n``), each a fresh Snakemake."""
    out: dict[str, Any] = {}
    for key, extra in (("parse_s", ["--list-rules"]), ("dry_run_s", ["-n", "-q"])):
        seconds, done = timed([*command, *extra], REPO_ROOT, timeout)
        if done.returncode != 0:
            raise RuntimeError(f"snakemake {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
        out[key] = seconds
    return out


def run_workflow(
    command: Sequence[str], folder: Path, results: Path, timeout: float
) -> dict[str, Any]:
    """Run the workflow once, traced (:data:`TRACE_HOOK`), sampling the tree's memory."""
    site, trace = folder / "trace-site", folder / "trace"
    site.mkdir(exist_ok=True)
    trace.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        TRACE_HOOK.format(dir_env=TRACE_DIR_ENV, logs_env=TRACE_LOGS_ENV, heavy=HEAVY)
    )
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env[TRACE_DIR_ENV] = str(trace)
    env[TRACE_LOGS_ENV] = os.path.join(str(results), "logs") + os.sep
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = usage.ru_utime + usage.ru_stime
    with open(folder / "snakemake.out", "w") as out, open(folder / "snakemake.err", "w") as err:
        launched = time.time()
        start = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        try:
            code = process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            sampler.stop()
        wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = (folder / "snakemake.err").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the workflow failed (exit {code}); {folder} kept:\n{tail}")
    return {
        "wall_s": wall,
        "launched": launched,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "tree_peak_mib": sampler.peak_mib,
        "tree_peak_processes": sampler.peak_processes,
        "tree_samples": sampler.samples,
        "traces": [json.loads(p.read_text()) for p in sorted(trace.glob("*.json"))],
    }


def check_outputs(results: Path, sample_ids: Sequence[str]) -> dict[str, Any]:
    """What the workflow produced: every sample's report, the cohort report and table."""
    reports = [s for s in sample_ids if (results / s / "report.html").is_file()]
    decisions: collections.Counter[str] = collections.Counter()
    rows = 0
    table = results / "recommendations.tsv"
    if table.is_file():
        with open(table, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                rows += 1
                decisions[row.get("decision", "")] += 1
    return {
        "sample_reports": len(reports),
        "missing_reports": [s for s in sample_ids if s not in set(reports)],
        "cohort_report": (results / "report.html").is_file(),
        "recommendation_rows": rows,
        "decisions": dict(sorted(decisions.items())),
    }


def cleanup_metadata(command: Sequence[str], results: Path, timeout: float) -> None:
    """Drop the run's records from the repository's ``.snakemake/metadata`` (best effort)."""
    outputs = [
        str(p)
        for p in results.rglob("*")
        if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "benchmarks")
    ]
    if outputs:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            timed([*command, "--cleanup-metadata", *outputs], REPO_ROOT, timeout)


# ---------------------------------------------------------------------------------------------
# Where the time goes
# ---------------------------------------------------------------------------------------------


def rule_scripts(rules_dir: Path = REPO_ROOT / "workflow" / "rules") -> dict[str, Path]:
    """Rule name -> its ``script:`` file, read from the ``.smk`` files."""
    found: dict[str, Path] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text(encoding="utf-8")
        for match in re.finditer(r"^rule (\w+):(.*?)(?=^rule |\Z)", text, re.M | re.S):
            script = re.search(r"^\s+script:\s*\n?\s*[\"']([^\"']+)[\"']", match.group(2), re.M)
            if script:
                found[match.group(1)] = (smk.parent / script.group(1)).resolve()
    return found


def read_benchmarks(results: Path) -> list[dict[str, Any]]:
    """One row per job from ``results/benchmarks``: rule, sample, s, cpu_time, max_rss."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        parts = path.relative_to(results / "benchmarks").parts
        rule, sample = (parts[0], path.stem) if len(parts) > 1 else (path.stem, None)
        with open(path, encoding="utf-8", newline="") as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if not records:
            continue
        record = records[-1]
        rows.append(
            {
                "rule": rule,
                "sample": sample,
                "s": _float(record.get("s")),
                "cpu_s": _float(record.get("cpu_time")),
                "max_rss_mib": _float(record.get("max_rss")),
                "finished": path.stat().st_mtime,
            }
        )
    return rows


JobKey = tuple[str, str | None]


def job_traces(traces: Sequence[Mapping[str, Any]], logs: Path) -> dict[JobKey, dict[str, Any]]:
    """Trace records of job processes by (rule, sample), from the log each one opened."""
    jobs: dict[JobKey, dict[str, Any]] = {}
    for rec in traces:
        log = rec.get("log")
        argv = rec.get("argv") or [""]
        if not log or ".snakemake/scripts/" not in str(argv[0]):
            continue
        parts = Path(log).relative_to(logs).parts
        key = (parts[0], Path(parts[1]).stem) if len(parts) > 1 else (Path(parts[0]).stem, None)
        jobs[key] = dict(rec)
    return jobs


def snakemake_trace(traces: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The trace of Snakemake's own process (``python -m snakemake``)."""
    for rec in traces:
        argv = rec.get("argv") or [""]
        if str(argv[0]).endswith(os.path.join("snakemake", "__main__.py")):
            return dict(rec)
    return None


def per_job(
    bench: Sequence[Mapping[str, Any]], traces: Mapping[JobKey, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each job's benchmark row with its phases from the trace (seconds; None when unknown).

    ``outside``: benchmark ``s`` minus the traced process (spawn, shell, interpreter start);
    ``preamble``: interpreter up -> first ``antigen_profile`` import (Snakemake's preamble);
    ``imports``: -> the job's log opened; ``work``: -> process exit.
    """
    jobs = []
    for row in bench:
        rec = traces.get((row["rule"], row["sample"]))
        job = {**row, "outside": None, "preamble": None, "imports": None, "work": None}
        if rec and "t_end" in rec:
            t0, end = rec["t_site"], rec["t_end"]
            ours, ready = rec.get("t_ours"), rec.get("t_ready")
            job.update(
                start=t0,
                end=end,
                process_s=end - t0,
                process_cpu_s=rec.get("cpu_s"),
                process_peak_mib=rec.get("peak_mib"),
                heavy_ready=rec.get("heavy_ready"),
                heavy_end=rec.get("heavy_end"),
                later_modules=rec.get("later_modules") or [],
            )
            if row["s"] is not None:
                job["outside"] = max(row["s"] - (end - t0), 0.0)
            if ours is not None:
                job["preamble"] = ours - t0
            if ours is not None and ready is not None:
                job["imports"] = ready - ours
            if ready is not None:
                job["work"] = end - ready
        jobs.append(job)
    return jobs


def summarise_rules(jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per rule, in the order the rules first finished a job: counts, sums, medians."""
    by_rule: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for job in jobs:
        by_rule[job["rule"]].append(job)
    order = sorted(by_rule, key=lambda r: min(j["finished"] for j in by_rule[r]))
    rows = []
    for rule in order:
        group = by_rule[rule]
        seconds = [j["s"] for j in group if j["s"] is not None]
        rss = [j["max_rss_mib"] for j in group if j["max_rss_mib"] is not None]
        ready = collections.Counter(m for j in group for m in j.get("heavy_ready") or [])
        end = collections.Counter(m for j in group for m in j.get("heavy_end") or [])
        rows.append(
            {
                "rule": rule,
                "per_sample": any(j["sample"] is not None for j in group),
                "jobs": len(group),
                "sum_s": sum(seconds),
                "median_s": _median(seconds),
                "min_s": min(seconds, default=None),
                "max_s": max(seconds, default=None),
                "median_cpu_s": _median(j["cpu_s"] for j in group),
                "median_max_rss_mib": _median(rss),
                "max_max_rss_mib": max(rss, default=None),
                "median_process_peak_mib": _median(j.get("process_peak_mib") for j in group),
                "median_outside_s": _median(j["outside"] for j in group),
                "median_preamble_s": _median(j["preamble"] for j in group),
                "median_imports_s": _median(j["imports"] for j in group),
                "median_work_s": _median(j["work"] for j in group),
                "sum_overhead_s": sum(
                    j["s"] - j["work"]
                    for j in group
                    if j["s"] is not None and j["work"] is not None
                ),
                "traced": sum(j["work"] is not None for j in group),
                "later_modules": max(
                    (j.get("later_modules") or [] for j in group), key=len, default=[]
                ),
                "heavy_ready": dict(ready),
                "heavy_end": dict(end),
            }
        )
    return rows


def timeline(
    launched: float, wall: float, jobs: Sequence[Mapping[str, Any]]
) -> dict[str, float] | None:
    """Phases of the run's wall time from the traced job processes (None without traces)."""
    traced = [j for j in jobs if "start" in j]
    sample_jobs = [j for j in traced if j["sample"] is not None]
    if not traced or not sample_jobs:
        return None
    first = min(j["start"] for j in traced)
    last_sample = max(j["end"] for j in sample_jobs)
    last = max(j["end"] for j in traced)
    return {
        "startup_s": first - launched,
        "samples_s": last_sample - first,
        "cohort_s": last - last_sample,
        "shutdown_s": launched + wall - last,
    }


# ---------------------------------------------------------------------------------------------
# Imports, measured alone
# ---------------------------------------------------------------------------------------------

_TIMER = """\
import importlib
import sys
import time
{setup}
_t = time.perf_counter()
{code}
_t = time.perf_counter() - _t
print("BENCH", _t, " ".join(m for m in {heavy!r} if m in sys.modules))
"""

_LATER = """\
for _name in {names!r}:
    try:
        importlib.import_module(_name)
    except Exception:
        pass
"""


def time_imports(
    code: str, repeats: int, env: Mapping[str, str] | None = None, setup: str = ""
) -> dict[str, Any]:
    """Seconds ``code`` takes in a fresh interpreter after ``setup`` (median of ``repeats``),
    the whole process's wall from spawn to exit, and the heavy modules loaded at the end."""
    inside, outside, heavy = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as folder:
        script = Path(folder) / "timer.py"
        script.write_text(_TIMER.format(setup=setup, code=code, heavy=HEAVY))
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                env=dict(env or _env()),
            )
            outside.append(time.perf_counter() - start)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
            if done.returncode != 0 or line is None:
                return {"code": code, "error": done.stderr.strip()[-500:] or "no output"}
            fields = line.split(" ", 2)
            inside.append(float(fields[1]))
            heavy = fields[2].split() if len(fields) > 2 else []
    return {"code": code, "s": _median(inside), "process_s": _median(outside), "heavy": heavy}


def import_lines(tree: ast.AST, top_level_only: bool) -> list[str]:
    """The import statements of a module (``ast.unparse``), top level only or all of them."""
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else ast.walk(tree)
    lines = []
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom) and not (
            isinstance(node, ast.ImportFrom) and node.module == "__future__"
        ):
            lines.append(ast.unparse(node))
    return lines


def package_heavy_imports(src: Path = REPO_ROOT / "src" / "antigen_profile") -> dict[str, str]:
    """Per heavy library, every statement of the package that imports from it (one line)."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in HEAVY_TIMED:
                        found[top].add(f"import {alias.name}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top in HEAVY_TIMED:
                    names = ", ".join(a.name for a in node.names)
                    found[top].add(f"from {node.module} import {names}")
    return {lib: "; ".join(sorted(found[lib])) for lib in HEAVY_TIMED if lib in found}


def measure_imports(
    scripts: Mapping[str, Path], rules: Sequence[Mapping[str, Any]], repeats: int
) -> dict[str, Any]:
    """Each in a fresh interpreter: its start, Snakemake's preamble, each job script's imports,
    the modules each rule's jobs loaded later, during their work (``later_modules``, in load
    order, after the script's imports), and each heavy library as the package imports it."""
    out: dict[str, Any] = {"interpreter": time_imports("pass", repeats)}
    out["preamble"] = time_imports("import pickle\nfrom snakemake import script", repeats)
    out["scripts"], out["later"] = {}, {}
    for rule in rules:
        name = rule["rule"]
        if name not in scripts or not scripts[name].is_file():
            continue
        tree = ast.parse(scripts[name].read_text(encoding="utf-8"))
        code = "\n".join(import_lines(tree, top_level_only=True)) or "pass"
        out["scripts"][name] = {"script": scripts[name].name, **time_imports(code, repeats)}
        later = [m for m in rule.get("later_modules") or [] if not m.startswith("__")]
        if later:
            timing = time_imports(_LATER.format(names=later), repeats, setup=code)
            out["later"][name] = {**timing, "code": f"{len(later)} modules", "modules": len(later)}
    out["libraries"] = {
        lib: time_imports(code.replace("; ", "\n"), repeats)
        for lib, code in package_heavy_imports().items()
    }
    # What the trace hook itself costs an import-heavy process.
    plain = out["scripts"].get("tube", {}).get("s")
    if plain is not None:
        with tempfile.TemporaryDirectory(prefix="bench-hook-") as site:
            Path(site, "sitecustomize.py").write_text(
                TRACE_HOOK.format(dir_env=TRACE_DIR_ENV, logs_env=TRACE_LOGS_ENV, heavy=HEAVY)
            )
            env = _env()
            env["PYTHONPATH"] = site
            env[TRACE_DIR_ENV] = site
            hooked = time_imports(out["scripts"]["tube"]["code"], repeats, env)
        if hooked.get("s") is not None:
            out["hook_cost_s"] = hooked["s"] - plain
    return out


NOOP_SNAKEFILE = """\
rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule noop:
    output: "out/{{i}}.txt"
    benchmark: "bench/{{i}}.tsv"
    script: "noop.py"
"""


def noop_jobs(folder: Path, jobs: int, timeout: float) -> dict[str, Any]:
    """Snakemake's cost of a ``script:`` job that does nothing: ``jobs`` of them on one core,
    (run - dry run) / jobs, and their benchmark ``s``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Snakefile").write_text(NOOP_SNAKEFILE.format(jobs=jobs))
    (folder / "noop.py").write_text("open(snakemake.output[0], 'w').close()  # noqa: F821\n")
    base = [sys.executable, "-m", "snakemake", "--cores", "1", "-s", "Snakefile", "-d", "."]
    dry, done = timed([*base, "-n", "-q"], folder, timeout)
    if done.returncode != 0:
        return {"error": done.stderr[-1000:]}
    run, done = timed(base, folder, timeout)
    if done.returncode != 0:
        return {"error": done.stderr[-1000:]}
    bench = []
    for path in sorted((folder / "bench").glob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as handle:
            bench.append(_float(next(csv.DictReader(handle, delimiter="\t")).get("s")))
    return {
        "jobs": jobs,
        "dry_run_s": dry,
        "run_s": run,
        "per_job_s": (run - dry) / jobs,
        "median_benchmark_s": _median(bench),
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return _fmt(float("nan") if value is None else value, digits)


def _pct(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "n/a"
    return f"{100.0 * part / whole:.0f}%"


def _modules(counts: Mapping[str, int], jobs: int) -> str:
    """``flowkit, sklearn (3 of 5)``: modules loaded, with how many jobs when not all."""
    parts = [
        m if counts[m] >= jobs else f"{m} ({counts[m]} of {jobs})"
        for m in HEAVY
        if m in counts and m != "numpy"
    ]
    return ", ".join(parts) or "none"


def render(results: Mapping[str, Any]) -> str:
    """The ``## Cohort scale`` section of RESULTS.md."""
    cohort, run, info = results["cohort"], results["run"], results["machine"]
    rules, cores = results["rules"], int(results["cores"])
    wall = run["wall_s"]
    serial = sum(r["sum_s"] for r in rules)
    jobs = sum(r["jobs"] for r in rules)
    n = int(cohort["samples"])
    lines = [SECTION, ""]
    lines += [
        f"Run on {results['started']} with `{results['command']}` ({results['minutes']:.1f} "
        f"min in all, generating the files included). Code: {results['git']}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}; "
        f"Python {info['python']}, Snakemake {info.get('snakemake', '?')}, NumPy "
        f"{info['numpy']}, FlowKit {info['flowkit']}, pandas {info['pandas']}. Load average "
        f"(1/5/15 min) at the start {results['load'][0]}, at the end {results['load'][1]}: the "
        "machine is shared, so a load above the workflow's own means the times are upper bounds.",
        "",
        f"Cohort: {n:,} samples, sample *i* being demo sample *i* mod 8 (its patient's clinical "
        "facts under a patient id of its own), each a stained tube of "
        f"{int(cohort['events']):,} events"
        + (
            f" and its label-less control tube of {int(cohort['control_events']):,} (the "
            "demo's 50,000 : 20,000)"
            if cohort["control_events"]
            else " (no control tube)"
        )
        + f"; FCS 3.1, 12 channels as float32, {cohort['bytes_per_sample'] / MIB:,.1f} MiB per "
        f"sample, {cohort['bytes'] / MIB / 1024:,.2f} GiB in all. The "
        f"{cohort['distinct_tubes']} distinct tubes were generated once each in {cores} "
        f"processes ({cohort['generate_s']:.1f} s; `bench_sample.generate_tube`, seeded from "
        "the demo tube's name and size, so the samples of one demo sample hold the same events) "
        f"and copied per sample: {cohort['seconds']:.1f} s in all, not part of the workflow's "
        "time. Results went to a temporary folder"
        + (", kept (`--keep`). " if results.get("kept") else ", deleted afterwards. ")
        + f"Outputs: {results['outputs']['sample_reports']:,} of {n:,} sample reports, cohort "
        f"report {'written' if results['outputs']['cohort_report'] else 'MISSING'}, "
        f"decisions {_decisions(results['outputs']['decisions'])}.",
        "",
        f"### Wall time and memory ({n:,} samples x {int(cohort['events']):,} events, "
        f"`--cores {cores}`)",
        "",
        "| measure | value |",
        "|:---|---:|",
        f"| wall time, `snakemake` start to exit | {_s(wall, 1)} s ({wall / 60:.1f} min); "
        f"{_s(wall / n)} s per sample |",
        f"| jobs | {jobs:,} |",
        f"| serial sum of job time (benchmark `s`) | {_s(serial, 1)} s |",
        f"| parallel efficiency: serial sum / (wall x {cores} cores) "
        f"| {_pct(serial, wall * cores)} |",
        f"| CPU time of the whole process tree | {_s(run['cpu_s'], 1)} s "
        f"({_pct(run['cpu_s'], wall * cores)} of wall x {cores}) |",
    ]
    main = results.get("snakemake_process")
    if main:
        heavy = ", ".join(m for m in main.get("heavy_end") or [] if m != "numpy") or "none"
        lines.append(
            f"| Snakemake's own process (parsing, scheduling, bookkeeping, benchmark sampling) "
            f"| CPU {_s(main.get('cpu_s'), 1)} s, peak {_s(main.get('peak_mib'), 0)} MiB; "
            f"loads {heavy} |"
        )
    lines += [
        f"| peak memory of the process tree (resident sets summed, sampled every "
        f"{SAMPLE_INTERVAL:g} s) | {_s(run['tree_peak_mib'], 0)} MiB "
        f"({run['tree_peak_processes']} processes) |",
        f"| largest job process (`VmHWM` at exit) | {_s(results.get('largest_job_mib'), 0)} MiB |",
        "",
    ]
    phases = results.get("timeline")
    overhead = results["overhead"]
    lines += ["### Where the wall time goes", "", "| phase | s | % of wall |", "|:---|---:|---:|"]
    if phases:
        for key, label in PHASES.items():
            lines.append(f"| {label} | {_s(phases[key], 1)} | {_pct(phases[key], wall)} |")
    lines += [
        "",
        f"Alone, each a fresh Snakemake: parsing the workflow and checking both sheets "
        f"(`--list-rules`) {_s(overhead['parse_s'], 1)} s; planning the DAG (`snakemake -n`) "
        f"{_s(overhead['dry_run_s'], 1)} s.",
    ]
    noop = results.get("noop") or {}
    if "per_job_s" in noop:
        lines.append(
            f"A `script:` job that does nothing costs Snakemake {_s(noop['per_job_s'])} s of "
            f"wall ({noop['jobs']} in a row on one core, run minus dry run; their benchmark `s` "
            f"{_s(noop['median_benchmark_s'])} s): spawning, the interpreter, the preamble, "
            "benchmark and metadata bookkeeping."
        )
    lines += [
        "",
        "### Per rule (benchmark files)",
        "",
        "| rule | jobs | sum s | % of job time | median s | min-max s | median CPU s "
        "| median `max_rss` (MiB) | largest `max_rss` |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rules:
        lines.append(
            f"| `{r['rule']}` | {r['jobs']:,} | {_s(r['sum_s'], 1)} | {_pct(r['sum_s'], serial)} "
            f"| {_s(r['median_s'])} | {_s(r['min_s'])}-{_s(r['max_s'])} | "
            f"{_s(r['median_cpu_s'])} | {_s(r['median_max_rss_mib'], 0)} "
            f"| {_s(r['max_max_rss_mib'], 0)} |"
        )
    lines += [
        "",
        "Snakemake samples a job's memory at intervals, so `max_rss` misses short peaks; the "
        "kernel's peak of every job process is in the next table.",
        "",
        "### Per job: overhead and work",
        "",
        "Measured inside every job process of this run: a `sitecustomize` module on "
        "`PYTHONPATH` recorded when the interpreter was up, when the first `antigen_profile` "
        "module started importing (before it: Snakemake's `script:` preamble, which imports "
        "`snakemake.script` and unpickles the job), when the job opened its log (`job_log`, the "
        "first thing each script does after its imports) and when it exited, with the heavy "
        "modules loaded at each point. *Start + exit* is the benchmark's `s` minus that traced "
        "span: the shell and the interpreter's start (about as long as `python -c pass`, "
        "below) and, mostly, the interpreter's teardown after the script has finished, which "
        "grows with what was imported (see *whole process* below). *Imports in the work* "
        "are the modules the jobs loaded after their own imports (lazy imports inside the "
        "package), timed alone: the same modules in load order, in a fresh interpreter after "
        "the script's imports; *compute* is the work without them. Medians per rule:",
        "",
        "| rule | job s | start + exit | preamble | our imports | work | imports in the work "
        "| compute | overhead share | peak (MiB) | heavy modules after the imports "
        "| loaded later, during the work |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---|",
    ]
    for r in rules:
        later = r.get("later_s")
        compute = r["median_work_s"]
        if compute is not None and later is not None:
            compute = max(compute - later, 0.0)
        share = None if compute is None or r["median_s"] is None else r["median_s"] - compute
        lines.append(
            f"| `{r['rule']}` | {_s(r['median_s'])} | {_s(r['median_outside_s'])} "
            f"| {_s(r['median_preamble_s'])} | {_s(r['median_imports_s'])} "
            f"| {_s(r['median_work_s'])} | {_s(later)} | {_s(compute)} "
            f"| {_pct(share, r['median_s'])} | {_s(r['median_process_peak_mib'], 0)} "
            f"| {_modules(r['heavy_ready'], r['traced'])} "
            f"| {_modules(_later(r), r['traced'])} |"
        )
    visible = sum(r["sum_overhead_s"] for r in rules)
    total_overhead = visible + sum(r.get("sum_later_s", 0.0) for r in rules)
    lines += [
        "",
        f"Overhead in all (start, exit, preamble and imports, those inside the work included): "
        f"{_s(total_overhead, 1)} s of the {_s(serial, 1)} s serial job time "
        f"({_pct(total_overhead, serial)}; {_s(visible, 1)} s of it before the work begins), "
        f"about {_s(total_overhead / cores, 1)} s of wall on {cores} cores. numpy is loaded by "
        "every job and not listed.",
        "",
    ]
    if results.get("imports"):
        lines += _render_imports(results["imports"])
    else:
        lines.append("Imports alone and the no-op job were not measured (`--no-alone`).")
    return "\n".join(lines).rstrip() + "\n"


PHASES = {
    "startup_s": "Snakemake start (imports, config and sheets checked, DAG) until the first "
    "job's interpreter is up",
    "samples_s": "per-sample jobs, first start to last end",
    "cohort_s": "after the last per-sample job: what is left of `recommendations`, then "
    "`cohort_report`, and the waits between them",
    "shutdown_s": "after the last job until Snakemake exits",
}


def _later(rule: Mapping[str, Any]) -> dict[str, int]:
    """Modules a rule's jobs loaded after their imports (count of jobs)."""
    ready = rule["heavy_ready"]
    return {m: c for m, c in rule["heavy_end"].items() if c > ready.get(m, 0)}


def _decisions(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k or '(none)'} {v:,}" for k, v in counts.items()) or "none"


def _render_imports(imports: Mapping[str, Any]) -> list[str]:
    """The imports table: interpreter, preamble, each script, each heavy library."""
    repeats = imports.get("repeats", 1)
    lines = [
        f"Imports alone, each in a fresh interpreter (median of {repeats}). *Import* is the "
        "time inside the process from the first import to the last; *whole process* is the "
        "same process from spawn to exit, so the difference is the interpreter's start and, "
        "mostly, its teardown at exit, which every job pays for what it imported:",
        "",
        "| what | import s | whole process s | heavy modules loaded |",
        "|:---|---:|---:|:---|",
    ]

    def row(label: str, item: Mapping[str, Any], whole: bool = True) -> str:
        if "error" in item:
            return f"| {label} | failed | | {item['error'].splitlines()[-1]} |"
        heavy = ", ".join(m for m in item["heavy"] if m != "numpy") or "none"
        process = _s(item["process_s"]) if whole else ""
        return f"| {label} | {_s(item['s'])} | {process} | {heavy} |"

    interp = imports["interpreter"]
    lines.append(
        f"| interpreter alone (`python -c pass`) | | {_s(interp.get('process_s'), 3)} | none |"
    )
    preamble = "Snakemake's preamble imports (`pickle`, `snakemake.script`)"
    lines.append(row(preamble, imports["preamble"]))
    for rule, item in imports["scripts"].items():
        lines.append(row(f"`{item['script']}` (rule `{rule}`): its imports", item))
    for rule, item in imports.get("later", {}).items():
        label = f"rule `{rule}`: the {item['modules']} modules its jobs imported in the work"
        lines.append(row(label, item, whole=False))
    for lib, item in imports["libraries"].items():
        code = item["code"].replace("\n", "; ")
        if len(code) > 90:
            code = code[:87] + "..."
        lines.append(row(f"{lib}, as the package imports it: `{code}`", item))
    if imports.get("hook_cost_s") is not None:
        lines += [
            "",
            f"The trace hook changed `tube.py`'s import time by {_s(imports['hook_cost_s'], 3)}"
            " s (its audit hook runs on every import and file open).",
        ]
    return lines


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every measurement on one generated cohort in ``folder``; the raw results."""
    n_events = round(args.events)
    _log(f"generating {args.samples} samples x {n_events:,} events in {folder}")
    cohort = write_cohort(
        folder / "cohort", args.samples, n_events, not args.no_control, args.cores
    )
    _log(f"generated in {cohort['seconds']:.1f} s")
    results_dir = (folder / "results").resolve()
    command = snakemake_command(args.cores, cohort, results_dir)
    overhead = plan(command, args.timeout)
    _log(f"parse {overhead['parse_s']:.1f} s, dry run {overhead['dry_run_s']:.1f} s; running")
    run = run_workflow(command, folder, results_dir, args.timeout)
    _log(f"workflow finished in {run['wall_s']:.1f} s")
    outputs = check_outputs(results_dir, cohort["sample_ids"])
    bench_rows = read_benchmarks(results_dir)
    traces = job_traces(run["traces"], results_dir / "logs")
    jobs = per_job(bench_rows, traces)
    rules = summarise_rules(jobs)
    imports, noop = None, None
    if not args.no_alone:
        imports = measure_imports(rule_scripts(), rules, args.repeats)
        imports["repeats"] = args.repeats
        noop = noop_jobs(folder / "noop", NOOP_JOBS, args.timeout)
    for rule in rules:
        longest = len(rule.pop("later_modules"))
        rule["later_count"] = longest
        later = None if imports is None else imports["later"].get(rule["rule"], {}).get("s", 0.0)
        # imports inside the work: charged to the jobs that loaded (most of) the same modules
        loaded = [
            j
            for j in jobs
            if j["rule"] == rule["rule"]
            and longest
            and len(j.get("later_modules") or []) >= longest / 2
        ]
        rule["later_s"] = later
        rule["sum_later_s"] = (later or 0.0) * len(loaded)
    for job in jobs:
        job["later_modules"] = len(job.get("later_modules") or [])
    if not args.keep:
        cleanup_metadata(command, results_dir, args.timeout)
    peaks = [j["process_peak_mib"] for j in jobs if j.get("process_peak_mib") is not None]
    return {
        "cohort": {k: v for k, v in cohort.items() if k != "sample_ids"},
        "overhead": overhead,
        "run": {k: v for k, v in run.items() if k != "traces"},
        "snakemake_process": snakemake_trace(run["traces"]),
        "outputs": outputs,
        "timeline": timeline(run["launched"], run["wall_s"], jobs),
        "rules": rules,
        "jobs": jobs,
        "largest_job_mib": max(peaks, default=None),
        "imports": imports,
        "noop": noop,
        "workdir": str(folder),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples (default 200)")
    parser.add_argument(
        "--events", type=float, default=1e6, help="events per stained tube (default 1e6)"
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="Snakemake --cores and generating processes"
    )
    parser.add_argument("--no-control", action="store_true", help="stained tubes only")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each import timing (default 3)"
    )
    parser.add_argument("--out", type=Path, help="RESULTS.md to write the section into")
    parser.add_argument("--json", type=Path, help="also write every raw measurement here")
    parser.add_argument(
        "--workdir", type=Path, help="folder for the cohort and results (default: a temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--no-alone",
        action="store_true",
        help="skip what is measured outside the run (imports alone, the no-op job): for tests",
    )
    parser.add_argument(
        "--timeout", type=float, default=6 * 3600.0, help="seconds allowed per Snakemake run"
    )
    args = parser.parse_args(argv)
    if args.samples < 1 or args.events < 1 or args.cores < 1 or args.repeats < 1:
        parser.error("--samples, --events, --cores and --repeats must be positive")

    command = "python benchmarks/bench_cohort.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    import snakemake

    info = {**machine(), "snakemake": snakemake.__version__}
    load_start = load_average()
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    clock = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="cohort-", dir=args.workdir)).resolve()
    else:
        folder = Path(tempfile.mkdtemp(prefix="antigen-profile-cohort-")).resolve()
    try:
        raw = bench(args, folder)
    except Exception as exc:
        _log(f"benchmark failed, {folder} kept for inspection: {exc}")
        return 1
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    results = {
        **raw,
        "command": command,
        "cores": args.cores,
        "machine": info,
        "load": [load_start, load_average()],
        "started": started,
        "minutes": (time.perf_counter() - clock) / 60,
        "git": git_state(),
        "kept": args.keep,
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    missing = results["outputs"]["missing_reports"]
    if missing or not results["outputs"]["cohort_report"]:
        _log(
            f"the workflow left reports missing ({len(missing)} samples, e.g. {missing[:5]}; "
            f"cohort report written: {results['outputs']['cohort_report']}); no section written"
        )
        return 1
    section = render(results)
    print(section)
    if args.out:
        write_cohort_section(args.out, section)
        _log(f"wrote the {SECTION!r} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
