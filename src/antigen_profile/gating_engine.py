"""The gating stage: our fitted template, a lab's own gating, or a reviewer's corrected gates,
behind one call.

:class:`Gater` picks the route: a tube's corrected gates (the ``gates`` column of the sample
sheet: its ``gates.xml`` as a reviewer edited it) when given, applied as given; else the
config's (``lab_gating.file`` given: the lab's Gating-ML or FlowJo gating,
:mod:`antigen_profile.lab_gating`; else our template, :mod:`antigen_profile.gating`,
registered to the tube by :mod:`antigen_profile.registration`). Every later stage gets the
same :class:`Gated`: population masks, ``populations.tsv``, ``gates.json``, the gate plots and
``gates.xml``. A control tube is gated the same way (:func:`control_blasts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile.compensate import CompensationError, compensate, compensate_inplace
from antigen_profile.gating import (
    GatingError,
    GatingTemplate,
    export_gatingml,
    floor_flags,
    gate_to_json,
    gating_flags,
)
from antigen_profile.ingest import IngestError, Tube, map_control, marker_data, read_tube
from antigen_profile.lab_gating import LabGating, LabGatingError
from antigen_profile.plotdata import PLOT_SEED, add_gate_arrays
from antigen_profile.registration import register
from antigen_profile.settings import Settings

#: Our population whose antigens are quantified.
BLASTS = "blasts"


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


def backbone(settings: Settings) -> dict[str, str]:
    """Backbone markers the config adds to the blast definition (``blast_definition``)."""
    return dict(settings.blast_require)


#: Audit role of a reviewer's corrected gates (profile.json ``inputs``).
CORRECTED = "corrected_gates"


class Gater:
    """Our fitted Gating-ML template, a lab's own Gating-ML / FlowJo gating (config
    ``lab_gating``), or one tube's gates as a reviewer corrected them (``gates``), behind one
    call.

    A corrected file is our own ``gates.xml`` export edited in FlowJo, FlowKit or any
    Gating-ML editor: it names the tube's detectors and our population ids, so it is read
    like a lab's Gating-ML whose populations are ours, and applied as given (the reviewer
    placed the gates: fitting them again would undo the correction). A file that does not fit
    raises :class:`~antigen_profile.lab_gating.LabGatingError` here or in :meth:`gate`.
    """

    def __init__(self, settings: Settings, gates: str | Path | None = None) -> None:
        self.settings = settings
        self.limit = settings.max_plot_events
        lab = settings.lab_gating
        self.lab: LabGating | None = None
        self.template: GatingTemplate | None = None
        self.role, self.path = self.source(settings, gates)
        self.required: list[str] = []
        if gates is not None:
            self.lab = LabGating(
                self.path, None, what="corrected gates", named_in="the samples.tsv gates column"
            )
        elif lab is not None:
            self.lab = LabGating(self.path, dict(lab.populations), lab.sample)
        else:
            self.template = GatingTemplate(self.path)
            self.required = self.template.required

    @property
    def corrected(self) -> bool:
        """Whether this tube is gated with a reviewer's corrected gates."""
        return self.role == CORRECTED

    @staticmethod
    def source(settings: Settings, gates: str | Path | None = None) -> tuple[str, Path]:
        """The gating file and its audit role: the tube's corrected gates when given, else
        the lab's own gating (``lab_gating.file``), else our template."""
        if gates is not None:
            return CORRECTED, Path(gates)
        if settings.lab_gating is not None:
            return "lab_gating", settings.lab_gating.file
        if settings.gating_template is None:
            raise GatingError("no gating: set gating_template or lab_gating.file in the config")
        return "gating_template", settings.gating_template

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
        require = {m: sign for m, sign in backbone(self.settings).items() if m in data}
        return template.apply(data, sample_id, require=require).masks

    def _gate_template(self, tube: Tube, data: Mapping[str, np.ndarray], sample_id: str) -> Gated:
        assert self.template is not None
        required = backbone(self.settings)
        tops = {m: tube.ranges.get(ch, float("nan")) for m, ch in tube.markers.items()}
        template, registration = register(self.template, data, tops, required)
        populations = template.apply(data, sample_id, require=required)
        compensated = set() if tube.spillover is None else set(tube.spillover.columns)
        rng = np.random.default_rng(PLOT_SEED)
        plot: dict[str, np.ndarray] = {}
        n = populations.n_total
        for gate in populations.gates:

            def draw(index: np.ndarray, gate: Any = gate) -> tuple[np.ndarray, np.ndarray | None]:
                # transform only the events drawn, not the whole tube
                x = template.display(gate.x, data, index)
                return x, None if gate.y is None else template.display(gate.y, data, index)

            parent = populations.masks[gate.parent] if gate.parent else np.ones(n, dtype=bool)
            add_gate_arrays(
                plot, gate.id, parent, populations.masks[gate.id], draw, self.limit, rng
            )
        return Gated(
            masks=populations.masks,
            table=populations.counts(),
            gates=[gate_to_json(g, populations) for g in populations.gates],
            plot=plot,
            blast_defined_by=populations.defined_by(BLASTS),
            flags=registration.flags + gating_flags(populations, self.settings.floors.as_dict()),
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

            def draw(index: np.ndarray, gate_id: str = gate["id"]) -> tuple[Any, Any]:
                x, y = result.display(gate_id)
                return x[index], None if y is None else y[index]

            parent = result.gate_masks[gate["parent"]] if gate["parent"] else np.ones(n, bool)
            inside = result.gate_masks[gate["id"]]
            add_gate_arrays(plot, gate["id"], parent, inside, draw, self.limit, rng)
        blasts = int(result.masks[BLASTS].sum())
        description: dict[str, Any] = {
            "engine": "lab",
            "kind": lab.kind,
            "file": str(self.path),
            "sample": lab.sample_name,
            "populations": dict(lab.populations),
            "notes": list(result.notes),
            "fitted": False,
        }
        if self.corrected:
            description = {
                "engine": "corrected",
                "corrected_by_reviewer": True,
                "kind": lab.kind,
                "file": str(self.path),
                "sha256": lab.sha256,
                "populations": list(lab.populations),
                "notes": list(result.notes),
                "fitted": False,
            }
        return Gated(
            masks=result.masks,
            table=result.populations(),
            gates=result.gates,
            plot=plot,
            blast_defined_by=result.defined_by.get(BLASTS, []),
            flags=floor_flags(blasts, self.settings.floors.as_dict()),
            gatingml=lab.to_gatingml(),
            description=description,
        )


def control_blasts(
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
        cdata = marker_data(ctube, cevents)
        masks = gater.masks(ctube, ctube.events, cdata, f"{sample_id}-control", template)
    except (IngestError, CompensationError, GatingError, LabGatingError) as exc:
        return None, f"control tube not used ({exc}); thresholds from internal negatives"
    mask = masks[BLASTS]
    return {m: cdata[m][mask] for m in cdata}, None


def gate_controls(
    tubes: Sequence[tuple[str, str | Path | None]],
    tube: Tube,
    gater: Gater,
    sample_id: str,
    checksums: Mapping[str, str | None],
    template: GatingTemplate | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], str | None]:
    """The blasts of each control tube that could be gated (``tubes``: key, path; keyed as
    given) and, in one line, why any was not used. ``checksums`` are the tubes' SHA-256 by
    path, already taken for the audit trail (a tube is hashed once)."""
    controls: dict[str, dict[str, np.ndarray]] = {}
    notes: list[str] = []
    for key, path in tubes:
        if not path:
            continue
        checksum = checksums.get(str(path))
        blasts, note = control_blasts(path, tube, gater, sample_id, checksum, template)
        if blasts is not None:
            controls[key] = blasts
        if note:
            notes.append(note)
    return controls, "; ".join(notes) or None
