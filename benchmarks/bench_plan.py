"""Planning-scale benchmark: how long Snakemake takes to read the sheets and plan a cohort of
N samples (``snakemake -n``), and how much memory, for N = 1,000, 10,000 and 20,000 by
default. A multi-centre trial's archive is tens of thousands of tubes; planning must grow
linearly with the cohort (issue 19).

Each cohort's sheet has N rows with N distinct stained and control paths, as a real archive
does: hard links, in a temporary folder, to the eight demo samples' tubes (row *i* is demo
sample *i* mod 8 under sample id ``S00001``...; each tube is its own specimen). The tubes must
exist: the benchmark writes the demo cohort first (``antigen-profile demo``) into the same
temporary folder. Each dry run is a fresh process from the repository, as the README runs
the workflow; its wall time, CPU time (user + system) and peak resident memory (the kernel's
``ru_maxrss`` of that process) are recorded. Nothing is kept.

Usage::

    python benchmarks/bench_plan.py --sizes 1000 10000 20000 --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_sample  # noqa: E402

SECTION = "## Planning scale"
#: A dry run's time per sample may grow by at most this factor from one size to the next.
LINEAR = 1.2


def write_sheet(folder: Path, demo: Path, n: int) -> Path:
    """``samples.tsv`` (and the demo's ``patients.tsv``) for ``n`` samples, each with its own
    hard links to a demo sample's stained and control tubes."""
    demo_rows = [
        line.split("\t")
        for line in (demo / "samples.tsv").read_text().splitlines()[1:]
        if line.strip()
    ]
    own = [row for row in demo_rows if len(row) < 6 or not row[5].strip()]  # one-tube specimens
    tubes = folder / "fcs"
    tubes.mkdir(parents=True)
    lines = ["sample_id\tpatient_id\tfcs\tcontrol_fcs\ttimepoint"]
    for i in range(n):
        _, patient_id, fcs, control = own[i % len(own)][:4]
        name = f"S{i + 1:05d}"
        for suffix, given in (("", fcs), ("_control", control)):
            os.link(demo / given, tubes / f"{name}{suffix}.fcs")
        lines.append(f"{name}\t{patient_id}\tfcs/{name}.fcs\tfcs/{name}_control.fcs\trelapse")
    (folder / "samples.tsv").write_text("\n".join(lines) + "\n")
    shutil.copy(demo / "patients.tsv", folder / "patients.tsv")
    return folder / "samples.tsv"


def dry_run(sheet: Path, timeout: float) -> dict[str, Any]:
    """One ``snakemake -n -q`` over ``sheet`` in a fresh process: wall, CPU, peak memory."""
    command = [
        sys.executable, "-m", "snakemake", "-n", "-q", "--cores", "2", "--config",
        f"samples={sheet}", f"patients={sheet.parent / 'patients.tsv'}",
        f"results={sheet.parent / 'results'}",
    ]  # fmt: skip
    out = bench_sample.whole_process(command, timeout, cwd=REPO_ROOT)
    if "error" in out:
        raise RuntimeError(f"snakemake -n failed on {sheet}: {out['error']}")
    return {"wall_s": out["seconds"], "cpu_s": out["cpu_seconds"], "peak_mib": out["peak_mib"]}


def bench(sizes: Sequence[int], repeats: int, timeout: float, folder: Path) -> list[dict]:
    """Each size's cohort written and planned ``repeats`` times (the median is reported)."""
    demo = folder / "demo"
    subprocess.run(
        [sys.executable, "-m", "antigen_profile.cli", "demo", str(demo)],
        check=True,
        capture_output=True,
    )
    rows = []
    for n in sizes:
        cohort = folder / f"cohort{n}"
        start = time.perf_counter()
        sheet = write_sheet(cohort, demo, n)
        written = time.perf_counter() - start
        runs = []
        for _ in range(repeats):
            runs.append(dry_run(sheet, timeout))
            print(f"[{n:,}] {runs[-1]}", file=sys.stderr, flush=True)
        shutil.rmtree(cohort)
        median = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
        rows.append({"samples": n, "sheet_s": written, "runs": runs, **median})
    return rows


def render(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """The ``## Planning scale`` section of RESULTS.md."""
    info = meta["machine"]
    lines = [
        SECTION,
        "",
        f"Run on {meta['started']} with `{meta['command']}` ({meta['minutes']:.1f} min in "
        f"all). Code: {meta['git']}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}; "
        f"Python {info['python']}, Snakemake {meta['snakemake']}. Load average (1/5/15 min) "
        f"at the start {meta['load'][0]}, at the end {meta['load'][1]}: the machine is "
        "shared, so a load above zero means other work ran at the same time.",
        "",
        "Each cohort: N samples, each its own specimen, with its own stained and control "
        "paths (hard links to the demo tubes); `snakemake -n -q` from the repository, a fresh "
        f"process each time, median of {meta['repeats']}. *CPU* is user + system time; *peak* "
        "the kernel's peak resident memory of the Snakemake process.",
        "",
        "| samples | jobs | wall (s) | CPU (s) | peak (MiB) | wall per sample (ms) | "
        "growth of wall per sample | peak per sample (KiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    previous = None
    for row in rows:
        per = 1000 * row["wall_s"] / row["samples"]
        growth = "" if previous is None else f"{per / previous:.2f}x"
        lines.append(
            f"| {row['samples']:,} | {row['samples'] + 3:,} | {row['wall_s']:.1f} | "
            f"{row['cpu_s']:.1f} | {row['peak_mib']:,.0f} | {per:.2f} | {growth} | "
            f"{1024 * row['peak_mib'] / row['samples']:.0f} |"
        )
        previous = per
    pers = [r["wall_s"] / r["samples"] for r in rows]
    linear = all(b <= LINEAR * a for a, b in itertools.pairwise(pers))
    lines += [
        "",
        f"Jobs: one per sample (rule `one_tube_specimen`), plus `recommendations`, "
        f"`cohort_report` and `all`. Linear means the wall time per sample grows by at most "
        f"{LINEAR}x from one size to the next: **{'met' if linear else 'not met'}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 20000])
    parser.add_argument("--repeats", type=int, default=1, help="dry runs per size (median)")
    parser.add_argument("--out", type=Path, help="RESULTS.md to write the section into")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per dry run")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.repeats < 1:
        parser.error("--sizes and --repeats must be positive")
    import snakemake

    meta: dict[str, Any] = {
        "command": "python benchmarks/bench_plan.py "
        + " ".join(sys.argv[1:] if argv is None else list(argv)),
        "machine": bench_sample.machine(),
        "snakemake": snakemake.__version__,
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "git": _git_state(),
        "repeats": args.repeats,
    }
    load_start, clock = bench_sample.load_average(), time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="antigen-profile-plan-"))
    try:
        rows = bench(args.sizes, args.repeats, args.timeout, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    meta["load"] = [load_start, bench_sample.load_average()]
    meta["minutes"] = (time.perf_counter() - clock) / 60
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    section = render(rows, meta)
    print(section)
    if args.out:
        bench_sample.write_section(args.out, section, title=SECTION)
    return 0


def _git_state() -> str:
    """The commit, and whether the working tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {head}" + (", with uncommitted changes" if dirty else ", no changes")


if __name__ == "__main__":
    sys.exit(main())
