"""Normal cells in the blast gate: the look-alikes that must not decide a CAR-T target.

The blast gate (CD45 dim, SSC low) also holds normal cells, and when blasts are few those
cells decide the antigen numbers (domain brief, "Normal cells that look like blasts"):

- **Basophils and plasmacytoid dendritic cells** carry CD123 brightly and no CD34. At a low
  blast share they make "blasts" CD123-positive and would offer a CD123 CAR-T against cells
  the leukaemia does not have. Where the tube has CD123 and CD34, CD123-bright CD34-negative
  events are taken out of the blasts before any antigen is quantified (:func:`screen`);
  without CD34 they are counted and flagged. When they are most of the gate they are not
  look-alikes but the leukaemia itself (a CD34-negative CD123-bright B-ALL): kept, flagged.
- **Hematogones** (normal B progenitors) regenerate after chemotherapy and CAR-T as a
  maturation continuum: CD34+ CD10-bright CD20- (stage I) through CD34- CD20-bright
  (stage III), CD38 bright throughout. Leukaemic blasts form a cluster instead. Where the
  tube has CD34 and CD20 the continuum shows as two large, mutually exclusive subsets (CD34+
  CD20- and CD34- CD20+) with a CD34/CD20 anti-correlation; such a blast population is
  flagged and its recommendation goes to review.
- **Few blasts say little.** Below ``min_blast_pct`` of leukocytes (5% for a relapse) the
  gate is mostly normal cells unless the blasts are phenotypically aberrant by the panel's
  markers (CD38 dim, a common leukaemia-associated immunophenotype); without an aberrancy
  the recommendation goes to review.

Every rule is configuration (``blast_mimics`` in config.yaml) with its source, printed in the
report beside the trial's rules. Pure numerics on the gated events: no FCS, no gating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from antigen_profile import orderstats
from antigen_profile.populations import masked, percent

if TYPE_CHECKING:
    from antigen_profile.gating_engine import Gated
    from antigen_profile.settings import Settings

#: Flag codes raised here (profile.json ``flags``; each one sends a decision to review).
LOOKALIKES_KEPT = "cd123_bright_cd34_negative_kept"
LOOKALIKES_SUSPECTED = "cd123_bright_events_suspected"
HEMATOGONE_PATTERN = "hematogone_like_continuum"
LOW_BLAST_SHARE = "low_blast_share"
#: The population the excluded look-alikes get in populations.tsv (and the masks).
LOOKALIKES = "blast_lookalikes"
#: Markers the screen reads on the gated events.
SCREEN_MARKERS = ("CD123", "CD34", "CD20", "CD38")
#: CD34's negative references: the lowest 99.5th percentile of these populations counts.
#: Any one can be spoilt: a regenerating marrow's lymphocyte gate holds CD34-bright
#: hematogones (measured 3,907 against 484 on true lymphocytes, which hid the continuum),
#: and granulocytes' bright autofluorescence and spillover can lift theirs above the blasts'
#: own CD34 (Beckman Navios profile: 20,245 against a gate median of 13,742).
CD34_NEGATIVES = ("granulocytes", "monocytes", "lymphocytes")
#: An internal negative needs this many events for a 99.5th percentile.
MIN_NEGATIVE_EVENTS = 200


@dataclass(frozen=True)
class MimicSettings:
    """The ``blast_mimics`` section: each rule's numbers and the source they come from."""

    #: CD123-bright = at least this many times the CD123 negative reference's threshold.
    cd123_bright_fold: float
    #: Events positive for any of these (B lineage) are not basophils or pDCs.
    not_in: tuple[str, ...]
    #: Above this share of the gate, CD123-bright CD34-negative events are the leukaemia.
    max_lookalike_share: float
    lookalike_source: str
    #: Each continuum subset (CD34+CD20-, CD34-CD20+) at least this share of the gate ...
    min_stage_share: float
    #: ... and CD34 and CD20 anti-correlated at least this much (phi coefficient, negative).
    max_phi: float
    hematogone_source: str
    #: Blasts below this % of leukocytes need an aberrant phenotype to be recommended on.
    min_blast_pct: float
    low_blast_source: str
    #: CD38 dim: fewer than this share of the blasts CD38-positive (hematogones: ~all bright).
    cd38_dim_max_positive: float
    aberrancy_source: str

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> MimicSettings:
        section = raw["blast_mimics"]
        look, hema = section["basophils_pdcs"], section["hematogones"]
        low, aberrant = section["low_blast_share"], section["aberrancy"]
        return cls(
            cd123_bright_fold=float(look["cd123_bright_fold"]),
            not_in=tuple(str(m) for m in look["not_in"]),
            max_lookalike_share=float(look["max_share"]),
            lookalike_source=str(look["source"]),
            min_stage_share=float(hema["min_stage_share"]),
            max_phi=float(hema["max_phi"]),
            hematogone_source=str(hema["source"]),
            min_blast_pct=float(low["min_blast_pct"]),
            low_blast_source=str(low["source"]),
            cd38_dim_max_positive=float(aberrant["cd38_dim_max_positive"]),
            aberrancy_source=str(aberrant["source"]),
        )


@dataclass
class Screen:
    """What :func:`screen` found in the blast gate.

    ``keep`` marks the gate's events that stay blasts (all True when nothing was excluded);
    ``excluded`` counts the events taken out per kind; ``flags`` are for profile.json;
    ``summary`` is profile.json's ``blast_mimics`` (numbers a reviewer can check)."""

    keep: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)
    flags: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def lookalike_mask(
    blasts: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    settings: MimicSettings,
) -> tuple[np.ndarray | None, str]:
    """CD123-bright CD34-negative events of the gate without a B-lineage antigen (the
    basophil / pDC phenotype), or None with why when the tube cannot say (no CD123, or no
    CD123 threshold). Without CD34 the CD123-bright events are returned, to be counted."""
    if "CD123" not in blasts or not np.isfinite(thresholds.get("CD123", np.nan)):
        return None, "no CD123 in this tube, or no CD123 reference"
    bright = blasts["CD123"] >= settings.cd123_bright_fold * float(thresholds["CD123"])
    for marker in settings.not_in:
        if marker in blasts and np.isfinite(thresholds.get(marker, np.nan)):
            bright &= blasts[marker] < float(thresholds[marker])
    if "CD34" not in blasts or not np.isfinite(thresholds.get("CD34", np.nan)):
        return bright, "no CD34 in this tube, or no CD34 reference: CD123-bright events counted"
    return bright & (blasts["CD34"] < float(thresholds["CD34"])), ""


def continuum(
    blasts: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    settings: MimicSettings,
    keep: np.ndarray | None = None,
) -> dict[str, Any]:
    """The CD34/CD20 maturation pattern of the gate: the share of CD34+CD20- (stage I-like)
    and CD34-CD20+ (stage III-like) events and their phi coefficient. ``hematogone_like`` when
    both subsets are large and mutually exclusive, as in normal B maturation; a leukaemic
    cluster has one dominant state (or CD34 and CD20 independent of each other). ``keep``
    (a mask over the events given) restricts it to those events without copying their values."""
    if not {"CD34", "CD20"} <= set(blasts) or not all(
        np.isfinite(thresholds.get(m, np.nan)) for m in ("CD34", "CD20")
    ):
        return {"assessed": False, "note": "needs CD34 and CD20 in the tube, with references"}
    cd34 = blasts["CD34"] >= float(thresholds["CD34"])
    cd20 = blasts["CD20"] >= float(thresholds["CD20"])
    if keep is not None:
        cd34, cd20 = cd34[keep], cd20[keep]
    n = cd34.size
    if n == 0:
        return {"assessed": False, "note": "no events in the blast gate"}
    early = float(np.mean(cd34 & ~cd20))
    late = float(np.mean(~cd34 & cd20))
    phi = _phi(cd34, cd20)
    like = (
        early >= settings.min_stage_share
        and late >= settings.min_stage_share
        and phi is not None
        and phi <= settings.max_phi
    )
    return {
        "assessed": True,
        "events": int(n),
        "cd34_pos_cd20_neg": round(early, 4),
        "cd34_neg_cd20_pos": round(late, 4),
        "phi_cd34_cd20": None if phi is None else round(phi, 4),
        "hematogone_like": bool(like),
    }


def aberrancies(
    blasts: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    settings: MimicSettings,
    keep: np.ndarray | None = None,
) -> list[str]:
    """The leukaemia-associated features the panel shows on the blasts, in words (empty:
    none the panel can show). CD38 dim: hematogones are CD38 bright throughout. ``keep`` as
    for :func:`continuum`."""
    found = []
    cd38 = None
    if "CD38" in blasts and np.isfinite(thresholds.get("CD38", np.nan)):
        cd38 = blasts["CD38"] >= float(thresholds["CD38"])
        if keep is not None:
            cd38 = cd38[keep]
    if cd38 is not None and cd38.size:
        positive = float(np.mean(cd38))
        if positive < settings.cd38_dim_max_positive:
            found.append(
                f"CD38 dim/negative ({100 * positive:.0f}% of blasts CD38-positive, normal B "
                f"progenitors are CD38 bright)"
            )
    return found


def screen(
    blasts: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    leukocytes: int,
    settings: MimicSettings,
) -> Screen:
    """Check the blast gate's events (``blasts``: marker -> values of the gated events) for
    normal look-alikes; ``thresholds`` are the negative references' cut-offs per marker and
    ``leukocytes`` the denominator of the blast share."""
    n = next((v.size for v in blasts.values()), 0)
    keep = np.ones(n, dtype=bool)
    result = Screen(keep)
    mask, note = lookalike_mask(blasts, thresholds, settings)
    look: dict[str, Any] = {"assessed": mask is not None, "source": settings.lookalike_source}
    if mask is not None and n:
        count, share = int(mask.sum()), float(mask.mean())
        look.update(events=count, share_of_gate=round(share, 4), note=note or None)
        can_exclude = not note
        if count and can_exclude and share <= settings.max_lookalike_share:
            keep &= ~mask
            result.excluded["cd123_bright_cd34_negative"] = count
            look["excluded"] = True
        elif count and can_exclude:
            look["excluded"] = False
            result.flags.append(
                {
                    "code": LOOKALIKES_KEPT,
                    "message": f"{count} CD123-bright CD34-negative events are "
                    f"{100 * share:.0f}% of the blast gate: too many for basophils and pDCs, so "
                    "kept as blasts; confirm they are leukaemic (HLA-DR, CD4, CD203c)",
                }
            )
        elif count >= 1 and share >= 0.01:
            look["excluded"] = False
            result.flags.append(
                {
                    "code": LOOKALIKES_SUSPECTED,
                    "message": f"{count} CD123-bright events ({100 * share:.1f}% of the blast "
                    "gate) may be basophils or pDCs, and this tube cannot tell them apart "
                    "(no CD34): CD123 on blasts may be overstated",
                }
            )
    elif mask is None:
        look["note"] = note
    kept = int(np.count_nonzero(keep))
    # the gate's events that stay: the checks mask their calls, not copy the values
    staying = None if kept == n else keep
    pattern = continuum(blasts, thresholds, settings, staying)
    pattern["source"] = settings.hematogone_source
    if pattern.get("hematogone_like"):
        result.flags.append(
            {
                "code": HEMATOGONE_PATTERN,
                "message": "the blast gate shows a maturation continuum like normal B "
                f"progenitors (hematogones): {100 * pattern['cd34_pos_cd20_neg']:.0f}% CD34+CD20-"
                f" and {100 * pattern['cd34_neg_cd20_pos']:.0f}% CD34-CD20+, mutually "
                f"exclusive (phi {pattern['phi_cd34_cd20']:.2f}), not a leukaemic cluster; "
                "a target found on them is not a target on leukaemia",
            }
        )
    share_pct = 100.0 * kept / leukocytes if leukocytes else None
    found = aberrancies(blasts, thresholds, settings, staying)
    low = {
        "blast_pct_leukocytes": None if share_pct is None else round(share_pct, 4),
        "min_blast_pct": settings.min_blast_pct,
        "aberrancies": found,
        "source": settings.low_blast_source,
        "aberrancy_source": settings.aberrancy_source,
    }
    if share_pct is not None and kept and share_pct < settings.min_blast_pct and not found:
        result.flags.append(
            {
                "code": LOW_BLAST_SHARE,
                "message": f"blasts are {share_pct:.2f}% of leukocytes, under "
                f"{settings.min_blast_pct:g}%, and show no aberrant phenotype the panel can "
                "see: normal cells may decide the antigen numbers",
            }
        )
    result.summary = {
        "events_in_gate": int(n),
        "blasts_kept": kept,
        "excluded": dict(result.excluded),
        "basophils_pdcs": look,
        "continuum": pattern,
        "low_blast_share": low,
    }
    return result


def _phi(a: np.ndarray, b: np.ndarray) -> float | None:
    """Phi coefficient of two boolean arrays (None when either is constant)."""
    n11, n10 = float(np.sum(a & b)), float(np.sum(a & ~b))
    n01, n00 = float(np.sum(~a & b)), float(np.sum(~a & ~b))
    denominator = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    if denominator <= 0:
        return None
    return (n11 * n00 - n10 * n01) / float(np.sqrt(denominator))


def screen_gate(
    data: Mapping[str, np.ndarray],
    gated: Gated,
    thresholds: Mapping[str, float | None],
    percentile: float,
    settings: Settings,
    taken: Mapping[str, np.ndarray] | None = None,
) -> Screen:
    """:func:`screen` on a gated tube: the blast gate's events, the antigens' thresholds as
    quantified (``thresholds``; None where no number), CD34's from the CD34-negative
    populations (:data:`CD34_NEGATIVES`; the control tube cannot serve, its backbone is
    stained) and the leukocyte count. ``taken`` holds markers' values in the blast gate
    already taken out (``data[m][gate]``), so they are not taken again."""
    gate = gated.masks["blasts"]
    taken = taken or {}
    thresholds = {m: t for m, t in thresholds.items() if t is not None}
    cut_offs = [
        float(orderstats.percentile(masked(data["CD34"], negative), percentile))
        for negative in (gated.masks.get(p) for p in CD34_NEGATIVES)
        if "CD34" in data
        and negative is not None
        and np.count_nonzero(negative) >= MIN_NEGATIVE_EVENTS
    ]
    if cut_offs:
        thresholds["CD34"] = min(cut_offs)
    counts = dict(zip(gated.table["population"], gated.table["events"], strict=True))
    events = {
        m: taken[m] if m in taken else masked(data[m], gate)
        for m in screen_markers(settings)
        if m in data
    }
    return screen(events, thresholds, int(counts.get("leukocytes", 0)), settings.mimics)


def screen_markers(settings: Settings) -> list[str]:
    """The markers :func:`screen_gate` reads on the blast gate's events, sorted."""
    return sorted({*SCREEN_MARKERS, *settings.mimics.not_in})


def exclude_lookalikes(gated: Gated, found: Screen) -> np.ndarray:
    """Take the excluded events out of the blasts (masks and populations.tsv, where they get
    their own row, :data:`LOOKALIKES`, beside the blasts) and return the new blast mask."""
    gate = gated.masks["blasts"]
    index = np.flatnonzero(gate)
    removed = np.zeros_like(gate)
    removed[index[~found.keep]] = True
    blasts = gate & ~removed
    gated.masks["blasts"] = blasts
    gated.masks[LOOKALIKES] = removed
    table = gated.table.copy()
    row = table.index[table["population"] == "blasts"][0]
    parent = str(table.at[row, "parent"])
    parent_events = int(table.loc[table["population"] == parent, "events"].iloc[0])
    n_total = gate.size
    for name, count, where in (
        ("blasts", int(np.count_nonzero(blasts)), row),
        (LOOKALIKES, int(np.count_nonzero(removed)), None),
    ):
        values = {
            "population": name,
            "parent": parent,
            "events": count,
            "pct_parent": percent(count, parent_events),
            "pct_total": percent(count, n_total),
        }
        if where is None:
            table = pd.concat([table, pd.DataFrame([values])], ignore_index=True)
        else:
            for key, value in values.items():
                table.at[where, key] = value
    gated.table = table
    return blasts
