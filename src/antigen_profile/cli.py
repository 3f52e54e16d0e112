"""``antigen-profile``: the per-sample analysis and the demo cohort outside Snakemake.

antigen-profile profile SAMPLE.fcs [--control CONTROL.fcs] [--gates GATES.xml] --out DIR
antigen-profile demo DIR
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from antigen_profile import __version__


def _profile(args: argparse.Namespace) -> int:
    from antigen_profile.config import ConfigError, load_config, missing_files, resolve_paths
    from antigen_profile.errors import AntigenProfileError
    from antigen_profile.inputs import InputFileError, require_regular_file
    from antigen_profile.paths import REPO_ROOT
    from antigen_profile.pipeline import profile_sample
    from antigen_profile.settings import Settings
    from antigen_profile.steps import decide_sample, write_sample_report

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"antigen-profile: {exc}", file=sys.stderr)
        return 2
    # Paths in the default config are relative to the repository; in the user's, to the cwd.
    resolve_paths(config, Path.cwd() if args.config else REPO_ROOT)
    missing = missing_files(config, args.config or "config", sheets=False)
    if missing:
        print(f"antigen-profile: {missing[0]}", file=sys.stderr)
        return 2
    # The trial and the patient sheet are read here, after the analysis: one that is a FIFO
    # or a device would hang that read (issue 14). The analysis checks its own inputs.
    for what, given in (("trial file", config["trial"]), ("patient sheet", args.patients)):
        try:
            if given:
                require_regular_file(given, what)
        except InputFileError as exc:
            print(f"antigen-profile: {exc}", file=sys.stderr)
            return 2

    if args.patient_id and not args.patients:
        # Without the sheet the id names nobody: say so before the analysis, not after it.
        print(
            f"antigen-profile: warning: --patient-id {args.patient_id} without --patients: "
            "the patient's clinical facts are unknown, so the decision will be undetermined "
            "(pass --patients patients.tsv)",
            file=sys.stderr,
        )
    fcs = Path(args.fcs)
    sample_id = args.sample_id or fcs.stem
    out = Path(args.out) / sample_id if args.per_sample_folder else Path(args.out)
    marker_controls = dict(item.split("=", 1) for item in args.marker_control)
    result = profile_sample(
        sample_id,
        fcs,
        out,
        Settings.from_config(config),
        control=args.control,
        marker_controls=marker_controls,
        gates=args.gates,
    )
    try:
        decision = decide_sample(
            out, sample_id, args.patient_id or sample_id, args.patients, config["trial"], config
        )
    except AntigenProfileError as exc:
        print(f"antigen-profile: {exc}", file=sys.stderr)
        return 2
    report = write_sample_report(out, config)
    if result.qc_status == "fail":
        print(f"{sample_id}: not analysed: {'; '.join(result.reasons)}", file=sys.stderr)
    print(
        f"{sample_id}: {decision['decision']} "
        f"(targets: {', '.join(decision['eligible_targets']) or 'none'}; "
        f"antigens {decision['antigen_status']}; clinical {decision['clinical_status']}) "
        f"-> {report}"
    )
    return 1 if result.qc_status == "fail" else 0


def inspect_file(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """What a lab needs to know about one file before running it: the ``inspect --json``
    record (keys: file, ok, error, version, cytometer, events, parameters, markers,
    spillover, unmatched, shared, gating, warnings: ``gating`` says whether the blast gate
    can be placed on this tube, or why not; ``unmatched`` lists the channels matched to no
    marker or scatter role, so a lab sees which spellings the config does not know)."""
    from antigen_profile.config import resolve
    from antigen_profile.gating import GatingError, GatingTemplate
    from antigen_profile.ingest import IngestError, panel_problem, read_tube

    record: dict[str, Any] = {
        "file": str(path),
        "ok": False,
        "error": None,
        "version": None,
        "cytometer": None,
        "events": None,
        "parameters": None,
        "markers": {},
        "spillover": None,
        "unmatched": [],
        "shared": {},
        "gating": None,
        "warnings": [],
    }
    try:
        tube = read_tube(path, config["markers"], config["scatter"])
    except IngestError as exc:
        record["error"] = str(exc)
        return record
    record.update(
        ok=True,
        version=tube.version,
        cytometer=tube.cytometer,
        events=tube.n_events,
        parameters=len(tube.channels),
        markers=dict(tube.markers),
        spillover=tube.spillover_source if tube.spillover is not None else None,
        unmatched=[
            f"{c} ({s})" if s else c
            for c, s in zip(tube.channels, tube.labels, strict=True)
            if c in tube.unmatched
        ],
        shared=dict(tube.shared),
        warnings=list(tube.warnings),
    )
    if not (config.get("lab_gating") or {}).get("file"):
        try:
            required = GatingTemplate(resolve(config["gating_template"])).required
        except GatingError as exc:
            record["gating"] = str(exc)
        else:
            problem = panel_problem(tube, required, config["markers"], config["scatter"])
            record["gating"] = problem or f"ready ({', '.join(required)} found)"
    return record


def _inspect(args: argparse.Namespace) -> int:
    import json

    from antigen_profile.config import load_config

    config = load_config(args.config)
    records = [inspect_file(path, config) for path in args.files]
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        for record in records:
            print(_inspect_text(record))
    return 0 if all(r["ok"] for r in records) else 1


def _inspect_text(record: dict[str, Any]) -> str:
    if not record["ok"]:
        return f"ERROR {record['error']}"
    markers = ", ".join(f"{m}={c}" for m, c in record["markers"].items()) or "none found"
    lines = [
        f"{record['file']}",
        f"  {record['version']}, {record['cytometer'] or 'cytometer not stated'}, "
        f"{record['events']} events, {record['parameters']} parameters",
        f"  markers: {markers}",
        f"  not matched: {', '.join(record['unmatched']) or 'none'}",
        f"  blast gate: {record['gating'] or 'lab gating (see config lab_gating)'}",
        f"  spillover: {record['spillover'] or 'none in the file'}",
    ]
    lines += [
        f"  shared: {channel} names {', '.join(names)} (measures none of them alone)"
        for channel, names in record["shared"].items()
    ]
    lines += [f"  warning: {w}" for w in record["warnings"]]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from antigen_profile.demo import write_cohort

    paths = write_cohort(Path(args.out_dir))
    print(f"wrote {len(paths)} files to {args.out_dir} (samples.tsv, patients.tsv, fcs/)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="antigen-profile",
        description="CAR-T target antigens on B-ALL blasts (4SCAR decision support).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    profile = commands.add_parser(
        "profile", help="analyse one sample: QC, gating, antigens, decision and report"
    )
    profile.add_argument("fcs", help="the stained tube (FCS)")
    profile.add_argument("--control", help="unstained, FMO or isotype tube of the same panel")
    profile.add_argument(
        "--marker-control",
        action="append",
        default=[],
        metavar="MARKER=FCS",
        help="a control tube for one antigen (its FMO), e.g. CD22=fmo_cd22.fcs; repeatable",
    )
    profile.add_argument(
        "--gates",
        metavar="GATES.xml",
        help="this tube's gates.xml as a reviewer corrected it (Gating-ML 2.0): applied as "
        "given instead of the configured gating",
    )
    profile.add_argument("--out", required=True, help="folder for the sample's outputs")
    profile.add_argument("--sample-id", help="defaults to the file name without extension")
    profile.add_argument("--patient-id", help="row of --patients to decide with")
    profile.add_argument("--patients", help="patients.tsv for the clinical rules")
    profile.add_argument("--config", help="config YAML (default: the repository's)")
    profile.add_argument(
        "--per-sample-folder",
        action="store_true",
        help="write into OUT/SAMPLE_ID/ instead of OUT/",
    )
    profile.set_defaults(run=_profile)

    inspect = commands.add_parser(
        "inspect", help="describe FCS files: version, instrument, markers, spillover, warnings"
    )
    inspect.add_argument("files", nargs="+", help="FCS files")
    inspect.add_argument("--json", action="store_true", help="print a JSON list")
    inspect.add_argument("--config", help="config YAML with marker aliases (default: repository)")
    inspect.set_defaults(run=_inspect)

    demo = commands.add_parser("demo", help="write the demo cohort (FCS files and both sheets)")
    demo.add_argument("out_dir", help="folder to write into")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


def run() -> NoReturn:
    """The ``antigen-profile`` command: :func:`main`, then out without the interpreter's
    teardown (:func:`antigen_profile.logs.leave`; its outputs are written and closed)."""
    from antigen_profile.logs import leave

    leave(main())


if __name__ == "__main__":
    run()
