"""Simulated flow cytometry data: a small event generator and the demo cohort.

The workflow has to be runnable, testable and reviewable without patient data, and a gating or
quantification step can only be checked against data whose answer is known. This module makes
FCS 3.1 files (through :func:`antigen_profile.fcs_write.write_fcs`, which this module hands
on) from a declarative description of cell populations and records, for every event,
which population it came from and which antigens it truly carries. The built-in demo cohort
(:data:`DEMO_SAMPLES`) covers each decision the workflow can reach.

Everything is deterministic: a demo tube is seeded from its own name, so one tube can be
regenerated alone (one Snakemake job per tube) and gives the same bytes every time.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from antigen_profile.fcs_write import format_spillover, write_fcs
from antigen_profile.files import atomic_write
from antigen_profile.sheets import PATIENT_COLUMNS, SAMPLE_REQUIRED

if TYPE_CHECKING:
    from antigen_profile.trial import Trial

__all__ = [
    "BACKGROUND",
    "DEMO_PANEL",
    "DEMO_SAMPLES",
    "DEMO_SPILLOVER",
    "TARGETS",
    "Channel",
    "DemoSample",
    "Expression",
    "Lognormal",
    "Patient",
    "Population",
    "Truth",
    "TubeSpec",
    "demo_patient_rows",
    "demo_sample",
    "demo_sample_rows",
    "demo_truth",
    "demo_truth_document",
    "demo_tube_events",
    "demo_tube_names",
    "demo_tube_spec",
    "expected_calls",
    "load_truth",
    "patient_row",
    "sample_row",
    "simulate_events",
    "tsv_bytes",
    "write_demo_cohort",
    "write_demo_sheets",
    "write_demo_tube",
    "write_fcs",
    "write_tube_files",
]

#: Largest value a channel can hold ($PnR 262144 means values 0..262143).
MAX_VALUE = 262143.0
#: Doublets scatter a little less light than the sum of their two cells.
DOUBLET_SCATTER_FACTOR = 0.9
#: Pulse width as BD writes it: ``area / height * 65536`` (singlets ~69,000, doublets more).
WIDTH_SCALE = 65536.0
#: Cytek's second side scatter (``SSC-B``, violet laser) sees more light than the blue one.
SSC_B_FACTOR = 1.6
SSC_B_SIGMA = 0.08
#: Channel kinds beyond the demo's own: they draw random numbers only after everything the
#: demo draws, and only when a tube has them, so that the demo tubes stay byte-identical and
#: a tube with them holds the very same cells as the demo tube of the same seed.
EXTRA_KINDS: tuple[str, ...] = ("FSC-W", "SSC-H", "SSC-W", "SSC-B-A", "SSC-B-H", "unstained")
CHANNEL_KINDS: tuple[str, ...] = ("FSC-A", "FSC-H", "SSC-A", "Time", "fluorescence", *EXTRA_KINDS)
#: The trial's non-CD19 targets (eligible when >= TARGET_MIN_PCT % of blasts carry them).
TARGETS: tuple[str, ...] = ("CD22", "CD123", "CD38", "CD10", "CD20")
#: Antigens the workflow quantifies on the blasts (config: quantified).
QUANTIFIED: tuple[str, ...] = ("CD19", *TARGETS)
TARGET_MIN_PCT = 20.0
#: A target this close to its cut-off (percentage points) is not a clean call: review.
TARGET_MARGIN_PCT = 5.0
#: B-lineage markers of the demo panel: blasts negative for all of them suggest a lineage switch.
B_LINEAGE: tuple[str, ...] = ("CD19", "CD22", "CD10", "CD20")
#: Call limits on % positive blasts (config: positivity.call_limits).
CALL_PARTIAL = 20.0
CALL_POSITIVE = 80.0
#: Blasts below this cannot be quantified (config: floors.quantify).
QUANTIFY_FLOOR = 50
#: A positive population this many times brighter than the background is recoverable with a
#: 99.5th-percentile threshold.
SEPARABLE_RATIO = 6.0
STAINED_EVENTS = 50_000
CONTROL_EVENTS = 20_000


# --------------------------------------------------------------------------------------------
# Ground truth files (FCS files are written by antigen_profile.fcs_write)
# --------------------------------------------------------------------------------------------


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write an ``.npz`` with fixed zip timestamps (``np.savez`` stamps the current time, which
    would make two runs differ) and no pickled objects."""

    def _write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
                archive.writestr(info, buffer.getvalue())

    return atomic_write(path, _write, "wb")


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lognormal:
    """A positive quantity ``median * exp(sigma * N(0, 1))``: cytometry intensities are
    roughly lognormal, so a median and a log-scale spread describe a population."""

    median: float
    sigma: float

    def draw(self, rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
        """Draw ``n`` values (``scale`` multiplies the median)."""
        return self.median * scale * np.exp(self.sigma * rng.standard_normal(n))


@dataclass(frozen=True)
class Expression:
    """How a population carries one marker: each event is positive with probability
    ``fraction``; a positive event adds a lognormal stain signal (``median``, linear units of
    true fluorescence, on top of the autofluorescence) with log spread ``sigma``."""

    fraction: float
    median: float = 0.0
    sigma: float = 0.35

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {self.fraction}")
        if self.fraction > 0 and self.median <= 0:
            raise ValueError("a marker with positive events needs a positive median")


@dataclass(frozen=True)
class Population:
    """One kind of event in a tube.

    ``share`` is the share of all events in the tube. Scatter is lognormal; FSC-H is FSC-A times
    a normal ratio (``fsc_h_ratio`` = mean, sd). ``markers`` maps a marker name to its
    :class:`Expression`; a marker not listed is negative (autofluorescence only, scaled by
    ``autofluorescence``). ``nucleated`` marks leukocytes (CD45+ nucleated cells, the
    denominator of blast %). A ``doublet`` population is made of two nucleated single cells
    drawn from the tube's other populations (their scatter summed times 0.9, their
    fluorescence summed, positive when either cell is), so its scatter fields are unused.
    """

    name: str
    share: float
    fsc_a: Lognormal | None = None
    ssc_a: Lognormal | None = None
    markers: Mapping[str, Expression] = field(default_factory=dict)
    fsc_h_ratio: tuple[float, float] = (0.95, 0.04)
    autofluorescence: float = 1.0
    nucleated: bool = True
    doublet: bool = False

    def __post_init__(self) -> None:
        if self.share < 0:
            raise ValueError(f"population {self.name}: share must not be negative")
        if not self.doublet and (self.fsc_a is None or self.ssc_a is None):
            raise ValueError(f"population {self.name}: fsc_a and ssc_a are required")


@dataclass(frozen=True)
class Channel:
    """One FCS parameter. ``kind`` says what it measures (``FSC-A``, ``FSC-H``, ``SSC-A``,
    ``Time`` or ``fluorescence``) independently of its ``$PnN`` ``name``, so tests can mimic
    other instruments' detector names. ``marker`` is the canonical marker a fluorescence
    detector measures; ``label`` is the free-text ``$PnS`` (empty: none written).

    Other instruments record more: ``FSC-W``/``SSC-W`` (pulse width, ``area / height *``
    :data:`WIDTH_SCALE`), ``SSC-H``, a second side scatter ``SSC-B-A``/``SSC-B-H`` (Cytek) and
    ``unstained`` detectors (autofluorescence and noise only, outside the spillover matrix);
    see :data:`EXTRA_KINDS`.
    """

    name: str
    kind: str = "fluorescence"
    marker: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"unknown channel kind {self.kind!r}")


@dataclass(frozen=True)
class TubeSpec:
    """A stained tube: its channels, populations and acquisition physics.

    Observed fluorescence is ``true @ spillover`` (rows = dye, columns = detector, over the
    fluorescence channels in channel order) plus Gaussian detector noise (``noise_sd``), clipped
    at ``max_value``; so compensating with the inverse of ``spillover`` recovers the true
    signal up to noise. True fluorescence = autofluorescence (``background``, per detector and
    event) + the stain of every positive marker. Time follows a Poisson process at
    ``event_rate`` events/s, stored in units of ``timestep`` seconds.
    """

    channels: tuple[Channel, ...]
    populations: tuple[Population, ...]
    spillover: tuple[tuple[float, ...], ...] | None = None
    background: Lognormal = Lognormal(150.0, 0.45)
    noise_sd: float = 15.0
    event_rate: float = 2000.0
    timestep: float = 0.01
    max_value: float = MAX_VALUE
    cytometer: str = "antigen-profile demo cytometer"

    @property
    def fluorescence(self) -> tuple[Channel, ...]:
        """The fluorescence channels, in file order (the spillover matrix's order)."""
        return tuple(c for c in self.channels if c.kind == "fluorescence")

    @property
    def markers(self) -> tuple[str, ...]:
        """Markers measured in this tube (stained or not), in detector order."""
        return tuple(c.marker for c in self.fluorescence if c.marker)

    def spillover_matrix(self) -> np.ndarray:
        """The spillover matrix as an array (identity when the tube has none)."""
        k = len(self.fluorescence)
        if self.spillover is None:
            return np.eye(k)
        matrix = np.asarray(self.spillover, dtype=float)
        if matrix.shape != (k, k):
            raise ValueError(f"spillover must be {k} x {k}")
        return matrix

    def keywords(self) -> dict[str, str]:
        """TEXT keywords describing the acquisition ($CYT, $TIMESTEP, $SPILLOVER)."""
        meta = {"$CYT": self.cytometer, "$TIMESTEP": f"{self.timestep:g}"}
        if self.spillover is not None:
            names = [c.name for c in self.fluorescence]
            meta["$SPILLOVER"] = format_spillover(names, self.spillover_matrix())
        return meta

    def unstained(self, markers: Sequence[str]) -> TubeSpec:
        """The same cells with ``markers`` left unstained and no ``$PnS`` labels: a control
        tube (FMO/unstained) that the workflow must map through the stained tube's detectors."""
        drop = set(markers)
        pops = tuple(
            replace(p, markers={m: e for m, e in p.markers.items() if m not in drop})
            for p in self.populations
        )
        chans = tuple(replace(c, label="") for c in self.channels)
        return replace(self, populations=pops, channels=chans)


@dataclass
class Truth:
    """What every simulated event really is.

    ``population[i]`` indexes ``population_names``; ``positive[i, j]`` says whether event ``i``
    carries ``markers[j]`` (stained and expressed); ``fluorescence`` is the true signal per
    fluorescence detector (``detectors``) before spillover and noise.
    """

    population: np.ndarray
    population_names: tuple[str, ...]
    markers: tuple[str, ...]
    positive: np.ndarray
    fluorescence: np.ndarray
    detectors: tuple[str, ...]
    nucleated: tuple[str, ...] = ()

    def mask(self, population: str) -> np.ndarray:
        """Boolean mask of the events of one population."""
        if population not in self.population_names:
            return np.zeros(len(self.population), dtype=bool)
        return self.population == self.population_names.index(population)

    def is_positive(self, marker: str) -> np.ndarray:
        """Boolean per event: does it truly carry ``marker``?"""
        return self.positive[:, self.markers.index(marker)]

    def leukocytes(self) -> np.ndarray:
        """Mask of nucleated (CD45+) singlets: the denominator of blast %."""
        return np.isin(self.population, [self.population_names.index(n) for n in self.nucleated])

    def counts(self) -> dict[str, int]:
        """Events per population."""
        return {n: int(np.sum(self.population == i)) for i, n in enumerate(self.population_names)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``.npz`` storage (strings as fixed-width unicode, no pickling)."""
        return {
            "population": self.population.astype(np.int16),
            "population_names": np.array(self.population_names, dtype=str),
            "nucleated": np.array(self.nucleated, dtype=str),
            "markers": np.array(self.markers, dtype=str),
            "positive": self.positive.astype(bool),
            "fluorescence": self.fluorescence.astype(np.float32),
            "detectors": np.array(self.detectors, dtype=str),
        }


def load_truth(path: str | Path) -> Truth:
    """Read a ``.truth.npz`` written by :func:`write_demo_tube`."""
    with np.load(path, allow_pickle=False) as data:
        return Truth(
            population=data["population"],
            population_names=tuple(str(s) for s in data["population_names"]),
            markers=tuple(str(s) for s in data["markers"]),
            positive=data["positive"],
            fluorescence=data["fluorescence"],
            detectors=tuple(str(s) for s in data["detectors"]),
            nucleated=tuple(str(s) for s in data["nucleated"]),
        )


def _allocate(shares: Sequence[float], n: int) -> np.ndarray:
    """Split ``n`` events by ``shares`` exactly (largest remainder), so a spec's counts do not
    depend on sampling noise (e.g. exactly ~30 blasts for an insufficient-blast scenario)."""
    weights = np.asarray(shares, dtype=float)
    if weights.sum() <= 0:
        raise ValueError("population shares must sum to a positive number")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"population shares must sum to 1, got {weights.sum():.6f}")
    exact = weights / weights.sum() * n
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _draw_cells(
    pop: Population, n: int, tube: TubeSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` single events of one population: FSC-A, SSC-A, true fluorescence, positivity."""
    assert pop.fsc_a is not None and pop.ssc_a is not None
    fsc = pop.fsc_a.draw(rng, n)
    ssc = pop.ssc_a.draw(rng, n)
    fluo_channels = tube.fluorescence
    fluor = np.empty((n, len(fluo_channels)))
    for j in range(len(fluo_channels)):
        fluor[:, j] = tube.background.draw(rng, n, pop.autofluorescence)
    markers = tube.markers
    positive = np.zeros((n, len(markers)), dtype=bool)
    detector_of = {c.marker: j for j, c in enumerate(fluo_channels) if c.marker}
    for marker, expr in pop.markers.items():
        if marker not in detector_of:
            raise ValueError(f"population {pop.name}: marker {marker} has no detector in the tube")
        pos = rng.random(n) < expr.fraction
        stain = Lognormal(expr.median, expr.sigma).draw(rng, int(pos.sum())) if pos.any() else 0
        fluor[pos, detector_of[marker]] += stain
        positive[:, markers.index(marker)] = pos
    return fsc, ssc, fluor, positive


def simulate_events(
    tube_spec: TubeSpec, n_events: int, rng: np.random.Generator
) -> tuple[np.ndarray, Truth]:
    """Generate the events of one tube with their ground truth.

    Parameters
    ----------
    tube_spec
        Channels, populations and acquisition physics.
    n_events
        Events in the tube; populations get exactly ``round(share * n_events)`` events.
    rng
        Random generator (seed it for reproducible files).

    Returns
    -------
    events, truth
        ``n_events x len(channels)`` float64 matrix in channel order, as the cytometer would
        record it (spillover, noise and clipping applied; compensate with the inverse of the
        spillover matrix), and the :class:`Truth` of every row, in shuffled acquisition order.
    """
    pops = tube_spec.populations
    counts = _allocate([p.share for p in pops], n_events)
    singles = [i for i, p in enumerate(pops) if p.nucleated and not p.doublet]
    parts: list[tuple[np.ndarray, ...]] = []
    for i, pop in enumerate(pops):
        n = int(counts[i])
        if not pop.doublet:
            fsc, ssc, fluor, pos = _draw_cells(pop, n, tube_spec, rng)
            ratio = rng.normal(pop.fsc_h_ratio[0], pop.fsc_h_ratio[1], n)
        else:
            if not singles:
                raise ValueError("a doublet population needs nucleated single-cell populations")
            weights = np.array([pops[j].share for j in singles], dtype=float)
            picks = rng.choice(len(singles), size=2 * n, p=weights / weights.sum())
            order = np.argsort(picks, kind="stable")
            drawn = [
                _draw_cells(pops[singles[k]], int(np.sum(picks == k)), tube_spec, rng)
                for k in range(len(singles))
            ]
            cells = [np.concatenate([d[m] for d in drawn]) for m in range(4)]
            placed = []
            for arr in cells:
                out = np.empty_like(arr)
                out[order] = arr
                placed.append(out.reshape((n, 2, *arr.shape[1:])))
            fsc = DOUBLET_SCATTER_FACTOR * placed[0].sum(axis=1)
            ssc = DOUBLET_SCATTER_FACTOR * placed[1].sum(axis=1)
            fluor = placed[2].sum(axis=1)
            pos = placed[3].any(axis=1)
            ratio = rng.normal(pop.fsc_h_ratio[0], pop.fsc_h_ratio[1], n)
        parts.append((np.full(n, i, dtype=np.int16), fsc, fsc * ratio, ssc, fluor, pos))

    label, fsc_a, fsc_h, ssc_a, fluor, positive = (
        np.concatenate([p[m] for p in parts]) for m in range(6)
    )
    shuffle = rng.permutation(n_events)
    label, fsc_a, fsc_h, ssc_a, fluor, positive = (
        a[shuffle] for a in (label, fsc_a, fsc_h, ssc_a, fluor, positive)
    )
    observed = fluor @ tube_spec.spillover_matrix()
    observed += rng.normal(0.0, tube_spec.noise_sd, observed.shape)
    time = np.cumsum(rng.exponential(1.0 / tube_spec.event_rate, n_events)) / tube_spec.timestep

    events = np.empty((n_events, len(tube_spec.channels)))
    by_kind = {"FSC-A": fsc_a, "FSC-H": fsc_h, "SSC-A": ssc_a, "Time": time}
    # Drawn last and only when asked for: the demo's draws (and so its bytes) never change.
    by_kind.update(_extra_kinds(tube_spec, label, fsc_a, fsc_h, ssc_a, rng))
    unstained = _unstained_detectors(tube_spec, label, rng)
    j = 0
    for col, chan in enumerate(tube_spec.channels):
        if chan.kind == "fluorescence":
            events[:, col] = observed[:, j]
            j += 1
        elif chan.kind == "unstained":
            events[:, col] = unstained.pop(0)
        else:
            events[:, col] = by_kind[chan.kind]
    np.minimum(events, tube_spec.max_value, out=events)

    truth = Truth(
        population=label,
        population_names=tuple(p.name for p in pops),
        markers=tube_spec.markers,
        positive=positive,
        fluorescence=fluor.astype(np.float32),
        detectors=tuple(c.name for c in tube_spec.fluorescence),
        nucleated=tuple(p.name for p in pops if p.nucleated and not p.doublet),
    )
    return events, truth


def _extra_kinds(
    tube: TubeSpec,
    label: np.ndarray,
    fsc_a: np.ndarray,
    fsc_h: np.ndarray,
    ssc_a: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Widths, side-scatter heights and Cytek's second side scatter, for the kinds ``tube``
    has. Random numbers are drawn only for kinds present (SSC pulse shape, then SSC-B), so
    a tube without them draws exactly what :func:`simulate_events` always drew."""
    kinds = {c.kind for c in tube.channels}
    out: dict[str, np.ndarray] = {}
    if "FSC-W" in kinds:  # BD: W = A / H * 65536, so a doublet's longer pulse is wider
        out["FSC-W"] = fsc_a / np.maximum(fsc_h, 0.05 * fsc_a) * WIDTH_SCALE
    ssc_ratio = None
    if kinds & {"SSC-H", "SSC-W", "SSC-B-H"}:
        # the side-scatter pulse has the forward one's shape: a doublet's is low for both
        mean = np.array([p.fsc_h_ratio[0] for p in tube.populations])[label]
        sd = np.array([p.fsc_h_ratio[1] for p in tube.populations])[label]
        ssc_ratio = np.maximum(mean + sd * rng.standard_normal(label.size), 0.05)
        out["SSC-H"] = ssc_a * ssc_ratio
        out["SSC-W"] = WIDTH_SCALE / ssc_ratio
    if kinds & {"SSC-B-A", "SSC-B-H"}:
        ssc_b = ssc_a * SSC_B_FACTOR * np.exp(SSC_B_SIGMA * rng.standard_normal(label.size))
        out["SSC-B-A"] = ssc_b
        if ssc_ratio is not None:
            out["SSC-B-H"] = ssc_b * ssc_ratio
    return out


def _unstained_detectors(
    tube: TubeSpec, label: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """One column per ``unstained`` detector (in channel order): the event's
    autofluorescence plus detector noise. Outside the spillover matrix and the truth, and
    drawn after everything else, so adding such detectors changes no other value."""
    scale = np.array([p.autofluorescence for p in tube.populations])[label]
    columns = []
    for chan in tube.channels:
        if chan.kind == "unstained":
            values = (
                tube.background.median
                * scale
                * np.exp(tube.background.sigma * rng.standard_normal(label.size))
            )
            columns.append(values + rng.normal(0.0, tube.noise_sd, label.size))
    return columns


# --------------------------------------------------------------------------------------------
# Demo cohort
# --------------------------------------------------------------------------------------------

#: Stained-tube panel: ($PnN, kind, canonical marker, $PnS). The $PnS spellings vary on purpose:
#: the reader must find markers in free text in any case and order.
DEMO_PANEL: tuple[Channel, ...] = (
    Channel("FSC-A", "FSC-A"),
    Channel("FSC-H", "FSC-H"),
    Channel("SSC-A", "SSC-A"),
    Channel("FITC-A", marker="CD20", label="CD20 FITC"),
    Channel("PE-A", marker="CD22", label="CD22-PE"),
    Channel("PerCP-Cy5-5-A", marker="CD34", label="CD34 PerCP-Cy5.5"),
    Channel("PE-Cy7-A", marker="CD19", label="PE-Cy7 CD19"),
    Channel("APC-A", marker="CD123", label="CD123 APC"),
    Channel("APC-H7-A", marker="CD38", label="CD38 APC-H7"),
    Channel("BV421-A", marker="CD10", label="cd10 BV421"),
    Channel("V500-C-A", marker="CD45", label="CD45 V500-C"),
    Channel("Time", "Time"),
)

#: Spillover (rows = dye, columns = detector) over FITC, PE, PerCP-Cy5.5, PE-Cy7, APC, APC-H7,
#: BV421, V500-C: the usual neighbours of a 3-laser 8-colour panel.
DEMO_SPILLOVER: tuple[tuple[float, ...], ...] = (
    (1.0, 0.18, 0.04, 0.005, 0.0, 0.0, 0.0, 0.002),
    (0.01, 1.0, 0.10, 0.03, 0.0, 0.0, 0.0, 0.0),
    (0.0, 0.01, 1.0, 0.12, 0.02, 0.04, 0.0, 0.0),
    (0.0, 0.02, 0.03, 1.0, 0.0, 0.03, 0.0, 0.0),
    (0.0, 0.0, 0.01, 0.005, 1.0, 0.10, 0.0, 0.0),
    (0.0, 0.0, 0.005, 0.04, 0.06, 1.0, 0.0, 0.0),
    (0.005, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.15),
    (0.03, 0.01, 0.0, 0.0, 0.0, 0.0, 0.02, 1.0),
)

#: Autofluorescence of every detector (tight enough that its 99.5th percentile is ~3.3x median).
BACKGROUND = Lognormal(150.0, 0.45)
#: Events that are not nucleated single cells.
DEBRIS_SHARE = 0.04
DOUBLET_SHARE = 0.03


def _fold(fraction: float, fold: float, sigma: float = 0.35) -> Expression:
    """An antigen whose positive events' stain is ``fold`` x the background median."""
    return Expression(fraction, fold * BACKGROUND.median, sigma)


@dataclass(frozen=True)
class Patient:
    """Clinical fields of ``patients.tsv`` (``None`` = unknown, written as an empty cell)."""

    age_years: float | None
    kps: int | None
    hgb_g_per_l: float | None
    life_expectancy_months: float | None
    prior_anti_cd19: bool | None
    active_infection: bool | None = False
    hiv: bool | None = False
    hbv_hcv_active: bool | None = False
    pregnant_or_nursing: bool | None = False
    systemic_steroids_last_7d: bool | None = False


SAMPLE_COLUMNS: tuple[str, ...] = (*SAMPLE_REQUIRED, "control_fcs", "timepoint")


@dataclass(frozen=True)
class DemoSample:
    """One demo sample: its patient, the scenario it tests and its blasts' phenotype.

    ``blast_pct`` is the blasts' share of leukocytes (nucleated CD45+ singlets) in percent;
    ``blast_markers`` maps CD34 and the quantified antigens to their expression on blasts;
    ``clinical_status`` is set by hand from the trial rules (tests re-derive it).
    """

    sample_id: str
    patient_id: str
    scenario: str
    patient: Patient
    clinical_status: str
    blast_pct: float
    blast_markers: Mapping[str, Expression]
    blast_cd45: Lognormal = Lognormal(700.0, 0.35)
    blast_ssc: Lognormal = Lognormal(28000.0, 0.2)
    blast_fsc: Lognormal = Lognormal(80000.0, 0.1)
    lymphocyte_share: float = 0.45
    monocyte_share: float = 0.12
    timepoint: str = "relapse"

    def populations(self) -> tuple[Population, ...]:
        """The stained tube's populations (shares of all events)."""
        nucleated = 1.0 - DEBRIS_SHARE - DOUBLET_SHARE
        blasts = nucleated * self.blast_pct / 100.0
        normal = nucleated - blasts
        lymph = normal * self.lymphocyte_share
        mono = normal * self.monocyte_share
        gran = normal - lymph - mono
        return (
            Population(
                "debris",
                DEBRIS_SHARE,
                Lognormal(12000.0, 0.25),
                Lognormal(6000.0, 0.4),
                fsc_h_ratio=(0.9, 0.15),
                nucleated=False,
            ),
            Population("doublets", DOUBLET_SHARE, fsc_h_ratio=(0.55, 0.05), doublet=True),
            Population(
                "blasts",
                blasts,
                self.blast_fsc,
                self.blast_ssc,
                {
                    "CD45": Expression(1.0, self.blast_cd45.median, self.blast_cd45.sigma),
                    **self.blast_markers,
                },
            ),
            Population(
                "lymphocytes",
                lymph,
                Lognormal(60000.0, 0.1),
                Lognormal(20000.0, 0.2),
                {"CD45": Expression(1.0, 25000.0, 0.2), "CD38": _fold(0.85, 10.0, 0.35)},
            ),
            Population(
                "monocytes",
                mono,
                Lognormal(110000.0, 0.1),
                Lognormal(90000.0, 0.12),
                {
                    "CD45": Expression(1.0, 12000.0, 0.2),
                    "CD123": _fold(0.95, 4.0, 0.3),
                    "CD38": _fold(0.9, 8.0, 0.3),
                },
                autofluorescence=1.3,
            ),
            Population(
                "granulocytes",
                gran,
                Lognormal(100000.0, 0.1),
                Lognormal(150000.0, 0.12),
                {"CD45": Expression(1.0, 4000.0, 0.2), "CD10": _fold(0.9, 15.0, 0.35)},
                autofluorescence=1.5,
            ),
        )


def _p01_like(**override: Expression) -> dict[str, Expression]:
    """P01's CD19-negative, CD22-bright relapse phenotype (reused by P06 and P07)."""
    markers = {
        "CD34": _fold(0.9, 20.0),
        "CD19": _fold(0.0, 1.0),
        "CD22": _fold(0.95, 60.0, 0.4),
        "CD123": _fold(0.05, 10.0),
        "CD38": _fold(0.85, 12.0),
        "CD10": _fold(0.90, 30.0),
        "CD20": _fold(0.0, 1.0),
    }
    markers.update(override)
    return markers


def _eligible(age: float, kps: int, hgb: float, life: float) -> Patient:
    return Patient(age, kps, hgb, life, prior_anti_cd19=True)


#: The demo cohort: one sample per decision path of the workflow.
DEMO_SAMPLES: tuple[DemoSample, ...] = (
    DemoSample(
        "P01-R1",
        "P01",
        "CD19-negative relapse after CD19 CAR-T; bright CD22, CD10, CD38: candidate",
        _eligible(12, 90, 95, 6),
        "eligible",
        62.0,
        _p01_like(),
    ),
    DemoSample(
        "P02-R1",
        "P02",
        "dim but separable CD22 (~8x background), partial CD19 after blinatumomab: candidate",
        _eligible(34, 90, 110, 8),
        "eligible",
        48.0,
        {
            "CD34": _fold(0.7, 15.0),
            "CD19": _fold(0.45, 25.0),
            "CD22": _fold(0.85, 7.0, 0.3),
            "CD38": _fold(0.90, 15.0),
        },
        blast_cd45=Lognormal(850.0, 0.35),
        blast_ssc=Lognormal(32000.0, 0.2),
        lymphocyte_share=0.5,
        monocyte_share=0.1,
    ),
    DemoSample(
        "P03-R1",
        "P03",
        "partial bright CD20 (35%), CD22 70%, CD10 95%: candidate",
        _eligible(8, 100, 102, 12),
        "eligible",
        71.0,
        {
            "CD34": _fold(0.3, 15.0),
            "CD20": _fold(0.35, 40.0),
            "CD22": _fold(0.70, 25.0),
            "CD10": _fold(0.95, 50.0),
            "CD38": _fold(0.10, 10.0),
        },
        blast_cd45=Lognormal(600.0, 0.35),
        blast_ssc=Lognormal(25000.0, 0.2),
        lymphocyte_share=0.4,
    ),
    DemoSample(
        "P04-R1",
        "P04",
        "CD123-positive (75%) blasts with CD38 60% and partial CD19 (55%) after "
        "blinatumomab: candidate",
        _eligible(45, 90, 88, 5),
        "eligible",
        40.0,
        {
            "CD19": _fold(0.55, 25.0),
            "CD34": _fold(0.95, 30.0),
            "CD123": _fold(0.75, 20.0),
            "CD38": _fold(0.60, 15.0),
            "CD22": _fold(0.10, 15.0),
        },
        blast_cd45=Lognormal(900.0, 0.35),
        blast_ssc=Lognormal(35000.0, 0.2),
        monocyte_share=0.15,
    ),
    DemoSample(
        "P05-R1",
        "P05",
        "no target: all six antigens <= 5% on CD34-bright blasts (lineage-switch-like): "
        "not_candidate",
        _eligible(27, 90, 100, 6),
        "eligible",
        55.0,
        {
            "CD34": _fold(0.98, 80.0),
            "CD19": _fold(0.02, 20.0),
            "CD22": _fold(0.03, 20.0),
            "CD123": _fold(0.04, 15.0),
            "CD38": _fold(0.04, 12.0),
            "CD10": _fold(0.01, 20.0),
        },
        blast_cd45=Lognormal(750.0, 0.35),
    ),
    DemoSample(
        "P06-R1",
        "P06",
        "about 30 blast events in 50,000: insufficient blasts, needs_review",
        _eligible(16, 90, 92, 9),
        "eligible",
        0.065,
        _p01_like(),
    ),
    DemoSample(
        "P07-R1",
        "P07",
        "clinically excluded (age 78, HIV) despite a P01-like target profile: not_candidate",
        Patient(78, 90, 105, 10, prior_anti_cd19=True, hiv=True),
        "excluded",
        66.0,
        _p01_like(),
        blast_cd45=Lognormal(650.0, 0.35),
        blast_ssc=Lognormal(30000.0, 0.2),
    ),
    DemoSample(
        "P08-R1",
        "P08",
        "haemoglobin unknown with CD22 90% and CD20 60%: undetermined, needs_review",
        Patient(52, 90, None, 6, prior_anti_cd19=True),
        "undetermined",
        35.0,
        {
            "CD34": _fold(0.5, 15.0),
            "CD22": _fold(0.90, 35.0),
            "CD20": _fold(0.60, 30.0),
            "CD38": _fold(0.15, 10.0),
        },
        blast_cd45=Lognormal(800.0, 0.35),
        blast_ssc=Lognormal(26000.0, 0.2),
        lymphocyte_share=0.55,
    ),
)


def demo_tube_names() -> list[str]:
    """Every demo FCS file stem: each stained tube followed by its ``_control`` tube."""
    return [name for s in DEMO_SAMPLES for name in (s.sample_id, f"{s.sample_id}_control")]


def demo_tube_spec(name: str) -> tuple[TubeSpec, int]:
    """The :class:`TubeSpec` and event count of one demo tube.

    The control tube holds the same cells with CD45 and CD34 stained, the six quantified
    antigens unstained and no ``$PnS`` labels.
    """
    control = name.endswith("_control")
    sample = demo_sample(name.removesuffix("_control"))
    spec = TubeSpec(
        channels=DEMO_PANEL,
        populations=sample.populations(),
        spillover=DEMO_SPILLOVER,
        background=BACKGROUND,
    )
    if control:
        return spec.unstained(QUANTIFIED), CONTROL_EVENTS
    return spec, STAINED_EVENTS


def demo_tube_digest(name: str) -> str:
    """A short fingerprint of a demo tube's specification: the workflow regenerates a tube
    whose specification changed (a stale tube next to a fresh truth.json would mislead)."""
    import hashlib

    spec, n = demo_tube_spec(name)
    return hashlib.sha256(f"{spec!r}|{n}|{name}".encode()).hexdigest()[:16]


def demo_tube_events(name: str) -> tuple[np.ndarray, Truth]:
    """Generate one demo tube in memory, seeded from its name (crc32) so that every run, and
    every process, gets the same events."""
    spec, n = demo_tube_spec(name)
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    return simulate_events(spec, n, rng)


def write_demo_tube(name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/fcs/{name}.fcs`` and its ground truth ``out_dir/fcs/{name}.truth.npz``.

    Returns the FCS path. Byte-identical on every run (no dates, fixed seeds and zip stamps).
    """
    spec, _ = demo_tube_spec(name)
    events, truth = demo_tube_events(name)
    return write_tube_files(spec, events, truth.to_arrays(), out_dir, name)


def write_tube_files(
    spec: TubeSpec,
    events: np.ndarray,
    truth: Mapping[str, np.ndarray],
    out_dir: str | Path,
    name: str,
) -> Path:
    """Every generator's two files of a tube: ``out_dir/fcs/{name}.fcs`` (the spec's
    channels, labels and keywords) and its per-event truth ``{name}.truth.npz``; returns the
    FCS path."""
    fcs_dir = Path(out_dir) / "fcs"
    path = write_fcs(
        fcs_dir / f"{name}.fcs",
        events,
        [c.name for c in spec.channels],
        [c.label for c in spec.channels],
        spec.keywords(),
    )
    _write_npz(fcs_dir / f"{name}.truth.npz", dict(truth))
    return path


def sample_row(sample_id: str, patient_id: str, timepoint: str, *more: str) -> tuple[str, ...]:
    """A generated tube's ``samples.tsv`` row (:data:`SAMPLE_COLUMNS`, then ``more``): its
    FCS file and control beside each other under ``fcs/``."""
    fcs = f"fcs/{sample_id}"
    return (sample_id, patient_id, f"{fcs}.fcs", f"{fcs}_control.fcs", timepoint, *more)


def patient_row(patient_id: str, patient: Patient) -> tuple[object, ...]:
    """A ``patients.tsv`` row (:data:`PATIENT_COLUMNS`) of a generated patient."""
    return (patient_id, *(getattr(patient, c) for c in PATIENT_COLUMNS[1:]))


def _call(pct: float) -> str:
    """Bethesda-style call on % positive blasts (config positivity.call_limits)."""
    if pct >= CALL_POSITIVE:
        return "positive"
    return "partial" if pct >= CALL_PARTIAL else "negative"


def _decision(
    antigen_status: str, targets: Sequence[str], clinical_status: str, review: bool = False
) -> str:
    """The recommendation the workflow should reach (docs/outputs.md, ``decision``);
    ``review`` marks a profile a reviewer must see (a target near its cut-off, or blasts that
    carry no B-lineage marker)."""
    if clinical_status == "excluded":
        return "not_candidate"
    if antigen_status != "ok" or review:
        return "needs_review"
    if not targets:
        return "not_candidate"
    return "candidate" if clinical_status == "eligible" else "needs_review"


def expected_calls(
    pct: Mapping[str, float], status: str, trial: Trial
) -> tuple[list[str], bool, bool]:
    """What the workflow should conclude from true % positive blasts under ``trial``: the
    eligible targets, whether a target sits within
    its rule's margin of the cut-off, and whether every B-lineage antigen is below a partial
    call (a lineage switch). Nothing is concluded unless ``status`` is ``ok``."""
    if status != "ok":
        return [], False, False
    rules = {t: trial.target_rule(t) for t in trial.targets}
    eligible = sorted(t for t in trial.targets if pct[t] >= rules[t].min_pct_positive)
    near = any(abs(pct[t] - r.min_pct_positive) < r.margin_pct for t, r in rules.items())
    lineage = all(pct[m] < CALL_PARTIAL for m in B_LINEAGE)
    return eligible, near, lineage


def _tube_summary(truth: Truth) -> dict[str, object]:
    blasts = truth.mask("blasts")
    leukocytes = truth.leukocytes()
    n_blasts = int(blasts.sum())
    return {
        "events": len(truth.population),
        "blast_events": n_blasts,
        "leukocyte_events": int(leukocytes.sum()),
        "blast_pct_leukocytes": 100.0 * n_blasts / int(leukocytes.sum()),
        "population_events": truth.counts(),
    }


def demo_truth(sample_id: str) -> dict[str, object]:
    """Ground truth of one demo sample, computed from the generated events themselves.

    Percentages are the realised fractions in the file (exact); ``separable`` is true when the
    positive blasts' median true fluorescence is at least 6x the background median (or when
    no blast is positive: nothing to separate, the negative call is recoverable).
    """
    sample = demo_sample(sample_id)
    spec, _ = demo_tube_spec(sample_id)
    _, truth = demo_tube_events(sample_id)
    _, control_truth = demo_tube_events(f"{sample_id}_control")
    summary = _tube_summary(truth)
    blasts = truth.mask("blasts")
    n_blasts = int(blasts.sum())
    status = "ok" if n_blasts >= QUANTIFY_FLOOR else "insufficient_blasts"
    antigens: dict[str, dict[str, object]] = {}
    for marker in QUANTIFIED:
        pos = truth.is_positive(marker) & blasts
        k = int(pos.sum())
        pct = 100.0 * k / n_blasts if n_blasts else 0.0
        ratio = None
        if k:
            detector = truth.detectors.index(
                next(c.name for c in spec.fluorescence if c.marker == marker)
            )
            ratio = float(np.median(truth.fluorescence[pos, detector])) / BACKGROUND.median
        antigens[marker] = {
            "positive_events": k,
            "pct_positive": pct,
            "positive_median_ratio": ratio,
            "separable": ratio is None or ratio >= SEPARABLE_RATIO,
            "call": _call(pct) if status == "ok" else "insufficient_events",
        }
    targets = (
        sorted(t for t in TARGETS if antigens[t]["pct_positive"] >= TARGET_MIN_PCT)  # type: ignore[operator]
        if status == "ok"
        else []
    )
    near = status == "ok" and any(
        abs(float(antigens[t]["pct_positive"]) - TARGET_MIN_PCT) < TARGET_MARGIN_PCT  # type: ignore[arg-type]
        for t in TARGETS
    )
    lineage = status == "ok" and all(
        float(antigens[m]["pct_positive"]) < CALL_PARTIAL  # type: ignore[arg-type]
        for m in B_LINEAGE
    )
    return {
        "patient_id": sample.patient_id,
        "timepoint": sample.timepoint,
        "scenario": sample.scenario,
        "fcs": f"fcs/{sample_id}.fcs",
        "control_fcs": f"fcs/{sample_id}_control.fcs",
        **summary,
        "antigens": antigens,
        "eligible_targets": targets,
        "antigen_status": status,
        "cd19_status": antigens["CD19"]["call"],
        "clinical_status": sample.clinical_status,
        "near_cutoff": near,
        "lineage_switch": lineage,
        "decision": _decision(status, targets, sample.clinical_status, near or lineage),
        "control": _tube_summary(control_truth),
    }


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def tsv_bytes(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """A sheet's bytes: tab-separated, yes/no for booleans, empty for None, ``\\n`` ends."""
    lines = ["\t".join(header)] + ["\t".join(_cell(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def demo_sample(sample_id: str) -> DemoSample:
    """The demo sample ``sample_id`` (KeyError when there is none)."""
    for sample in DEMO_SAMPLES:
        if sample.sample_id == sample_id:
            return sample
    raise KeyError(f"no demo sample {sample_id!r}")


def demo_sample_rows() -> list[tuple[str, ...]]:
    """``samples.tsv`` rows of the full-panel demo samples (:data:`SAMPLE_COLUMNS`)."""
    return [sample_row(s.sample_id, s.patient_id, s.timepoint) for s in DEMO_SAMPLES]


def demo_patient_rows() -> list[tuple[object, ...]]:
    """``patients.tsv`` rows, one per demo patient (:data:`PATIENT_COLUMNS`)."""
    patients: list[tuple[object, ...]] = []
    seen: set[str] = set()
    for s in DEMO_SAMPLES:
        if s.patient_id not in seen:
            seen.add(s.patient_id)
            patients.append(patient_row(s.patient_id, s.patient))
    return patients


def demo_truth_document() -> bytes:
    """``truth.json`` of the full-panel demo samples, recomputed from their events."""
    truth = {s.sample_id: demo_truth(s.sample_id) for s in DEMO_SAMPLES}
    return (json.dumps(truth, indent=2) + "\n").encode("utf-8")


def write_demo_sheets(out_dir: str | Path) -> list[Path]:
    """Write ``samples.tsv``, ``patients.tsv`` and ``truth.json`` of the full-panel samples
    into ``out_dir`` (the whole demo, split-panel patient included:
    :func:`antigen_profile.demo.write_sheets`).

    The truth is recomputed from the (deterministic) events, so this does not need the FCS
    files to exist. Returns the three paths.
    """
    out = Path(out_dir)
    samples = tsv_bytes(SAMPLE_COLUMNS, demo_sample_rows())
    patients = tsv_bytes(PATIENT_COLUMNS, demo_patient_rows())
    truth = demo_truth_document()
    return [
        atomic_write(out / "samples.tsv", lambda h: h.write(samples), "wb"),
        atomic_write(out / "patients.tsv", lambda h: h.write(patients), "wb"),
        atomic_write(out / "truth.json", lambda h: h.write(truth), "wb"),
    ]


def write_demo_cohort(out_dir: str | Path) -> list[Path]:
    """Write the whole demo cohort: every tube (FCS + truth) and the three sheets.

    Returns the FCS paths (in :func:`demo_tube_names` order) followed by the sheets.
    """
    fcs = [write_demo_tube(name, out_dir) for name in demo_tube_names()]
    return fcs + write_demo_sheets(out_dir)
