"""Off-tumour notes printed next to each eligible CAR-T target in the sample report.

One mapping, from the project's domain brief ("Off-tumour notes worth printing next to a
target"), so that every report words them the same way and a reviewer can check them in one
place. A target without an entry gets a plain "no note on file" in the report, never silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Normal cells and conditions that carry, or mask, each target: what a CAR against it also
#: hits or misses. Keys are the trial's target names (case-insensitive lookup).
OFF_TUMOUR_NOTES: Mapping[str, str] = MappingProxyType(
    {
        "CD123": (
            "Also on basophils, plasmacytoid dendritic cells, monocytes, haematopoietic "
            "progenitors and endothelium."
        ),
        "CD38": (
            "Also on T, NK and plasma cells: CAR-T fratricide during manufacture. Prior "
            "daratumumab can mask CD38 in staining."
        ),
        "CD20": "Also on normal B cells: B-cell aplasia is expected.",
        "CD22": (
            "Also on normal B cells (B-cell aplasia is expected) and on normal B progenitors."
        ),
        "CD10": "Also on neutrophils, hematogones and germinal-centre B cells.",
    }
)

#: Shown for a target the mapping does not cover.
NO_NOTE = "No off-tumour note on file for this target."


def off_tumour_note(target: str) -> str:
    """The off-tumour note of a target, or :data:`NO_NOTE`.

    Parameters
    ----------
    target
        A target antigen as decision.json names it (``CD22``); case is ignored.

    Returns
    -------
    str
        The note to print next to the target.
    """
    wanted = str(target).strip().upper()
    for name, note in OFF_TUMOUR_NOTES.items():
        if name.upper() == wanted:
            return note
    return NO_NOTE
