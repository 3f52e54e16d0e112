"""The Audit trail section of the sample report: what produced the numbers and from what.

The FCS file's keywords and stains, the input files with their SHA-256, the software of the
profile stage and of the report itself, and the resolved configuration with a check that it
is the configuration the run hashed (a printed configuration that was not the one run would be
worse than none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from antigen_profile import __version__
from antigen_profile.report.format import DASH, as_list, fmt_value, json_list, json_object

#: Packages that draw and write the report itself (not the numbers: those are in profile.json).
RENDER_SOFTWARE = ("matplotlib", "jinja2")


def render_software() -> list[tuple[str, str]]:
    """Versions of the packages rendering this report, for the audit trail."""
    versions = [("antigen-profile (report)", __version__)]
    for package in RENDER_SOFTWARE:
        try:
            versions.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            versions.append((package, "not installed"))
    return versions


def canonical_sha256(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data``: the form the profile stage hashes the resolved
    configuration in (sorted keys, no spaces), so the report can check the config it prints."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _config_view(profile: Mapping[str, Any]) -> dict[str, Any]:
    """profile.json ``config`` as indented JSON, with whether its canonical SHA-256 equals the
    ``config`` input's (a printed configuration that was not the one run would be worse than
    none)."""
    config = profile.get("config")
    if not isinstance(config, Mapping):
        return {"text": "", "sha256": "", "check": "not_recorded", "check_class": "neutral"}
    digest = canonical_sha256(config)
    recorded = [
        str(i.get("sha256") or "")
        for i in json_list(profile.get("inputs"))
        if isinstance(i, Mapping) and i.get("role") == "config"
    ]
    if not recorded:
        check, css = "no config input recorded to compare with", "warn"
    elif digest in recorded:
        check, css = "matches the config input's SHA-256", "good"
    else:
        check, css = "differs from the config input's SHA-256", "bad"
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return {"text": text, "sha256": digest, "check": check, "check_class": css}


def _stain_views(profile: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every detector with its stain name ($PnS) as the file wrote it and the marker or
    scatter name found there, so a reviewer sees how each marker was recognised."""
    stains = profile.get("stains")
    markers = profile.get("markers") if isinstance(profile.get("markers"), Mapping) else {}
    found: dict[str, list[str]] = {}
    for marker, channel in markers.items():
        found.setdefault(str(channel), []).append(str(marker))
    rows = []
    if isinstance(stains, Mapping):
        for channel, stain in stains.items():
            rows.append(
                {
                    "channel": str(channel),
                    "stain": str(stain or ""),
                    "marker": ", ".join(found.pop(str(channel), [])),
                }
            )
    for channel, names in found.items():  # markers on channels profile.json lists no stain for
        rows.append({"channel": channel, "stain": "", "marker": ", ".join(names)})
    return rows


def audit_context(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the Audit trail section shows, from profile.json, formatted for display."""
    return {
        "fcs_version": profile.get("fcs_version") or DASH,
        "cytometer": profile.get("cytometer") or DASH,
        "control_markers": as_list(profile.get("control_markers")),
        "control_note": profile.get("control_note") or "",
        "created": profile.get("created") or DASH,
        "host": profile.get("host") or DASH,
        "fcs_keywords": [
            (str(k), fmt_value(v)) for k, v in json_object(profile.get("fcs_keywords")).items()
        ],
        "inputs": [
            {"role": i.get("role", ""), "path": i.get("path", ""), "sha256": i.get("sha256", "")}
            for i in profile.get("inputs") or []
            if isinstance(i, Mapping)
        ],
        "stains": _stain_views(profile),
        "markers": [(str(k), str(v)) for k, v in (profile.get("markers") or {}).items()],
        "software": [(str(k), str(v)) for k, v in (profile.get("software") or {}).items()],
        "render_software": render_software(),
        "config_view": _config_view(profile),
    }
