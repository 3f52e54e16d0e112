"""Acquisition QC: can this tube support an analysis at all, and which part of it? Never gates.

Checks, per tube and before any gating: the event count, the stability of the acquisition over
time (clogs, bursts, gaps and signal shifts, found in bins of the ``Time`` channel the way
flowAI and PeacoQC do it, simplified so that every flag can be explained in one sentence),
saturation, and the presence of a spillover matrix. Unstable bins are dropped: ``keep`` says
which events go on to gating, and ``qc.json`` records what was dropped, when and why.

Two checks need results that only exist later and are run by the pipeline:
:func:`negative_pileups` with :func:`compensation_warnings` (negative pile-ups after
compensation) and :func:`gating_shares` with :func:`gating_warnings` (debris and doublet shares
from the gates). Each pair is a measure and its warnings, so the measures are recorded too;
their findings are added with :meth:`QCResult.add_findings`.

A failed tube still produces a ``qc.json`` with its reasons, so the cohort goes on and the
sample is reported as ``qc_failed`` rather than silently missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile import orderstats
from antigen_profile.ingest import Tube

#: A bin's rate must also differ from the run's level by this many Poisson SDs (sqrt of the
#: level) to be flagged, so counting noise alone never flags a bin (P(z > 5) ~ 3e-7 per bin).
POISSON_Z = 5.0
#: A bin's signal must also differ from the run's by this many robust SDs of its bin-to-bin
#: noise (PeacoQC's default of 6 MADs), so that sampling noise alone never flags a bin.
SIGNAL_MADS = 6.0
#: A pause must also last this many mean inter-event intervals at the run's level rate: a
#: Poisson stream pauses that long with probability e^-20 per event, i.e. never by chance.
GAP_INTERVALS = 20.0
#: Events per bin used for its mean signal (evenly strided): its error is then ~2% of the
#: channel's spread, far below any shift worth flagging, and 10^7 events stay fast.
SIGNAL_EVENTS = 2000
#: Events (evenly strided) used to describe a channel's densest population.
SPREAD_EVENTS = 50_000
#: A Time channel that steps back more often than this share of events is not a clock (or
#: the events are not in acquisition order); a rare step back is a counter wrap-around.
MAX_TIME_RESETS = 0.001
#: Fewer events than this in a bin: too few for a mean signal worth comparing.
MIN_SIGNAL_EVENTS = 20
#: A clock with fewer ticks than this over the run is treated as quantised (see _bin_edges).
QUANTISED_TICKS = 1e6
#: Gaps listed one by one in qc.json (all are counted): keeps the file small on a stuttering run.
MAX_LISTED_GAPS = 20
#: Fewer events than this: a tail share (1% = 10 events) is too noisy to judge compensation.
MIN_COMPENSATION_EVENTS = 1000
#: Reasons a bin is dropped, in order of precedence (a bin in a gap is reported as the gap).
DROP_REASONS = ("gap", "clog", "burst", "signal_shift")


@dataclass(frozen=True)
class QCSettings:
    """Limits from the config's ``qc`` section (see config/config.yaml for why each value).

    The defaults equal the shipped config, so a config written before a limit existed still
    runs with the documented behaviour.
    """

    min_events: int = 5000
    max_saturated_fraction: float = 0.02
    missing_spillover: str = "warn"
    # time course (qc.time)
    bin_seconds: float = 1.0
    min_events_per_bin: int = 100
    min_bins: int = 10
    max_bins: int = 300
    min_rate_fraction: float = 0.3
    max_rate_factor: float = 2.0
    max_gap_seconds: float = 1.0
    max_signal_shift: float = 0.1
    max_dropped_fraction: float = 0.5
    min_stable_fraction: float = 0.5
    # compensation (qc.compensation)
    negative_sd: float = 5.0
    max_negative_fraction: float = 0.01
    # gating shares (qc.gating)
    max_debris_fraction: float = 0.4
    max_doublet_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.missing_spillover not in ("warn", "fail"):
            raise ValueError(
                f"qc.missing_spillover must be 'warn' or 'fail', not {self.missing_spillover!r}"
            )

    @classmethod
    def from_config(cls, config: Mapping) -> QCSettings:
        """Read ``config["qc"]``; keys absent from an older config keep their defaults."""
        qc = config["qc"]
        flat: dict[str, Any] = {k: v for k, v in qc.items() if not isinstance(v, Mapping)}
        for group in ("time", "compensation", "gating"):
            flat.update(qc.get(group) or {})
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise ValueError(f"unknown qc setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in flat.items():
            kind = known[name]
            values[name] = (
                int(value) if kind == "int" else (str(value) if kind == "str" else float(value))
            )
        return cls(**values)


@dataclass
class QCResult:
    """Outcome of acquisition QC for one tube.

    Attributes
    ----------
    status : str
        ``pass``, ``warn`` (analysed, but a reviewer should look) or ``fail`` (not analysed).
    keep : numpy.ndarray
        Boolean mask of the events passed on to gating (unstable acquisition dropped).
    dropped : list of dict
        One entry per dropped period: ``start_s``, ``end_s``, ``reason``, ``events``,
        ``pct_events``, ``detail``.
    time_course : dict or None
        Compact time course for the report (``bin_seconds``, ``start_s``, ``events``,
        ``kept``), ``None`` when the acquisition's stability could not be checked.
    """

    status: str
    events_total: int
    keep: np.ndarray
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    time_course: dict[str, Any] | None = None
    #: What kind of failure, when ``status`` is ``fail``: ``unreadable``, ``panel`` (the
    #: tube's channels cannot support the gating), ``acquisition`` or ``analysis``.
    failure: str | None = None

    @property
    def events_kept(self) -> int:
        return int(np.count_nonzero(self.keep))

    def add_findings(self, name: str, metrics: Mapping[str, Any], warnings: Iterable[str]) -> None:
        """Record a check run after QC (compensation, gating) under ``metrics[name]``.

        Its warnings are appended and turn a ``pass`` into ``warn``; a later check never
        fails a sample, because its events have already been analysed.
        """
        self.metrics[name] = dict(metrics)
        notes = list(warnings)
        self.warnings.extend(notes)
        if notes and self.status == "pass":
            self.status = "warn"

    def fail(self, reason: str) -> None:
        """Mark the tube failed after QC (compensation or gating could not be done), keeping
        the acquisition record a reviewer needs to see why."""
        self.status = "fail"
        self.failure = self.failure or "analysis"
        self.reasons.append(reason)

    def to_json(self, sample_id: str, file: str) -> dict[str, Any]:
        """The ``qc.json`` document (see docs/outputs.md); NaN and inf become ``null``."""
        return _jsonable(
            {
                "sample_id": sample_id,
                "file": file,
                "status": self.status,
                "failure": self.failure,
                "reasons": self.reasons,
                "warnings": self.warnings,
                "events_total": self.events_total,
                "events_kept": self.events_kept,
                "metrics": self.metrics,
                "dropped": self.dropped,
                "time_course": self.time_course,
            }
        )


def _jsonable(value: Any) -> Any:
    """Plain JSON types all the way down; non-finite floats become ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def failed_qc(reason: str, events: int = 0, kind: str = "unreadable") -> QCResult:
    """A QC result for a tube that was not analysed: ``unreadable`` (the file could not be
    read: ``events`` unknown) or ``panel`` (read, ``events`` in it, but its channels cannot
    support the gating)."""
    return QCResult(
        status="fail",
        events_total=events,
        keep=np.zeros(0, dtype=bool),
        reasons=[reason],
        failure=kind,
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def check_acquisition(tube: Tube, settings: QCSettings) -> QCResult:
    """Check event count, acquisition stability over time, saturation and spillover.

    Parameters
    ----------
    tube : Tube
        The tube as read; ``Time`` (via ``tube.markers``) must be in seconds.
    settings : QCSettings
        Limits, from :meth:`QCSettings.from_config`.

    Returns
    -------
    QCResult
        ``fail`` when the tube cannot support an analysis (too few events, too much unstable
        acquisition, or a missing spillover matrix configured to fail), ``warn`` when a
        reviewer should look, else ``pass``; ``keep`` drops the unstable bins.
    """
    n = tube.n_events
    reasons: list[str] = []
    notes: list[str] = []
    if n < settings.min_events:
        reasons.append(f"{n} events acquired, fewer than the minimum of {settings.min_events}")

    stability = _check_time(tube, settings)
    reasons += stability.reasons
    notes += stability.warnings
    keep = stability.keep
    kept = int(np.count_nonzero(keep))
    if n >= settings.min_events and kept < settings.min_events:
        reasons.append(
            f"{kept} events remain after dropping unstable acquisition, fewer than the minimum "
            f"of {settings.min_events}"
        )

    reasons += _constant_channels(tube)
    time_channel = tube.markers.get("Time")
    saturated: dict[str, float] = {}
    for i, channel in enumerate(tube.channels):
        top = tube.ranges.get(channel, float("nan"))
        if not np.isfinite(top) or top <= 0 or channel == time_channel:
            continue
        # ranges hold the top of the scale in event units; allow float rounding below it
        share = float(np.count_nonzero(tube.events[:, i] >= top * (1 - 1e-7)) / n) if n else 0.0
        saturated[channel] = round(share, 6)
        if share > settings.max_saturated_fraction:
            notes.append(
                f"{channel}: {100 * share:.1f}% of events at the top of the scale (saturated)"
            )
    if tube.spillover is None and SPECTRAL.search(tube.cytometer):
        pass  # unmixed spectral data carry no spillover matrix: nothing is missing
    elif tube.spillover is None:
        text = "no spillover matrix in the file or config: fluorescence analysed uncompensated"
        if settings.missing_spillover == "fail":
            reasons.append(text.replace("analysed", "cannot be analysed"))
        else:
            notes.append(text)
    status = "fail" if reasons else ("warn" if notes else "pass")
    return QCResult(
        failure="acquisition" if reasons else None,
        status=status,
        events_total=n,
        keep=keep,
        reasons=reasons,
        warnings=notes + list(tube.warnings),
        metrics={
            "saturated_fraction": saturated,
            "spillover_source": tube.spillover_source,
            "time": stability.metrics,
        },
        dropped=stability.dropped,
        time_course=stability.course,
    )


#: Spectral analysers ($CYT): their files hold unmixed data, which need no spillover matrix.
SPECTRAL = re.compile(
    r"aurora|northern lights|id7000|sp6800|spectral|bigfoot|symphony a5 se", re.IGNORECASE
)

#: Roles whose channel must vary for any gating to be possible.
GATING_ROLES = ("FSC-A", "SSC-A", "CD45")


#: Events moved per step by :func:`keep_events`: a bounded temporary (measured as fast as one
#: boolean-mask copy of the whole tube).
KEEP_BLOCK = 8192


def keep_events(tube: Tube, keep: np.ndarray) -> np.ndarray:
    """The QC-kept events (``keep``), which become ``tube.events``: the tube's own array when
    QC keeps every event, else the kept rows moved up over the dropped ones, block by block,
    so that the tube is never held twice (issue 9; ``profile.json`` counts events from QC)."""
    events = tube.events
    n_kept = int(np.count_nonzero(keep))
    if n_kept == events.shape[0]:
        return events
    done = 0
    for first in range(0, events.shape[0], KEEP_BLOCK):
        # a copy, taken before writing: kept rows only ever move towards the start
        rows = events[first : first + KEEP_BLOCK][keep[first : first + KEEP_BLOCK]]
        events[done : done + rows.shape[0]] = rows
        done += rows.shape[0]
    tube.events = events[:n_kept]
    return tube.events


def _constant_channels(tube: Tube) -> list[str]:
    """A failure reason when a channel the blast gate needs holds one value in every event:
    such a file (anonymised, synthetic or a stuck detector) has no populations to find, and
    a gate placed on it would report numbers that mean nothing."""
    stuck = []
    for role in GATING_ROLES:
        channel = tube.markers.get(role)
        if channel is None or tube.n_events < 2:
            continue
        column = tube.events[:, tube.channels.index(channel)]
        if float(np.min(column)) == float(np.max(column)):
            stuck.append(f"{channel} = {float(column[0]):g}")
    if not stuck:
        return []
    return [
        f"{', '.join(stuck)} in every event: no signal to gate on (an anonymised or synthetic "
        "file, or a detector that was off); re-export the acquisition"
    ]


# --------------------------------------------------------------------------------------------
# Time course
# --------------------------------------------------------------------------------------------


@dataclass
class _Stability:
    """What the time-course check found (internal to :func:`check_acquisition`)."""

    keep: np.ndarray
    metrics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    course: dict[str, Any] | None = None


def _not_checked(n: int, channel: str | None, note: str) -> _Stability:
    """Every event kept, with the reason stability was not checked as a warning."""
    metrics = {"channel": channel, "checked": False, "note": note}
    return _Stability(keep=np.ones(n, dtype=bool), metrics=metrics, warnings=[note])


def _stability_columns(tube: Tube, time_channel: str) -> list[int]:
    """Columns whose signal must be stable: the scatter and marker detectors the analysis uses,
    else (no marker found) every channel but Time and event counters (which always rise)."""
    wanted = {c for c in tube.markers.values() if c != time_channel}
    columns = [i for i, c in enumerate(tube.channels) if c in wanted]
    if columns:
        return columns
    return [
        i
        for i, c in enumerate(tube.channels)
        if c != time_channel and not np.all(np.diff(tube.events[:, i]) >= 0)
    ]


def _tick(step: np.ndarray) -> float:
    """The clock's tick: the smallest positive step between events (without copying the
    positive steps out: a tube's worth of float64 otherwise)."""
    return float(np.min(step, where=step > 0, initial=np.inf))


def _bin_edges(t: np.ndarray, tick: float, settings: QCSettings) -> np.ndarray:
    """Bin edges over the acquisition (``t`` sorted, ``tick`` the clock's, see :func:`_tick`).

    Bins are about ``bin_seconds`` wide, but at most ``max_bins`` and with at least
    ``min_events_per_bin`` events on average; narrower for a short acquisition so that there
    are ``min_bins`` of them when the events allow it. On a quantised clock (a tick that is a
    visible share of the run, e.g. 1-s ticks on old instruments) every bin holds a whole
    number of ticks with its edges between ticks, so that no bin is empty or doubled by the
    clock alone; only the last bin may be wider. The caller normalises counts by width.
    """
    n = t.size
    duration = float(t[-1] - t[0])
    rate = n / duration
    width = max(
        settings.bin_seconds, duration / settings.max_bins, settings.min_events_per_bin / rate
    )
    bins = math.floor(duration / width + 1e-9)
    if bins < settings.min_bins:
        width = max(duration / settings.min_bins, settings.min_events_per_bin / rate)
        bins = math.floor(duration / width + 1e-9)
    if duration / tick > QUANTISED_TICKS:
        edges = t[0] + duration / max(bins, 1) * np.arange(max(bins, 1) + 1)
        edges[-1] = t[-1]
        return edges
    ticks = round(duration / tick) + 1
    per_bin = max(1, math.ceil(width / tick - 1e-9))
    if ticks // per_bin < settings.min_bins:  # whole ticks must not cost the last bins
        per_bin = max(1, ticks // settings.min_bins)
    while ticks // per_bin > settings.max_bins:
        per_bin += 1
    bins = max(ticks // per_bin, 1)
    edges = t[0] - tick / 2 + tick * per_bin * np.arange(bins + 1)
    edges[-1] = t[-1] + tick / 2
    return edges


def _check_time(tube: Tube, settings: QCSettings) -> _Stability:
    """Bin the acquisition on ``Time`` and drop clogs, bursts, gaps and signal shifts.

    Rate: the level is the rate at which the median event was acquired (event-weighted median
    of the bins' rates, so that a long clog cannot drag the level down); a bin is a clog below
    ``min_rate_fraction`` of it and a burst above ``max_rate_factor`` times it. Gap: no event
    for longer than ``max_gap_seconds`` (and than 20 mean intervals). Signal: each bin's mean
    per channel on an arcsinh scale (log-like, ~decades for bright events, linear near zero),
    against the run's median over bins; a shift is flagged above ``max_signal_shift`` decades
    and above 6 robust SDs of the bin-to-bin noise (see :func:`_signal_shifts`).
    """
    n = tube.n_events
    channel = tube.markers.get("Time")
    if channel is None or channel not in tube.channels:
        return _not_checked(n, None, "no Time channel: acquisition stability not checked")
    if n < 2:
        return _not_checked(n, channel, "too few events: acquisition stability not checked")
    # the tube's own Time column (read only), copied only to join a wrapped-around counter
    t = np.asarray(tube.events[:, tube.channels.index(channel)], dtype=np.float64)
    step = np.diff(t)
    back = step < 0
    resets = int(np.count_nonzero(back))
    notes: list[str] = []
    if resets > max(2, MAX_TIME_RESETS * n):
        return _not_checked(
            n,
            channel,
            f"Time channel steps back {resets} times (not in acquisition order): acquisition "
            "stability not checked",
        )
    if resets:
        # a wrapped-around counter: continue from where it stopped (joined end to end)
        t = np.array(t)
        t[1:] += np.cumsum(np.where(back, -step, 0.0))
        step = np.diff(t)
        notes.append(
            f"Time channel resets {resets} time(s) (counter wrap-around); joined end to end"
        )
    duration = float(t[-1] - t[0])
    if not duration > 0:
        return _not_checked(
            n, channel, "Time channel is constant: acquisition stability not checked"
        )
    tick = _tick(step)
    edges = _bin_edges(t, tick, settings)
    bins = edges.size - 1
    if bins < settings.min_bins or n < bins * settings.min_events_per_bin:
        return _not_checked(
            n,
            channel,
            f"{n} events over {duration:.3g} s (clock ticks of {tick:.3g} s) are too few for "
            f"{settings.min_bins} bins of {settings.min_events_per_bin} events: acquisition "
            "stability not checked",
        )
    inner = np.searchsorted(t, edges[1:-1], side="left")
    starts = np.concatenate(([0], inner))
    ends = np.concatenate((inner, [n]))
    counts = ends - starts
    widths = np.diff(edges)
    width = float(widths.mean())

    # --- rate: clogs and bursts, against the rate at which the median event was acquired
    rate = counts / widths
    order = np.argsort(rate, kind="stable")
    median_at = np.searchsorted(np.cumsum(counts[order]), n / 2.0)
    level_rate = float(rate[order][median_at])
    expected = level_rate * widths
    noise = POISSON_Z * np.sqrt(expected)
    clog = (counts < settings.min_rate_fraction * expected) & (counts < expected - noise)
    burst = (counts > settings.max_rate_factor * expected) & (counts > expected + noise)

    # --- gaps: pauses longer than the limit, and the bins they touch
    gap_limit = max(settings.max_gap_seconds, GAP_INTERVALS / level_rate, 2 * tick)
    gap_at = np.flatnonzero(step > gap_limit)
    in_gap = np.zeros(bins, dtype=bool)
    gaps = []
    if gap_at.size:
        first = np.searchsorted(edges[1:-1], t[gap_at], side="right")
        last = np.searchsorted(edges[1:-1], t[gap_at + 1], side="right")
        marks = np.zeros(bins + 1, dtype=np.int64)
        np.add.at(marks, first, 1)
        np.add.at(marks, last + 1, -1)
        in_gap = np.cumsum(marks[:-1]) > 0
        gaps = [
            {
                "start_s": round(float(t[i]), 4),
                "end_s": round(float(t[i + 1]), 4),
                "seconds": round(float(step[i]), 4),
            }
            for i in gap_at
        ]

    # --- signal: per-bin mean (arcsinh scale) of the analysed channels
    columns = _stability_columns(tube, channel)
    usable = ~(clog | burst | in_gap) & (
        counts >= max(MIN_SIGNAL_EVENTS, settings.min_events_per_bin // 2)
    )
    shift, shifted = _signal_shifts(tube.events, columns, starts, ends, usable, settings)

    reason = np.zeros(bins, dtype=np.int8)  # 0 kept, else 1 + index in DROP_REASONS
    for code, flags in reversed(list(enumerate((in_gap, clog, burst, shifted.any(axis=1)), 1))):
        reason[flags] = code
    keep_bin = reason == 0
    keep = np.repeat(keep_bin, counts)

    dropped = _dropped_periods(
        reason,
        edges,
        counts,
        expected,
        n,
        level_rate,
        gaps,
        shift,
        shifted,
        [tube.channels[c] for c in columns],
    )
    n_dropped = n - int(np.count_nonzero(keep))
    gap_seconds = float(step[gap_at].sum())
    acquiring = max(duration - gap_seconds, width)
    stable = min(1.0, float(keep_bin.sum()) * width / acquiring)
    metrics = {
        "channel": channel,
        "checked": True,
        "start_s": round(float(t[0]), 4),
        "duration_s": round(duration, 4),
        "bins": bins,
        "bin_seconds": round(width, 6),
        "level_events_per_s": round(level_rate, 3),
        "level_events_per_bin": round(level_rate * width, 3),
        "clock_tick_s": tick,
        "gap_limit_s": round(gap_limit, 4),
        "gap_count": len(gaps),
        "gaps": gaps[:MAX_LISTED_GAPS],
        "time_resets": resets,
        "signal_channels": [tube.channels[c] for c in columns],
        "events_dropped": n_dropped,
        "pct_events_dropped": round(100.0 * n_dropped / n, 3),
        "stable_time_fraction": round(stable, 4),
    }
    course = {
        "bin_seconds": round(width, 6),
        "start_s": [round(float(e), 4) for e in edges[:-1]],
        "events": [int(c) for c in counts],
        "kept": [bool(k) for k in keep_bin],
    }
    warnings = notes + _drop_warnings(dropped, gaps, n)
    reasons = []
    if n_dropped > settings.max_dropped_fraction * n:
        why = ", ".join(sorted({d["reason"] for d in dropped}))
        reasons.append(
            f"{100 * n_dropped / n:.1f}% of events were acquired during unstable acquisition "
            f"({why}), more than the {100 * settings.max_dropped_fraction:g}% allowed"
        )
    if stable < settings.min_stable_fraction:
        why = ", ".join(sorted({d["reason"] for d in dropped}))
        reasons.append(
            f"only {100 * stable:.0f}% of the acquisition time was stable ({why}), less than the "
            f"{100 * settings.min_stable_fraction:g}% required"
        )
    return _Stability(keep, metrics, warnings, reasons, dropped, course)


def _signal_shifts(
    events: np.ndarray,
    columns: Sequence[int],
    starts: np.ndarray,
    ends: np.ndarray,
    usable: np.ndarray,
    settings: QCSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Per bin and channel: the shift of the bin's signal from the run's, in decades, and
    whether it is flagged.

    The bin's signal is the mean of arcsinh-scaled intensities (``asinh(x / c) / ln 10``, with
    ``c`` the spread of the channel's densest population, at least 1% of its range): log-like,
    so a gain change of x2.5 moves bright events by 0.4 decades whatever their intensity, and
    linear near zero, so noise around zero does not explode. A mean rather than a median,
    because the median of a marker carried by about half of the cells sits in the valley
    between the two populations and jumps between them by sampling alone.
    """
    bins = starts.size
    shift = np.zeros((bins, len(columns)))
    flagged = np.zeros((bins, len(columns)), dtype=bool)
    if not columns or np.count_nonzero(usable) < 3:
        return shift, flagged
    sample = events[:: max(1, events.shape[0] // SPREAD_EVENTS)][:, columns]
    cofactor = np.empty(len(columns))
    for j in range(len(columns)):
        _, spread = densest_population(sample[:, j])
        low, high = orderstats.percentiles(sample[:, j], [0.5, 99.5])
        cofactor[j] = max(spread, 0.01 * float(high - low), 1e-12)
    signal = np.full((bins, len(columns)), np.nan)
    for b in np.flatnonzero(usable):
        stride = max(1, int(ends[b] - starts[b]) // SIGNAL_EVENTS)
        # row-major whatever the events' layout: the mean then adds in the same order, to the
        # same last bit (a column-major block would be summed pairwise)
        values = np.ascontiguousarray(events[starts[b] : ends[b] : stride][:, columns])
        signal[b] = np.arcsinh(values / cofactor).mean(axis=0) / math.log(10)
    for j in range(len(columns)):
        centre = float(np.median(signal[usable, j]))
        # bin-to-bin noise from successive differences: a slow drift or a step does not
        # inflate it (a spread around the centre would hide the drift it is meant to find)
        noise = 1.4826 * float(np.median(np.abs(np.diff(signal[usable, j])))) / math.sqrt(2)
        limit = max(settings.max_signal_shift, SIGNAL_MADS * noise)
        deviation = np.where(usable, signal[:, j] - centre, 0.0)
        shift[:, j] = deviation
        flagged[:, j] = np.abs(deviation) > limit
    return shift, flagged


def _dropped_periods(
    reason: np.ndarray,
    edges: np.ndarray,
    counts: np.ndarray,
    expected: np.ndarray,
    n: int,
    level_rate: float,
    gaps: list[dict[str, float]],
    shift: np.ndarray,
    shifted: np.ndarray,
    names: list[str],
) -> list[dict[str, Any]]:
    """Runs of consecutive dropped bins with the same reason, each with a one-line why."""
    change = np.flatnonzero(np.diff(reason)) + 1
    run_starts = np.concatenate(([0], change))
    run_ends = np.concatenate((change, [reason.size]))
    periods = []
    for a, b in zip(run_starts, run_ends, strict=True):
        code = int(reason[a])
        if code == 0:
            continue
        kind = DROP_REASONS[code - 1]
        start, end = float(edges[a]), float(edges[b])
        events = int(counts[a:b].sum())
        if kind in ("clog", "burst"):
            pct = 100.0 * float(counts[a:b].sum()) / float(expected[a:b].sum())
            detail = f"flow rate {pct:.0f}% of the run's level ({level_rate:.3g} events/s)"
        elif kind == "gap":
            inside = [g for g in gaps if g["end_s"] >= start and g["start_s"] <= end]
            longest = max((g["seconds"] for g in inside), default=0.0)
            detail = f"no events for {longest:.1f} s"
        else:
            parts = []
            for j in np.flatnonzero(shifted[a:b].any(axis=0)):
                values = shift[a:b, j][shifted[a:b, j]]
                worst = float(values[np.argmax(np.abs(values))])
                parts.append((abs(worst), f"{names[j]} {worst:+.2f} decades"))
            detail = "; ".join(text for _, text in sorted(parts, reverse=True))
        periods.append(
            {
                "start_s": round(start, 4),
                "end_s": round(end, 4),
                "reason": kind,
                "events": events,
                "pct_events": round(100.0 * events / n, 3),
                "detail": detail,
            }
        )
    return periods


#: Plain words for the warnings, per drop reason.
_REASON_TEXT = {
    "clog": "clog (flow rate well below the run's level)",
    "burst": "burst or bubble (flow rate spike)",
    "gap": "gap in acquisition",
    "signal_shift": "signal shift",
}


def _drop_warnings(
    dropped: list[dict[str, Any]], gaps: list[dict[str, float]], n: int
) -> list[str]:
    """One warning per reason: how long, how many events, and (gaps) when."""
    notes = []
    for kind in DROP_REASONS:
        periods = [d for d in dropped if d["reason"] == kind]
        if not periods:
            continue
        seconds = sum(d["end_s"] - d["start_s"] for d in periods)
        events = sum(d["events"] for d in periods)
        text = (
            f"{_REASON_TEXT[kind]}: {len(periods)} period(s), {seconds:.1f} s; {events:,} events "
            f"({100 * events / n:.1f}%) dropped"
        )
        if kind == "gap":
            where = ", ".join(f"{g['seconds']:.1f} s at {g['start_s']:.1f} s" for g in gaps[:3])
            more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
            text += f"; no events for {where}{more}"
        elif kind == "signal_shift":
            names = []
            for d in periods:
                for part in d["detail"].split("; "):
                    name = part.rsplit(" ", 2)[0]
                    if name and name not in names:
                        names.append(name)
            text += f" ({', '.join(names)})"
        notes.append(text)
    return notes


# --------------------------------------------------------------------------------------------
# After compensation and gating
# --------------------------------------------------------------------------------------------


def densest_population(values: np.ndarray) -> tuple[float, float]:
    """Centre and SD of a channel's densest population (usually the negative one).

    The mode of a 256-bin histogram gives the centre and, from its half-width at half maximum,
    a first SD; a 3-SD-clipped MAD around it then refines both. Other populations further than
    3 SDs away do not count, which a plain median/MAD of the channel cannot avoid.

    Returns
    -------
    centre, sd : float
        ``sd`` is 0 when the channel holds a single value.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), 0.0
    low, high = orderstats.percentiles(x, [0.5, 99.5])
    if not high > low:
        return float(orderstats.median(x)), 0.0
    hist, edges = np.histogram(x, bins=256, range=(low, high))
    k = int(np.argmax(hist))
    binwidth = float(edges[1] - edges[0])
    centre = float(edges[k]) + binwidth / 2
    below_half = hist < hist[k] / 2.0
    up = np.flatnonzero(below_half[k:])
    down = np.flatnonzero(below_half[: k + 1][::-1])
    half = min(
        up[0] if up.size else hist.size - k,
        down[0] if down.size else k + 1,
    )
    sd = max(half, 1) * binwidth / 1.1774
    for _ in range(30):
        window = x[np.abs(x - centre) < 3.0 * sd]
        if window.size < MIN_SIGNAL_EVENTS:
            break
        new_centre = float(orderstats.median(window))
        new_sd = 1.4826 * float(orderstats.median(np.abs(window - new_centre), True))
        if new_sd <= 0:
            break
        done = abs(new_sd - sd) <= 0.005 * sd and abs(new_centre - centre) <= 0.005 * sd
        centre, sd = new_centre, new_sd
        if done:
            break
    return centre, sd


def negative_pileups(
    events: np.ndarray, channels: list[str], fluorescence: list[str], settings: QCSettings
) -> dict[str, float]:
    """Per fluorescence channel, the share of compensated events more than ``negative_sd``
    SDs of the negative population below zero; empty for fewer than 1000 events, whose tail
    shares are too noisy to judge.

    Such a pile-up is the mark of a wrong spillover matrix: with a too-large coefficient, the
    cells bright in one dye are pushed far below zero in its neighbour's detector, much
    further than the negative population's own spread. ``events`` are compensated,
    ``channels`` name their columns, ``fluorescence`` are the detectors to check (the
    spillover matrix's); :func:`compensation_warnings` words the shares over the limit.
    """
    shares: dict[str, float] = {}
    n = events.shape[0]
    if n < MIN_COMPENSATION_EVENTS:
        return shares
    for name in fluorescence:
        if name not in channels:
            continue
        column = events[:, channels.index(name)]
        _, sd = densest_population(column[:: max(1, n // SPREAD_EVENTS)])
        if not sd > 0:
            continue
        shares[name] = round(float(np.count_nonzero(column < -settings.negative_sd * sd)) / n, 6)
    return shares


def compensation_warnings(shares: Mapping[str, float], settings: QCSettings) -> list[str]:
    """Warnings for the :func:`negative_pileups` shares above ``max_negative_fraction`` (for
    a caller that also records the shares, without computing them twice)."""
    return [
        f"{name}: {100 * share:.1f}% of events more than {settings.negative_sd:g} SDs of the "
        "negative population below zero after compensation (over-compensation?); check the "
        "spillover matrix"
        for name, share in shares.items()
        if share > settings.max_negative_fraction
    ]


def gating_shares(
    populations_counts: pd.DataFrame, cells: str = "cells", singlets: str = "singlets"
) -> dict[str, float | None]:
    """Debris and doublet shares from ``populations.tsv`` (QC itself never gates).

    ``debris_fraction`` = 1 - cells / all QC-kept events (the first gate's parent) and
    ``doublet_fraction`` = 1 - singlets / cells; ``None`` where a gate is absent or empty.
    """
    rows = populations_counts.set_index("population") if len(populations_counts) else None
    debris = doublets = None
    if rows is not None and cells in rows.index:
        pct = pd.to_numeric(rows.loc[cells, "pct_parent"], errors="coerce")
        if pd.notna(pct):
            debris = round(1.0 - float(pct) / 100.0, 6)
        n_cells = pd.to_numeric(rows.loc[cells, "events"], errors="coerce")
        if singlets in rows.index and pd.notna(n_cells) and n_cells > 0:
            n_singlets = float(pd.to_numeric(rows.loc[singlets, "events"], errors="coerce"))
            doublets = round(1.0 - n_singlets / float(n_cells), 6)
    return {"debris_fraction": debris, "doublet_fraction": doublets}


def gating_warnings(shares: Mapping[str, float | None], settings: QCSettings) -> list[str]:
    """Warnings for debris or doublet shares above the configured limits."""
    notes = []
    debris = shares.get("debris_fraction")
    if debris is not None and debris > settings.max_debris_fraction:
        notes.append(
            f"{100 * debris:.1f}% of events are debris (outside the cells gate), more than "
            f"{100 * settings.max_debris_fraction:g}%: degraded sample?"
        )
    doublets = shares.get("doublet_fraction")
    if doublets is not None and doublets > settings.max_doublet_fraction:
        notes.append(
            f"{100 * doublets:.1f}% of cells are doublets (outside the singlets gate), more "
            f"than {100 * settings.max_doublet_fraction:g}%: clumping?"
        )
    return notes
