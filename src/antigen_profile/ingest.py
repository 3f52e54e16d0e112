"""Ingest: an FCS file becomes a :class:`Tube`.

This is the only module that knows FCS quirks. Everything after it sees events as a NumPy
array, detector names, and a map from marker names (``CD22``, ``SSC-A``) to detectors, so no
later stage ever hard-codes a detector name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from antigen_profile import fcs
from antigen_profile.fcs import FCSError, find_spillover, read_fcs


class IngestError(Exception):
    """An input file that cannot be analysed; the message is one line: file, problem, fix."""


@dataclass
class Tube:
    """One acquired tube: events plus everything needed to interpret them.

    Attributes
    ----------
    path : Path
        The FCS file (never written to).
    events : numpy.ndarray
        ``(n_events, n_channels)`` float64, after FCS scaling (gain, log amplification) but
        before compensation; column-major (each detector contiguous: the analysis works
        channel by channel).
    channels : list of str
        Detector names (``$PnN``), one per column of ``events``.
    labels : list of str
        Stain descriptions (``$PnS``), ``""`` where absent.
    markers : dict of str to str
        Marker or scatter name -> detector name, as found in this file.
    spillover : pandas.DataFrame or None
        Spillover matrix with detector names as index and columns (rows: source dye).
    spillover_source : str
        Keyword the spillover came from (``$SPILLOVER``, ``SPILL``, ``$SPILL``, ``$COMP``),
        ``config`` or ``none``.
    keywords : dict of str to str
        TEXT segment keywords, upper-case with the leading ``$`` kept.
    ranges : dict of str to float
        The top of each detector's scale (``$PnR`` - 1) in the units of ``events``, i.e. after
        the same gain and log scaling: an event at or above it is saturated.
    sha256 : str
        Checksum of the file as read, for the audit trail.
    warnings : list of str
        Anything a reviewer should know about how the file was read.
    """

    path: Path
    events: np.ndarray
    channels: list[str]
    labels: list[str]
    markers: dict[str, str]
    spillover: pd.DataFrame | None
    spillover_source: str
    keywords: dict[str, str]
    ranges: dict[str, float]
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return int(self.events.shape[0])

    @property
    def version(self) -> str:
        return self.keywords.get("FCSVERSION", "")

    @property
    def cytometer(self) -> str:
        return self.keywords.get("$CYT", "")

    def channel_index(self, marker: str) -> int:
        """Column of ``events`` that holds ``marker``."""
        try:
            return self.channels.index(self.markers[marker])
        except KeyError:
            raise IngestError(
                f"{self.path}: marker {marker} not found in the panel; add its $PnS spelling "
                "to `markers` in the config"
            ) from None

    def column(self, marker: str) -> np.ndarray:
        """Events of one marker (a view, not a copy)."""
        return self.events[:, self.channel_index(marker)]


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in blocks so large tubes do not load twice into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Events checked per block by :func:`_all_finite`: a bounded temporary, not a boolean copy
#: of the whole tube.
FINITE_BLOCK = 1 << 16


def _all_finite(events: np.ndarray) -> bool:
    """Whether every value is finite, checked block by block so that the check of a large
    tube never allocates a mask the size of its events."""
    return all(
        np.isfinite(events[first : first + FINITE_BLOCK]).all()
        for first in range(0, events.shape[0], FINITE_BLOCK)
    )


def _alias_pattern(alias: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive pattern; ``-``, ``_`` and spaces inside an alias are
    interchangeable or optional, so "HLA-DR" also finds "HLA DR" and "HLADR"."""
    parts = [re.escape(p) for p in re.split(r"[-_ ]+", alias.strip()) if p]
    body = r"[-_ ]?".join(parts)
    return re.compile(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])", re.IGNORECASE)


def _normalise(name: str) -> str:
    return re.sub(r"[-_ ]+", "", name).upper()


def find_markers(
    channels: Sequence[str],
    labels: Sequence[str],
    marker_aliases: Mapping[str, Sequence[str]],
    scatter_aliases: Mapping[str, Sequence[str]],
) -> tuple[dict[str, str], list[str]]:
    """Map marker and scatter names to detectors.

    Markers are searched in ``$PnS`` first and then in ``$PnN`` (some instruments write the
    stain into the detector name). Scatter and time channels are matched on ``$PnN``. When
    several detectors match one marker, an area (``-A``) detector wins; any remaining tie is
    reported as a warning and the first is used.

    Returns
    -------
    markers : dict
        Name -> detector.
    notes : list of str
        Warnings about ambiguous matches.
    """
    found: dict[str, str] = {}
    notes: list[str] = []
    for name, aliases in scatter_aliases.items():
        wanted = {_normalise(a) for a in aliases}
        for alias in aliases:  # alias order is the preference order
            hits = [c for c in channels if _normalise(c) == _normalise(alias)]
            if hits:
                found[name] = hits[0]
                break
        else:
            hits = [c for c in channels if _normalise(c) in wanted]
            if hits:
                found[name] = hits[0]
    used = set(found.values())
    for marker, aliases in marker_aliases.items():
        patterns = [_alias_pattern(a) for a in [marker, *aliases]]
        for texts in (labels, channels):
            hits = [
                c
                for c, text in zip(channels, texts, strict=True)
                if text and c not in used and any(p.search(text) for p in patterns)
            ]
            if hits:
                break
        if not hits:
            continue
        if len(hits) > 1:
            area = [c for c in hits if c.upper().endswith("-A")]
            hits = area or hits
            if len(hits) > 1:
                joined = ", ".join(hits)
                notes.append(f"marker {marker} matches detectors {joined}; using {hits[0]}")
        found[marker] = hits[0]
    return found, notes


def parse_spillover(text: str, channels: Sequence[str]) -> pd.DataFrame:
    """A spillover keyword's value (names or 1-based channel numbers, see
    :func:`antigen_profile.fcs.parse_spillover`) as a matrix indexed by detector."""
    names, matrix = fcs.parse_spillover(text, channels)
    return pd.DataFrame(matrix, index=names, columns=names)


def read_spillover_csv(path: str | Path, channels: Sequence[str]) -> pd.DataFrame:
    """Read a spillover matrix given in config (CSV with detector names as header and index)."""
    matrix = pd.read_csv(path, index_col=0)
    matrix.index = matrix.index.astype(str)
    missing = [c for c in matrix.columns if c not in channels]
    if missing or list(matrix.index) != list(matrix.columns):
        raise IngestError(
            f"{path}: spillover matrix must be square with the same detector names as header "
            f"and index, all present in the tube (missing: {', '.join(missing) or 'none'})"
        )
    return matrix.astype(float)


def read_tube(
    path: str | Path,
    marker_aliases: Mapping[str, Sequence[str]],
    scatter_aliases: Mapping[str, Sequence[str]],
    required: Sequence[str] = (),
    spillover_csv: str | Path | None = None,
    sha256: str | None = None,
) -> Tube:
    """Read one FCS file into a :class:`Tube`.

    Parameters
    ----------
    path : str or Path
        The FCS file; opened read-only.
    marker_aliases, scatter_aliases : mapping
        From the config's ``markers`` and ``scatter`` sections.
    required : sequence of str
        Markers the analysis cannot do without; a missing one is an :class:`IngestError`
        naming the file and the marker.
    spillover_csv : path, optional
        A spillover matrix that overrides the file's own.
    sha256 : str, optional
        The file's checksum when the caller already took it (files are hashed once).
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: file not found; check the path in the sample sheet")
    try:
        data = read_fcs(path, order="F")
    except FCSError as exc:
        raise IngestError(str(exc)) from None
    checksum = sha256 or sha256_file(path)
    notes = list(data.warnings)
    events = data.events
    channels = list(data.channels)
    labels = list(data.labels)
    keywords = dict(data.keywords)
    keywords["FCSVERSION"] = data.version.removeprefix("FCS")
    if events.shape[0] == 0:
        raise IngestError(f"{path}: the file holds no events; re-export the acquisition")
    if not _all_finite(events):
        raise IngestError(f"{path}: the DATA segment holds non-finite values; re-export the file")

    markers, marker_notes = find_markers(channels, labels, marker_aliases, scatter_aliases)
    notes += marker_notes
    missing = [m for m in required if m not in markers]
    if missing:
        raise IngestError(
            f"{path}: required marker(s) {', '.join(missing)} not found in $PnS "
            f"({', '.join(s for s in labels if s) or 'no stain names'}); add the spelling to "
            "`markers` (or `scatter`) in the config"
        )

    spillover, source = None, "none"
    if spillover_csv:
        spillover, source = read_spillover_csv(spillover_csv, channels), "config"
    else:
        found, spill_notes = find_spillover(keywords, channels)
        notes += spill_notes
        if found is not None:
            spillover = pd.DataFrame(found.matrix, index=found.names, columns=found.names)
            source = found.keyword
    ranges = dict(zip(channels, data.scale_tops, strict=True))
    return Tube(
        path=path,
        events=events,
        channels=channels,
        labels=labels,
        markers=markers,
        spillover=spillover,
        spillover_source=source,
        keywords=keywords,
        ranges=ranges,
        sha256=checksum,
        warnings=notes,
    )


def map_control(control: Tube, stained: Tube) -> Tube:
    """Give a control tube the stained tube's marker map, through the detectors.

    Control tubes (unstained, FMO, isotype) often carry no marker names, or isotype names
    such as "IgG1 PE"; the detector is what both tubes share.
    """
    markers = {}
    notes = list(control.warnings)
    for marker, channel in stained.markers.items():
        if channel in control.channels:
            markers[marker] = channel
        else:
            notes.append(f"control has no detector {channel} (marker {marker})")
    control.markers = markers
    control.warnings = notes
    return control
