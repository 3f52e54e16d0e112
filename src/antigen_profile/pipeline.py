"""The per-sample analysis, in order: ingest -> QC -> compensation -> gating -> quantification.

:func:`profile_sample` serves both the Snakemake rule and ``antigen-profile profile``: it runs
:func:`compute_profile` and writes the result with
:func:`~antigen_profile.sample_profile.write_profile` (see docs/outputs.md). This module only
orders the stages; each lives in its own module (:mod:`~antigen_profile.ingest`,
:mod:`~antigen_profile.qc`, :mod:`~antigen_profile.gating_engine`,
:mod:`~antigen_profile.references`, :mod:`~antigen_profile.quantify`,
:mod:`~antigen_profile.density`, :mod:`~antigen_profile.coverage`,
:mod:`~antigen_profile.plotdata`, :mod:`~antigen_profile.provenance`). A tube that cannot be
read, or that fails QC, still gets its outputs, marked as failed with the reason, so the rest
of a cohort is never held up by one bad file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antigen_profile.compensate import CompensationError, compensate, compensate_inplace
from antigen_profile.config import resolve
from antigen_profile.coverage import (
    coverage_table,
    positive_matrix,
    thresholds_from_references,
    upset_data,
)
from antigen_profile.density import add_density
from antigen_profile.gating import GatingError
from antigen_profile.gating_engine import BLASTS, Gated, Gater, gate_controls
from antigen_profile.ingest import (
    IngestError,
    Tube,
    marker_data,
    panel_problem,
    read_tube,
    shared_stain_notes,
)
from antigen_profile.lab_gating import LabGatingError
from antigen_profile.mimics import exclude_lookalikes, screen_gate, screen_markers
from antigen_profile.outputs import PROFILE_FILES, sample_paths
from antigen_profile.plotdata import antigen_plot_data, mimic_plot_data
from antigen_profile.populations import kept
from antigen_profile.provenance import (
    audit_entry,
    audit_inputs,
    input_problems,
    profile_document,
)
from antigen_profile.qc import (
    QCResult,
    check_acquisition,
    compensation_warnings,
    failed_qc,
    gating_shares,
    gating_warnings,
    keep_events,
    negative_pileups,
)
from antigen_profile.quantify import (
    antigen_table,
    lineage_flags,
    measured_thresholds,
    positive_controls,
)
from antigen_profile.references import ANY_MARKER, choose_references
from antigen_profile.sample_profile import SampleProfile, write_profile
from antigen_profile.settings import Settings, as_settings
from antigen_profile.transforms import display_logicle
from antigen_profile.trial import load_trial


@dataclass
class ProfileResult:
    """What :func:`profile_sample` wrote, for callers that want a summary."""

    sample_id: str
    out_dir: Path
    qc_status: str
    reasons: list[str]


def profile_sample(
    sample_id: str,
    fcs: str | Path,
    out_dir: str | Path | Mapping[str, str | Path],
    config: Settings | Mapping[str, Any],
    control: str | Path | None = None,
    marker_controls: Mapping[str, str | Path] | None = None,
    bead_fcs: str | Path | None = None,
    gates: str | Path | None = None,
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
    gates : path, optional
        This tube's gates as a reviewer corrected them (its ``gates.xml``, edited and saved
        as Gating-ML 2.0; the sheet's ``gates`` column): applied as given instead of the
        configured gating. A file that does not fit the tube fails this tube, with the reason.
    out_dir : path or mapping
        ``results/{sample_id}`` (each file under its name in
        :data:`~antigen_profile.outputs.PROFILE_FILES`), or those keys mapped to the paths a
        Snakemake rule declared.
    config : Settings or mapping
        The run's :class:`~antigen_profile.settings.Settings`, or the validated
        configuration they are built from.
    """
    out = sample_paths(out_dir, tuple(PROFILE_FILES))  # a rule's paths, checked first
    settings = as_settings(config)
    profile = compute_profile(sample_id, fcs, settings, control, marker_controls, bead_fcs, gates)
    write_profile(profile, out)
    return ProfileResult(sample_id, out["profile"].parent, profile.status, profile.qc.reasons)


def compute_profile(
    sample_id: str,
    fcs: str | Path,
    settings: Settings,
    control: str | Path | None = None,
    marker_controls: Mapping[str, str | Path] | None = None,
    bead_fcs: str | Path | None = None,
    gates: str | Path | None = None,
) -> SampleProfile:
    """The profile of one sample (arguments as :func:`profile_sample`), failed with its
    reason where a stage refuses the tube; nothing is written."""
    # Every input is checked before anything reads or hashes it (a FIFO or /dev/zero would
    # hang the job); one that is not a regular file fails this sample only (issue 14).
    gating_file = Gater.source(settings, gates)
    problems = input_problems(settings, fcs, control, marker_controls, bead_fcs, gating_file)
    inputs = audit_inputs(settings, fcs, control, marker_controls, gating_file)

    def failed(qc: QCResult, tube: Tube | None = None) -> SampleProfile:
        document = profile_document(sample_id, tube, inputs, settings, [], qc)
        return SampleProfile.failed_sample(sample_id, fcs, qc, document)

    if problems:
        refused = failed_qc(problems[0], kind="unreadable")
        refused.reasons += problems[1:]
        return failed(refused)
    gater, refused = _gater(settings, gates, sample_id)
    markers, scatter = settings.markers, settings.scatter
    try:
        tube = read_tube(
            fcs, markers, scatter, (), settings.compensation_matrix, sha256=inputs[0]["sha256"]
        )
    except IngestError as exc:
        return failed(failed_qc(str(exc)))
    problem = panel_problem(tube, gater.required if gater else [], markers, scatter)
    if problem:  # read, but its panel cannot be gated: the report still shows what it holds
        return failed(failed_qc(problem, events=tube.n_events, kind="panel"), tube)
    qc_settings = settings.qc
    qc = check_acquisition(tube, qc_settings)
    if qc.status == "fail":
        return failed(qc, tube)
    if gater is None:  # corrected gates that do not fit: this tube fails, the cohort runs
        qc.fail(refused or "")
        return failed(qc, tube)
    # From here tube.events are the QC-kept events (no copy when QC keeps them all), and only a
    # lab's gating reads them uncompensated: otherwise they are compensated in place, so the
    # tube is held in memory once (issue 9).
    raw = keep_events(tube, qc.keep)
    try:
        if gater.lab is None:
            events = compensate_inplace(raw, tube.channels, tube.spillover)
        else:
            events = compensate(raw, tube.channels, tube.spillover)
    except CompensationError as exc:
        qc.fail(f"{fcs}: {exc}; give a valid matrix in config `compensation.matrix`")
        return failed(qc, tube)
    if tube.spillover is not None:  # negative pile-ups point at a wrong spillover matrix
        detectors = [str(c) for c in tube.spillover.columns]
        pileups = negative_pileups(events, tube.channels, detectors, qc_settings)
        qc.add_findings("compensation", pileups, compensation_warnings(pileups, qc_settings))
    data = marker_data(tube, events)
    try:
        gated = gater.gate(tube, raw, data, sample_id)  # raw: read by a lab's gating only
    except (GatingError, LabGatingError) as exc:
        qc.fail(str(exc))
        return failed(qc, tube)
    shares = gating_shares(gated.table)  # debris and doublets: QC itself never gates
    qc.add_findings("gating", shares, gating_warnings(shares, qc_settings))
    checksums = {i["path"]: i["sha256"] for i in inputs}
    tubes = [(ANY_MARKER, control), *(marker_controls or {}).items()]
    controls, control_note = gate_controls(tubes, tube, gater, sample_id, checksums, gated.template)
    if control_note:
        qc.warnings.append(control_note)
        qc.status = "warn" if qc.status == "pass" else qc.status
    return _quantify(
        sample_id, fcs, settings, tube, data, gated, controls, control_note, qc, inputs, bead_fcs
    )


def _gater(
    settings: Settings, gates: str | Path | None, sample_id: str
) -> tuple[Gater | None, str | None]:
    """The tube's :class:`Gater`, or (corrected gates that cannot be read as ours) ``None``
    and the one-line reason naming the sample, the file and the fix. The tube is still read
    and checked, so its report shows what it holds; only the configured gating's own errors
    propagate (they are the run's, not the tube's)."""
    try:
        return Gater(settings, gates), None
    except LabGatingError as exc:
        if gates is None:
            raise
        text = str(exc)
        return None, text if text.startswith(f"{sample_id}: ") else f"{sample_id}: {text}"


def _quantify(
    sample_id: str,
    fcs: str | Path,
    settings: Settings,
    tube: Tube,
    data: Mapping[str, np.ndarray],
    gated: Gated,
    controls: Mapping[str, Mapping[str, np.ndarray]],
    control_note: str | None,
    qc: QCResult,
    inputs: list[dict[str, Any]],
    bead_fcs: str | Path | None,
) -> SampleProfile:
    """Thresholds, calls, density and coverage on the gated blasts, and the profile that
    holds them."""
    positivity = settings.positivity
    quantified = list(settings.quantified)
    blast_mask = gated.masks[BLASTS]
    # each marker's blast events are taken out once (through the gate's indices) and shared
    # by quantification, the look-alike screen and the plots
    index = np.flatnonzero(blast_mask)
    taken = {m: data[m].take(index) for m in _gate_markers(settings, quantified) if m in data}
    del index
    blasts = {m: taken[m] for m in quantified if m in data}
    display = {
        m: display_logicle(settings.logicle, data[m], tube.ranges.get(tube.markers[m], np.nan))
        for m in blasts
    }
    internal: dict[tuple[str, str], np.ndarray] = {}  # the same for both choices below
    references = choose_references(
        quantified, data, gated.masks, blasts, controls, positivity, display, internal
    )
    shared = shared_stain_notes(tube)
    # Normal look-alikes in the gate (issue 17): basophils and pDCs leave the blasts before
    # the numbers are final; a hematogone-like continuum or too few blasts is flagged. The
    # screen reads the thresholds antigens.tsv would be called on, not the table itself.
    thresholds = measured_thresholds(blasts, references, positivity, quantified)
    found = screen_gate(data, gated, thresholds, positivity.percentile, settings, taken)
    # the look-alike plot draws the gate's events as screened: drawn now, so that the gate's
    # CD34 and CD123 events are not held to the end
    gate = {m: taken[m] for m in ("CD34", "CD123") if m in data}
    limit = settings.max_plot_events
    mimic_plot = mimic_plot_data(
        gate, found.keep, _gate_display(settings, tube, data, display, gate), limit
    )
    del taken, gate
    if found.excluded:
        exclude_lookalikes(gated, found)
        dropped = np.flatnonzero(~found.keep)
        for m in blasts:  # one marker at a time: the gate's arrays are not held twice
            blasts[m] = kept(blasts[m], found.keep, dropped)
        references = choose_references(
            quantified, data, gated.masks, blasts, controls, positivity, display, internal
        )
    table = antigen_table(
        sample_id, blasts, references, positivity, quantified, not_measured=shared
    )
    thresholds = thresholds_from_references(table, references, positivity.percentile)
    beads = resolve(bead_fcs) if bead_fcs else settings.bead_fcs
    if beads:
        inputs.append(audit_entry("beads", beads))
    density_flags, calibration = add_density(
        table, blasts, controls, tube, beads, settings.calibration, qc
    )
    positive = positive_matrix(blasts, thresholds, load_trial(settings.trial).targets)
    doc = profile_document(
        sample_id, tube, inputs, settings, gated.blast_defined_by, qc, control_note
    )
    doc["flags"] = (
        gated.flags
        + [{"code": "shared_detector", "message": note} for note in shared.values()]
        + lineage_flags(table, list(settings.b_lineage_markers))
        + found.flags
        + density_flags
    )
    doc["blast_mimics"] = found.summary
    doc["gating"] = gated.description
    doc["display_logicle"] = {m: dict(p) for m, p in display.items()}
    return SampleProfile(
        sample_id,
        str(fcs),
        qc,
        doc,
        populations=gated.table,
        antigens=table,
        coverage=coverage_table(positive, sample_id, positivity.confidence),
        coexpression=upset_data(positive),
        positive_controls=positive_controls(
            data, gated.masks, thresholds, settings.positive_controls
        ),
        calibration=calibration,
        gates=gated.gates,
        gatingml=gated.gatingml,
        plotdata={
            **gated.plot,
            **antigen_plot_data(blasts, references, table, display, limit),
            **mimic_plot,
        },
    )


def _gate_markers(settings: Settings, quantified: list[str]) -> list[str]:
    """Markers whose blast-gate events the quantification, the look-alike screen and its
    plot read."""
    wanted = [*quantified, *screen_markers(settings), "CD34", "CD123"]
    return list(dict.fromkeys(wanted))


def _gate_display(
    settings: Settings,
    tube: Tube,
    data: Mapping[str, np.ndarray],
    display: Mapping[str, Mapping[str, float]],
    gate: Mapping[str, np.ndarray],
) -> dict[str, Mapping[str, float]]:
    """The logicle of each marker of the look-alike plot (CD34, CD123): a quantified one's
    own, CD34's computed only when the plot is drawn (both markers in the tube)."""
    if not {"CD34", "CD123"} <= set(gate):
        return {}
    return {
        m: display.get(m)
        or display_logicle(settings.logicle, data[m], tube.ranges.get(tube.markers[m], np.nan))
        for m in gate
    }
