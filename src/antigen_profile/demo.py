"""The built-in demo cohort: what ``snakemake`` runs on a fresh checkout.

Eight patients measured with the full panel in one tube (:mod:`antigen_profile.simulate`,
one scenario per decision the workflow can reach) and one patient, P09, whose panel is split
over two tubes of one specimen as an 8-colour lab would stain it
(:mod:`antigen_profile.split_panel`: CD19, CD22, CD10 in tube A; CD123, CD38, CD20 in tube B;
CD45 and CD34 in both). P09's marrow is P02's (dim CD22, CD38), so the pair that covers its
blasts, CD22 + CD38, spans the tubes: the specimen shows how a combination stained in
different tubes is bounded, not counted. Every file is written from fixed seeds: the same
bytes on every machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from antigen_profile import simulate
from antigen_profile.files import atomic_write
from antigen_profile.split_panel import (
    SPLIT_CONTROL_EVENTS,
    SPLIT_EVENTS,
    TWO_TUBES,
    SplitTube,
    specimen_truth,
    split_tube_spec,
    tube_name,
    write_split_tube,
)


@dataclass(frozen=True)
class SplitDemo:
    """A demo specimen whose panel is split: its id, patient, the demo sample whose marrow
    it is (its clinical facts are copied too) and the split."""

    specimen_id: str
    patient_id: str
    model: str
    split: tuple[SplitTube, ...]


#: The demo's split-panel specimens.
SPLIT_DEMOS: tuple[SplitDemo, ...] = (SplitDemo("P09-R1", "P09", "P02-R1", TWO_TUBES),)
#: The file with the split specimens' truth, beside the full-panel ``truth.json``.
SPLIT_TRUTH = "split_truth.json"
SAMPLE_COLUMNS: tuple[str, ...] = (*simulate.SAMPLE_COLUMNS, "specimen_id")


def _split_tubes() -> dict[str, tuple[SplitDemo, SplitTube, bool]]:
    """Every split tube's file stem -> its specimen, tube and whether it is the control."""
    out = {}
    for demo in SPLIT_DEMOS:
        for tube in demo.split:
            name = tube_name(demo.specimen_id, tube)
            out[name] = (demo, tube, False)
            out[f"{name}_control"] = (demo, tube, True)
    return out


def tube_names() -> list[str]:
    """Every demo FCS file stem: the full-panel tubes, then the split specimens' tubes (each
    followed by its control)."""
    return [*simulate.demo_tube_names(), *_split_tubes()]


def tube_digest(name: str) -> str:
    """A short fingerprint of a demo tube's specification, so the workflow regenerates a tube
    whose specification changed."""
    split = _split_tubes().get(name)
    if split is None:
        return simulate.demo_tube_digest(name)
    demo, tube, control = split
    spec = split_tube_spec(demo.model, tube, control)
    events = SPLIT_CONTROL_EVENTS if control else SPLIT_EVENTS
    text = f"{spec!r}|{events}|{name}|{demo.specimen_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_tube(name: str, out_dir: str | Path) -> Path:
    """Write the demo tube ``name`` (FCS + per-event truth) under ``out_dir/fcs/``."""
    split = _split_tubes().get(name)
    if split is None:
        return simulate.write_demo_tube(name, out_dir)
    demo, tube, control = split
    events = SPLIT_CONTROL_EVENTS if control else SPLIT_EVENTS
    path, _ = write_split_tube(
        demo.model, tube, out_dir, events, control=control, specimen_id=demo.specimen_id
    )
    return path


def _sample_rows() -> list[tuple[str, ...]]:
    rows = [(*row, "") for row in simulate.demo_sample_rows()]
    for demo in SPLIT_DEMOS:
        model = simulate.demo_sample(demo.model)
        for tube in demo.split:
            name = tube_name(demo.specimen_id, tube)
            rows.append(
                simulate.sample_row(name, demo.patient_id, model.timepoint, demo.specimen_id)
            )
    return rows


def _patient_rows() -> list[tuple[object, ...]]:
    rows = simulate.demo_patient_rows()
    for demo in SPLIT_DEMOS:
        model = next(r for r in rows if r[0] == simulate.demo_sample(demo.model).patient_id)
        rows.append((demo.patient_id, *model[1:]))
    return rows


def split_truth() -> dict[str, dict[str, object]]:
    """Every split specimen's truth (:func:`antigen_profile.split_panel.specimen_truth`)."""
    return {
        d.specimen_id: specimen_truth(
            d.model, d.split, specimen_id=d.specimen_id, patient_id=d.patient_id
        )
        for d in SPLIT_DEMOS
    }


def write_sheets(out_dir: str | Path) -> list[Path]:
    """``samples.tsv`` (with ``specimen_id``: empty for a one-tube specimen),
    ``patients.tsv``, ``truth.json`` (per full-panel sample) and ``split_truth.json`` (per
    split specimen), recomputed from the deterministic events without writing a tube."""
    out = Path(out_dir)
    truth = simulate.demo_truth_document()
    split = json.dumps(split_truth(), indent=2) + "\n"
    return [
        _write(out / "samples.tsv", simulate.tsv_bytes(SAMPLE_COLUMNS, _sample_rows())),
        _write(
            out / "patients.tsv",
            simulate.tsv_bytes(simulate.PATIENT_COLUMNS, _patient_rows()),
        ),
        _write(out / "truth.json", truth),
        _write(out / SPLIT_TRUTH, split.encode("utf-8")),
    ]


def write_cohort(out_dir: str | Path) -> list[Path]:
    """Every demo tube and the sheets: the FCS paths (in :func:`tube_names` order, controls
    included) followed by the sheets."""
    return [write_tube(name, out_dir) for name in tube_names()] + write_sheets(out_dir)


def _write(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda h: h.write(data), "wb")


__all__: Sequence[str] = [
    "SPLIT_DEMOS",
    "SplitDemo",
    "split_truth",
    "tube_digest",
    "tube_names",
    "write_cohort",
    "write_sheets",
    "write_tube",
]
