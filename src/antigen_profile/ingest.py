"""Ingest: an FCS file becomes a :class:`Tube`.

The FCS file itself is parsed by :mod:`antigen_profile.fcs`; here its channels are matched to
markers, its spillover matrix chosen and its panel checked. Everything after it sees events as
a NumPy array, detector names, and a map from marker names (``CD22``, ``SSC-A``) to
detectors (:func:`marker_data` gives each marker's column), so no later stage ever hard-codes
a detector name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from antigen_profile.errors import AntigenProfileError
from antigen_profile.fcs import FCSError, find_spillover, read_fcs
from antigen_profile.inputs import sha256_regular


class IngestError(AntigenProfileError):
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
    shared : dict of str to list of str
        Detectors whose stain names two or more antigens (a dump or dual-label channel),
        with the configured markers they name: those markers count as not measured.
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
    shared: dict[str, list[str]] = field(default_factory=dict)

    @property
    def unmatched(self) -> list[str]:
        """Detectors matched to no marker or scatter role (``inspect`` lists them, so a lab
        sees which stain spellings the config does not know)."""
        used = set(self.markers.values()) | set(self.shared)
        return [c for c in self.channels if c not in used]

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
    """SHA-256 of a file, read in blocks so large tubes do not load twice into memory; a
    FIFO or device is an :class:`~antigen_profile.inputs.InputFileError`, never read."""
    return sha256_regular(path)


#: Events checked per block by :func:`_all_finite`: a bounded temporary, not a boolean copy
#: of the whole tube.
FINITE_BLOCK = 1 << 16


def _all_finite(events: np.ndarray) -> bool:
    """Whether every value is finite, checked block by block so that the check of a large
    tube never allocates a mask the size of its events. A finite sum per channel proves it
    at once (an infinity or NaN anywhere makes its channel's sum infinite or NaN); only a sum
    that is not (an overflow of finite values, or a bad value) is checked value by value."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.add.reduce(events, axis=0) if events.ndim == 2 else None
    if sums is not None and bool(np.isfinite(sums).all()):
        return True
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


#: A scatter measurement that stands in for another when a tube lacks it: instruments that
#: record only pulse heights (FACSCalibur, FACScan) have no area channel, and the height is
#: then the best forward or side scatter there is.
STAND_INS = {"FSC-A": "FSC-H", "SSC-A": "SSC-H"}

#: Antigen names in free text: CD numbers (CD3, CD45RA, CD79a) and the usual non-CD ones.
#: Used only to recognise a stain that names two antigens (a dump or dual-label channel).
ANTIGEN_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(CD\d+[A-Za-z]{0,2}|HLA[-_ ]?DR|KAPPA|LAMBDA|IGM|IGD|TDT|MPO|FMC7)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def antigens_named(label: str) -> list[str]:
    """Distinct antigens a ``$PnS`` names, upper-case, in order ("CD3/CD19 PE-Cy7" gives
    ``["CD3", "CD19"]``)."""
    names: list[str] = []
    for match in ANTIGEN_TOKEN.finditer(label or ""):
        name = _normalise(match.group(1))
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class MarkerMatch:
    """What :func:`find_markers` found in one tube.

    ``markers`` maps a marker or scatter role to its detector; ``shared`` maps a detector
    whose stain names two or more antigens (``CD3/CD19 PE-Cy7``) to the configured markers it
    names, none of which is taken from it; ``notes`` are warnings about ambiguous matches.
    """

    markers: dict[str, str]
    shared: dict[str, list[str]]
    notes: list[str]


def _scatter_roles(
    channels: Sequence[str], scatter_aliases: Mapping[str, Sequence[str]]
) -> tuple[dict[str, str], list[str]]:
    """Scatter and time roles matched on ``$PnN`` (whole name, case, ``-``, ``_`` and spaces
    ignored), alias order being preference order; a height stands in for a missing area."""
    found: dict[str, str] = {}
    notes: list[str] = []
    for name, aliases in scatter_aliases.items():
        for alias in aliases:  # alias order is the preference order
            hits = [c for c in channels if _normalise(c) == _normalise(alias)]
            hits = [c for c in hits if c not in found.values()]
            if hits:
                found[name] = hits[0]
                break
    for area, height in STAND_INS.items():
        if area not in found and height in found:
            found[area] = found.pop(height)
            notes.append(
                f"no {area[:3]} area channel: {found[area]} (pulse height) stands in for {area}"
            )
    return found, notes


def find_markers(
    channels: Sequence[str],
    labels: Sequence[str],
    marker_aliases: Mapping[str, Sequence[str]],
    scatter_aliases: Mapping[str, Sequence[str]],
) -> MarkerMatch:
    """Map marker and scatter names to detectors.

    Markers are searched in ``$PnS`` first and then in ``$PnN`` (some instruments write the
    stain into the detector name). Scatter and time channels are matched on ``$PnN``, with
    the vendor spellings of config ``scatter``. When several detectors match one marker, an
    area (``-A``) detector wins; any remaining tie is reported as a warning and the first is
    used. A stain naming two or more antigens ("CD3/CD19") measures neither alone: it is never
    taken for any of them and is listed in ``shared``.
    """
    found, notes = _scatter_roles(channels, scatter_aliases)
    used = set(found.values())
    shared: dict[str, list[str]] = {}
    patterns = {
        marker: [_alias_pattern(a) for a in [marker, *aliases]]
        for marker, aliases in marker_aliases.items()
    }
    for channel, label in zip(channels, labels, strict=True):
        if channel in used or len(antigens_named(label)) < 2:
            continue
        named = [m for m, pats in patterns.items() if any(p.search(label) for p in pats)]
        if named:
            shared[channel] = named
    for marker in marker_aliases:
        for texts in (labels, channels):
            hits = [
                c
                for c, text in zip(channels, texts, strict=True)
                if text
                and c not in used
                and c not in shared
                and any(p.search(text) for p in patterns[marker])
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
    for channel, named in shared.items():
        label = labels[list(channels).index(channel)]
        missing = [m for m in named if m not in found]
        if missing:
            notes.append(
                f"{', '.join(missing)} not measured: detector {channel} carries "
                f"'{label}', a stain naming {len(antigens_named(label))} antigens "
                "(a dump or dual-label channel measures none of them alone)"
            )
    return MarkerMatch(found, shared, notes)


#: Channel names of mass cytometry (CyTOF) files: metal isotopes and event-length counters.
MASS_CHANNEL = re.compile(
    r"^\(?[A-Z][a-z]?\d{2,3}\)?D[di]$|^event_length$|^cell_length$", re.IGNORECASE
)

#: What each gating role is, for a message that tells a lab what its tube lacks.
ROLE_WORDS = {
    "FSC-A": "forward scatter (FSC-A, or FSC-H where the instrument records only heights)",
    "SSC-A": "side scatter (SSC-A, or SSC-H where the instrument records only heights)",
    "FSC-H": "forward-scatter height",
    "Time": "time",
}


def _near_misses(
    role: str, texts: Sequence[tuple[str, str]], aliases: Sequence[str]
) -> list[tuple[str, str]]:
    """(detector, text) pairs whose text spells ``role`` with separators the aliases do not
    allow ("CD 45", "CD-45"): the only case where "add the spelling" is the right advice."""
    wanted = {_normalise(a).replace(".", "") for a in [role, *aliases]}
    misses = []
    for channel, text in texts:
        tokens = [t for t in re.split(r"[^A-Za-z0-9]+", text) if t]
        joined = {a.upper() + b.upper() for a, b in itertools.pairwise(tokens)}
        if joined & wanted:
            misses.append((channel, text))
    return misses


def panel_problem(
    tube: Tube,
    required: Sequence[str],
    marker_aliases: Mapping[str, Sequence[str]],
    scatter_aliases: Mapping[str, Sequence[str]],
) -> str | None:
    """Why this tube cannot be gated, in one line, or ``None`` when every role in
    ``required`` was found.

    The line names the role that is missing and what the tube does have, and suggests adding
    a spelling to the config only when a near-miss spelling is present (the advice is wrong
    when the stain is simply not in the panel).
    """
    missing = [r for r in required if r not in tube.markers]
    if not missing:
        return None
    path = tube.path
    scatter_roles = [r for r in missing if r in scatter_aliases]
    if scatter_roles and not any(r in tube.markers for r in scatter_aliases if r != "Time"):
        mass = [c for c in tube.channels if MASS_CHANNEL.match(c)]
        if mass:
            return (
                f"{path}: no light-scatter channel (FSC, SSC): this is a mass cytometry file "
                f"({', '.join(mass[:3])}, ...); antigen-profile gates blasts on scatter and "
                "CD45 and needs a flow cytometry tube"
            )
    role = missing[0]
    if role in scatter_aliases:
        words = ROLE_WORDS.get(role, role)
        detectors = ", ".join(tube.channels)
        misses = _near_misses(role, [(c, c) for c in tube.channels], scatter_aliases[role])
        scatterish = [
            c
            for c in tube.channels
            if c not in tube.markers.values() and re.search(r"SS|SC|SIDE|FS|FWD", c.upper())
        ]
        advice = ""
        if misses or scatterish:
            names = ", ".join(c for c, _ in misses) or ", ".join(scatterish)
            advice = f"; if {names} is that channel, add its $PnN to `scatter.{role}` in the config"
        return (
            f"{path}: no {words} channel in this tube: the blast gate needs it "
            f"(detectors: {detectors}){advice}"
        )
    shared = [c for c, named in tube.shared.items() if role in named]
    if shared:
        label = tube.labels[tube.channels.index(shared[0])]
        return (
            f"{path}: {role} is only on detector {shared[0]} ('{label}'), a channel shared with "
            f"another antigen: the blast gate needs {role} on a detector of its own"
        )
    scatter = {tube.markers[r] for r in scatter_aliases if r in tube.markers}
    stains = [
        f"{s} ({c})"
        for c, s in zip(tube.channels, tube.labels, strict=True)
        if s and c not in scatter
    ]
    have = ", ".join(stains) or "no $PnS stain names"
    texts = [
        (c, s) for c, s in zip(tube.channels, tube.labels, strict=True) if s and c not in scatter
    ]
    misses = _near_misses(role, texts, marker_aliases.get(role, []))
    advice = ""
    if misses:
        channel, text = misses[0]
        advice = (
            f"; '{text}' on {channel} looks like {role}: add that spelling to "
            f"`markers.{role}` in the config"
        )
    return (
        f"{path}: no {role} stain in this tube: the blast gate needs {role} "
        f"(stains: {have}){advice}"
    )


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
        Roles the caller cannot do without; a missing one is an :class:`IngestError` from
        :func:`panel_problem` (the pipeline checks after reading instead, so that a refused
        tube's report still shows what the file holds).
    spillover_csv : path, optional
        A spillover matrix that overrides the file's own.
    sha256 : str, optional
        The file's checksum when the caller already took it (files are hashed once).
    """
    path = Path(path)
    try:  # read_fcs says what a path that is not a regular file is, and never blocks on one
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

    match = find_markers(channels, labels, marker_aliases, scatter_aliases)
    notes += match.notes

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
    tube = Tube(
        path=path,
        events=events,
        channels=channels,
        labels=labels,
        markers=match.markers,
        spillover=spillover,
        spillover_source=source,
        keywords=keywords,
        ranges=ranges,
        sha256=checksum,
        warnings=notes,
        shared=match.shared,
    )
    problem = panel_problem(tube, required, marker_aliases, scatter_aliases)
    if problem:
        raise IngestError(problem)
    return tube


def marker_data(tube: Tube, events: np.ndarray) -> dict[str, np.ndarray]:
    """Each marker's column of ``events`` (the tube's events, or the same compensated), by
    marker name: what gating and quantification read."""
    return {m: events[:, tube.channels.index(ch)] for m, ch in tube.markers.items()}


def shared_stain_notes(tube: Tube) -> dict[str, str]:
    """Markers whose only detector carries a stain naming two or more antigens (a dump or
    dual-label channel such as ``CD3/CD19 PE-Cy7``), with the sentence a reviewer reads:
    such a channel measures neither antigen alone, so the antigen counts as not measured."""
    notes = {}
    for channel, markers in tube.shared.items():
        label = tube.labels[tube.channels.index(channel)]
        for marker in markers:
            if marker not in tube.markers:
                notes[marker] = (
                    f"{marker} not measured: its only detector, {channel}, carries '{label}', "
                    "a stain shared with another antigen, which measures neither alone"
                )
    return notes


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
