"""Ingest: an FCS file becomes a :class:`Tube`.

This is the only module that knows FCS quirks. Everything after it sees events as a NumPy
array, detector names, and a map from marker names (``CD22``, ``SSC-A``) to detectors, so no
later stage ever hard-codes a detector name.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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
        before compensation.
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


SPILLOVER_KEYWORDS = ("$SPILLOVER", "SPILL", "$COMP")


def parse_spillover(text: str, channels: Sequence[str]) -> pd.DataFrame:
    """Parse a spillover keyword value: ``n, name_1..name_n, n*n values`` (row-major).

    Names may be detector names or 1-based channel numbers (some instruments write numbers).
    """
    items = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip() != ""]
    try:
        n = int(float(items[0]))
    except (ValueError, IndexError):
        raise ValueError("spillover does not start with a channel count") from None
    if n < 1 or len(items) != 1 + n + n * n:
        raise ValueError(
            f"spillover declares {n} channels, so {1 + n + n * n} items, but holds {len(items)}"
        )
    names = items[1 : 1 + n]
    resolved = []
    for name in names:
        if name in channels:
            resolved.append(name)
        elif name.isdigit() and 1 <= int(name) <= len(channels):
            resolved.append(channels[int(name) - 1])
        else:
            raise ValueError(f"spillover names channel {name!r}, which is not in the file")
    values = np.array([float(v) for v in items[1 + n :]], dtype=float).reshape(n, n)
    if not np.all(np.isfinite(values)):
        raise ValueError("spillover holds non-numeric values")
    return pd.DataFrame(values, index=resolved, columns=resolved)


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


def _load_flowkit_sample(path: Path) -> tuple[Any, str | None]:
    """Load with FlowKit, tolerating the DATA-offset quirks it can tolerate (off-by-one ends,
    HEADER/TEXT disagreement) and recording that we did."""
    import flowkit as fk
    from flowio.exceptions import FCSParsingError

    attempts: list[tuple[dict[str, bool], str | None]] = [
        ({}, None),
        ({"ignore_offset_error": True}, "DATA offset off by one; read with the TEXT offsets"),
        (
            {"ignore_offset_discrepancy": True},
            "HEADER and TEXT disagree on the DATA offsets; used the TEXT offsets",
        ),
        (
            {"ignore_offset_discrepancy": True, "use_header_offsets": True},
            "HEADER and TEXT disagree on the DATA offsets; used the HEADER offsets",
        ),
    ]
    first_error: Exception | None = None
    for options, note in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample = fk.Sample(str(path), **options)
            return sample, note
        except Exception as exc:  # any library failure becomes our one-line error
            first_error = first_error or exc
            offset_problem = isinstance(exc, FCSParsingError) and (
                "offset" in str(exc).lower() or "discrepancy" in str(exc).lower()
            )
            if not offset_problem:
                break
    reason = str(first_error).splitlines()[0] if first_error else "unknown reason"
    if type(first_error).__name__ == "MultipleDataSetsError":
        reason = "the file holds several data sets"
    raise IngestError(
        f"{path}: cannot be read as FCS ({type(first_error).__name__}: {reason}); "
        "check that the file is a complete FCS 2.0/3.x export"
    )


def read_tube(
    path: str | Path,
    marker_aliases: Mapping[str, Sequence[str]],
    scatter_aliases: Mapping[str, Sequence[str]],
    required: Sequence[str] = (),
    spillover_csv: str | Path | None = None,
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
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: file not found; check the path in the sample sheet")
    if path.stat().st_size < 58:
        raise IngestError(f"{path}: only {path.stat().st_size} bytes, too short to be FCS")
    checksum = sha256_file(path)
    sample, note = _load_flowkit_sample(path)
    notes = [note] if note else []

    events = np.asarray(sample.get_events(source="raw"), dtype=np.float64)
    channels = [str(c) for c in sample.pnn_labels]
    labels = [str(s or "") for s in sample.pns_labels]
    keywords = _standard_keywords(sample.metadata)
    keywords["FCSVERSION"] = str(getattr(sample, "version", "") or "")
    if events.shape[0] == 0:
        raise IngestError(f"{path}: the file holds no events; re-export the acquisition")
    if not np.all(np.isfinite(events)):
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
        for key in SPILLOVER_KEYWORDS:
            if key in keywords and keywords[key].strip():
                try:
                    spillover = parse_spillover(keywords[key], channels)
                    source = key
                    break
                except ValueError as exc:
                    notes.append(f"{key} ignored: {exc}")
    ranges = _scale_tops(sample.channels)
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


def _scale_tops(channels: pd.DataFrame) -> dict[str, float]:
    """Top of each channel's scale, scaled as FlowIO scales the events: anti-log for
    ``$PnE`` = f1,f2 with f1 > 0, then divided by a ``$PnG`` gain. Comparing events with the
    raw ``$PnR`` would misjudge saturation on every log-amplified or gained channel."""
    tops: dict[str, float] = {}
    for row in channels.itertuples():
        top = float(row.pnr) - 1.0
        decades, log0 = (float(v) for v in row.pne)
        if decades > 0:
            top = 10 ** (decades * top / float(row.pnr)) * (log0 or 1.0)
        gain = float(row.png)
        if gain not in (0.0, 1.0):
            top /= gain
        tops[str(row.pnn)] = top
    return tops


def _standard_keywords(metadata: Mapping[str, str]) -> dict[str, str]:
    """FlowIO lower-cases keywords and strips ``$``; restore the FCS spelling (``$CYT``,
    ``$P3S``) so reports and errors show what the file says. BD's ``SPILL`` has no ``$``."""
    out = {}
    for key, value in metadata.items():
        bare = str(key).lstrip("$").upper()
        if bare == "SPILL" or not (bare in _STANDARD or re.fullmatch(r"P\d+[A-Z]", bare)):
            out[bare] = str(value)
        else:
            out["$" + bare] = str(value)
    return out


_STANDARD = {
    "CYT", "FIL", "TOT", "PAR", "DATE", "BTIM", "ETIM", "SPILLOVER", "COMP", "TIMESTEP",
    "DATATYPE", "BYTEORD", "MODE", "SRC", "INST", "OP", "SYS", "CYTSN", "BEGINDATA", "ENDDATA",
    "BEGINANALYSIS", "ENDANALYSIS", "BEGINSTEXT", "ENDSTEXT", "NEXTDATA",
}  # fmt: skip


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
