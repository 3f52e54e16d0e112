"""The demo patients acquired on other cytometers: instrument profiles and a raw FCS writer.

Gating and quantification must not depend on the instrument (docs: "Real labs, real
instruments"): scales differ (BD 18-bit, Beckman 20-bit or 1,024 log channels, Cytek 22-bit,
CytoFLEX 23-bit, MACSQuant 0-1,000), voltages move populations, channel sets and names
differ (``FS INT``/``SS PEAK``, ``BSC-A``, ``SSC-B-A``, ``HDR-T``; heights and widths present
or not; Time present or not), and so do the FCS version, byte order and data type. An
:class:`InstrumentProfile` describes one such acquisition; :func:`write_instrument_tube`
acquires a demo tube with it.

The cells are the demo's own: a tube is simulated with the demo tube's seed and a spec whose
fluorescence detectors carry the demo's markers in the demo's order, and every extra channel
draws its random numbers after the demo's (:data:`antigen_profile.simulate.EXTRA_KINDS`). So
each event is the same cell as in the demo tube and the per-event and per-antigen truth is
:func:`antigen_profile.simulate.demo_truth`'s; only the decision may differ, where the
acquisition itself needs a reviewer (no Time channel, no spillover matrix on a conventional
cytometer, no singlet channel pair: :func:`acquisition_reviews`). The instrument then only rescales
(a gain per scatter, per fluorescence, per width), quantises, clips at its range and encodes.

Every profile carries the full 8-marker demo panel on its own detectors. None drops a marker:
an instrument with fewer colours would need other cells (other random draws) and so another
truth. Unstained detectors that such instruments also record (Beckman FL3/FL7, Attune BL2) are
written as ``unstained`` channels (autofluorescence and noise only).

FlowIO writes FCS 3.1, float32, little endian only; :func:`write_raw_fcs` writes FCS 2.0, 3.0
and 3.1, either byte order, float32 or 16/32-bit integers (``$PnB``, ``$PnR``), with
log-amplified channels (``$PnE``) and gains (``$PnG``), and deterministic bytes (no dates).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from antigen_profile.fcs_write import format_spillover
from antigen_profile.files import atomic_write
from antigen_profile.sheets import PATIENT_COLUMNS
from antigen_profile.simulate import (
    DEMO_PANEL,
    DEMO_SAMPLES,
    DEMO_SPILLOVER,
    SAMPLE_COLUMNS,
    Channel,
    Truth,
    _write_npz,
    demo_truth,
    demo_tube_names,
    demo_tube_spec,
    simulate_events,
    tsv_bytes,
)

__all__ = [
    "PROFILES",
    "Detector",
    "InstrumentProfile",
    "encode_events",
    "instrument_cohort",
    "instrument_events",
    "instrument_keywords",
    "profile",
    "write_instrument_tube",
    "write_raw_fcs",
]

#: The demo's 18-bit scale: profile gains are relative to it.
DEMO_RANGE = 262144
#: Seconds per unit of the demo's simulated Time channel.
DEMO_TIMESTEP = 0.01
HEADER_SIZE = 58
#: HEADER offsets have 8 digits; FCS 3.x writes 0 there beyond this and gives TEXT offsets.
HEADER_LIMIT = 99_999_999
#: What each channel kind is scaled with (the remaining kinds are fluorescence).
SCATTER_GAIN = {
    "FSC-A": "fsc",
    "FSC-H": "fsc",
    "SSC-A": "ssc",
    "SSC-H": "ssc",
    "SSC-B-A": "ssc",
    "SSC-B-H": "ssc",
    "FSC-W": "width",
    "SSC-W": "width",
}


@dataclass(frozen=True)
class Detector:
    """One parameter of an instrument's files.

    ``kind`` is a :class:`antigen_profile.simulate.Channel` kind; ``marker`` the demo marker
    a fluorescence detector carries and ``dye`` its fluorochrome (for the ``$PnS`` label);
    ``label`` a fixed ``$PnS`` (instruments that repeat ``$PnN`` there for scatter and time);
    ``range`` overrides the profile's ``$PnR`` (widths and time often have their own);
    ``log`` marks a log-amplified channel (``$PnE`` from the profile); ``gain`` is written as
    ``$PnG`` (readers divide by it, so the stored values are ``gain`` times the read ones).
    """

    name: str
    kind: str = "fluorescence"
    marker: str | None = None
    dye: str = ""
    label: str = ""
    range: int | None = None
    log: bool = False
    gain: float | None = None

    def __post_init__(self) -> None:
        Channel(self.name, self.kind)  # validates the kind
        if self.kind == "fluorescence" and not self.marker:
            raise ValueError(f"fluorescence detector {self.name} needs a marker")


@dataclass(frozen=True)
class InstrumentProfile:
    """How one cytometer (and its software) records a tube.

    Gains are relative to the demo's 18-bit linear scale: the instrument's scale (e.g. x4
    for a 20-bit one) times a voltage factor of its own, so that populations do not sit at
    the same fraction of the range as in the demo. ``label_style`` formats a stained
    detector's ``$PnS`` from ``{marker}`` and ``{dye}``. ``spillover`` is the keyword the
    spillover matrix is written under (``None``: data compensated in hardware or spectrally
    unmixed, with ``noise_factor`` times the demo's detector noise: unmixing spreads the
    negatives). ``log_decades``/``log_offset`` are the ``$PnE`` of log-amplified detectors:
    channel ``c`` of ``range`` reads as ``log_offset * 10 ** (log_decades * c / range)``.
    """

    name: str
    description: str
    cytometer: str | None
    version: str
    byteorder: str
    datatype: str
    bits: int
    range: int
    fsc_gain: float
    ssc_gain: float
    fluorescence_gain: float
    detectors: tuple[Detector, ...]
    label_style: str = "{marker}"
    spillover: str | None = "$SPILLOVER"
    timestep: float = DEMO_TIMESTEP
    width_gain: float = 1.0
    noise_factor: float = 1.0
    log_decades: float = 0.0
    log_offset: float = 1.0
    delimiter: str = "/"
    text_start: int = HEADER_SIZE
    data_start: int | None = None
    keywords: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.version not in ("2.0", "3.0", "3.1"):
            raise ValueError(f"{self.name}: FCS version {self.version} not written")
        if self.byteorder not in ("little", "big"):
            raise ValueError(f"{self.name}: byte order must be little or big")
        if (self.datatype, self.bits) not in (("F", 32), ("I", 16), ("I", 32)):
            raise ValueError(f"{self.name}: data type {self.datatype}{self.bits} not written")
        if any(d.log for d in self.detectors) and (self.datatype != "I" or self.log_decades <= 0):
            raise ValueError(f"{self.name}: log-amplified channels need integer data and decades")
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: detector names repeat")
        panel = [c.marker for c in DEMO_PANEL if c.kind == "fluorescence"]
        missing = [m for m in panel if m not in self.markers]
        if missing:
            raise ValueError(f"{self.name}: no detector for {', '.join(map(str, missing))}")

    @property
    def markers(self) -> dict[str, Detector]:
        """Demo marker -> the detector that carries it."""
        return {d.marker: d for d in self.detectors if d.kind == "fluorescence" and d.marker}

    @property
    def kinds(self) -> set[str]:
        return {d.kind for d in self.detectors}

    @property
    def time(self) -> Detector | None:
        return next((d for d in self.detectors if d.kind == "Time"), None)

    def gain(self, detector: Detector) -> float:
        """Stored units per demo unit of ``detector`` (time: per simulated clock tick)."""
        if detector.kind == "Time":
            return DEMO_TIMESTEP / self.timestep
        group = SCATTER_GAIN.get(detector.kind)
        if group is None:
            return self.fluorescence_gain
        return {"fsc": self.fsc_gain, "ssc": self.ssc_gain, "width": self.width_gain}[group]

    def detector_range(self, detector: Detector) -> int:
        return detector.range or self.range

    def label(self, detector: Detector, stained: bool = True) -> str:
        """``$PnS`` of ``detector`` (control tubes carry no stain names)."""
        if detector.kind == "fluorescence" and detector.marker:
            return (
                self.label_style.format(marker=detector.marker, dye=detector.dye) if stained else ""
            )
        return detector.label


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def _panel(names: Mapping[str, tuple[str, str]]) -> dict[str, Detector]:
    """Marker -> (``$PnN``, dye) as fluorescence detectors."""
    return {m: Detector(n, marker=m, dye=d) for m, (n, d) in names.items()}


def _ordered(panel: Mapping[str, Detector], *order: str | Detector) -> tuple[Detector, ...]:
    """File order: markers (looked up in ``panel``) and other detectors as given."""
    return tuple(panel[item] if isinstance(item, str) else item for item in order)


_BD = _panel(
    {
        "CD20": ("FITC-A", "FITC"),
        "CD22": ("PE-A", "PE"),
        "CD34": ("PerCP-Cy5-5-A", "PerCP-Cy5.5"),
        "CD19": ("PE-Cy7-A", "PE-Cy7"),
        "CD123": ("APC-A", "APC"),
        "CD38": ("APC-H7-A", "APC-H7"),
        "CD10": ("BV421-A", "BV421"),
        "CD45": ("BV510-A", "BV510"),
    }
)
_BD_ORDER = ("CD20", "CD22", "CD34", "CD19", "CD123", "CD38", "CD10", "CD45")

_LYRIC = _panel(
    {
        "CD20": ("FITC-A", "FITC"),
        "CD22": ("PE-A", "PE"),
        "CD34": ("PerCP-Cy5.5-A", "PerCP-Cy5.5"),
        "CD19": ("PE-Cy7-A", "PE-Cy7"),
        "CD123": ("APC-A", "APC"),
        "CD38": ("APC-H7-A", "APC-H7"),
        "CD10": ("V450-A", "V450"),
        "CD45": ("V500-C-A", "V500-C"),
    }
)

#: Navios 10 colours: FL1 FITC, FL2 PE, FL3 ECD, FL4 PC5.5, FL5 PC7, FL6 APC, FL7 APC-A700,
#: FL8 APC-A750, FL9 PB, FL10 KrO. ECD and APC-A700 are not in the demo panel.
_NAVIOS_DYES = {
    "CD20": (1, "FITC"),
    "CD22": (2, "PE"),
    "CD34": (4, "PC5.5"),
    "CD19": (5, "PC7"),
    "CD123": (6, "APC"),
    "CD38": (8, "APC-A750"),
    "CD10": (9, "PB"),
    "CD45": (10, "KrO"),
}


def _navios(suffix: str, log: bool) -> tuple[Detector, ...]:
    """FL1..FL10 with ``suffix`` (``INT``, ``INT LOG``); FL3 and FL7 unstained."""
    by_number = {n: (m, d) for m, (n, d) in _NAVIOS_DYES.items()}
    out = []
    for number in range(1, 11):
        name = f"FL{number} {suffix}"
        if number in by_number:
            marker, dye = by_number[number]
            out.append(Detector(name, marker=marker, dye=dye, log=log))
        else:
            out.append(Detector(name, "unstained", log=log))
    return tuple(out)


_CYTEK = _panel(
    {
        "CD20": ("FITC-A", "FITC"),
        "CD22": ("PE-A", "PE"),
        "CD34": ("PerCP-Cy5.5-A", "PerCP-Cy5.5"),
        "CD19": ("PE-Cy7-A", "PE-Cy7"),
        "CD123": ("APC-A", "APC"),
        "CD38": ("APC-Fire 750-A", "APC-Fire 750"),
        "CD10": ("BV421-A", "BV421"),
        "CD45": ("BV510-A", "BV510"),
    }
)
_CYTOFLEX = _panel(
    {
        "CD20": ("FITC-A", "FITC"),
        "CD22": ("PE-A", "PE"),
        "CD34": ("PC5.5-A", "PC5.5"),
        "CD19": ("PC7-A", "PC7"),
        "CD123": ("APC-A", "APC"),
        "CD38": ("APC-A750-A", "APC-A750"),
        "CD10": ("PB450-A", "PB450"),
        "CD45": ("KO525-A", "KO525"),
    }
)
#: Attune NxT (blue, red, violet, yellow lasers): detectors named by laser and filter.
_ATTUNE = _panel(
    {
        "CD20": ("BL1-A", "FITC"),
        "CD34": ("BL3-A", "PerCP-Cy5.5"),
        "CD123": ("RL1-A", "APC"),
        "CD38": ("RL3-A", "APC-H7"),
        "CD10": ("VL1-A", "BV421"),
        "CD45": ("VL2-A", "BV510"),
        "CD22": ("YL1-A", "PE"),
        "CD19": ("YL4-A", "PE-Cy7"),
    }
)
#: MACSQuant 10: V1/V2 violet, B1-B4 blue, R1/R2 red, with Miltenyi's Vio dyes.
_MACSQUANT = _panel(
    {
        "CD45": ("V1-A", "VioBlue"),
        "CD10": ("V2-A", "VioGreen"),
        "CD20": ("B1-A", "FITC"),
        "CD22": ("B2-A", "PE"),
        "CD34": ("B3-A", "PerCP-Vio700"),
        "CD19": ("B4-A", "PE-Vio770"),
        "CD123": ("R1-A", "APC"),
        "CD38": ("R2-A", "APC-Vio770"),
    }
)


def _same_label(name: str, kind: str, **kwargs: object) -> Detector:
    """A scatter or time detector whose ``$PnS`` repeats its ``$PnN`` (Attune, Beckman)."""
    return Detector(name, kind, label=name, **kwargs)  # type: ignore[arg-type]


_PROFILES: tuple[InstrumentProfile, ...] = (
    InstrumentProfile(
        name="bd_facsdiva",
        description="BD LSRFortessa / FACSDiva 8: FCS 3.0 float32 big endian, 18-bit, "
        "FSC and SSC area, height and width, SPILL, $PnS the marker alone",
        cytometer="LSRFortessa",
        version="3.0",
        byteorder="big",
        datatype="F",
        bits=32,
        range=262144,
        fsc_gain=0.8,
        ssc_gain=1.15,
        fluorescence_gain=1.5,
        detectors=(
            Detector("FSC-A", "FSC-A"),
            Detector("FSC-H", "FSC-H"),
            Detector("FSC-W", "FSC-W"),
            Detector("SSC-A", "SSC-A"),
            Detector("SSC-H", "SSC-H"),
            Detector("SSC-W", "SSC-W"),
            *_ordered(_BD, *_BD_ORDER),
            Detector("Time", "Time", gain=0.01),
        ),
        spillover="SPILL",
        delimiter="\x0c",
        text_start=256,
        keywords=(
            ("CREATOR", "BD FACSDiva Software Version 8.0.1"),
            ("APPLY COMPENSATION", "TRUE"),
        ),
    ),
    InstrumentProfile(
        name="bd_diva_width_only",
        description="FACSDiva 6 export as in the corpus file facs_diva_test.fcs: Time first, "
        "FSC-A, FSC-W, SSC-A (no heights), no $CYT, SPILL",
        cytometer=None,
        version="3.0",
        byteorder="big",
        datatype="F",
        bits=32,
        range=262144,
        fsc_gain=1.2,
        ssc_gain=0.7,
        fluorescence_gain=0.6,
        detectors=(
            Detector("Time", "Time", gain=0.01),
            Detector("FSC-A", "FSC-A"),
            Detector("FSC-W", "FSC-W"),
            Detector("SSC-A", "SSC-A"),
            *_ordered(_BD, *_BD_ORDER),
        ),
        spillover="SPILL",
        delimiter="\x0c",
        text_start=256,
        keywords=(("CREATOR", "BD FACSDiva Software Version 6.2"),),
    ),
    InstrumentProfile(
        name="bd_facsuite",
        description="BD FACSLyric / FACSuite: FCS 3.1 float32 little endian, FSC-A only "
        "(singlets from SSC-A vs SSC-H), $SPILLOVER, $PnS 'CD22 PE'",
        cytometer="BD FACSLyric",
        version="3.1",
        byteorder="little",
        datatype="F",
        bits=32,
        range=262144,
        fsc_gain=0.9,
        ssc_gain=0.85,
        fluorescence_gain=2.0,
        detectors=(
            Detector("FSC-A", "FSC-A"),
            Detector("SSC-A", "SSC-A"),
            Detector("SSC-H", "SSC-H"),
            *_ordered(_LYRIC, *_BD_ORDER),
            Detector("Time", "Time"),
        ),
        label_style="{marker} {dye}",
        keywords=(("CREATOR", "BD FACSuite"),),
    ),
    InstrumentProfile(
        name="beckman_navios",
        description="Beckman Navios, FCS 3.0 data set of the LMD: 32-bit integers, 20-bit "
        "range, FS INT/FS PEAK/SS INT/SS PEAK, FL1 INT..FL10 INT (FL3, FL7 unstained), TIME "
        "in 0.1 s, $SPILLOVER, $PnS 'CD22-PE'",
        cytometer="Navios",
        version="3.0",
        byteorder="little",
        datatype="I",
        bits=32,
        range=1048576,
        fsc_gain=4 * 0.6,
        ssc_gain=4 * 1.1,
        fluorescence_gain=4 * 0.75,
        detectors=(
            Detector("FS INT", "FSC-A"),
            Detector("FS PEAK", "FSC-H"),
            Detector("SS INT", "SSC-A"),
            Detector("SS PEAK", "SSC-H"),
            *_navios("INT", log=False),
            Detector("TIME", "Time", range=1024),
        ),
        label_style="{marker}-{dye}",
        timestep=0.1,
        delimiter="\\",
        text_start=256,
        data_start=8192,
    ),
    InstrumentProfile(
        name="beckman_lmd_fcs2_log",
        description="Beckman Navios, FCS 2.0 data set of the LMD: 16-bit integers, 1,024 "
        "channels, FS INT LIN/SS INT LIN linear with $PnG 2 and 10, FL1..FL10 INT LOG "
        "log-amplified over 4 decades ($PnE 4.0,0.1024), compensated in hardware (no spillover "
        "keyword), no heights or widths (no singlet gate) and no Time",
        cytometer="Navios",
        version="2.0",
        byteorder="little",
        datatype="I",
        bits=16,
        range=1024,
        fsc_gain=1.25 / 256,
        ssc_gain=0.9 / 256,
        fluorescence_gain=0.012,
        detectors=(
            _same_label("FS INT LIN", "FSC-A", gain=2.0),
            _same_label("SS INT LIN", "SSC-A", gain=10.0),
            *_navios("INT LOG", log=True),
        ),
        label_style="{marker}-{dye}",
        spillover=None,
        log_decades=4.0,
        log_offset=0.1024,
        delimiter="\\",
        text_start=256,
        data_start=8192,
        keywords=(("$SYS", "BCI"), ("@CYTOMETERID", "AS50332")),
    ),
    InstrumentProfile(
        name="cytek_aurora",
        description="Cytek Aurora / SpectroFlo: FCS 3.1 float32 little endian, 22-bit, Time "
        "first, heights before areas, violet side scatter SSC-B, unmixed (no spillover, wider "
        "negatives), $PnS the marker alone",
        cytometer="Aurora",
        version="3.1",
        byteorder="little",
        datatype="F",
        bits=32,
        range=4194304,
        fsc_gain=16 * 0.55,
        ssc_gain=16 * 0.75,
        fluorescence_gain=16 * 1.8,
        detectors=(
            Detector("Time", "Time", range=272140),
            Detector("SSC-H", "SSC-H"),
            Detector("SSC-A", "SSC-A"),
            Detector("FSC-H", "FSC-H"),
            Detector("FSC-A", "FSC-A"),
            Detector("SSC-B-H", "SSC-B-H"),
            Detector("SSC-B-A", "SSC-B-A"),
            *_ordered(_CYTEK, *_BD_ORDER),
        ),
        spillover=None,
        noise_factor=3.0,
        timestep=0.0001,
        keywords=(("CREATOR", "SpectroFlo 3.0.3"), ("$CYTSN", "U1234")),
    ),
    InstrumentProfile(
        name="cytoflex",
        description="Beckman CytoFLEX / CytExpert: FCS 3.0 float32 little endian, 23-bit, "
        "FSC-A/FSC-H/FSC-Width, SSC-A/SSC-H, PB450/KO525 names, $SPILLOVER",
        cytometer="CytoFLEX",
        version="3.0",
        byteorder="little",
        datatype="F",
        bits=32,
        range=8388608,
        fsc_gain=32 * 1.1,
        ssc_gain=32 * 0.5,
        fluorescence_gain=32 * 0.9,
        width_gain=1 / 64,
        detectors=(
            Detector("FSC-A", "FSC-A"),
            Detector("FSC-H", "FSC-H"),
            Detector("FSC-Width", "FSC-W"),
            Detector("SSC-A", "SSC-A"),
            Detector("SSC-H", "SSC-H"),
            *_ordered(_CYTOFLEX, *_BD_ORDER),
            Detector("Time", "Time"),
        ),
        label_style="{marker}",
        text_start=256,
        keywords=(("CREATOR", "CytExpert 2.4.0.28"),),
    ),
    InstrumentProfile(
        name="attune_nxt",
        description="Thermo Attune NxT: FCS 3.1 float32 little endian, 20-bit, detectors by "
        "laser (BL1-A, RL1-A, VL1-A, YL1-A: not the demo's order), widths on a 1,024 scale, "
        "$PnS 'CD20 FITC', scatter $PnS repeating $PnN, BL2 unstained",
        cytometer="Attune NxT Acoustic Focusing Cytometer (Lasers: BRVY)",
        version="3.1",
        byteorder="little",
        datatype="F",
        bits=32,
        range=1048576,
        fsc_gain=4 * 0.7,
        ssc_gain=4 * 1.2,
        fluorescence_gain=4 * 1.25,
        width_gain=1 / 512,
        detectors=(
            _same_label("Time", "Time", range=67108864),
            _same_label("FSC-A", "FSC-A"),
            _same_label("SSC-A", "SSC-A"),
            _ATTUNE["CD20"],
            Detector("BL2-A", "unstained"),
            *_ordered(_ATTUNE, "CD34", "CD123", "CD38", "CD10", "CD45", "CD22", "CD19"),
            _same_label("FSC-H", "FSC-H"),
            _same_label("SSC-H", "SSC-H"),
            _same_label("FSC-W", "FSC-W", range=1024),
            _same_label("SSC-W", "SSC-W", range=1024),
        ),
        label_style="{marker} {dye}",
        timestep=0.001,
        data_start=8192,
        keywords=(("$SYS", "OPTIXE2 Microsoft Windows 7 Professional"),),
    ),
    InstrumentProfile(
        name="macsquant",
        description="Miltenyi MACSQuant 10: FCS 3.1 float32 little endian on MACSQuantify's "
        "0-1,000 scale, V1-A/B1-A/R1-A detectors, HDR-T time in seconds, $PnS "
        "'CD45-VioBlue', scatter $PnS repeating $PnN",
        cytometer="MACSQuant",
        version="3.1",
        byteorder="little",
        datatype="F",
        bits=32,
        range=1000,
        fsc_gain=1000 / DEMO_RANGE * 0.95,
        ssc_gain=1000 / DEMO_RANGE * 0.6,
        fluorescence_gain=1000 / DEMO_RANGE * 0.55,
        detectors=(
            _same_label("HDR-T", "Time", range=1000),
            _same_label("FSC-A", "FSC-A"),
            _same_label("FSC-H", "FSC-H"),
            _same_label("SSC-A", "SSC-A"),
            _same_label("SSC-H", "SSC-H"),
            *_ordered(_MACSQUANT, "CD45", "CD10", "CD20", "CD22", "CD34", "CD19", "CD123"),
            _MACSQUANT["CD38"],
        ),
        label_style="{marker}-{dye}",
        timestep=1.0,
        text_start=256,
        keywords=(("$SYS", "MACSQuantify,2.13.3"), ("$CYTSN", "3057")),
    ),
    InstrumentProfile(
        name="sony_id7000",
        description="Sony ID7000 spectral analyser: FCS 3.0 float32 little endian, 20-bit, "
        "back scatter BSC-A/BSC-H as side scatter, unmixed (no spillover, wider negatives)",
        cytometer="ID7000",
        version="3.0",
        byteorder="little",
        datatype="F",
        bits=32,
        range=1048576,
        fsc_gain=4 * 0.65,
        ssc_gain=4 * 1.05,
        fluorescence_gain=4 * 1.6,
        detectors=(
            Detector("FSC-A", "FSC-A"),
            Detector("FSC-H", "FSC-H"),
            Detector("BSC-A", "SSC-A"),
            Detector("BSC-H", "SSC-H"),
            *_ordered(_BD, *_BD_ORDER),
            Detector("TIME", "Time"),
        ),
        spillover=None,
        noise_factor=2.5,
        keywords=(("CREATOR", "ID7000 Software 2.0"),),
    ),
)

#: Every instrument profile, by name.
PROFILES: dict[str, InstrumentProfile] = {p.name: p for p in _PROFILES}


def profile(name: str) -> InstrumentProfile:
    """The profile called ``name`` (a ``KeyError`` lists the known ones)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"no instrument profile {name!r}; known: {', '.join(PROFILES)}") from None


# --------------------------------------------------------------------------------------------
# Acquisition
# --------------------------------------------------------------------------------------------


def _simulation_channels(prof: InstrumentProfile, stained: bool) -> tuple[Channel, ...]:
    """The channels simulated: non-fluorescence detectors in file order, then the stained
    detectors in the demo panel's marker order (the order the demo draws them in)."""
    panel = [c.marker for c in DEMO_PANEL if c.kind == "fluorescence"]
    others = [Channel(d.name, d.kind) for d in prof.detectors if d.kind != "fluorescence"]
    stains = []
    for marker in panel:
        detector = prof.markers[str(marker)]
        stains.append(Channel(detector.name, "fluorescence", marker, prof.label(detector, stained)))
    return (*others, *stains)


def instrument_events(name: str, prof: InstrumentProfile) -> tuple[np.ndarray, Truth]:
    """Demo tube ``name`` acquired on ``prof``, before quantisation and clipping.

    Returns the events in the file's channel order and in the units a reader gives back
    (``$PnG`` divided out, time in seconds) and the truth of every event, identical to the
    demo tube's except that the true fluorescence is in the instrument's units and named by
    its detectors.
    """
    spec, n = demo_tube_spec(name)
    stained = not name.endswith("_control")
    channels = _simulation_channels(prof, stained)
    sim = replace(
        spec,
        channels=channels,
        spillover=spec.spillover if prof.spillover else None,
        noise_sd=spec.noise_sd * prof.noise_factor,
        max_value=np.inf,  # the instrument clips at its own range
    )
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    simulated, truth = simulate_events(sim, n, rng)
    order = [c.name for c in channels]
    events = np.empty((n, len(prof.detectors)))
    for col, detector in enumerate(prof.detectors):
        value = simulated[:, order.index(detector.name)] * prof.gain(detector)
        if detector.kind == "Time":
            events[:, col] = value * prof.timestep  # seconds: readers multiply by $TIMESTEP
        else:
            events[:, col] = value / (detector.gain or 1.0)
    truth = replace(
        truth,
        fluorescence=(truth.fluorescence * prof.fluorescence_gain).astype(np.float32),
        detectors=tuple(c.name for c in channels if c.kind == "fluorescence"),
    )
    return events, truth


def encode_events(prof: InstrumentProfile, events: np.ndarray) -> np.ndarray:
    """``events`` (reader units, file order) as the instrument stores them: ``$PnG`` and
    ``$TIMESTEP`` multiplied back, log channels as ``range / decades * log10(x / offset)``,
    integers rounded, everything clipped to ``0..$PnR - 1`` (floats only from above)."""
    order = ">" if prof.byteorder == "big" else "<"
    dtype = np.dtype(f"{order}f4" if prof.datatype == "F" else f"{order}u{prof.bits // 8}")
    stored = np.empty(events.shape, dtype=dtype)
    for col, detector in enumerate(prof.detectors):
        top = prof.detector_range(detector) - 1
        if detector.kind == "Time":
            value = events[:, col] / prof.timestep
        else:
            value = events[:, col] * (detector.gain or 1.0)
        if detector.log:
            ratio = np.maximum(value, prof.log_offset) / prof.log_offset
            value = prof.detector_range(detector) / prof.log_decades * np.log10(ratio)
        integer = prof.datatype == "I"
        stored[:, col] = np.clip(np.rint(value), 0, top) if integer else np.minimum(value, top)
    return stored


def instrument_keywords(
    prof: InstrumentProfile, file_name: str, stained: bool = True
) -> dict[str, str]:
    """TEXT keywords of a tube (without the ones :func:`write_raw_fcs` derives itself)."""
    keywords: dict[str, str] = {}
    if prof.cytometer:
        keywords["$CYT"] = prof.cytometer
    keywords["$FIL"] = file_name
    if prof.time is not None:
        keywords["$TIMESTEP"] = f"{prof.timestep:g}"
    if prof.spillover:  # the demo's dyes, so the demo's matrix, in the demo's dye order
        names = [c.name for c in _simulation_channels(prof, True) if c.kind == "fluorescence"]
        keywords[prof.spillover] = format_spillover(names, np.asarray(DEMO_SPILLOVER))
    keywords.update(dict(prof.keywords))
    for n, detector in enumerate(prof.detectors, start=1):
        keywords[f"$P{n}N"] = detector.name
        label = prof.label(detector, stained)
        if label:
            keywords[f"$P{n}S"] = label
        keywords[f"$P{n}R"] = str(prof.detector_range(detector))
        if detector.log:
            keywords[f"$P{n}E"] = f"{prof.log_decades:.1f},{prof.log_offset:g}"
        else:
            keywords[f"$P{n}E"] = "0,0"
        if detector.gain is not None:
            keywords[f"$P{n}G"] = f"{detector.gain:g}"
    return keywords


def write_instrument_tube(name: str, prof: InstrumentProfile | str, out_dir: str | Path) -> Path:
    """Write demo tube ``name`` as acquired on ``prof`` to ``out_dir/fcs/{name}.fcs``, with its
    per-event truth in ``{name}.truth.npz`` (as :func:`~antigen_profile.simulate.write_demo_tube`).
    Byte-identical on every run. Returns the FCS path."""
    prof = profile(prof) if isinstance(prof, str) else prof
    events, truth = instrument_events(name, prof)
    fcs_dir = Path(out_dir) / "fcs"
    path = fcs_dir / f"{name}.fcs"
    keywords = instrument_keywords(prof, path.name, stained=not name.endswith("_control"))
    write_raw_fcs(
        path,
        encode_events(prof, events),
        keywords,
        version=prof.version,
        delimiter=prof.delimiter,
        text_start=prof.text_start,
        data_start=prof.data_start,
    )
    _write_npz(fcs_dir / f"{name}.truth.npz", truth.to_arrays())
    return path


@cache
def _truth(sample_id: str) -> str:
    """:func:`demo_truth` as JSON, computed once per process (it simulates both tubes)."""
    return json.dumps(demo_truth(sample_id))


def acquisition_reviews(prof: InstrumentProfile) -> list[str]:
    """What the workflow cannot check on this instrument's tubes, each of which sends a
    clean call to review: no Time channel (stability unchecked), no spillover matrix on a
    conventional cytometer (fluorescence uncompensated), no pulse pair (doublets kept)."""
    from antigen_profile.qc import SPECTRAL

    kinds = {d.kind for d in prof.detectors}
    reviews = []
    if "Time" not in kinds:
        reviews.append("no Time channel")
    if prof.spillover is None and not SPECTRAL.search(prof.cytometer or ""):
        reviews.append("no spillover matrix")
    pairs = (("FSC-A", "FSC-H"), ("FSC-A", "FSC-W"), ("SSC-A", "SSC-H"), ("SSC-A", "SSC-W"))
    if not any(a in kinds and b in kinds for a, b in pairs):
        reviews.append("no singlet channel pair")
    return reviews


def _reviewed(truth: dict[str, Any], prof: InstrumentProfile) -> dict[str, Any]:
    """The demo truth with this instrument's review reasons: a clean candidate or
    not-candidate becomes ``needs_review`` when the acquisition could not be fully checked
    (a clinical exclusion stands, as in :func:`antigen_profile.decision.decide`)."""
    reviews = acquisition_reviews(prof)
    truth["acquisition_reviews"] = reviews
    clean = truth["decision"] in ("candidate", "not_candidate")
    if reviews and clean and truth["clinical_status"] != "excluded":
        truth["decision"] = "needs_review"
    return truth


def instrument_cohort(prof: InstrumentProfile | str, out_dir: str | Path) -> list[Path]:
    """The demo cohort acquired on ``prof``: every tube (control tubes included) with its
    truth, ``samples.tsv``, ``patients.tsv``, ``truth.json`` (the demo's cells; a decision
    the acquisition sends to review says why under ``acquisition_reviews``) and
    ``instrument.json`` (the profile). Returns the FCS paths, then the four files."""
    prof = profile(prof) if isinstance(prof, str) else prof
    out = Path(out_dir)
    fcs = [write_instrument_tube(name, prof, out) for name in demo_tube_names()]
    samples = [
        (s.sample_id, s.patient_id, f"fcs/{s.sample_id}.fcs", f"fcs/{s.sample_id}_control.fcs",
         s.timepoint)
        for s in DEMO_SAMPLES
    ]  # fmt: skip
    patients: dict[str, tuple[object, ...]] = {}
    for s in DEMO_SAMPLES:
        values = (getattr(s.patient, c) for c in PATIENT_COLUMNS[1:])
        patients.setdefault(s.patient_id, (s.patient_id, *values))
    truth = {s.sample_id: _reviewed(json.loads(_truth(s.sample_id)), prof) for s in DEMO_SAMPLES}
    about = {
        "name": prof.name,
        "description": prof.description,
        "cytometer": prof.cytometer,
        "fcs_version": prof.version,
        "byteorder": prof.byteorder,
        "datatype": f"{prof.datatype}{prof.bits}",
        "range": prof.range,
        "gains": {
            "fsc": prof.fsc_gain,
            "ssc": prof.ssc_gain,
            "fluorescence": prof.fluorescence_gain,
        },
        "spillover_keyword": prof.spillover,
        "channels": {d.name: d.kind for d in prof.detectors},
    }
    texts = {
        "samples.tsv": tsv_bytes(SAMPLE_COLUMNS, samples),
        "patients.tsv": tsv_bytes(PATIENT_COLUMNS, list(patients.values())),
        "truth.json": (json.dumps(truth, indent=2) + "\n").encode("utf-8"),
        "instrument.json": (json.dumps(about, indent=2) + "\n").encode("utf-8"),
    }
    sheets = []
    for file_name, text in texts.items():
        sheets.append(atomic_write(out / file_name, lambda h, t=text: h.write(t), "wb"))
    return fcs + sheets


# --------------------------------------------------------------------------------------------
# Raw FCS writer
# --------------------------------------------------------------------------------------------


def _byteord(dtype: np.dtype, version: str) -> str:
    """``$BYTEORD``: FCS 3.x always names four bytes; FCS 2.0 writers name the value's own
    bytes (Beckman's 16-bit data: ``1,2``)."""
    width = 4 if version != "2.0" else max(dtype.itemsize, 1)
    little = dtype.byteorder == "<" or (dtype.byteorder == "=" and np.little_endian)
    digits = range(1, width + 1) if little or dtype.itemsize == 1 else range(width, 0, -1)
    return ",".join(str(d) for d in digits)


def _text(keywords: Mapping[str, str], delimiter: str) -> bytes:
    """TEXT segment bytes; a delimiter inside a value is doubled, as FCS prescribes."""
    parts = [delimiter]
    for key, value in keywords.items():
        if not value or delimiter in key:
            raise ValueError(f"keyword {key!r}: empty value or delimiter in the keyword")
        parts += [key, delimiter, value.replace(delimiter, delimiter * 2), delimiter]
    return "".join(parts).encode("utf-8")


def _header(version: str, offsets: Sequence[int]) -> bytes:
    fields = "".join(f"{o if o <= HEADER_LIMIT else 0:>8}" for o in offsets)
    return f"FCS{version}    {fields}".encode("ascii")


def write_raw_fcs(
    path: str | Path,
    stored: np.ndarray,
    keywords: Mapping[str, str],
    *,
    version: str = "3.1",
    delimiter: str = "/",
    text_start: int = HEADER_SIZE,
    data_start: int | None = None,
) -> Path:
    """Write an FCS file whose DATA are ``stored`` byte for byte.

    ``stored`` is ``events x parameters`` in its storage type (``>f4``, ``<u2``, ``<u4``...):
    ``$DATATYPE``, ``$BYTEORD``, ``$PAR``, ``$TOT``, ``$MODE``, ``$NEXTDATA``, every ``$PnB``
    and, for FCS 3.x, ``$BEGINDATA``/``$ENDDATA`` and the (empty) ANALYSIS and supplemental
    TEXT offsets are derived here; ``keywords`` gives the rest (``$PnN``, ``$PnR``...). TEXT
    starts at ``text_start`` and DATA right after it, or at ``data_start`` with TEXT padded
    by spaces. Written atomically; identical input gives identical bytes.
    """
    path = Path(path)
    if stored.ndim != 2:
        raise ValueError("stored events must be a 2-D array")
    if version not in ("2.0", "3.0", "3.1"):
        raise ValueError(f"FCS version {version} not written")
    if len(delimiter.encode("utf-8")) != 1:
        raise ValueError("the TEXT delimiter must be a single byte")
    dtype = stored.dtype
    kind = {"f": "F", "u": "I"}.get(dtype.kind)
    if kind is None or (kind == "F" and dtype.itemsize != 4):
        raise ValueError(f"storage type {dtype} not written (float32 or unsigned integers)")
    n_events, n_par = stored.shape
    for n in range(1, n_par + 1):
        for key in (f"$P{n}N", f"$P{n}R"):
            if key not in keywords:
                raise ValueError(f"keyword {key} is required")
    data = np.ascontiguousarray(stored).tobytes()
    fixed = {
        "$BYTEORD": _byteord(dtype, version),
        "$DATATYPE": kind,
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(n_par),
        "$TOT": str(n_events),
    }
    bits = {f"$P{n}B": str(8 * dtype.itemsize) for n in range(1, n_par + 1)}
    rest = {k: v for k, v in keywords.items() if k not in fixed and k not in bits}
    begin = text_start
    for _ in range(5):  # offsets are part of TEXT: repeat until their digits settle
        if version == "2.0":
            offsets: dict[str, str] = {}
        else:
            offsets = {
                "$BEGINANALYSIS": "0",
                "$ENDANALYSIS": "0",
                "$BEGINSTEXT": "0",
                "$ENDSTEXT": "0",
                "$BEGINDATA": str(begin),
                "$ENDDATA": str(begin + len(data) - 1 if data else 0),
            }
        text = _text({**offsets, **fixed, **rest, **bits}, delimiter)
        text_end = text_start + len(text) - 1
        start = data_start if data_start is not None and data_start > text_end else text_end + 1
        if start == begin:
            break
        begin = start
    else:  # pragma: no cover - offsets always settle within a digit or two
        raise RuntimeError("TEXT offsets did not settle")
    if data_start is not None and begin == data_start:
        text = text + b" " * (data_start - text_end - 1)
        text_end = data_start - 1
    end = begin + len(data) - 1 if data else 0
    header = _header(version, (text_start, text_end, begin, end, 0, 0))
    padding = b" " * (text_start - HEADER_SIZE)

    def _write(handle: BinaryIO) -> None:
        handle.write(header + padding + text + data)

    return atomic_write(path, _write, "wb")
