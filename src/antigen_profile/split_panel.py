"""A demo patient's specimen written as two (or three) tubes that split the panel (issue 16).

Eight- and ten-colour labs spread the quantified antigens over several tubes of one marrow
draw that share a backbone, as the EuroFlow BCP-ALL tubes do. The specimen merge
(:mod:`antigen_profile.specimen`) can only be checked against such tubes with a known answer,
so this module writes them from the demo cohort's population models
(:data:`antigen_profile.simulate.DEMO_SAMPLES`, left unchanged):

- **Each tube is its own aliquot.** A separate draw of cells (its own seed, from its name;
  population counts drawn multinomially, so blast shares differ by counting error between
  tubes) from the demo patient's population model, stained only with the backbone (CD45, CD34; FSC
  and SSC are always recorded) and its tube's antigens: the other antigens have no channel
  at all, as in a real tube. Every tube gets a control tube drawn the same way (backbone
  stained, its antigens unstained, no ``$PnS`` labels, as the demo's controls).
- **The truth is what the cells are.** Per antigen the true % positive of blasts comes from
  the per-event truth of the tube that measures it. Combination coverage across tubes cannot
  come from any written tube (no tube holds both antigens per cell), so the same specimen is
  drawn once more with every antigen (:data:`FULL_PANEL_EVENTS` events, never written as a
  tube) and the coverage of every combination of trial targets is counted on its blasts; the
  model's own value (independent antigens: ``1 - prod(1 - fraction)``) sits beside it.

Files (``out_dir`` as the demo's): ``fcs/{tube}.fcs``, ``fcs/{tube}.truth.npz`` and the same
for ``{tube}_control``, and ``specimens/{specimen_id}/truth.json``. Deterministic: the same
bytes on every run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from antigen_profile.files import atomic_write
from antigen_profile.paths import repo_path
from antigen_profile.simulate import (
    CONTROL_EVENTS,
    QUANTIFIED,
    QUANTIFY_FLOOR,
    DemoSample,
    Truth,
    TubeSpec,
    _call,
    _decision,
    _tube_summary,
    demo_sample,
    demo_tube_spec,
    expected_calls,
    simulate_events,
    write_tube_files,
)
from antigen_profile.trial import Trial, load_trial

__all__ = [
    "BACKBONE",
    "FULL_PANEL_EVENTS",
    "SPLIT_EVENTS",
    "THREE_TUBES",
    "TWO_TUBES",
    "SplitSpecimen",
    "SplitTube",
    "check_split",
    "full_panel_events",
    "specimen_name",
    "specimen_truth",
    "split_tube_events",
    "split_tube_spec",
    "tube_name",
    "write_split_specimen",
    "write_split_tube",
]

#: Markers stained in every tube of a specimen (with FSC, SSC and Time): the blast gate
#: (CD45 vs SSC) must be placed the same way in each tube.
BACKBONE: tuple[str, ...] = ("CD45", "CD34")
#: Events per stained tube of a split specimen, and per control tube.
SPLIT_EVENTS = 40_000
SPLIT_CONTROL_EVENTS = CONTROL_EVENTS
#: Events of the full-panel draw that only serves the coverage truth: large, so that the
#: truth's own counting error (~0.1 point at 60,000 blasts) is small beside the tubes'.
FULL_PANEL_EVENTS = 200_000
#: The trial whose targets and cut-offs the truth uses.
DEFAULT_TRIAL = "config/trials/4scar.yaml"
#: Joins a combination's targets, in the trial's target order, as coverage.tsv does.
SEPARATOR = "+"


@dataclass(frozen=True)
class SplitTube:
    """One tube of a split panel: its name (the tube id's suffix) and the quantified antigens
    it stains besides the backbone."""

    name: str
    antigens: tuple[str, ...]


#: Two 8-colour tubes, EuroFlow-style: B-lineage antigens in A, the others in B. Patients
#: whose two best targets fall on either side (P02: CD22 + CD38, P08: CD22 + CD20) have a
#: best combination that spans the tubes.
TWO_TUBES: tuple[SplitTube, ...] = (
    SplitTube("A", ("CD19", "CD22", "CD10")),
    SplitTube("B", ("CD123", "CD38", "CD20")),
)
#: Three smaller tubes, for a lab with fewer colours (P03's best pair, CD22 + CD10, then
#: spans tubes A and C). Give such a specimen its own ``specimen_id``: ids seed the draws.
THREE_TUBES: tuple[SplitTube, ...] = (
    SplitTube("A", ("CD19", "CD22")),
    SplitTube("B", ("CD123", "CD38")),
    SplitTube("C", ("CD10", "CD20")),
)


@dataclass(frozen=True)
class SplitSpecimen:
    """What :func:`write_split_specimen` wrote: the specimen's id, per tube its id, FCS file
    and control file (in split order), and the truth file."""

    specimen_id: str
    sample_id: str
    tubes: tuple[tuple[str, Path, Path], ...]
    truth: Path


def check_split(split: Sequence[SplitTube]) -> None:
    """Refuse a split that is not a partition of the quantified antigens over distinct tubes:
    the truth takes each antigen from the one tube that measures it."""
    names = [t.name for t in split]
    if len(set(names)) != len(names) or not all(n.replace("_", "").isalnum() for n in names):
        raise ValueError(f"tube names must be unique letters/digits, got {names}")
    placed = [a for t in split for a in t.antigens]
    if set(placed) & set(BACKBONE):
        raise ValueError("backbone markers are in every tube already")
    if sorted(placed) != sorted(QUANTIFIED):
        raise ValueError(
            f"a split must place each of {', '.join(QUANTIFIED)} in exactly one tube, got {placed}"
        )


def specimen_name(sample_id: str, specimen_id: str | None = None) -> str:
    """The specimen id of a demo sample's split panel: ``specimen_id`` when given, else
    ``{sample_id}-split`` (distinct from the one-tube demo's). Ids seed the draws, so a
    second split of the same sample needs its own ``specimen_id``."""
    return specimen_id or f"{sample_id}-split"


def tube_name(specimen_id: str, tube: SplitTube) -> str:
    """The sample id (file stem, seed) of one tube of a specimen."""
    return f"{specimen_id}-{tube.name}"


def split_tube_spec(sample_id: str, tube: SplitTube, control: bool = False) -> TubeSpec:
    """The demo sample's tube restricted to the backbone and ``tube``'s antigens.

    Detectors, spillover (the sub-matrix of the kept dyes) and populations are the demo's;
    markers outside the tube are dropped from every population, as a tube without that
    antibody carries no signal for it. ``control``: the same with the antigens unstained.
    """
    base, _ = demo_tube_spec(sample_id)
    keep = set(BACKBONE) | set(tube.antigens)
    kept = [j for j, c in enumerate(base.fluorescence) if c.marker in keep]
    channels = tuple(c for c in base.channels if c.kind != "fluorescence" or c.marker in keep)
    matrix = base.spillover_matrix()[np.ix_(kept, kept)]
    populations = tuple(
        replace(p, markers={m: e for m, e in p.markers.items() if m in keep})
        for p in base.populations
    )
    spec = replace(
        base,
        channels=channels,
        populations=populations,
        spillover=tuple(tuple(float(v) for v in row) for row in matrix),
    )
    return spec.unstained(QUANTIFIED) if control else spec


def _seeded(name: str) -> np.random.Generator:
    """A tube's own generator, from its name (crc32) as the demo's: every aliquot differs."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def split_tube_events(
    sample_id: str,
    tube: SplitTube,
    events: int = SPLIT_EVENTS,
    control: bool = False,
    specimen_id: str | None = None,
) -> tuple[np.ndarray, Truth]:
    """One tube (or its control) of the split specimen in memory, with its per-event truth."""
    name = tube_name(specimen_name(sample_id, specimen_id), tube) + ("_control" * control)
    spec = _aliquot(split_tube_spec(sample_id, tube, control), events, name)
    return simulate_events(spec, events, _seeded(name))


def _aliquot(spec: TubeSpec, events: int, name: str) -> TubeSpec:
    """The tube's populations in the counts one aliquot happens to hold: a multinomial draw
    of ``events`` cells from the model's shares (its own seed, before any event is drawn).
    The demo's generator gives every tube the model's exact counts, which would make two
    tubes' blast shares agree perfectly; real aliquots differ by counting error."""
    shares = np.array([p.share for p in spec.populations])
    counts = _seeded(f"{name}-aliquot").multinomial(events, shares / shares.sum())
    populations = tuple(
        replace(p, share=float(c) / events) for p, c in zip(spec.populations, counts, strict=True)
    )
    return replace(spec, populations=populations)


def write_split_tube(
    sample_id: str,
    tube: SplitTube,
    out_dir: str | Path,
    events: int = SPLIT_EVENTS,
    control: bool = False,
    specimen_id: str | None = None,
) -> tuple[Path, Truth]:
    """Write ``out_dir/fcs/{tube}[_control].fcs`` and its ``.truth.npz``; returns the FCS path
    and the truth. ``events`` below the QC minimum makes a tube that fails QC."""
    spec = split_tube_spec(sample_id, tube, control)
    data, truth = split_tube_events(sample_id, tube, events, control, specimen_id)
    name = tube_name(specimen_name(sample_id, specimen_id), tube) + ("_control" * control)
    return write_tube_files(spec, data, truth.to_arrays(), out_dir, name), truth


def full_panel_events(
    sample_id: str, events: int = FULL_PANEL_EVENTS, specimen_id: str | None = None
) -> Truth:
    """The specimen drawn once with every antigen (the demo's full panel, its own seed):
    per blast, which targets it carries. Never written as a tube; only the truth uses it."""
    spec, _ = demo_tube_spec(sample_id)
    seed = _seeded(f"{specimen_name(sample_id, specimen_id)}-full")
    return simulate_events(spec, events, seed)[1]


def _combination_truth(
    sample: DemoSample, full: Truth, split: Sequence[SplitTube], trial: Trial, specimen_id: str
) -> dict[str, dict[str, Any]]:
    """Coverage of every combination of trial targets: counted on the full-panel draw's
    blasts, with the model's value, the tubes holding its targets and the one tube that
    measures it whole (``""``: none), named by their sample ids as the specimen merge does."""
    blasts = full.mask("blasts")
    carries = {t: full.is_positive(t)[blasts] for t in trial.targets}
    model = {t: (e.fraction if (e := sample.blast_markers.get(t)) else 0.0) for t in trial.targets}
    home = {a: tube_name(specimen_id, t) for t in split for a in t.antigens}
    out: dict[str, dict[str, Any]] = {}
    for size in range(1, len(trial.targets) + 1):
        for combo in combinations(trial.targets, size):
            covered = np.logical_or.reduce([carries[t] for t in combo])
            tubes = sorted({home[t] for t in combo})
            out[SEPARATOR.join(combo)] = {
                "n_products": size,
                "covered_pct": 100.0 * float(covered.mean()),
                "model_pct": 100.0 * (1.0 - float(np.prod([1.0 - model[t] for t in combo]))),
                "tubes": tubes,
                "measured_together": tubes[0] if len(tubes) == 1 else "",
            }
    return out


def _best(coverage: Mapping[str, Mapping[str, Any]], max_products: int) -> dict[str, Any]:
    """The combination of at most ``max_products`` targets that covers most blasts (fewer
    products first on a tie), and whether its targets sit in different tubes."""
    name = max(
        (c for c, row in coverage.items() if row["n_products"] <= max_products),
        key=lambda c: (coverage[c]["covered_pct"], -coverage[c]["n_products"]),
    )
    row = coverage[name]
    return {
        "combination": name,
        "covered_pct": row["covered_pct"],
        "tubes": row["tubes"],
        "spans_tubes": len(row["tubes"]) > 1,
    }


def _truth_document(
    sample: DemoSample,
    split: Sequence[SplitTube],
    stained: Mapping[str, Truth],
    controls: Mapping[str, Truth],
    full: Truth,
    trial: Trial,
    specimen_id: str,
    patient_id: str | None = None,
) -> dict[str, Any]:
    """The specimen's truth.json from its tubes' per-event truth and the full-panel draw
    (``patient_id``: another patient with the demo sample's marrow; default its own)."""
    tubes = []
    antigens: dict[str, dict[str, Any]] = {}
    for tube in split:
        name = tube_name(specimen_id, tube)
        truth = stained[tube.name]
        summary = _tube_summary(truth)
        tubes.append(
            {
                "sample_id": name,
                "tube": tube.name,
                "fcs": f"fcs/{name}.fcs",
                "control_fcs": f"fcs/{name}_control.fcs",
                "markers": [*BACKBONE, *tube.antigens],
                **summary,
                "control": _tube_summary(controls[tube.name]),
            }
        )
        blasts = truth.mask("blasts")
        n = int(blasts.sum())
        for marker in tube.antigens:
            k = int((truth.is_positive(marker) & blasts).sum())
            expr = sample.blast_markers.get(marker)
            antigens[marker] = {
                "sample_id": name,
                "blast_events": n,
                "positive_events": k,
                "pct_positive": 100.0 * k / n if n else 0.0,
                "model_pct": 100.0 * (expr.fraction if expr else 0.0),
                "call": _call(100.0 * k / n) if n >= QUANTIFY_FLOOR else "insufficient_events",
            }
    status = (
        "ok" if all(t["blast_events"] >= QUANTIFY_FLOOR for t in tubes) else "insufficient_blasts"
    )
    pct = {m: float(antigens[m]["pct_positive"]) for m in QUANTIFIED}
    rules = {t: trial.target_rule(t) for t in trial.targets}
    eligible, near, lineage = expected_calls(pct, status, trial)
    coverage = _combination_truth(sample, full, split, trial, specimen_id)
    full_blasts = int(full.mask("blasts").sum())
    return {
        "specimen_id": specimen_id,
        "demo_sample": sample.sample_id,
        "patient_id": patient_id or sample.patient_id,
        "timepoint": sample.timepoint,
        "scenario": sample.scenario,
        "backbone": list(BACKBONE),
        "split": {t.name: list(t.antigens) for t in split},
        "tubes": tubes,
        "antigens": antigens,
        "trial": {
            "name": trial.name,
            "targets": list(trial.targets),
            "min_pct_positive": {t: r.min_pct_positive for t, r in rules.items()},
            "margin_pct": {t: r.margin_pct for t, r in rules.items()},
            "max_products": trial.max_products,
            "min_coverage_pct": trial.min_coverage_pct,
        },
        "eligible_targets": eligible,
        "antigen_status": status,
        "near_cutoff": near,
        "lineage_switch": lineage,
        "clinical_status": sample.clinical_status,
        "decision": _decision(status, eligible, sample.clinical_status, near or lineage),
        "full_panel": {"events": len(full.population), "blast_events": full_blasts},
        "coverage": coverage,
        "best_combination": _best(coverage, trial.max_products),
    }


def _trial(trial: Trial | str | Path | None) -> Trial:
    if isinstance(trial, Trial):
        return trial
    return load_trial(trial if trial is not None else repo_path(DEFAULT_TRIAL))


def specimen_truth(
    sample_id: str,
    split: Sequence[SplitTube] = TWO_TUBES,
    events: int = SPLIT_EVENTS,
    control_events: int = SPLIT_CONTROL_EVENTS,
    trial: Trial | str | Path | None = None,
    specimen_id: str | None = None,
    patient_id: str | None = None,
) -> dict[str, Any]:
    """The truth.json document of a split specimen, regenerated from its (deterministic)
    events without writing any file."""
    check_split(split)
    sid = specimen_name(sample_id, specimen_id)
    stained = {t.name: split_tube_events(sample_id, t, events, False, sid)[1] for t in split}
    controls = {
        t.name: split_tube_events(sample_id, t, control_events, True, sid)[1] for t in split
    }
    full = full_panel_events(sample_id, specimen_id=sid)
    sample = demo_sample(sample_id)
    return _truth_document(sample, split, stained, controls, full, _trial(trial), sid, patient_id)


def write_split_specimen(
    sample_id: str,
    out_dir: str | Path,
    split: Sequence[SplitTube] = TWO_TUBES,
    events: int = SPLIT_EVENTS,
    control_events: int = SPLIT_CONTROL_EVENTS,
    trial: Trial | str | Path | None = None,
    specimen_id: str | None = None,
) -> SplitSpecimen:
    """Write a demo sample's specimen as the tubes of ``split``: each tube and its control
    (FCS + per-event truth) under ``out_dir/fcs/``, and the specimen's truth under
    ``out_dir/specimens/{specimen_id}/truth.json`` (``specimen_id``: see
    :func:`specimen_name`)."""
    check_split(split)
    sample = demo_sample(sample_id)
    sid = specimen_name(sample_id, specimen_id)
    written, stained, controls = [], {}, {}
    for tube in split:
        fcs, stained[tube.name] = write_split_tube(
            sample_id, tube, out_dir, events, specimen_id=sid
        )
        control, controls[tube.name] = write_split_tube(
            sample_id, tube, out_dir, control_events, control=True, specimen_id=sid
        )
        written.append((tube_name(sid, tube), fcs, control))
    full = full_panel_events(sample_id, specimen_id=sid)
    document = _truth_document(sample, split, stained, controls, full, _trial(trial), sid)
    text = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    path = Path(out_dir) / "specimens" / sid / "truth.json"
    atomic_write(path, lambda h: h.write(text), "wb")
    return SplitSpecimen(sid, sample_id, tuple(written), path)
