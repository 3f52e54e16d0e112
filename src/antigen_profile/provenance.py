"""The audit trail of a profile: which files and settings made its numbers, and with what.

Every input is hashed once (its SHA-256 is also handed to the reader, so a tube is read from
disk for hashing only once), checked to be a regular file before anything reads it, and
listed in ``profile.json`` with the software versions, the tube's identifying FCS keywords,
the host and the resolved configuration (issue 7).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from antigen_profile import __version__
from antigen_profile.config import resolve
from antigen_profile.ingest import Tube, sha256_file
from antigen_profile.inputs import (
    NOT_FOUND,
    InputFileError,
    gating_size_limit,
    require_regular_file,
)
from antigen_profile.qc import QCResult
from antigen_profile.settings import Settings

SOFTWARE = ["antigen-profile", "flowkit", "flowio", "numpy", "pandas", "scikit-learn", "snakemake"]

#: How a one-line message names each input, by audit role (``control:CD22``: "CD22 control").
INPUT_NAMES = {
    "sample": "FCS file",
    "control": "control FCS file",
    "beads": "bead FCS file",
    "gating_template": "gating template",
    "lab_gating": "lab gating file",
    "corrected_gates": "corrected gates file",
    "trial": "trial file",
    "compensation_matrix": "compensation matrix",
}

#: Audit roles of gating files (size-capped like every gating file).
GATING_ROLES = ("gating_template", "lab_gating", "corrected_gates")

#: FCS TEXT keywords that identify a tube and its acquisition, copied into profile.json.
AUDIT_KEYWORDS = (
    "$FIL", "$CYT", "$CYTSN", "$INST", "$OP", "$SRC", "$SMNO", "$PROJ", "$DATE", "$BTIM", "$ETIM",
)  # fmt: skip


def software_versions() -> dict[str, str]:
    """Versions of everything that shapes a number, for the audit trail."""
    versions = {"python": platform.python_version(), "antigen-profile": __version__}
    for package in SOFTWARE[1:]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def audit_entry(role: str, path: str | Path) -> dict[str, Any]:
    """An audit-trail entry: the file and its SHA-256 (``None`` if it cannot be read, or is
    not a regular file: hashing a FIFO or ``/dev/zero`` would never end)."""
    try:
        checksum: str | None = sha256_file(path)
    except (InputFileError, OSError):
        checksum = None
    return {"role": role, "path": str(path), "sha256": checksum}


def config_entry(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved configuration (defaults, file and command-line overrides together) is
    what shaped the numbers, so its canonical JSON is what gets hashed."""
    canonical = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return {
        "role": "config",
        "path": "(resolved configuration)",
        "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    }


def audit_inputs(
    settings: Settings,
    fcs: str | Path,
    control: str | Path | None,
    marker_controls: Mapping[str, str | Path] | None,
    gating: tuple[str, Path],
) -> list[dict[str, Any]]:
    """The audit trail's inputs, hashed: the tube, its control tubes (per-marker ones first),
    the gating file (``gating``: its role and path; ``corrected_gates`` for a reviewer's
    corrected gates), the trial and the configuration. The bead tube is added by the caller
    when density is measured."""
    inputs = [audit_entry("sample", fcs), audit_entry(*gating)]
    if control:
        inputs.insert(1, audit_entry("control", control))
    for marker, path in (marker_controls or {}).items():
        inputs.insert(1, audit_entry(f"control:{marker}", path))
    inputs.append(audit_entry("trial", settings.trial))
    inputs.append(config_entry(settings.config))
    return inputs


def input_problems(
    settings: Settings,
    fcs: str | Path,
    control: str | Path | None,
    marker_controls: Mapping[str, str | Path] | None,
    bead_fcs: str | Path | None,
    gating: tuple[str, Path],
) -> list[str]:
    """One line per input of this sample that exists but cannot be read as a regular file
    (a folder, FIFO, device, symlink loop) or is a gating file over
    :data:`~antigen_profile.inputs.MAX_GATING_BYTES`. Only ``stat`` is called. A missing
    file is left to its reader, which says so as before."""
    files: list[tuple[str, str | Path]] = [("sample", fcs)]
    if control:
        files.append(("control", control))
    files += [(f"control:{m}", p) for m, p in (marker_controls or {}).items() if p]
    beads = resolve(bead_fcs) if bead_fcs else settings.bead_fcs
    if beads:
        files.append(("beads", beads))
    files.append(gating)
    files.append(("trial", settings.trial))
    if settings.compensation_matrix:
        files.append(("compensation_matrix", settings.compensation_matrix))
    problems = []
    for role, path in files:
        marker = role.partition(":")[2]
        what = f"{marker} control FCS file" if marker else INPUT_NAMES[role]
        limit = gating_size_limit() if role in GATING_ROLES else None
        try:
            require_regular_file(path, what, max_bytes=limit)
        except InputFileError as exc:
            if exc.problem != NOT_FOUND:
                problems.append(str(exc))
    return problems


def audit_keywords(tube: Tube | None) -> dict[str, str]:
    """The identifying TEXT keywords of the tube as written (absent ones left out)."""
    if tube is None:
        return {}
    return {k: str(tube.keywords[k]) for k in AUDIT_KEYWORDS if k in tube.keywords}


def profile_document(
    sample_id: str,
    tube: Tube | None,
    inputs: list[dict[str, Any]],
    settings: Settings,
    blast_defined_by: list[str],
    qc: QCResult,
    control_note: str | None = None,
) -> dict[str, Any]:
    """``profile.json``: provenance and the settings every number depends on (``flags``
    empty: the caller adds them). The settings are recorded from the configuration as it was
    given, which is what the "config" input's SHA-256 covers."""
    config = settings.config
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
            "confidence": settings.positivity.confidence,
            "floors": dict(config["floors"]),
            "logicle": dict(config["logicle"]),
            "qc": dict(config["qc"]),
            "blast_mimics": dict(config["blast_mimics"]),
        },
        "software": software_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Audit (issue 7): the file's own identity as written by the cytometer, every stain
        # name, the host, and the resolved configuration whose canonical JSON the "config"
        # input's SHA-256 is taken over (so a reviewer can check it).
        "fcs_keywords": audit_keywords(tube),
        "stains": dict(zip(tube.channels, tube.labels, strict=True)) if tube else {},
        "host": platform.node(),
        "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
    }
