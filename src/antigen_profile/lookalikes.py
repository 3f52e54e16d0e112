"""Marrows whose blast gate holds normal look-alikes, with known per-event truth (issue 17).

The blast gate (CD45 dim, SSC low) also holds normal cells (domain brief, "Normal cells that
look like blasts"): basophils and plasmacytoid dendritic cells (pDCs) carry CD123 brightly, and
normal B progenitors (hematogones) regenerate after chemotherapy and CAR-T as a maturation
continuum; after CD19 CAR-T their CD34+CD19-CD22+ early stages look like CD19-negative blasts.
Whether the workflow ever recommends a CAR-T target on such cells can only be checked against
marrows whose every event is known, so this module writes them with the demo's machinery
(:mod:`antigen_profile.simulate`, left unchanged: the demo tubes keep their bytes):

- **The look-alikes** (:func:`basophils`, :func:`pdcs`, :func:`myeloid_progenitors`,
  :func:`hematogones`) carry the phenotypes of the domain brief, with intensities set against
  the demo's own populations (blasts CD45 ~700, lymphocytes CD45 25,000 and SSC 20,000).
- **Hematogones are a continuum**: :data:`HEMATOGONE_STAGES` sub-populations at maturation
  positions ``t`` = 0 (stage I) .. 1 (stage III), each marker's median interpolated on a log
  scale between anchors (:data:`HEMATOGONE_FOLDS`), neighbouring stages closer than two log
  spreads (so no gap opens between them). In the per-event truth every stage carries the one
  label :data:`HEMATOGONES` (``Truth.mask("hematogones")`` selects them all); the stage of
  each event is stored beside it (``hematogone_stage`` in the ``.truth.npz``).
- **Scenarios** (:data:`LOOKALIKE_MARROWS`): a regenerating marrow after CD19 CAR-T without
  leukaemia, CD123-negative blasts at 3% and at 30% of leukocytes, and CD123-positive blasts at
  30%, each with basophils, pDCs and CD34+ myeloid progenitors (0.5% of leukocytes, as in any
  marrow). Each is a stained tube and its control tube (the same cells, quantified antigens
  unstained, no ``$PnS`` labels, as the demo's controls).

Files (``out_dir`` as the demo's): ``fcs/{scenario}.fcs``, ``fcs/{scenario}.truth.npz``, the
same for ``{scenario}_control``, and ``lookalikes/{scenario}/truth.json``: population counts,
the true blasts and their share of leukocytes, the true % positive of every antigen on the
true blasts (undefined without blasts, and said so), the look-alikes' share of a naive blast
gate, the eligible targets and the decision the workflow should reach (``antigen_status``
``no_leukaemic_blasts`` is the truth's word for a marrow without leukaemia, not one
decision.json uses; its decision is ``needs_review``). Deterministic: every tube is seeded
from its name (crc32), the same bytes on every run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from antigen_profile.files import atomic_write
from antigen_profile.paths import repo_path
from antigen_profile.sheets import PATIENT_COLUMNS
from antigen_profile.simulate import (
    BACKGROUND,
    CONTROL_EVENTS,
    DEBRIS_SHARE,
    DEMO_PANEL,
    DEMO_SPILLOVER,
    DOUBLET_SHARE,
    QUANTIFIED,
    QUANTIFY_FLOOR,
    SAMPLE_COLUMNS,
    STAINED_EVENTS,
    DemoSample,
    Expression,
    Lognormal,
    Patient,
    Population,
    Truth,
    TubeSpec,
    _call,
    _decision,
    _fold,
    _p01_like,
    _tube_summary,
    expected_calls,
    patient_row,
    sample_row,
    simulate_events,
    tsv_bytes,
    write_tube_files,
)
from antigen_profile.trial import Trial, load_trial

__all__ = [
    "BASOPHILS",
    "HEMATOGONES",
    "HEMATOGONE_FOLDS",
    "HEMATOGONE_STAGES",
    "LOOKALIKE_MARROWS",
    "LOOKALIKE_POPULATIONS",
    "MYELOID_PROGENITORS",
    "PDCS",
    "LookalikeFiles",
    "LookalikeMarrow",
    "basophils",
    "hematogone_stage",
    "hematogones",
    "load_stages",
    "lookalike_marrow",
    "lookalike_names",
    "lookalike_patient_rows",
    "lookalike_sample_rows",
    "lookalike_truth",
    "lookalike_tube_events",
    "lookalike_tube_spec",
    "myeloid_progenitors",
    "pdcs",
    "stage_positions",
    "write_lookalike_marrow",
    "write_lookalike_sheets",
    "write_lookalike_tube",
]

#: Truth labels of the normal look-alikes (population names in ``Truth``).
BASOPHILS = "basophils"
PDCS = "pdcs"
HEMATOGONES = "hematogones"
MYELOID_PROGENITORS = "myeloid_progenitors"
LOOKALIKE_POPULATIONS: tuple[str, ...] = (BASOPHILS, PDCS, HEMATOGONES, MYELOID_PROGENITORS)
#: A hematogone stage's population name is ``hematogones:NN``; the truth keeps the label only.
STAGE_SEPARATOR = ":"
#: Sub-populations along the maturation axis: with :data:`HEMATOGONE_SIGMA` neighbouring
#: stages' medians stay within two log spreads of each other (a unimodal pair, no gap).
HEMATOGONE_STAGES = 16
HEMATOGONE_SIGMA = 0.4
#: A stage whose interpolated stain is below this many background medians does not carry the
#: marker (no stain drawn): its signal would hide in the autofluorescence anyway.
NEGATIVE_FOLD = 0.5
#: Maturation anchors per marker: (t, stain as x the background median), interpolated on a
#: log scale. Stage I (t = 0): CD34 bright, CD10 bright, CD20-, CD22 dim, CD19+; stage II
#: (t ~ 0.5): CD34-, CD10+, CD20 rising, CD22+; stage III (t = 1): CD10 dim to negative, CD20
#: bright. CD38 bright throughout, brighter than the demo's blasts (12-15x) and lymphocytes
#: (10x). Source: domain brief ("Hematogones"); McKenna et al., Blood 2001.
HEMATOGONE_FOLDS: Mapping[str, tuple[tuple[float, float], ...]] = {
    "CD34": ((0.0, 30.0), (0.45, 0.3), (1.0, 0.1)),
    "CD10": ((0.0, 60.0), (0.45, 30.0), (0.8, 6.0), (1.0, 0.8)),
    "CD20": ((0.0, 0.05), (0.25, 0.3), (0.6, 8.0), (1.0, 50.0)),
    "CD22": ((0.0, 6.0), (0.5, 15.0), (1.0, 30.0)),
    "CD19": ((0.0, 25.0), (1.0, 25.0)),
    "CD38": ((0.0, 40.0), (1.0, 30.0)),
}
#: CD45 stain (linear units, as the demo's populations): dim at stage I (about twice the
#: blasts'), moderate to bright at stage III (towards the lymphocytes' 25,000).
HEMATOGONE_CD45: tuple[tuple[float, float], ...] = ((0.0, 1500.0), (0.4, 3000.0), (1.0, 15000.0))
#: Forward scatter: small, lymphocyte-like (the demo's lymphocytes: 60,000), early stages a
#: little larger; side scatter low, at the lymphocytes' (20,000).
HEMATOGONE_FSC: tuple[tuple[float, float], ...] = ((0.0, 68000.0), (1.0, 58000.0))
HEMATOGONE_SSC = Lognormal(18000.0, 0.2)
#: A naive blast gate (CD45 dim, SSC low) holds a hematogone stage whose CD45 median is under
#: the geometric mean of the blasts' (700) and the lymphocytes' (25,000) CD45: later stages sit
#: with the lymphocytes.
BLAST_REGION_CD45 = float(np.sqrt(700.0 * 25000.0))
#: Under this share of leukocytes, blasts without an aberrant phenotype cannot be told from
#: the normal cells of the gate (domain brief: "under about 5% of leukocytes"; config
#: blast_mimics.low_blast_share): the workflow must send the sample to review.
LOW_BLAST_PCT = 5.0
#: The trial whose targets and cut-offs the truth uses (as :mod:`~antigen_profile.split_panel`).
DEFAULT_TRIAL = "config/trials/4scar.yaml"
#: Where a scenario's truth.json goes under ``out_dir``.
TRUTH_DIR = "lookalikes"
#: Why the regenerating marrow needs review (the truth's expected reason).
NO_LEUKAEMIA_REASON = "hematogone-like maturation continuum, no leukaemic cluster"


# --------------------------------------------------------------------------------------------
# Look-alike populations
# --------------------------------------------------------------------------------------------


def basophils(share: float) -> Population:
    """Basophils: CD123 very bright (~45x background), CD45 dim (a little brighter than the
    blasts), SSC below the lymphocytes', FSC lymphocyte-like, CD34-, CD38 moderate, CD22 dim on
    some; HLA-DR negative (not in the panel). Source: domain brief; CD22 on basophils: Toba et
    al., Cytometry 1999."""
    return Population(
        BASOPHILS,
        share,
        Lognormal(62000.0, 0.1),
        Lognormal(16000.0, 0.2),
        {
            "CD45": Expression(1.0, 1200.0, 0.25),
            "CD123": _fold(1.0, 45.0, 0.3),
            "CD38": _fold(0.95, 10.0, 0.3),
            "CD22": _fold(0.4, 4.0),
        },
    )


def pdcs(share: float) -> Population:
    """Plasmacytoid dendritic cells: CD123 very bright (~60x), CD45 dim to moderate, SSC low
    (about the lymphocytes'), a little larger than lymphocytes, CD34-, CD38+, CD22 negative to
    dim; HLA-DR bright and CD4+ (not in the panel). Source: domain brief."""
    return Population(
        PDCS,
        share,
        Lognormal(72000.0, 0.1),
        Lognormal(21000.0, 0.2),
        {
            "CD45": Expression(1.0, 3000.0, 0.3),
            "CD123": _fold(1.0, 60.0, 0.3),
            "CD38": _fold(0.9, 12.0, 0.3),
            "CD22": _fold(0.1, 3.0),
        },
    )


def myeloid_progenitors(share: float) -> Population:
    """Normal CD34+ myeloid progenitors at the gate's edge: CD34+, CD38+, CD123 dim on most
    (common myeloid and granulocyte-monocyte progenitors), CD45 dim, SSC a little above the
    blasts', no B-lineage antigen. Source: domain brief (CD123 off-tumour: progenitors)."""
    return Population(
        MYELOID_PROGENITORS,
        share,
        Lognormal(85000.0, 0.1),
        Lognormal(34000.0, 0.2),
        {
            "CD45": Expression(1.0, 1500.0, 0.3),
            "CD34": _fold(0.95, 25.0),
            "CD38": _fold(0.95, 12.0),
            "CD123": _fold(0.6, 6.0),
        },
    )


def stage_positions(stages: int = HEMATOGONE_STAGES) -> np.ndarray:
    """Maturation positions of the hematogone stages, evenly from 0 (stage I) to 1 (stage
    III)."""
    return np.linspace(0.0, 1.0, stages)


def _log_interp(t: float, anchors: Sequence[tuple[float, float]]) -> float:
    """A marker's level at maturation ``t``, interpolated between anchors on a log scale
    (intensities change by factors along maturation)."""
    at, level = zip(*anchors, strict=True)
    return float(np.exp(np.interp(t, at, np.log(level))))


def hematogone_stage(t: float, share: float, index: int, cd19: bool = True) -> Population:
    """The hematogones at maturation position ``t`` (0 stage I .. 1 stage III), named
    ``hematogones:NN`` (``index``). ``cd19=False``: CD19 negative, as the CD34+CD19-CD22+
    progenitors that expand after CD19 CAR-T (Blood 2022)."""
    markers: dict[str, Expression] = {
        "CD45": Expression(1.0, _log_interp(t, HEMATOGONE_CD45), HEMATOGONE_SIGMA)
    }
    for marker, anchors in HEMATOGONE_FOLDS.items():
        fold = _log_interp(t, anchors)
        if (marker == "CD19" and not cd19) or fold < NEGATIVE_FOLD:
            continue
        markers[marker] = _fold(1.0, fold, HEMATOGONE_SIGMA)
    return Population(
        f"{HEMATOGONES}{STAGE_SEPARATOR}{index:02d}",
        share,
        Lognormal(_log_interp(t, HEMATOGONE_FSC), 0.1),
        HEMATOGONE_SSC,
        markers,
    )


def hematogones(
    share: float, cd19: bool = True, stages: int = HEMATOGONE_STAGES
) -> tuple[Population, ...]:
    """The hematogone continuum: ``stages`` sub-populations sharing ``share`` equally (no
    stage dominates, so the continuum has no gap; in real marrows stage II is the largest)."""
    return tuple(
        hematogone_stage(float(t), share / stages, k, cd19)
        for k, t in enumerate(stage_positions(stages))
    )


def _label(name: str) -> str:
    """A population's truth label: a hematogone stage's is :data:`HEMATOGONES`."""
    return name.split(STAGE_SEPARATOR, 1)[0]


def _stage(name: str) -> int:
    """A hematogone stage's index (-1: not a stage)."""
    head, _, tail = name.partition(STAGE_SEPARATOR)
    return int(tail) if head == HEMATOGONES and tail else -1


def _labelled(truth: Truth) -> tuple[Truth, np.ndarray]:
    """``truth`` with the hematogone stages merged under one label (so ``mask`` and ``counts``
    treat them as one population), and each event's stage (-1: not a hematogone)."""
    names = truth.population_names
    labels = tuple(dict.fromkeys(_label(n) for n in names))
    code = np.array([labels.index(_label(n)) for n in names], dtype=np.int16)
    stage = np.array([_stage(n) for n in names], dtype=np.int16)
    merged = replace(
        truth,
        population=code[truth.population],
        population_names=labels,
        nucleated=tuple(dict.fromkeys(_label(n) for n in truth.nucleated)),
    )
    return merged, stage[truth.population]


def load_stages(path: str | Path) -> np.ndarray:
    """Each event's hematogone stage (-1: not a hematogone) from a ``.truth.npz`` written by
    :func:`write_lookalike_tube` (:func:`antigen_profile.simulate.load_truth` reads the
    rest)."""
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["hematogone_stage"])


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


#: The blasts' CD45, side and forward scatter unless a marrow says otherwise (the demo's).
BLAST_CD45 = Lognormal(700.0, 0.35)
BLAST_SSC = Lognormal(28000.0, 0.2)
BLAST_FSC = Lognormal(80000.0, 0.1)


@dataclass(frozen=True)
class LookalikeMarrow:
    """One marrow: its patient, the scenario it tests, its leukaemia (``blast_pct`` of
    leukocytes, ``blast_markers`` as :class:`~antigen_profile.simulate.DemoSample`'s; 0: none)
    and its normal look-alikes, each in % of leukocytes. ``never_recommend`` names the targets
    the workflow must not recommend whatever else it finds; ``expected_reason`` is why the
    truth's decision is review (empty: it is not)."""

    sample_id: str
    patient_id: str
    scenario: str
    patient: Patient
    clinical_status: str
    blast_pct: float
    blast_markers: Mapping[str, Expression]
    basophil_pct: float
    pdc_pct: float
    hematogone_pct: float = 0.0
    hematogone_cd19: bool = True
    myeloid_pct: float = 0.5
    never_recommend: tuple[str, ...] = ()
    blast_cd45: Lognormal = BLAST_CD45
    blast_ssc: Lognormal = BLAST_SSC
    blast_fsc: Lognormal = BLAST_FSC
    lymphocyte_share: float = 0.45
    monocyte_share: float = 0.12
    timepoint: str = "relapse"
    expected_reason: str = ""

    def lookalike_pct(self) -> float:
        """The look-alikes' share of leukocytes, in percent."""
        return self.basophil_pct + self.pdc_pct + self.hematogone_pct + self.myeloid_pct

    def populations(self) -> tuple[Population, ...]:
        """The stained tube's populations: the demo's debris, doublets, lymphocytes, monocytes
        and granulocytes (:meth:`DemoSample.populations`, the gate's cells taken from their
        share), the blasts (when any) and the look-alikes."""
        gate_pct = self.blast_pct + self.lookalike_pct()
        demo = DemoSample(
            self.sample_id,
            self.patient_id,
            self.scenario,
            self.patient,
            self.clinical_status,
            gate_pct,
            self.blast_markers,
            self.blast_cd45,
            self.blast_ssc,
            self.blast_fsc,
            self.lymphocyte_share,
            self.monocyte_share,
            self.timepoint,
        ).populations()
        per_pct = (1.0 - DEBRIS_SHARE - DOUBLET_SHARE) / 100.0  # events share per % leukocytes
        cells: list[Population] = []
        for pop in demo:
            if pop.name != "blasts":
                cells.append(pop)
                continue
            if self.blast_pct > 0:
                cells.append(replace(pop, share=per_pct * self.blast_pct))
            cells += [
                basophils(per_pct * self.basophil_pct),
                pdcs(per_pct * self.pdc_pct),
                myeloid_progenitors(per_pct * self.myeloid_pct),
            ]
            if self.hematogone_pct > 0:
                cells += hematogones(per_pct * self.hematogone_pct, self.hematogone_cd19)
        return tuple(cells)


def _eligible(age: float, kps: int, hgb: float, life: float) -> Patient:
    return Patient(age, kps, hgb, life, prior_anti_cd19=True)


#: P04's CD123-positive blasts (75%), CD38 60%, partial CD19 (55%), CD22 10%.
_P04_LIKE: Mapping[str, Expression] = {
    "CD19": _fold(0.55, 25.0),
    "CD34": _fold(0.95, 30.0),
    "CD123": _fold(0.75, 20.0),
    "CD38": _fold(0.60, 15.0),
    "CD22": _fold(0.10, 15.0),
}

#: The look-alike marrows: one per way normal cells can decide a target.
LOOKALIKE_MARROWS: tuple[LookalikeMarrow, ...] = (
    LookalikeMarrow(
        "regenerating",
        "L01",
        "regenerating marrow after CD19 CAR-T without leukaemia: hematogones 6% of leukocytes "
        "(CD19-negative, CD34+CD22+ early stages), basophils 0.7%, pDCs 0.3%: never a "
        "candidate",
        _eligible(9, 90, 98, 12),
        "eligible",
        0.0,
        {},
        basophil_pct=0.7,
        pdc_pct=0.3,
        hematogone_pct=6.0,
        hematogone_cd19=False,
        never_recommend=("CD22", "CD123", "CD38", "CD10", "CD20"),
        timepoint="post-CAR",
        expected_reason=NO_LEUKAEMIA_REASON,
    ),
    LookalikeMarrow(
        "low_cd123_negative",
        "L02",
        "3% CD123-negative P01-like blasts (CD19-, CD22 bright) with basophils 1.0% and pDCs "
        "0.4% of leukocytes: CD123 is not a target",
        _eligible(14, 90, 96, 8),
        "eligible",
        3.0,
        _p01_like(),
        basophil_pct=1.0,
        pdc_pct=0.4,
        never_recommend=("CD123",),
    ),
    LookalikeMarrow(
        "high_cd123_negative",
        "L03",
        "30% CD123-negative P01-like blasts with basophils 1.0% and pDCs 0.4%: gates must "
        "still fit, CD123 is not a target",
        _eligible(22, 90, 101, 9),
        "eligible",
        30.0,
        _p01_like(),
        basophil_pct=1.0,
        pdc_pct=0.4,
        never_recommend=("CD123",),
    ),
    LookalikeMarrow(
        "high_cd123_positive",
        "L04",
        "30% CD123-positive P04-like blasts (CD123 75%) with basophils 1.0% and pDCs 0.4%: "
        "CD123 is a target",
        _eligible(41, 90, 90, 6),
        "eligible",
        30.0,
        _P04_LIKE,
        basophil_pct=1.0,
        pdc_pct=0.4,
        blast_cd45=Lognormal(900.0, 0.35),
        blast_ssc=Lognormal(35000.0, 0.2),
    ),
)


def lookalike_marrow(name: str) -> LookalikeMarrow:
    """The marrow of a scenario or of one of its tubes (``{scenario}_control``); KeyError when
    there is none."""
    sample_id = name.removesuffix("_control")
    for marrow in LOOKALIKE_MARROWS:
        if marrow.sample_id == sample_id:
            return marrow
    raise KeyError(f"no look-alike marrow {sample_id!r}")


def lookalike_names() -> list[str]:
    """Every look-alike FCS file stem: each stained tube followed by its ``_control`` tube."""
    return [n for m in LOOKALIKE_MARROWS for n in (m.sample_id, f"{m.sample_id}_control")]


def lookalike_tube_spec(name: str) -> tuple[TubeSpec, int]:
    """The :class:`TubeSpec` and event count of one tube: the demo panel, spillover and
    background; a ``_control`` tube has the quantified antigens unstained (CD45, CD34 stained)
    and no ``$PnS`` labels, as the demo's."""
    marrow = lookalike_marrow(name)
    spec = TubeSpec(
        channels=DEMO_PANEL,
        populations=marrow.populations(),
        spillover=DEMO_SPILLOVER,
        background=BACKGROUND,
    )
    if name.endswith("_control"):
        return spec.unstained(QUANTIFIED), CONTROL_EVENTS
    return spec, STAINED_EVENTS


def lookalike_tube_events(name: str) -> tuple[np.ndarray, Truth, np.ndarray]:
    """One tube in memory, seeded from its name (crc32): the events, their truth (hematogone
    stages under one label) and each event's hematogone stage (-1: not a hematogone)."""
    spec, n = lookalike_tube_spec(name)
    events, truth = simulate_events(spec, n, np.random.default_rng(zlib.crc32(name.encode())))
    merged, stage = _labelled(truth)
    return events, merged, stage


def write_lookalike_tube(name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/fcs/{name}.fcs`` and its truth ``out_dir/fcs/{name}.truth.npz`` (the
    demo's arrays plus ``hematogone_stage`` and ``hematogone_t``); returns the FCS path."""
    spec, _ = lookalike_tube_spec(name)
    events, truth, stage = lookalike_tube_events(name)
    arrays = {
        **truth.to_arrays(),
        "hematogone_stage": stage.astype(np.int16),
        "hematogone_t": stage_positions().astype(np.float32),
    }
    return write_tube_files(spec, events, arrays, out_dir, name)


# --------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------


def _trial(trial: Trial | str | Path | None) -> Trial:
    if isinstance(trial, Trial):
        return trial
    return load_trial(trial if trial is not None else repo_path(DEFAULT_TRIAL))


def _blast_antigens(truth: Truth, spec: TubeSpec) -> dict[str, dict[str, Any]]:
    """Per quantified antigen on the true blasts: events, % positive, the positive blasts'
    median true stain over the background median, and the call (as the demo's truth)."""
    blasts = truth.mask("blasts")
    n = int(blasts.sum())
    out: dict[str, dict[str, Any]] = {}
    for marker in QUANTIFIED:
        pos = truth.is_positive(marker) & blasts
        k = int(pos.sum())
        ratio = None
        if k:
            detector = truth.detectors.index(
                next(c.name for c in spec.fluorescence if c.marker == marker)
            )
            ratio = float(np.median(truth.fluorescence[pos, detector])) / BACKGROUND.median
        pct = 100.0 * k / n
        out[marker] = {
            "positive_events": k,
            "pct_positive": pct,
            "positive_median_ratio": ratio,
            "call": _call(pct) if n >= QUANTIFY_FLOOR else "insufficient_events",
        }
    return out


def _in_blast_region(pop: Population) -> bool:
    """Whether a population sits in a naive CD45-dim, SSC-low blast gate: the blasts and the
    look-alikes, hematogone stages only while their CD45 is dim (:data:`BLAST_REGION_CD45`)."""
    label = _label(pop.name)
    if label == HEMATOGONES:
        return pop.markers["CD45"].median < BLAST_REGION_CD45
    return label == "blasts" or label in LOOKALIKE_POPULATIONS


def _naive_gate(
    truth: Truth, stage: np.ndarray, spec: TubeSpec, antigens: Sequence[str]
) -> dict[str, Any]:
    """The naive blast gate by construction: which events it holds (blasts, basophils, pDCs,
    myeloid progenitors, CD45-dim hematogone stages), the look-alikes' share of it and what %
    of its events truly carry each antigen (what a workflow that takes the gate for blasts
    would report)."""
    stages_in = sorted(
        _stage(p.name) for p in spec.populations if _stage(p.name) >= 0 and _in_blast_region(p)
    )
    gate = np.zeros(len(truth.population), dtype=bool)
    by_population: dict[str, int] = {}
    for label in ("blasts", *LOOKALIKE_POPULATIONS):
        mask = truth.mask(label)
        if label == HEMATOGONES:
            mask &= np.isin(stage, stages_in)
        by_population[label] = int(mask.sum())
        gate |= mask
    n = int(gate.sum())
    blasts = by_population["blasts"]
    return {
        "definition": "blasts, basophils, pDCs, myeloid progenitors and the hematogone stages "
        f"with CD45 under {BLAST_REGION_CD45:.0f} (the geometric mean of the blasts' and the "
        "lymphocytes' CD45): the cells of a CD45-dim, SSC-low region by construction",
        "events": n,
        "blast_events": blasts,
        "lookalike_events": n - blasts,
        "lookalike_share": (n - blasts) / n if n else None,
        "by_population": by_population,
        "hematogone_stages_in_gate": stages_in,
        "pct_positive": {
            m: 100.0 * float(np.mean(truth.is_positive(m)[gate])) if n else None for m in antigens
        },
    }


def _truth_document(
    marrow: LookalikeMarrow,
    spec: TubeSpec,
    truth: Truth,
    stage: np.ndarray,
    control: Truth,
    trial: Trial,
) -> dict[str, Any]:
    """A scenario's truth.json from its tubes' per-event truth."""
    summary = _tube_summary(truth)
    leukocytes = int(summary["leukocyte_events"])  # type: ignore[call-overload]
    n_blasts = int(truth.mask("blasts").sum())
    counts = truth.counts()
    stage_counts = [int(np.sum(stage == k)) for k in range(HEMATOGONE_STAGES)]
    lookalikes = {
        label: {
            "events": counts.get(label, 0),
            "pct_leukocytes": 100.0 * counts.get(label, 0) / leukocytes,
        }
        for label in LOOKALIKE_POPULATIONS
    }
    rules = {t: trial.target_rule(t) for t in trial.targets}
    reasons: list[str] = []
    if n_blasts == 0:
        # the truth's own word: decision.json has none for "no leukaemia" (expect review)
        status, antigens, eligible = "no_leukaemic_blasts", None, []
        reasons.append(marrow.expected_reason or "no leukaemic blasts")
        near = lineage = False
    else:
        status = "ok" if n_blasts >= QUANTIFY_FLOOR else "insufficient_blasts"
        antigens = _blast_antigens(truth, spec)
        pct = {m: float(antigens[m]["pct_positive"]) for m in QUANTIFIED}
        eligible, near, lineage = expected_calls(pct, status, trial)
        if near:
            reasons.append("a target within its margin of the cut-off")
        if lineage:
            reasons.append("blasts carry no B-lineage marker: possible lineage switch")
    blast_pct = 100.0 * n_blasts / leukocytes
    low = n_blasts > 0 and blast_pct < LOW_BLAST_PCT
    if low:
        reasons.append(
            f"blasts {blast_pct:.1f}% of leukocytes, under {LOW_BLAST_PCT:g}%, without an "
            "aberrant phenotype the panel shows: normal cells may decide the antigen numbers"
        )
    decision = _decision(status, eligible, marrow.clinical_status, near or lineage or low)
    return {
        "sample_id": marrow.sample_id,
        "patient_id": marrow.patient_id,
        "timepoint": marrow.timepoint,
        "scenario": marrow.scenario,
        "fcs": f"fcs/{marrow.sample_id}.fcs",
        "control_fcs": f"fcs/{marrow.sample_id}_control.fcs",
        **summary,
        "lookalikes": lookalikes,
        "hematogone_stages": {
            "stages": HEMATOGONE_STAGES if marrow.hematogone_pct > 0 else 0,
            "cd19": marrow.hematogone_cd19 if marrow.hematogone_pct > 0 else None,
            "t": [round(float(t), 6) for t in stage_positions()]
            if marrow.hematogone_pct > 0
            else [],
            "events": stage_counts if marrow.hematogone_pct > 0 else [],
        },
        "naive_blast_gate": _naive_gate(truth, stage, spec, QUANTIFIED),
        "antigens": antigens,
        "antigens_note": None
        if antigens is not None
        else "undefined: this marrow has no leukaemic blasts, so no antigen is on blasts",
        "trial": {
            "name": trial.name,
            "targets": list(trial.targets),
            "min_pct_positive": {t: r.min_pct_positive for t, r in rules.items()},
            "margin_pct": {t: r.margin_pct for t, r in rules.items()},
        },
        "eligible_targets": eligible,
        "not_eligible": [t for t in trial.targets if t not in eligible],
        "never_recommend": list(marrow.never_recommend),
        "antigen_status": status,
        "near_cutoff": near,
        "lineage_switch": lineage,
        "low_blast_share": low,
        "clinical_status": marrow.clinical_status,
        "decision": decision,
        "decision_reasons": reasons,
        "control": _tube_summary(control),
    }


def lookalike_truth(scenario: str, trial: Trial | str | Path | None = None) -> dict[str, Any]:
    """The truth.json document of one scenario, regenerated from its (deterministic) events
    without writing any file."""
    marrow = lookalike_marrow(scenario)
    spec, _ = lookalike_tube_spec(marrow.sample_id)
    _, truth, stage = lookalike_tube_events(marrow.sample_id)
    _, control, _ = lookalike_tube_events(f"{marrow.sample_id}_control")
    return _truth_document(marrow, spec, truth, stage, control, _trial(trial))


@dataclass(frozen=True)
class LookalikeFiles:
    """What :func:`write_lookalike_marrow` wrote."""

    sample_id: str
    fcs: Path
    control: Path
    truth: Path


def write_lookalike_marrow(
    scenario: str, out_dir: str | Path, trial: Trial | str | Path | None = None
) -> LookalikeFiles:
    """Write one scenario: the stained tube and its control (FCS + per-event truth) under
    ``out_dir/fcs/`` and its truth under ``out_dir/lookalikes/{scenario}/truth.json``."""
    marrow = lookalike_marrow(scenario)
    sid = marrow.sample_id
    fcs = write_lookalike_tube(sid, out_dir)
    control = write_lookalike_tube(f"{sid}_control", out_dir)
    document = lookalike_truth(sid, trial)
    text = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    path = Path(out_dir) / TRUTH_DIR / sid / "truth.json"
    atomic_write(path, lambda h: h.write(text), "wb")
    return LookalikeFiles(sid, fcs, control, path)


# --------------------------------------------------------------------------------------------
# Sheets
# --------------------------------------------------------------------------------------------


def lookalike_sample_rows() -> list[tuple[str, ...]]:
    """``samples.tsv`` rows of the look-alike marrows (the demo's columns)."""
    return [sample_row(m.sample_id, m.patient_id, m.timepoint) for m in LOOKALIKE_MARROWS]


def lookalike_patient_rows() -> list[tuple[object, ...]]:
    """``patients.tsv`` rows, one per look-alike patient (the demo's columns)."""
    return [patient_row(m.patient_id, m.patient) for m in LOOKALIKE_MARROWS]


def write_lookalike_sheets(out_dir: str | Path) -> list[Path]:
    """Write ``samples.tsv`` and ``patients.tsv`` of the look-alike marrows into ``out_dir``
    (beside the ``fcs/`` folder the tubes go to), for the workflow or ``decide_sample``."""
    out = Path(out_dir)
    samples = tsv_bytes(SAMPLE_COLUMNS, lookalike_sample_rows())
    patients = tsv_bytes(PATIENT_COLUMNS, lookalike_patient_rows())
    return [
        atomic_write(out / "samples.tsv", lambda h: h.write(samples), "wb"),
        atomic_write(out / "patients.tsv", lambda h: h.write(patients), "wb"),
    ]
