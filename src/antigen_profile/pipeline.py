"""The per-sample analysis: ingest -> QC -> compensation -> gating -> quantification.

One function, :func:`profile_sample`, serves both the Snakemake rule and
``antigen-profile profile``. It writes every per-sample output of the ``profile`` step (see
docs/outputs.md). A tube that cannot be read, or that fails QC, still gets its outputs, marked
as failed with the reason, so the rest of a cohort is never held up by one bad file.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile import __version__
from antigen_profile.compensate import CompensationError, compensate, compensate_inplace
from antigen_profile.config import resolve
from antigen_profile.coverage import (
    COVERAGE_COLUMNS,
    UPSET_COLUMNS,
    coverage_table,
    positive_matrix,
    thresholds_from_references,
    upset_data,
)
from antigen_profile.files import write_json, write_npz, write_text, write_tsv
from antigen_profile.gating import (
    GatingError,
    GatingTemplate,
    export_gatingml,
    floor_flags,
    gate_to_json,
    gating_flags,
)
from antigen_profile.ingest import (
    IngestError,
    Tube,
    map_control,
    panel_problem,
    read_tube,
    sha256_file,
)
from antigen_profile.inputs import (
    NOT_FOUND,
    InputFileError,
    gating_size_limit,
    require_regular_file,
)
from antigen_profile.lab_gating import LabGating, LabGatingError
from antigen_profile.outputs import PROFILE_FILES, sample_paths
from antigen_profile.populations import POPULATION_COLUMNS
from antigen_profile.qc import (
    QCResult,
    QCSettings,
    check_acquisition,
    compensation_warnings,
    failed_qc,
    gating_shares,
    gating_warnings,
    negative_pileups,
)
from antigen_profile.quantify import (
    ANTIGEN_COLUMNS,
    DENSITY_COLUMNS,
    MEASURED_CALLS,
    POSITIVE_CONTROL_COLUMNS,
    PositivitySettings,
    Reference,
    antigen_table,
    lineage_flags,
    mixture_reference,
    positive_controls,
)
from antigen_profile.recommend import load_trial
from antigen_profile.registration import register
from antigen_profile.transforms import display_logicle, logicle

BLASTS = "blasts"
#: Key of the sample's control tube among per-marker controls.
ANY_MARKER = "*"
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
    out_dir: str | Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    control: str | Path | None = None,
    marker_controls: Mapping[str, str | Path] | None = None,
    bead_fcs: str | Path | None = None,
) -> ProfileResult:
    """Analyse one sample (and its control tubes) and write its ``profile`` outputs.

    Parameters
    ----------
    sample_id : str
        The sheet's ``sample_id``; names every output and message.
    fcs, control : path
        The stained tube and, optionally, its unstained / FMO / isotype control tube.
    marker_controls : mapping of str to path, optional
        A control tube for one antigen (its FMO), which beats ``control`` for that antigen.
    bead_fcs : path, optional
        Calibration beads acquired with the tube's settings (else config
        ``calibration.bead_fcs``): antigen density in molecules (ABC/MEF) per blast.
    out_dir : path or mapping
        ``results/{sample_id}`` (each file under its name in
        :data:`~antigen_profile.outputs.PROFILE_FILES`), or those keys mapped to the paths a
        Snakemake rule declared.
    config : mapping
        The validated workflow configuration.
    """
    out = sample_paths(out_dir, tuple(PROFILE_FILES))
    # Every input is checked before anything reads or hashes it (a FIFO or /dev/zero would
    # hang the job); one that is not a regular file fails this sample only (issue 14).
    problems = _input_problems(config, fcs, control, marker_controls, bead_fcs)
    gater_role, gater_path = Gater.source(config)
    inputs = [_input("sample", fcs), _input(gater_role, gater_path)]
    if control:
        inputs.insert(1, _input("control", control))
    for marker, path in (marker_controls or {}).items():
        inputs.insert(1, _input(f"control:{marker}", path))
    inputs.append(_input("trial", resolve(config["trial"])))
    inputs.append(_config_input(config))
    if problems:
        failed = failed_qc(problems[0], kind="unreadable")
        failed.reasons += problems[1:]
        return _write_failed(sample_id, fcs, out, failed, inputs, config)
    gater = Gater(config)
    positivity = PositivitySettings.from_config(config)
    quantified = list(config["quantified"])
    spill_csv = config.get("compensation", {}).get("matrix")
    spill_csv = resolve(spill_csv) if spill_csv else None

    try:
        tube = read_tube(
            fcs, config["markers"], config["scatter"], (), spill_csv, sha256=inputs[0]["sha256"]
        )
    except IngestError as exc:
        return _write_failed(sample_id, fcs, out, failed_qc(str(exc)), inputs, config)
    problem = panel_problem(tube, gater.required, config["markers"], config["scatter"])
    if problem:  # read, but its panel cannot be gated: the report still shows what it holds
        failed = failed_qc(problem, events=tube.n_events, kind="panel")
        return _write_failed(sample_id, fcs, out, failed, inputs, config, tube)
    qc_settings = QCSettings.from_config(config)
    qc = check_acquisition(tube, qc_settings)
    if qc.status == "fail":
        return _write_failed(sample_id, fcs, out, qc, inputs, config, tube)
    # From here tube.events are the QC-kept events (no copy when QC keeps them all), and only a
    # lab's gating reads them uncompensated: otherwise they are compensated in place, so the
    # tube is held in memory once (issue 9).
    raw = _kept_events(tube, qc.keep)
    try:
        if gater.lab is None:
            events = compensate_inplace(raw, tube.channels, tube.spillover)
        else:
            events = compensate(raw, tube.channels, tube.spillover)
    except CompensationError as exc:
        qc.fail(f"{fcs}: {exc}; give a valid matrix in config `compensation.matrix`")
        return _write_failed(sample_id, fcs, out, qc, inputs, config, tube)
    if tube.spillover is not None:  # negative pile-ups point at a wrong spillover matrix
        detectors = [str(c) for c in tube.spillover.columns]
        pileups = negative_pileups(events, tube.channels, detectors, qc_settings)
        qc.add_findings("compensation", pileups, compensation_warnings(pileups, qc_settings))
    data = _marker_data(tube, events)
    try:
        gated = gater.gate(tube, raw, data, sample_id)  # raw: read by a lab's gating only
    except (GatingError, LabGatingError) as exc:
        qc.fail(str(exc))
        return _write_failed(sample_id, fcs, out, qc, inputs, config, tube)
    shares = gating_shares(gated.table)  # debris and doublets: QC itself never gates
    qc.add_findings("gating", shares, gating_warnings(shares, qc_settings))

    blast_mask = gated.masks[BLASTS]
    blasts = {m: data[m][blast_mask] for m in quantified if m in data}
    controls: dict[str, dict[str, np.ndarray]] = {}
    notes: list[str] = []
    for key, path in [(ANY_MARKER, control), *(marker_controls or {}).items()]:
        if not path:
            continue
        checksum = next((i["sha256"] for i in inputs if i["path"] == str(path)), None)
        blasts_of_control, note = _control_blasts(
            path, tube, gater, sample_id, checksum, gated.template
        )
        if blasts_of_control is not None:
            controls[key] = blasts_of_control
        if note:
            notes.append(note)
    control_note = "; ".join(notes) or None
    if control_note:
        qc.warnings.append(control_note)
        qc.status = "warn" if qc.status == "pass" else qc.status
    display = {
        m: display_logicle(config["logicle"], data[m], tube.ranges.get(tube.markers[m], np.nan))
        for m in blasts
    }
    references = _references(quantified, data, gated.masks, blasts, controls, positivity, display)
    shared = _shared_stains(tube)
    table = antigen_table(
        sample_id, blasts, references, positivity, quantified, not_measured=shared
    )
    density_flags = _add_density(table, blasts, controls, tube, bead_fcs, config, qc, inputs, out)
    thresholds = thresholds_from_references(table, references, positivity.percentile)
    positive = positive_matrix(blasts, thresholds, load_trial(resolve(config["trial"])).targets)
    write_tsv(out["coverage"], coverage_table(positive, sample_id, positivity.confidence))
    write_tsv(out["coexpression"], upset_data(positive))
    write_tsv(
        out["positive_controls"],
        positive_controls(data, gated.masks, thresholds, config["positive_controls"]),
    )

    write_tsv(out["populations"], gated.table)
    write_tsv(out["antigens"], table)
    write_json(out["qc"], qc.to_json(sample_id, str(fcs)))
    write_json(out["gates"], gated.gates)
    write_text(out["gatingml"], gated.gatingml)
    write_npz(
        out["plotdata"],
        {**gated.plot, **_antigen_plot_data(blasts, references, table, display, config)},
    )
    doc = _profile_doc(sample_id, tube, inputs, config, gated.blast_defined_by, qc, control_note)
    doc["flags"] = (
        gated.flags
        + [{"code": "shared_detector", "message": note} for note in shared.values()]
        + lineage_flags(table, config["b_lineage_markers"])
        + density_flags
    )
    doc["gating"] = gated.description
    doc["display_logicle"] = {m: dict(p) for m, p in display.items()}
    write_json(out["profile"], doc)
    return ProfileResult(sample_id, out["profile"].parent, qc.status, qc.reasons)


@dataclass
class Gated:
    """One tube gated, whichever engine did it: what the later stages and outputs need."""

    masks: dict[str, np.ndarray]  # our populations -> membership over the QC-kept events
    table: pd.DataFrame  # populations.tsv
    gates: list[dict[str, Any]]  # gates.json
    plot: dict[str, np.ndarray]  # the gate/... arrays of plotdata.npz
    blast_defined_by: list[str]
    flags: list[dict[str, str]]
    gatingml: str  # gates.xml: what was applied, as Gating-ML 2.0
    description: dict[str, Any]
    #: The template as placed on this tube (its scale and channels), for its control tubes,
    #: which share the acquisition settings; ``None`` for a lab's gating.
    template: GatingTemplate | None = None


class Gater:
    """Our fitted Gating-ML template, or a lab's own Gating-ML / FlowJo gating (config
    ``lab_gating``), behind one call."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.limit = int(config["report"]["max_plot_events"])
        lab = config.get("lab_gating") or {}
        self.lab: LabGating | None = None
        self.template: GatingTemplate | None = None
        self.role, self.path = self.source(config)
        if self.role == "lab_gating":
            self.lab = LabGating(self.path, lab["populations"], lab.get("sample"))
            self.required: list[str] = []
        else:
            self.template = GatingTemplate(self.path)
            self.required = self.template.required

    @staticmethod
    def source(config: Mapping[str, Any]) -> tuple[str, Path]:
        """The gating file the config names and its audit role: the lab's own gating
        (``lab_gating.file``) when given, else our template."""
        lab = config.get("lab_gating") or {}
        if lab.get("file"):
            return "lab_gating", resolve(lab["file"])
        return "gating_template", resolve(config["gating_template"])

    def gate(
        self, tube: Tube, raw: np.ndarray, data: Mapping[str, np.ndarray], sample_id: str
    ) -> Gated:
        """Gate one tube: ``raw`` are its QC-kept uncompensated events (a lab's gating does
        its own compensation), ``data`` the same events compensated, by marker."""
        if self.lab is not None:
            return self._gate_lab(tube, raw, sample_id)
        return self._gate_template(tube, data, sample_id)

    def masks(
        self,
        tube: Tube,
        raw: np.ndarray,
        data: Mapping[str, np.ndarray],
        sample_id: str,
        template: GatingTemplate | None = None,
    ) -> dict[str, np.ndarray]:
        """Only the population masks (for a control tube), with ``template`` as placed on
        its stained tube (same instrument settings; a control has too few stains to find
        its own landmarks reliably)."""
        if self.lab is not None:
            return self.lab.apply(
                raw, tube.channels, tube.spillover, sample_id, labels=tube.labels,
                markers=tube.markers,
            ).masks  # fmt: skip
        template = template or self.template
        assert template is not None
        require = {m: sign for m, sign in _backbone(self.config).items() if m in data}
        return template.apply(data, sample_id, require=require).masks

    def _gate_template(self, tube: Tube, data: Mapping[str, np.ndarray], sample_id: str) -> Gated:
        assert self.template is not None
        backbone = _backbone(self.config)
        tops = {m: tube.ranges.get(ch, float("nan")) for m, ch in tube.markers.items()}
        template, registration = register(self.template, data, tops, backbone)
        populations = template.apply(data, sample_id, require=backbone)
        compensated = set() if tube.spillover is None else set(tube.spillover.columns)
        rng = np.random.default_rng(PLOT_SEED)
        plot: dict[str, np.ndarray] = {}
        n = populations.n_total
        for gate in populations.gates:
            parent = populations.masks[gate.parent] if gate.parent else np.ones(n, dtype=bool)
            index = np.flatnonzero(parent)
            index = index[_subsample(index.size, self.limit, rng)]
            # transform only the events drawn, not the whole tube
            plot[f"gate/{gate.id}/x"] = template.display(gate.x, data, index).astype(np.float32)
            if gate.y is not None:
                plot[f"gate/{gate.id}/y"] = template.display(gate.y, data, index).astype(np.float32)
            plot[f"gate/{gate.id}/inside"] = populations.masks[gate.id][index]
        return Gated(
            masks=populations.masks,
            table=populations.counts(),
            gates=[gate_to_json(g, populations) for g in populations.gates],
            plot=plot,
            blast_defined_by=populations.defined_by(BLASTS),
            flags=registration.flags + gating_flags(populations, self.config["floors"]),
            gatingml=export_gatingml(template, populations, tube.markers, compensated),
            description={
                "engine": "template",
                "file": str(self.path),
                "fitted": not any(n["code"] == "population_not_found" for n in populations.notes),
                "registration": registration.to_json(),
            },
            template=template,
        )

    def _gate_lab(self, tube: Tube, raw: np.ndarray, sample_id: str) -> Gated:
        lab = self.lab
        assert lab is not None
        result = lab.apply(
            raw, tube.channels, tube.spillover, sample_id, labels=tube.labels, markers=tube.markers
        )
        rng = np.random.default_rng(PLOT_SEED)
        plot: dict[str, np.ndarray] = {}
        n = result.n_total
        for gate in result.gates:
            if gate.get("x") is None:  # boolean gates have no axes to draw
                continue
            parent = result.gate_masks[gate["parent"]] if gate["parent"] else np.ones(n, bool)
            index = np.flatnonzero(parent)
            index = index[_subsample(index.size, self.limit, rng)]
            x, y = result.display(gate["id"])
            plot[f"gate/{gate['id']}/x"] = x[index].astype(np.float32)
            if y is not None:
                plot[f"gate/{gate['id']}/y"] = y[index].astype(np.float32)
            plot[f"gate/{gate['id']}/inside"] = result.gate_masks[gate["id"]][index]
        table = result.populations()
        blasts = int(result.masks[BLASTS].sum())
        flags = floor_flags(blasts, self.config["floors"])
        return Gated(
            masks=result.masks,
            table=table,
            gates=result.gates,
            plot=plot,
            blast_defined_by=result.defined_by.get(BLASTS, []),
            flags=flags,
            gatingml=lab.to_gatingml(),
            description={
                "engine": "lab",
                "kind": lab.kind,
                "file": str(self.path),
                "sample": lab.sample_name,
                "populations": dict(lab.populations),
                "notes": list(result.notes),
                "fitted": False,
            },
        )


def _shared_stains(tube: Tube) -> dict[str, str]:
    """Markers whose only detector carries a stain naming two or more antigens (a dump or
    dual-label channel such as ``CD3/CD19 PE-Cy7``), with the sentence a reviewer reads:
    such a channel measures neither antigen alone, so the antigen counts as not measured."""
    notes = {}
    for channel, markers in tube.shared.items():
        label = tube.labels[tube.channels.index(channel)]
        for marker in markers:
            if marker not in tube.markers:
                notes[marker] = (
                    f"{marker} not measured: its only detector, {channel}, carries '{label}', "
                    "a stain shared with another antigen, which measures neither alone"
                )
    return notes


def _input(role: str, path: str | Path) -> dict[str, Any]:
    """An audit-trail entry: the file and its SHA-256 (``None`` if it cannot be read, or is
    not a regular file: hashing a FIFO or ``/dev/zero`` would never end)."""
    try:
        checksum: str | None = sha256_file(path)
    except (InputFileError, OSError):
        checksum = None
    return {"role": role, "path": str(path), "sha256": checksum}


#: How a one-line message names each input, by audit role (``control:CD22``: "CD22 control").
INPUT_NAMES = {
    "sample": "FCS file",
    "control": "control FCS file",
    "beads": "bead FCS file",
    "gating_template": "gating template",
    "lab_gating": "lab gating file",
    "trial": "trial file",
    "compensation_matrix": "compensation matrix",
}


def _input_problems(
    config: Mapping[str, Any],
    fcs: str | Path,
    control: str | Path | None,
    marker_controls: Mapping[str, str | Path] | None,
    bead_fcs: str | Path | None,
) -> list[str]:
    """One line per input of this sample that exists but cannot be read as a regular file
    (a folder, FIFO, device, symlink loop) or is a gating file over
    :data:`~antigen_profile.inputs.MAX_GATING_BYTES`. Only ``stat`` is called. A missing
    file is left to its reader, which says so as before."""
    files: list[tuple[str, str | Path]] = [("sample", fcs)]
    if control:
        files.append(("control", control))
    files += [(f"control:{m}", p) for m, p in (marker_controls or {}).items() if p]
    beads = bead_fcs or (config.get("calibration") or {}).get("bead_fcs")
    if beads:
        files.append(("beads", resolve(beads)))
    files.append(Gater.source(config))
    files.append(("trial", resolve(config["trial"])))
    matrix = (config.get("compensation") or {}).get("matrix")
    if matrix:
        files.append(("compensation_matrix", resolve(matrix)))
    problems = []
    for role, path in files:
        marker = role.partition(":")[2]
        what = f"{marker} control FCS file" if marker else INPUT_NAMES[role]
        limit = gating_size_limit() if role in ("gating_template", "lab_gating") else None
        try:
            require_regular_file(path, what, max_bytes=limit)
        except InputFileError as exc:
            if exc.problem != NOT_FOUND:
                problems.append(str(exc))
    return problems


def _add_density(
    table: pd.DataFrame,
    blasts: Mapping[str, np.ndarray],
    controls: Mapping[str, Mapping[str, np.ndarray]],
    tube: Tube,
    bead_fcs: str | Path | None,
    config: Mapping[str, Any],
    qc: QCResult,
    inputs: list[dict[str, Any]],
    out: Mapping[str, Path],
) -> list[dict[str, str]]:
    """Antigen density for calibrated channels: ``abc_median``/``abc_q25``/``abc_q75`` and
    ``low_density`` in ``table``, the standard curves in ``calibration.json``; returns flags
    for low densities. Without beads the columns stay empty: no density is better than a
    guessed one."""
    from antigen_profile.calibrate import (
        CalibrationError,
        CalibrationSettings,
        calibrate_file,
        density_fields,
        settings_mismatch,
    )

    cal = config.get("calibration") or {}
    for column in DENSITY_COLUMNS:
        table[column] = None
    beads = bead_fcs or cal.get("bead_fcs")
    curves: dict[str, Any] = {}
    if beads:
        beads = resolve(beads)
        inputs.append(_input("beads", beads))
        settings = CalibrationSettings.from_config(cal)
        for detector, spec in (cal.get("channels") or {}).items():
            try:
                curves[detector] = calibrate_file(
                    beads,
                    detector,
                    spec["lot_values"],
                    settings,
                    model=spec.get("model", settings.model),
                    units=spec.get("units", settings.units),
                )
            except CalibrationError as exc:
                qc.warnings.append(str(exc))
    write_json(out["calibration"], {d: c.to_json() for d, c in curves.items()})
    limits = cal.get("low_density_below") or {}
    flags = []
    for index, row in table.iterrows():
        marker = str(row["marker"])
        curve = curves.get(tube.markers.get(marker, ""))
        if curve is None or marker not in blasts or row["call"] not in MEASURED_CALLS:
            continue
        if not curve.ok:
            table.at[index, "note"] = f"no density: bead curve refused ({curve.reason})"
            continue
        qc.warnings += settings_mismatch(curve, tube.keywords, tube.channels, curve.channel)
        control = controls.get(marker, controls.get(ANY_MARKER, {})).get(marker)
        background = 0.0
        if cal.get("subtract_control", True) and control is not None and control.size:
            background = float(np.median(curve.to_molecules(control)))
        fields = density_fields(curve.to_molecules(blasts[marker]), limits.get(marker), background)
        for key, value in fields.items():
            table.at[index, key] = value
        if fields["low_density"]:
            flags.append(
                {
                    "code": "low_density",
                    "message": f"{marker} median {fields['abc_median']:g} {curve.units} per blast "
                    f"is below the configured {limits[marker]:g} (not a published cut-off)",
                }
            )
    return flags


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


#: Events moved per step by :func:`_kept_events`: a bounded temporary (measured as fast as one
#: boolean-mask copy of the whole tube).
KEEP_BLOCK = 8192


def _kept_events(tube: Tube, keep: np.ndarray) -> np.ndarray:
    """The QC-kept events, which become ``tube.events``: the tube's own array when QC keeps
    every event, else the kept rows moved up over the dropped ones, block by block, so that
    the tube is never held twice (issue 9; ``profile.json`` counts events from QC)."""
    events = tube.events
    n_kept = int(np.count_nonzero(keep))
    if n_kept == events.shape[0]:
        return events
    done = 0
    for first in range(0, events.shape[0], KEEP_BLOCK):
        # a copy, taken before writing: kept rows only ever move towards the start
        rows = events[first : first + KEEP_BLOCK][keep[first : first + KEEP_BLOCK]]
        events[done : done + rows.shape[0]] = rows
        done += rows.shape[0]
    tube.events = events[:n_kept]
    return tube.events


def _control_blasts(
    control: str | Path | None,
    tube: Tube,
    gater: Gater,
    sample_id: str,
    sha256: str | None = None,
    template: GatingTemplate | None = None,
) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The control tube's blasts (same gating, markers mapped through the stained tube's
    detectors), or ``None`` with the reason the internal reference is used instead."""
    if not control:
        return None, None
    try:
        ctube = map_control(read_tube(control, {}, {}, (), sha256=sha256), tube)
        spill = ctube.spillover if ctube.spillover is not None else tube.spillover
        ctube.spillover = spill
        if gater.lab is None:  # only a lab's gating reads uncompensated events
            cevents = compensate_inplace(ctube.events, ctube.channels, spill)
        else:
            cevents = compensate(ctube.events, ctube.channels, spill)
        cdata = _marker_data(ctube, cevents)
        masks = gater.masks(ctube, ctube.events, cdata, f"{sample_id}-control", template)
    except (IngestError, CompensationError, GatingError, LabGatingError) as exc:
        return None, f"control tube not used ({exc}); thresholds from internal negatives"
    mask = masks[BLASTS]
    return {m: cdata[m][mask] for m in cdata}, None


def _references(
    quantified: list[str],
    data: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    blasts: Mapping[str, np.ndarray],
    controls: Mapping[str, Mapping[str, np.ndarray]],
    positivity: PositivitySettings,
    display: Mapping[str, Mapping[str, float]],
) -> dict[str, Reference | None]:
    """Per antigen, the best negative reference with enough events, strongest first: the
    antigen's own control tube (an FMO for that marker), the sample's control tube, the
    configured internal negative population, a two-component mixture on the blasts
    themselves (weakest, on each marker's ``display`` logicle), else none. ``blasts`` holds
    the blasts' values of every quantified marker the tube has (``data`` masked by the blast
    gate)."""
    internal = positivity.internal_negative
    enough = positivity.min_reference_events
    references: dict[str, Reference | None] = {}
    for marker in quantified:
        if marker not in data:
            continue
        candidates: list[tuple[str, np.ndarray]] = []
        for key, source in ((marker, "marker_control:blasts"), (ANY_MARKER, "control:blasts")):
            if marker in controls.get(key, {}):
                candidates.append((source, controls[key][marker]))
        population = internal.get(marker)
        if population and population in masks:
            candidates.append((f"internal:{population}", data[marker][masks[population]]))
        chosen = next((Reference(v, src) for src, v in candidates if v.size >= enough), None)
        if chosen is None and blasts[marker].size >= positivity.quantify_floor:
            chosen = mixture_reference(blasts[marker], display[marker], positivity)
        if chosen is None and candidates:
            chosen = Reference(*reversed(candidates[0]))  # too small: quantify says so
        references[marker] = chosen
    return references


def _antigen_plot_data(
    blasts: Mapping[str, np.ndarray],
    references: Mapping[str, Reference | None],
    table: pd.DataFrame,
    display: Mapping[str, Mapping[str, float]],
    config: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Subsampled antigen intensities in display scale, each marker on its own logicle
    (``display``; see docs/outputs.md, ``plotdata.npz``)."""
    rng = np.random.default_rng(PLOT_SEED + 1)
    limit = int(config["report"]["max_plot_events"])
    arrays: dict[str, np.ndarray] = {}
    thresholds = table.set_index("marker")["threshold"]
    for marker, values in blasts.items():
        params = display[marker]
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
        "events": qc.events_total if tube else None,  # tube.events may be QC-kept ones
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
            "min_reference_events": config["positivity"]["min_reference_events"],
            "intensity": dict(config["positivity"]["intensity"]),
            "confidence": PositivitySettings.from_config(config).confidence,
            "floors": dict(config["floors"]),
            "logicle": dict(config["logicle"]),
            "qc": dict(config["qc"]),
        },
        "software": software_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Audit (issue 7): the file's own identity as written by the cytometer, every stain
        # name, the host, and the resolved configuration whose canonical JSON the "config"
        # input's SHA-256 is taken over (so a reviewer can check it).
        "fcs_keywords": _audit_keywords(tube),
        "stains": dict(zip(tube.channels, tube.labels, strict=True)) if tube else {},
        "host": platform.node(),
        "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
    }


#: FCS TEXT keywords that identify a tube and its acquisition, copied into profile.json.
AUDIT_KEYWORDS = (
    "$FIL", "$CYT", "$CYTSN", "$INST", "$OP", "$SRC", "$SMNO", "$PROJ", "$DATE", "$BTIM", "$ETIM",
)  # fmt: skip


def _audit_keywords(tube: Tube | None) -> dict[str, str]:
    """The identifying TEXT keywords of the tube as written (absent ones left out)."""
    if tube is None:
        return {}
    return {k: str(tube.keywords[k]) for k in AUDIT_KEYWORDS if k in tube.keywords}


def _write_failed(
    sample_id: str,
    fcs: str | Path,
    out: Mapping[str, Path],
    qc: QCResult,
    inputs: list[dict[str, Any]],
    config: Mapping[str, Any],
    tube: Tube | None = None,
) -> ProfileResult:
    """Outputs for a sample that cannot be analysed: header-only tables and the reason."""
    write_tsv(out["populations"], pd.DataFrame(columns=POPULATION_COLUMNS))
    write_tsv(out["antigens"], pd.DataFrame(columns=ANTIGEN_COLUMNS))
    write_tsv(out["coverage"], pd.DataFrame(columns=COVERAGE_COLUMNS))
    write_tsv(out["coexpression"], pd.DataFrame(columns=UPSET_COLUMNS))
    write_json(out["calibration"], {})
    write_tsv(out["positive_controls"], pd.DataFrame(columns=POSITIVE_CONTROL_COLUMNS))
    write_json(out["qc"], qc.to_json(sample_id, str(fcs)))
    write_json(out["gates"], [])
    write_text(out["gatingml"], "")
    write_npz(out["plotdata"], {})
    write_json(out["profile"], _profile_doc(sample_id, tube, inputs, config, [], qc))
    return ProfileResult(sample_id, out["profile"].parent, "fail", qc.reasons)
