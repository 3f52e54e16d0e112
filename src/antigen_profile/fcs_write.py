"""FCS files written through FlowIO: one writer and one ``$SPILLOVER`` formatter.

The simulator writes its tubes with them, and a lab's gating (:mod:`antigen_profile.lab_gating`)
hands FlowKit our events through the same in-memory FCS file, so there is one place that
knows how FlowIO wants events, labels and keywords. Reading is :mod:`antigen_profile.fcs`.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from antigen_profile.files import atomic_write

__all__ = ["format_spillover", "write_fcs", "write_fcs_to"]

#: Significant digits a spillover value is written with when they read back exactly.
SPILLOVER_DIGITS = 10


def format_spillover(detectors: Sequence[str], matrix: np.ndarray) -> str:
    """A spillover matrix as an FCS ``$SPILLOVER`` value (``n,names...,row-major values``).

    Each value is written with :data:`SPILLOVER_DIGITS` significant digits where that text
    reads back as the very same number, else in full (``repr``): a tube's matrix handed to
    FlowKit must compensate exactly as ours, and a simulated tube's keyword stays short.
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape != (len(detectors), len(detectors)):
        raise ValueError("spillover matrix must be square with one row per detector")
    numbers = ",".join(_exact(float(v)) for v in values.ravel())
    return f"{len(detectors)},{','.join(str(d) for d in detectors)},{numbers}"


def _exact(value: float) -> str:
    short = f"{value:.{SPILLOVER_DIGITS}g}"
    return short if float(short) == value else repr(value)


def write_fcs_to(
    handle: BinaryIO,
    events: np.ndarray,
    channels: Sequence[str],
    labels: Sequence[str | None] | None,
    keywords: Mapping[str, str],
) -> None:
    """Write an FCS 3.1 file (float32, little endian) to an open binary ``handle``.

    ``labels`` are the ``$PnS`` stains (``None`` or empty entries write none for that
    channel); ``keywords`` are further TEXT keywords (keys without ``$`` are written
    upper-cased; ``$PnR``/``$PnG`` are honoured, while ``$PnN``/``$PnS``/``$PnB``/``$PnE``
    come from the arguments). FlowIO writes no date keyword, so identical input gives
    identical bytes.
    """
    _create(handle, *_checked(events, channels, labels, keywords))


def write_fcs(
    path: str | Path,
    events: np.ndarray,
    channels: Sequence[str],
    labels: Sequence[str | None] | None,
    keywords: Mapping[str, str] | None = None,
) -> Path:
    """Write an FCS 3.1 file atomically (see :func:`write_fcs_to`); its folder is created
    when missing and ``$FIL`` defaults to the file name. Returns the written file.

    Bad input is refused before anything is created."""
    path = Path(path)
    checked = _checked(events, channels, labels, {"$FIL": path.name, **(keywords or {})})
    return atomic_write(path, lambda handle: _create(handle, *checked), "wb")


def _checked(
    events: np.ndarray,
    channels: Sequence[str],
    labels: Sequence[str | None] | None,
    keywords: Mapping[str, str],
) -> tuple[array, list[str], list[str] | None, dict[str, str]]:
    """FlowIO's arguments: the events as a flat float32 array in file byte order, or
    :class:`ValueError` for input that would write a corrupt file."""
    data = np.asarray(events)
    if data.ndim != 2 or data.shape[1] != len(channels):
        raise ValueError(f"events must be n x {len(channels)}, got shape {data.shape}")
    if labels is not None and len(labels) != len(channels):
        raise ValueError("labels must have one entry per channel")
    for key, value in keywords.items():
        if not isinstance(value, str) or value == "":
            # an empty FCS value would be read as an escaped delimiter and corrupt the TEXT
            raise ValueError(f"keyword {key!r} needs a non-empty string value, got {value!r}")
    flat = array("f")
    flat.frombytes(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    if sys.byteorder == "big":  # FlowIO declares $BYTEORD 1,2,3,4 (little endian)
        flat.byteswap()
    pns = None if labels is None else [str(lab or "") for lab in labels]
    return flat, list(channels), pns, dict(keywords)


def _create(
    handle: BinaryIO,
    flat: array,
    channels: list[str],
    pns: list[str] | None,
    keywords: dict[str, str],
) -> None:
    import flowio  # here, not at import: the analysis itself never writes FCS

    flowio.create_fcs(handle, flat, channels, opt_channel_names=pns, metadata_dict=keywords)
