"""The per-sample analysis: ingest -> QC -> compensation -> gating -> quantification.

One function, :func:`profile_sample`, serves both the Snakemake rule and
``antigen-profile profile``. It writes every per-sample output of the ``profile`` step (see
docs/outputs.md). A tube that cannot be read, or that fails QC, still gets its outputs, marked
as failed with the reason, so the rest of a cohort is never held up by one bad file.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile import __version__
from antigen_profile.compensate import CompensationError, compensate
from antigen_profile.config import resolve
from antigen_profile.files import write_json, write_npz, write_text, write_tsv
from antigen_profile.gating import (
    POPULATION_COLUMNS,
    GatingError,
    GatingTemplate,
    Populations,
    export_gatingml,
    gate_to_json,
    gating_flags,
)
from antigen_profile.ingest import IngestError, Tube, map_control, read_tube, sha256_file
from antigen_profile.qc import QCResult, QCSettings, check_acquisition, failed_qc
from antigen_profile.quantify import (
    ANTIGEN_COLUMNS,
    PositivitySettings,
    Reference,
    antigen_table,
    lineage_flags,
)
from antigen_profile.transforms import logicle

BLASTS = "blasts"
PLOT_SEED = 20240611

SOFTWARE = ["antigen-profile", "flowkit", "flowio", "numpy", "pandas", "scikit-learn", "snakemake"]


@dataclass
class ProfileResult:
    """What :func:`profile_sample` wrote, for callers that want a summary."""

    sample_id: str
    out_dir: Path
    qc_status: str
    reasons: list[str]


def software_versions() -> dict[str, str]:
    """Versions of everything that shapes a number, for the audit trail."""
    versions = {"python": platform.python_version(), "antigen-profile": __version__}
    for package in SOFTWARE[1:]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _marker_data(tube: Tube, events: np.ndarray) -> dict[str, np.ndarray]:
    return {m: events[:, tube.channels.index(ch)] for m, ch in tube.markers.items()}


def _subsample(mask_or_n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``mask_or_n`` events (seeded: reports repeat)."""
    if mask_or_n <= limit:
        return np.arange(mask_or_n)
    return np.sort(rng.choice(mask_or_n, size=limit, replace=False))


def profile_sample(
    sample_id: str,
    fcs: str | Path,
    out_dir: str | Path,
    config: Mapping[str, Any],
    control: str | Path | None = None,
) -> ProfileResult:
    """Analyse one sample (and its control tube) and write its ``profile`` outputs.

    Parameters
    ----------
    sample_id : str
        The sheet's ``sample_id``; names every output and message.
    fcs, control : path
        The stained tube and, optionally, its unstained / FMO / isotype control tube.
    out_dir : path
        ``results/{sample_id}``.
    config : mapping
        The validated workflow configuration.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template_path = resolve(config["gating_template"])
    template = GatingTemplate(template_path)
    positivity = PositivitySettings.from_config(config)
    quantified = list(config["quantified"])
    inputs = [
        _input("sample", fcs),
        _input("gating_template", template_path),
    ]
    if control:
        inputs.insert(1, _input("control", control))
    inputs.append(_input("trial", resolve(config["trial"])))
    inputs.append(_config_input(config))
    spill_csv = config.get("compensation", {}).get("matrix")
    spill_csv = resolve(spill_csv) if spill_csv else None

    try:
        tube = read_tube(fcs, config["markers"], config["scatter"], template.dimensions, spill_csv)
    except IngestError as exc:
        return _write_failed(sample_id, fcs, out, failed_qc(str(exc)), inputs, config)
    qc = check_acquisition(tube, QCSettings.from_config(config))
    if qc.status == "fail":
        return _write_failed(sample_id, fcs, out, qc, inputs, config, tube)
    try:
        events = compensate(tube.events[qc.keep], tube.channels, tube.spillover)
    except CompensationError as exc:
        qc = failed_qc(f"{fcs}: {exc}; give a valid matrix in config `compensation.matrix`")
        return _write_failed(sample_id, fcs, out, qc, inputs, config, tube)
    data = _marker_data(tube, events)
    try:
        populations = template.apply(data, sample_id, require=_backbone(config))
    except GatingError as exc:
        return _write_failed(sample_id, fcs, out, failed_qc(str(exc)), inputs, config, tube)

    blast_mask = populations.masks[BLASTS]
    blasts = {m: data[m][blast_mask] for m in quantified if m in data}
    control_blasts, control_note = _control_blasts(control, tube, template, config)
    if control_note:
        qc.warnings.append(control_note)
        qc.status = "warn" if qc.status == "pass" else qc.status
    references = _references(quantified, data, populations, control_blasts, positivity, config)
    table = antigen_table(sample_id, blasts, references, positivity, quantified)

    write_tsv(out / "populations.tsv", populations.counts())
    write_tsv(out / "antigens.tsv", table)
    write_json(out / "qc.json", qc.to_json(sample_id, str(fcs)))
    write_json(out / "gates.json", [gate_to_json(g, populations) for g in populations.gates])
    compensated = set() if tube.spillover is None else set(tube.spillover.columns)
    write_text(out / "gates.xml", export_gatingml(template, populations, tube.markers, compensated))
    write_npz(
        out / "plotdata.npz",
        _plot_data(template, populations, data, blasts, references, table, config),
    )
    blast_defined_by = populations.defined_by(BLASTS)
    flags = gating_flags(populations, config["floors"]) + lineage_flags(
        table, config["b_lineage_markers"]
    )
    doc = _profile_doc(sample_id, tube, inputs, config, blast_defined_by, qc, control_note)
    doc["flags"] = flags
    write_json(out / "profile.json", doc)
    return ProfileResult(sample_id, out, qc.status, qc.reasons)


def _input(role: str, path: str | Path) -> dict[str, Any]:
    """An audit-trail entry: the file and its SHA-256 (``None`` if it cannot be read)."""
    try:
        checksum: str | None = sha256_file(path)
    except OSError:
        checksum = None
    return {"role": role, "path": str(path), "sha256": checksum}


def _config_input(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved configuration (defaults, file and command-line overrides together) is
    what shaped the numbers, so its canonical JSON is what gets hashed."""
    import hashlib
    import json

    canonical = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return {
        "role": "config",
        "path": "(resolved configuration)",
        "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    }


def _backbone(config: Mapping[str, Any]) -> dict[str, str]:
    """Backbone markers the config adds to the blast definition (``blast_definition``)."""
    return dict(config.get("blast_definition", {}).get("require") or {})


def _control_blasts(
    control: str | Path | None, tube: Tube, template: GatingTemplate, config: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The control tube's blasts (same template, markers mapped through the stained tube's
    detectors), or ``None`` with the reason the internal reference is used instead."""
    if not control:
        return None, None
    try:
        ctube = map_control(read_tube(control, {}, {}, ()), tube)
        spill = ctube.spillover if ctube.spillover is not None else tube.spillover
        cevents = compensate(ctube.events, ctube.channels, spill)
        cdata = _marker_data(ctube, cevents)
        require = {m: sign for m, sign in _backbone(config).items() if m in cdata}
        cpops = template.apply(cdata, f"{tube.path.stem}-control", require=require)
    except (IngestError, CompensationError, GatingError) as exc:
        return None, f"control tube not used ({exc}); thresholds from internal negatives"
    mask = cpops.masks[BLASTS]
    return {m: cdata[m][mask] for m in cdata}, None


def _references(
    quantified: list[str],
    data: Mapping[str, np.ndarray],
    populations: Populations,
    control_blasts: Mapping[str, np.ndarray] | None,
    positivity: PositivitySettings,
    config: Mapping[str, Any],
) -> dict[str, Reference | None]:
    """Per antigen, the best negative reference: the control tube's blasts when it has enough
    events, else the configured internal negative population, else none."""
    internal = config["positivity"]["internal_negative"]
    references: dict[str, Reference | None] = {}
    for marker in quantified:
        if marker not in data:
            continue
        if control_blasts is not None and marker in control_blasts:
            values = control_blasts[marker]
            if values.size >= positivity.min_reference_events:
                references[marker] = Reference(values, "control:blasts")
                continue
        population = internal.get(marker)
        if population and population in populations.masks:
            values = data[marker][populations.masks[population]]
            references[marker] = Reference(values, f"internal:{population}")
        else:
            references[marker] = None
    return references


def _plot_data(
    template: GatingTemplate,
    populations: Populations,
    data: Mapping[str, np.ndarray],
    blasts: Mapping[str, np.ndarray],
    references: Mapping[str, Reference | None],
    table: pd.DataFrame,
    config: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Subsampled events in display scale (see docs/outputs.md, ``plotdata.npz``)."""
    rng = np.random.default_rng(PLOT_SEED)
    limit = int(config["report"]["max_plot_events"])
    arrays: dict[str, np.ndarray] = {}
    n = populations.n_total
    for gate in populations.gates:
        parent = populations.masks[gate.parent] if gate.parent else np.ones(n, dtype=bool)
        index = np.flatnonzero(parent)
        index = index[_subsample(index.size, limit, rng)]
        arrays[f"gate/{gate.id}/x"] = template.transform(
            gate.x.transform, data[gate.x.dimension][index]
        ).astype(np.float32)
        if gate.y is not None:
            arrays[f"gate/{gate.id}/y"] = template.transform(
                gate.y.transform, data[gate.y.dimension][index]
            ).astype(np.float32)
        arrays[f"gate/{gate.id}/inside"] = populations.masks[gate.id][index]
    params = config["logicle"]
    thresholds = table.set_index("marker")["threshold"]
    for marker, values in blasts.items():
        arrays[f"blasts/{marker}"] = logicle(
            values[_subsample(values.size, limit, rng)], params
        ).astype(np.float32)
        reference = references.get(marker)
        if reference is not None:
            ref = reference.values[_subsample(reference.values.size, limit, rng)]
            arrays[f"reference/{marker}"] = logicle(ref, params).astype(np.float32)
        threshold = thresholds.get(marker)
        if threshold is not None and pd.notna(threshold):
            arrays[f"threshold/{marker}"] = logicle(np.array([float(threshold)]), params).astype(
                np.float32
            )
    return arrays


def _profile_doc(
    sample_id: str,
    tube: Tube | None,
    inputs: list[dict[str, Any]],
    config: Mapping[str, Any],
    blast_defined_by: list[str],
    qc: QCResult,
    control_note: str | None = None,
) -> dict[str, Any]:
    """``profile.json``: provenance and the settings every number depends on."""
    return {
        "sample_id": sample_id,
        "inputs": inputs,
        "fcs_version": tube.version if tube else None,
        "cytometer": tube.cytometer if tube else None,
        "events": tube.n_events if tube else None,
        "markers": dict(tube.markers) if tube else {},
        "spillover_source": tube.spillover_source if tube else None,
        "warnings": list(qc.warnings),
        "control_note": control_note,
        "blast_defined_by": blast_defined_by,
        "flags": [],
        "quantified": list(config["quantified"]),
        "settings": {
            "percentile": config["positivity"]["percentile"],
            "call_limits": dict(config["positivity"]["call_limits"]),
            "internal_negative": dict(config["positivity"]["internal_negative"]),
            "floors": dict(config["floors"]),
            "logicle": dict(config["logicle"]),
        },
        "software": software_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _write_failed(
    sample_id: str,
    fcs: str | Path,
    out: Path,
    qc: QCResult,
    inputs: list[dict[str, Any]],
    config: Mapping[str, Any],
    tube: Tube | None = None,
) -> ProfileResult:
    """Outputs for a sample that cannot be analysed: header-only tables and the reason."""
    write_tsv(out / "populations.tsv", pd.DataFrame(columns=POPULATION_COLUMNS))
    write_tsv(out / "antigens.tsv", pd.DataFrame(columns=ANTIGEN_COLUMNS))
    write_json(out / "qc.json", qc.to_json(sample_id, str(fcs)))
    write_json(out / "gates.json", [])
    write_text(out / "gates.xml", "")
    write_npz(out / "plotdata.npz", {})
    write_json(out / "profile.json", _profile_doc(sample_id, tube, inputs, config, [], qc))
    return ProfileResult(sample_id, out, "fail", qc.reasons)


def decide_sample(
    sample_dir: str | Path,
    sample_id: str,
    patient_id: str,
    patients_sheet: str | Path | None,
    trial_path: str | Path,
    config: Mapping[str, Any],
    timepoint: str | None = None,
) -> dict[str, Any]:
    """Apply the trial's rules to one profiled sample and write ``decision.json``."""
    from antigen_profile.recommend import decide, load_trial, parse_patient
    from antigen_profile.sheets import patient_record, read_patients

    sample_dir = Path(sample_dir)
    trial = load_trial(trial_path)
    record = None
    if patients_sheet:
        record = patient_record(read_patients(patients_sheet), patient_id)
    patient = parse_patient(record, trial) if record is not None else None
    decision = decide(
        sample_id,
        patient_id,
        pd.read_csv(sample_dir / "antigens.tsv", sep="\t"),
        pd.read_csv(sample_dir / "populations.tsv", sep="\t"),
        _read_json(sample_dir / "qc.json"),
        patient,
        trial,
        config["floors"],
        timepoint=timepoint,
    ).to_dict()
    write_json(sample_dir / "decision.json", decision)
    return decision


def write_cohort_table(decision_files: list[str | Path], path: str | Path) -> Path:
    """``recommendations.tsv`` from every sample's ``decision.json``."""
    from antigen_profile.recommend import write_recommendations

    return write_recommendations([_read_json(f) for f in decision_files], path)


def write_sample_report(sample_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """``report.html`` for one sample, from its outputs only."""
    from antigen_profile.report import render_sample_report, write_html

    path = Path(sample_dir) / "report.html"
    write_html(render_sample_report(Path(sample_dir), config), path)
    return path


def write_cohort_report(
    recommendations: str | Path, path: str | Path, config: Mapping[str, Any]
) -> Path:
    """The cohort index ``report.html`` beside ``recommendations.tsv``."""
    from antigen_profile.report import render_cohort_report, write_html

    table = pd.read_csv(recommendations, sep="\t", dtype=str, keep_default_na=False)
    write_html(render_cohort_report(Path(path).parent, table, config), Path(path))
    return Path(path)


def _read_json(path: str | Path) -> Any:
    import json

    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
