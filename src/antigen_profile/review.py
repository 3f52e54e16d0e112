"""A reviewer's sign-off: the result hash a review names, and the review status it earns.

A review is only worth what it was made on: the reviewer signs one result, and the
workflow must never carry the signature over to a different one. So every specimen gets a
hash of what its result rests on, in four parts (``r1-<data>-<config>-<gates>-<result>``,
8 hex digits each), and a review whose hash no longer matches is ``stale`` and says which
parts changed. Computed values are never replaced: the review stands beside them.
Pure functions: no file is read here except the ones passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from antigen_profile.vocabulary import ReviewStatus, ReviewVerdict

#: The hash's version prefix: a change to how it is composed must not match old reviews.
HASH_VERSION = "r1"
#: The hash's parts, in order, with the words a stale review uses for each.
COMPONENTS = {
    "data": "the data",
    "config": "the configuration",
    "gates": "the gates",
    "result": "the result",
}
#: profile.json ``inputs`` roles that are the tube's data (``control:<MARKER>`` too).
DATA_ROLES = ("sample", "control", "beads")
#: Roles that are configuration (the trial's rules and the resolved config).
CONFIG_ROLES = ("config", "trial", "compensation_matrix")
#: Roles that are the gating description (template, a lab's gating, corrected gates).
GATE_ROLES = ("gating_template", "lab_gating", "corrected_gates")
#: The review columns recommendations.tsv appends.
REVIEW_COLUMNS = ["review_status", "final_decision", "final_targets", "reviewed_by"]
#: An override's ``final_targets`` meaning "no target" (the sheet needs the cell filled).
NO_TARGET = "none"
UNREVIEWED, SIGNED, STALE = ReviewStatus.UNREVIEWED, ReviewStatus.SIGNED, ReviewStatus.STALE


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _role_kind(role: str) -> str | None:
    if role in DATA_ROLES or role.startswith("control:"):
        return "data"
    if role in CONFIG_ROLES:
        return "config"
    if role in GATE_ROLES:
        return "gates"
    return None


def result_hash(decision: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]]) -> str:
    """The specimen's result hash from its ``decision.json`` and its tubes' ``profile.json``
    (by sample_id). Files are named by tube and role, never by path: moving the results or
    the FCS files does not make a review stale, changing a byte of them does."""
    parts: dict[str, list[tuple[str, str, str]]] = {k: [] for k in ("data", "config", "gates")}
    for tube in sorted(profiles):
        profile = profiles[tube]
        for entry in profile.get("inputs") or []:
            kind = _role_kind(str(entry.get("role")))
            if kind is not None:
                parts[kind].append((tube, str(entry["role"]), str(entry.get("sha256"))))
        gating = profile.get("gating") or {}
        if gating.get("sha256"):
            parts["gates"].append((tube, "gating", str(gating["sha256"])))
        parts["gates"].append((tube, "engine", str(gating.get("engine"))))
    digests = [_short(_canonical(sorted(parts[k]))) for k in ("data", "config", "gates")]
    digests.append(_short(_canonical(dict(decision))))
    return "-".join([HASH_VERSION, *digests])


def changed_components(signed: str, current: str) -> list[str]:
    """The parts (keys of :data:`COMPONENTS`) in which two result hashes differ; every part
    when ``signed`` is not a hash of this version."""
    old, new = signed.split("-"), current.split("-")
    if len(old) != len(new) or old[0] != new[0]:
        return list(COMPONENTS)
    return [k for k, a, b in zip(COMPONENTS, old[1:], new[1:], strict=True) if a != b]


def stale_message(changed: Sequence[str]) -> str:
    """``the data and the gates changed since the review``."""
    words = [COMPONENTS[k] for k in changed]
    joined = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"{joined} changed since the review"


def review_status(
    decision: Mapping[str, Any],
    profiles: Mapping[str, Mapping[str, Any]],
    review: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``review`` object of a specimen: its status, the final decision and targets when
    signed, who reviewed, the hash now and the one signed, and what changed when stale.

    ``final_decision`` of a signed ``confirm`` is the computed decision; of a signed
    ``override``, ``candidate`` when it names final targets, else ``not_candidate``. A stale
    or missing review has no final decision: it is never carried over."""
    current = result_hash(decision, profiles)
    out: dict[str, Any] = {
        "status": UNREVIEWED,
        "result_hash": current,
        "final_decision": None,
        "final_targets": [],
        "reviewed_by": None,
    }
    if not review:
        return out
    signed = str(review.get("result_hash") or "")
    targets = split_targets(review.get("final_targets"))
    out.update(
        reviewed_by=review.get("reviewer"),
        verdict=review.get("verdict"),
        reason=review.get("reason") or None,
        date=review.get("date"),
        signed_hash=signed,
    )
    if signed != current:
        changed = changed_components(signed, current)
        out.update(status=STALE, changed=changed, message=stale_message(changed))
        return out
    out["status"] = SIGNED
    if review.get("verdict") == ReviewVerdict.OVERRIDE:
        out["final_decision"] = "candidate" if targets else "not_candidate"
        out["final_targets"] = targets
    else:
        out["final_decision"] = decision.get("decision")
        out["final_targets"] = list(decision.get("eligible_targets") or [])
    return out


def split_targets(cell: Any) -> list[str]:
    """A ``final_targets`` cell (``CD22,CD123``) as a list; empty for an empty cell and for
    ``none`` (an override to no target)."""
    if cell is None:
        return []
    if isinstance(cell, list | tuple):
        return [str(t) for t in cell if str(t) != NO_TARGET]
    return [t.strip() for t in str(cell).split(",") if t.strip() and t.strip() != NO_TARGET]


def review_columns(review: Mapping[str, Any] | None) -> dict[str, str]:
    """The recommendations.tsv cells of a ``review`` object (all empty but the status for
    an unreviewed specimen)."""
    review = review or {"status": UNREVIEWED}
    return {
        "review_status": str(review.get("status") or UNREVIEWED),
        "final_decision": str(review.get("final_decision") or ""),
        "final_targets": ",".join(review.get("final_targets") or []),
        "reviewed_by": str(review.get("reviewed_by") or ""),
    }


def read_profiles(paths: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """Tubes' profile.json files by sample_id (the inputs of :func:`result_hash`)."""
    out = {}
    for tube, path in paths.items():
        with open(path, encoding="utf-8") as handle:
            out[str(tube)] = json.load(handle)
    return out


def tube_profiles(decision_file: str | Path, decision: Mapping[str, Any]) -> dict[str, Path]:
    """Where a specimen's tubes' profile.json are in the results layout
    (``results/specimens/{specimen}/decision.json`` -> ``results/{tube}/profile.json``)."""
    from antigen_profile.outputs import PROFILE_FILES

    root = Path(decision_file).resolve().parent.parent.parent
    tubes = decision.get("tubes") or [decision.get("sample_id")]
    return {str(t): root / str(t) / PROFILE_FILES["profile"] for t in tubes}


def review_row(review: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A review row as a rule passes it (JSON text, ``null``: none) or as a mapping."""
    if isinstance(review, str):
        return json.loads(review)
    return dict(review) if review else None
