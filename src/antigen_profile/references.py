"""Which negative population each antigen's threshold is taken from.

Quantification (:mod:`antigen_profile.quantify`) turns a reference into a threshold and a
call; this module chooses the reference, strongest first, so that the choice and its order
are written down once: the antigen's own control tube (an FMO for that marker), the sample's
control tube, the configured internal negative population, a two-component mixture on the
blasts themselves, else none.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from antigen_profile.populations import masked
from antigen_profile.quantify import PositivitySettings, Reference, mixture_reference

#: Key of the sample's control tube among the control tubes' blasts (the others are keyed by
#: the marker whose FMO they are).
ANY_MARKER = "*"


def choose_references(
    quantified: list[str],
    data: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    blasts: Mapping[str, np.ndarray],
    controls: Mapping[str, Mapping[str, np.ndarray]],
    positivity: PositivitySettings,
    display: Mapping[str, Mapping[str, float]],
    taken: dict[tuple[str, str], np.ndarray] | None = None,
) -> dict[str, Reference | None]:
    """Per antigen, the best negative reference with enough events, strongest first: the
    antigen's own control tube (an FMO for that marker), the sample's control tube, the
    configured internal negative population, a two-component mixture on the blasts
    themselves (weakest, on each marker's ``display`` logicle), else none. ``blasts`` holds
    the blasts' values of every quantified marker the tube has (``data`` masked by the blast
    gate); ``controls`` the control tubes' blasts, by marker or :data:`ANY_MARKER`.
    ``taken`` keeps each internal population's values by (marker, population) for a later
    call on the same tube (after look-alikes left the blasts: those values are the same)."""
    taken = {} if taken is None else taken
    internal = positivity.internal_negative
    enough = positivity.min_reference_events
    references: dict[str, Reference | None] = {}
    for marker in quantified:
        if marker not in data:
            continue
        candidates: list[tuple[str, np.ndarray]] = []
        for key, source in ((marker, "marker_control:blasts"), (ANY_MARKER, "control:blasts")):
            if marker in controls.get(key, {}):
                candidates.append((source, controls[key][marker]))
        population = internal.get(marker)
        if population and population in masks:
            if (marker, population) not in taken:
                taken[marker, population] = masked(data[marker], masks[population])
            candidates.append((f"internal:{population}", taken[marker, population]))
        chosen = next((Reference(v, src) for src, v in candidates if v.size >= enough), None)
        if chosen is None and blasts[marker].size >= positivity.quantify_floor:
            chosen = mixture_reference(blasts[marker], display[marker], positivity)
        if chosen is None and candidates:
            chosen = Reference(*reversed(candidates[0]))  # too small: quantify says so
        references[marker] = chosen
    return references
