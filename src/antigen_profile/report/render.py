"""Render the per-sample and cohort HTML reports from the files described in docs/outputs.md.

The report is a reader, not an analyst: it shows what the profile and decide stages wrote and
computes nothing new, so a number in the report can always be traced to a result file. Every
string that comes from a file is escaped by Jinja2's autoescaping; nothing is marked safe.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from antigen_profile import __version__
from antigen_profile.files import write_text
from antigen_profile.outputs import REPORT_READS, sample_paths
from antigen_profile.report import plots
from antigen_profile.report.offtumour import off_tumour_note

DASH = plots.DASH

#: Antigen calls that carry no trustworthy percentage (outputs.md: "no number is better than a
#: wrong one"); their numbers are replaced by a dash whatever the file holds.
NOT_CALLED = frozenset({"insufficient_events", "no_reference"})

#: CSS classes for values from files; anything else gets the neutral class, so a file value
#: never lands in a class attribute.
DECISION_CLASS = {"candidate": "good", "not_candidate": "bad", "needs_review": "warn"}
DECISION_ORDER = ("candidate", "needs_review", "not_candidate")
OUTCOME_CLASS = {"pass": "good", "fail": "bad", "unknown": "warn"}
QC_CLASS = {"pass": "good", "warn": "warn", "fail": "bad"}
CALL_CLASS = {
    "positive": "pos",
    "partial": "partial",
    "negative": "neg",
    "insufficient_events": "warn",
    "no_reference": "warn",
}
STATUS_CLASS = {
    "ok": "good",
    "eligible": "good",
    "excluded": "bad",
    "qc_failed": "bad",
    "insufficient_blasts": "warn",
    "undetermined": "warn",
}

#: The result files a report needs (keys of :data:`antigen_profile.outputs.SAMPLE_FILES`).
REQUIRED_FILES = ("qc", "populations", "antigens", "gates", "plotdata", "profile", "decision")
#: Written by later versions of the profile stage: a results folder without them still renders,
#: with a note where their section would be.
OPTIONAL_FILES = ("coverage", "coexpression", "positive_controls")

#: Content-Security-Policy of the sample report: nothing may load or run except the inline
#: styles and the data: images the report itself carries. A string that escaped escaping could
#: still neither run a script nor fetch anything, and a report opened from an e-mail makes no
#: network request.
SAMPLE_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)

#: profile.json flags (``code``) in plain words; an unknown code is shown as written.
FLAG_TITLES = {
    "no_blast_population": "No blast population found",
    "blasts_not_detected": "Blasts not detected",
    "blasts_below_quantification_floor": "Blasts below the quantification floor",
    "possible_lineage_switch": "Possible lineage switch",
    "backbone_not_applied": "B-lineage backbone not applied",
    "gate_not_fitted": "Gate not fitted to this sample",
}
#: Flags that change what the whole report means are red; every other flag is amber.
RED_FLAGS = frozenset({"possible_lineage_switch", "no_blast_population"})

#: Dim/bright intensity words of antigens.tsv (anything else is shown neutral).
INTENSITY_CLASS = {"bright": "pos", "dim": "warn"}

#: Plain words for the references a threshold can come from (antigens.tsv threshold_source).
SOURCE_TEXT = {
    "marker_control:blasts": "FMO for this antigen",
    "control:blasts": "control tube, same blast gate",
    "mixture:blasts": "mixture fit on the blasts themselves",
    "none": "no reference",
}
#: The weakest reference: no control, no valid internal negative. Gets a warning badge.
WEAKEST_SOURCES = frozenset({"mixture:blasts"})

#: Leading columns of coexpression.tsv; one boolean column per target follows.
COEXPRESSION_LEADING = ("pattern", "n_targets", "events", "pct_blasts")
#: coexpression.tsv's pattern for blasts negative for every target (escape from all products).
ESCAPE_PATTERN = "none"
#: Combinations of at most this many products are shown by default (4SCAR2.0 gave up to two
#: products together); the full coverage table is folded away below them.
DEFAULT_COMBINATION_SIZE = 2


# --------------------------------------------------------------------------- formatting


def _number(value: Any) -> float | None:
    """A finite float, or None for anything empty, non-numeric or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_count(value: Any) -> str:
    """An event count with thousands separators, or a dash."""
    number = _number(value)
    return DASH if number is None else f"{round(number):,}"


def fmt_pct(value: Any) -> str:
    """A percentage with one decimal (the precision Poisson counting supports), or a dash."""
    number = _number(value)
    return DASH if number is None else f"{number:.1f}"


def fmt_num(value: Any) -> str:
    """An intensity or ratio: integers above 1000, three significant digits below."""
    number = _number(value)
    if number is None:
        return DASH
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def fmt_pct2(value: Any) -> str:
    """A percentage with two decimals, as coverage.tsv and coexpression.tsv write them.

    Escape shares are small (0.07% of 28,000 blasts is 21 cells); one decimal would print
    0.07 and 0.12 alike.
    """
    number = _number(value)
    return DASH if number is None else f"{number:.2f}"


def fmt_interval(low: Any, high: Any, digits: int = 1) -> str:
    """A confidence interval in brackets, bounds joined by an en dash: "(94.9\u201395.5)".

    Parameters
    ----------
    low, high
        The bounds as written in a result file (numbers or numeric strings).
    digits
        Decimals to print.

    Returns
    -------
    str
        The interval, or "" when either bound is missing or not a number (the value is
        then shown alone, never with a made-up interval).
    """
    lo, hi = _number(low), _number(high)
    if lo is None or hi is None:
        return ""
    return f"({lo:.{digits}f}\u2013{hi:.{digits}f})"


def _truthy(value: Any) -> bool | None:
    """A boolean TSV/JSON cell: True, False, or None when empty or not a boolean word."""
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    return None


def fmt_value(value: Any) -> str:
    """Any JSON value as plain text for a table cell (lists joined, missing as a dash)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_num(value) if isinstance(value, float) else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value) or DASH
    return str(value)


def _css(mapping: Mapping[str, str], value: Any) -> str:
    """The whitelisted CSS class for a file value, or the neutral one."""
    return mapping.get(str(value), "neutral")


def _as_list(value: Any, separator: str | None = None) -> list[str]:
    """A list of strings from a JSON list, a separated string (TSV cells), or nothing.

    Without a separator a string is one item: a reason may itself contain commas.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        parts = value.split(separator) if separator else [value]
        return [part.strip() for part in parts if part.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order without repeats (QC and decision often repeat a reason)."""
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Table:
    """A TSV as written: its header (even when it has no rows) and its rows as strings."""

    columns: list[str]
    rows: list[dict[str, str]]


@dataclass(frozen=True)
class SampleFiles:
    """Everything the profile and decide stages wrote for one sample.

    ``coverage``, ``coexpression`` and ``positive_controls`` are None when the folder
    predates them.
    """

    qc: dict[str, Any]
    populations: list[dict[str, str]]
    antigens: list[dict[str, str]]
    gates: list[dict[str, Any]]
    plotdata: dict[str, np.ndarray]
    profile: dict[str, Any]
    decision: dict[str, Any]
    coverage: Table | None = None
    coexpression: Table | None = None
    positive_controls: Table | None = None


def _read_json(path: Path) -> Any:
    """Parse a JSON result file."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a TSV as strings, exactly as written (header-only gives no rows).

    Read as text, not numbers, so that an empty cell stays empty and is shown as a dash rather
    than becoming NaN or 0 on the way.
    """
    with path.open(encoding="utf-8", newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle, delimiter="\t")]


def _read_table(path: Path) -> Table | None:
    """An optional TSV with its header, or None when the file does not exist."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [dict(row) for row in reader]
        return Table(columns=list(reader.fieldnames or []), rows=rows)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of plotdata.npz, loaded eagerly so the file is closed (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_sample(sample_dir: Path | Mapping[str, str | Path]) -> SampleFiles:
    """Read the seven result files of a sample, failing loudly when one is missing, and the
    optional ones (coverage.tsv, coexpression.tsv) when they are there.

    ``sample_dir`` is the sample's folder or the files a rule declared
    (:data:`antigen_profile.outputs.REPORT_READS`). A report silently missing its decision or
    its gates would look complete to a clinician; an error in the workflow log is the safer
    outcome. The optional files are newer than some results folders: their absence is said in
    the report, not raised.
    """
    paths = sample_paths(sample_dir, REPORT_READS)
    missing = [str(paths[key]) for key in REQUIRED_FILES if not paths[key].is_file()]
    if missing:
        raise FileNotFoundError(f"missing result file(s) {', '.join(missing)}")
    gates = _read_json(paths["gates"])
    if not isinstance(gates, list):
        raise ValueError(f"{paths['gates']}: expected a list of gates")
    return SampleFiles(
        qc=_read_json(paths["qc"]),
        populations=_read_tsv(paths["populations"]),
        antigens=_read_tsv(paths["antigens"]),
        gates=gates,
        plotdata=_read_npz(paths["plotdata"]),
        profile=_read_json(paths["profile"]),
        decision=_read_json(paths["decision"]),
        **{key: _read_table(paths[key]) for key in OPTIONAL_FILES},
    )


# --------------------------------------------------------------------------- templates


def _environment() -> Environment:
    """Jinja2 environment with autoescaping on for every template and for strings."""
    env = Environment(
        loader=PackageLoader("antigen_profile.report", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count_fmt=fmt_count, pct_fmt=fmt_pct, num_fmt=fmt_num, value_fmt=fmt_value)
    return env


_ENV: Environment | None = None


def environment() -> Environment:
    """The shared environment (templates are compiled once per process)."""
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


# --------------------------------------------------------------------------- sample report


def _gate_views(files: SampleFiles) -> list[dict[str, Any]]:
    """One entry per gate in gates.json order, with its plot when plotdata holds its events."""
    views = []
    for gate in files.gates:
        gate_id = str(gate.get("id", "?"))
        x = files.plotdata.get(f"gate/{gate_id}/x")
        y = files.plotdata.get(f"gate/{gate_id}/y")
        image = None
        if x is not None:
            image = plots.gate_plot(gate, x, y, files.plotdata.get(f"gate/{gate_id}/inside"))
        views.append(
            {
                "id": gate_id,
                "parent": gate.get("parent") or "",
                "type": gate.get("type") or "",
                "x": plots.axis_label(gate.get("x")),
                "y": plots.axis_label(gate.get("y")) if gate.get("y") else "",
                "events": gate.get("events"),
                "pct_parent": gate.get("pct_parent"),
                "plotted": None if x is None else int(np.asarray(x).size),
                "image": image,
            }
        )
    return views


def _threshold(plotdata: Mapping[str, np.ndarray], marker: str) -> float | None:
    """The display-scale threshold of a marker (a one-element array), if written."""
    array = plotdata.get(f"threshold/{marker}")
    if array is None or np.asarray(array).size == 0:
        return None
    return _number(np.asarray(array, dtype=float).ravel()[0])


def _source_text(source: str) -> str:
    """A threshold_source in plain words (``internal:lymphocytes`` -> internal negative:
    lymphocytes); an unknown source is shown as written."""
    if source in SOURCE_TEXT:
        return SOURCE_TEXT[source]
    if source.startswith("internal:"):
        return f"internal negative: {source.split(':', 1)[1]}"
    return source or DASH


def _density_text(row: Mapping[str, str]) -> str:
    """ABC median and interquartile range as "ABC 4,120 (IQR 3,010-5,600)" (en dash), or ""."""
    median = _number(row.get("abc_median"))
    if median is None:
        return ""
    q25, q75 = _number(row.get("abc_q25")), _number(row.get("abc_q75"))
    text = f"ABC {fmt_count(median)}"
    if q25 is not None and q75 is not None:
        text += f" (IQR {fmt_count(q25)}\u2013{fmt_count(q75)})"
    return text


def _antigen_views(files: SampleFiles, circular: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Table rows and histograms per quantified marker.

    Rows whose call is insufficient_events or no_reference show a dash for every number that
    depends on the call (and, for too few events, for the median too), and their plot carries
    no threshold line: no number is better than a wrong one. Markers in ``circular`` also
    defined the blast gate and are flagged in the table. The later antigens.tsv columns
    (interval, intensity, density) are shown when the file has them.
    """
    gated_on = {marker.upper() for marker in circular}
    rows = list(files.antigens)
    listed = {row.get("marker", "") for row in rows}
    extra = sorted(
        key.split("/", 1)[1]
        for key in files.plotdata
        if key.startswith("blasts/") and key.split("/", 1)[1] not in listed
    )
    rows += [{"marker": marker, "call": "", "note": "not in antigens.tsv"} for marker in extra]
    views = []
    for row in rows:
        marker = row.get("marker", "")
        call = row.get("call", "")
        not_called = call in NOT_CALLED
        few = call == "insufficient_events"
        pct = None if not_called else _number(row.get("pct_positive"))
        source = row.get("threshold_source") or ""
        title = f"{marker}: {call}" if call else marker
        if pct is not None:
            title += f" ({pct:.1f}%)"
        image = plots.antigen_plot(
            marker,
            files.plotdata.get(f"blasts/{marker}"),
            files.plotdata.get(f"reference/{marker}"),
            None if not_called else _threshold(files.plotdata, marker),
            title=title,
            reference_label=f"reference ({_source_text(source) if source else 'none'})",
        )
        interval = "" if not_called else fmt_interval(row.get("pct_ci_low"), row.get("pct_ci_high"))
        intensity = "" if not_called else (row.get("intensity") or "").strip()
        views.append(
            {
                "marker": marker,
                "events": row.get("events"),
                "positive_events": DASH if not_called else fmt_count(row.get("positive_events")),
                "pct_positive": DASH if pct is None else f"{pct:.1f}%",
                "pct_interval": interval,
                "median": DASH if few else fmt_num(row.get("median")),
                "rmfi": DASH if not_called else fmt_num(row.get("rmfi")),
                "threshold": DASH if not_called else fmt_num(row.get("threshold")),
                "threshold_source": source or DASH,
                "source_text": _source_text(source),
                "weakest_reference": source in WEAKEST_SOURCES,
                "call": call or DASH,
                "call_class": _css(CALL_CLASS, call),
                "intensity": intensity,
                "intensity_class": _css(INTENSITY_CLASS, intensity),
                "density": (None if few else _density_text(row)) or DASH,
                "low_density": not few and _truthy(row.get("low_density")) is True,
                "note": row.get("note") or "",
                "not_called": not_called,
                "circular": marker.upper() in gated_on,
                "image": image,
            }
        )
    return views


def _has_density(files: SampleFiles) -> bool:
    """Whether antigens.tsv carries the density columns (bead-calibrated runs)."""
    return any("abc_median" in row or "low_density" in row for row in files.antigens)


def _has_interval(files: SampleFiles) -> bool:
    """Whether antigens.tsv carries the confidence interval of % positive."""
    return any("pct_ci_low" in row for row in files.antigens)


#: Plain-language names of the settings profile.json records, by dotted key (a leading
#: ``positivity.`` is ignored for the lookup); unknown keys are shown as is.
SETTING_LABELS = {
    "percentile": "Positivity threshold: percentile of the reference population",
    "call_limits": "Call limits (% positive blasts)",
    "floors": "Blast event floors",
    "internal_negative": "Internal negative reference per antigen (without a control tube)",
    "min_reference_events": "Fewest reference events for a threshold",
    "intensity.bright_rmfi": (
        "Intensity: bright when the positive blasts' median is at least this many times the "
        "reference median (else dim)"
    ),
    "confidence": "Confidence level of the intervals",
    "logicle": "Logicle display transform",
    "qc.min_events": "Fewest events for an analysis (in the tube and after QC)",
    "qc.max_saturated_fraction": "Saturated events per channel: warning above this share",
    "qc.missing_spillover": "Tube without a spillover matrix",
    "qc.time.bin_seconds": "Time bin width (s)",
    "qc.time.min_events_per_bin": "Fewest mean events per time bin (bins widened until)",
    "qc.time.max_bins": "Most time bins",
    "qc.time.min_bins": "Fewest time bins to check stability",
    "qc.time.min_rate_fraction": "Clog: flow rate below this share of the run's level",
    "qc.time.max_rate_factor": "Burst: flow rate above this multiple of the run's level",
    "qc.time.max_gap_seconds": "Gap: longest time without an event (s)",
    "qc.time.max_signal_shift": "Signal shift: largest departure of a bin's mean (decades)",
    "qc.time.max_dropped_fraction": "Fail when more than this share of events is dropped",
    "qc.time.min_stable_fraction": "Fail when less than this share of time is stable",
    "qc.compensation.negative_sd": "Compensation check: SDs of the negatives below zero",
    "qc.compensation.max_negative_fraction": (
        "Compensation check: warning above this share of events that far below zero"
    ),
    "qc.gating.max_debris_fraction": "Debris share (1 - cells / QC-kept events): warning above",
    "qc.gating.max_doublet_fraction": "Doublet share (1 - singlets / cells): warning above",
    "trial.max_products": "Most CAR-T products given together",
    "trial.min_coverage_pct": "A combination must cover at least this % of blasts",
    "trial.confidence": "Confidence level of the coverage intervals",
}
#: Settings that read best as one row (a small mapping); other mappings are listed key by key.
COMPACT_SETTINGS = frozenset({"call_limits", "floors", "internal_negative", "logicle"})
#: Positivity settings the report prints from the configuration when profile.json does not
#: record them, marked as such: the dim/bright words and the no_reference calls depend on them.
CONFIG_FALLBACK = ("min_reference_events", "intensity")
FALLBACK_NOTE = "(from the configuration given to the report; profile.json does not record it)"


def _setting_text(key: str, value: Any) -> str:
    """A setting's value, with the call limits spelled out as the categories they define."""
    key = key.rsplit(".", 1)[-1]
    if (
        key == "call_limits"
        and isinstance(value, Mapping)
        and {"partial", "positive"} <= set(value)
    ):
        partial, positive = fmt_value(value["partial"]), fmt_value(value["positive"])
        return f"negative < {partial}% \u2264 partial < {positive}% \u2264 positive"
    if key == "internal_negative" and isinstance(value, Mapping):
        return (
            ", ".join(f"{marker}: {population or 'none'}" for marker, population in value.items())
            or DASH
        )
    return fmt_value(value)


def _setting_label(key: str) -> str:
    """The plain-language name of a dotted setting key, or the key itself."""
    bare = key.removeprefix("positivity.")
    return SETTING_LABELS.get(key) or SETTING_LABELS.get(bare) or key


def _flatten_settings(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs: nested mappings are listed leaf by leaf, except the compact
    ones, which stay one row."""
    name = prefix.rsplit(".", 1)[-1]
    if isinstance(value, Mapping) and value and name not in COMPACT_SETTINGS:
        pairs: list[tuple[str, Any]] = []
        for key, child in value.items():
            pairs += _flatten_settings(f"{prefix}.{key}" if prefix else str(key), child)
        return pairs
    return [(prefix, value)]


def _setting_row(key: str, value: Any, note: str = "") -> dict[str, str]:
    """One row of a settings table."""
    text = _setting_text(key, value)
    return {"key": key, "label": _setting_label(key), "value": f"{text} {note}".strip()}


def _ordered(settings: Mapping[str, Any]) -> list[str]:
    """Top-level settings keys: the known ones in a reading order, then the rest as written."""
    order = ["percentile", "call_limits", "floors", "internal_negative"]
    keys = [str(k) for k in settings]
    return [k for k in order if k in settings] + [k for k in keys if k not in order]


def _settings_groups(
    profile: Mapping[str, Any], config: Mapping[str, Any], decision: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """Settings to print, grouped: positivity and floors, acquisition QC limits, trial.

    Everything profile.json records under ``settings`` is printed (or, when it records none,
    the configuration's, marked as such), and the trial's combination limits from
    decision.json. Returns the groups and whether the settings came from the run itself.
    """
    settings = profile.get("settings")
    recorded = isinstance(settings, Mapping) and bool(settings)
    if not recorded:
        positivity = config.get("positivity") or {}
        settings = {
            "percentile": positivity.get("percentile"),
            "call_limits": positivity.get("call_limits"),
            "floors": config.get("floors"),
            "min_reference_events": positivity.get("min_reference_events"),
            "intensity": positivity.get("intensity"),
            "logicle": config.get("logicle"),
            "qc": config.get("qc"),
        }
        settings = {k: v for k, v in settings.items() if v is not None}
    main: list[dict[str, str]] = []
    qc: list[dict[str, str]] = []
    for top in _ordered(settings):
        for key, value in _flatten_settings(top, settings[top]):
            (qc if key.startswith("qc.") or key == "qc" else main).append(_setting_row(key, value))
    if recorded:
        positivity = config.get("positivity") or {}
        nested = settings.get("positivity")
        nested = nested if isinstance(nested, Mapping) else {}
        for key in CONFIG_FALLBACK:
            if key in settings or key in nested or positivity.get(key) is None:
                continue
            for flat_key, flat_value in _flatten_settings(key, positivity[key]):
                main.append(_setting_row(flat_key, flat_value, FALLBACK_NOTE))
    trial = decision.get("trial") if isinstance(decision.get("trial"), Mapping) else {}
    combination = decision.get("combination")
    trial_rows = []
    for name in ("max_products", "min_coverage_pct"):
        value = trial.get(name)
        if value is None and isinstance(combination, Mapping):
            value = combination.get(name)
        text = "not recorded in decision.json" if value is None else value
        trial_rows.append(_setting_row(f"trial.{name}", text))
    if isinstance(combination, Mapping) and combination.get("confidence") is not None:
        trial_rows.append(_setting_row("trial.confidence", combination.get("confidence")))
    groups = [
        {"id": "settings-positivity", "title": "Positivity, calls and floors", "rows": main},
        {"id": "settings-qc", "title": "Acquisition QC limits", "rows": qc},
        {"id": "settings-trial", "title": "Trial: combinations of products", "rows": trial_rows},
    ]
    return [g for g in groups if g["rows"]], recorded


def _rule_views(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The decision rules with their inputs and outcome, as decide wrote them."""
    views = []
    for rule in decision.get("rules") or []:
        outcome = rule.get("outcome", "")
        views.append(
            {
                "id": rule.get("id", ""),
                "kind": rule.get("kind", ""),
                "text": rule.get("text", ""),
                "source": rule.get("source", ""),
                "value": fmt_value(rule.get("value")),
                "op": fmt_value(rule.get("op")),
                "threshold": fmt_value(rule.get("threshold")),
                "outcome": outcome or DASH,
                "outcome_class": _css(OUTCOME_CLASS, outcome),
            }
        )
    return views


#: Plain words for the reasons QC drops acquisition (qc.json ``dropped``).
DROP_REASON_TEXT = {
    "clog": "clog (flow rate well below the run's level)",
    "burst": "burst or bubble (flow rate spike)",
    "gap": "gap (no events)",
    "signal_shift": "signal shift",
}


def _seconds(value: Any) -> str:
    """A time in seconds for a table cell (one decimal, or a dash)."""
    number = _number(value)
    return DASH if number is None else f"{number:,.1f}"


def _time_course_view(qc: Mapping[str, Any]) -> dict[str, Any]:
    """The QC section's time course: plot, summary, dropped periods and, when stability was
    not checked, why. Everything comes from qc.json; a file written before the time course
    existed (no ``time_course``, no ``dropped``) renders with a note instead."""
    metrics = qc.get("metrics") if isinstance(qc.get("metrics"), Mapping) else {}
    time = metrics.get("time") if isinstance(metrics.get("time"), Mapping) else {}
    dropped = [d for d in _list(qc.get("dropped")) if isinstance(d, Mapping)]
    level = _number(time.get("level_events_per_bin"))
    image = plots.time_course_plot(qc.get("time_course"), dropped, level)
    rows = [
        {
            "start": _seconds(d.get("start_s")),
            "end": _seconds(d.get("end_s")),
            "reason": DROP_REASON_TEXT.get(str(d.get("reason")), str(d.get("reason") or DASH)),
            "events": fmt_count(d.get("events")),
            "pct": fmt_pct(d.get("pct_events")),
            "detail": str(d.get("detail") or ""),
        }
        for d in dropped
    ]
    summary = []
    if time.get("checked"):
        stable = _number(time.get("stable_time_fraction"))
        summary = [
            ("Time channel", str(time.get("channel") or DASH)),
            ("Acquisition", f"{_seconds(time.get('duration_s'))} s"),
            ("Bins", f"{fmt_count(time.get('bins'))} of {fmt_num(time.get('bin_seconds'))} s"),
            (
                "Level (median event's flow rate)",
                f"{fmt_num(time.get('level_events_per_s'))} events/s",
            ),
            (
                "Events dropped",
                f"{fmt_count(time.get('events_dropped'))} "
                f"({fmt_pct(time.get('pct_events_dropped'))}%)",
            ),
            ("Stable acquisition time", DASH if stable is None else f"{100 * stable:.1f}%"),
            ("Gaps", fmt_count(time.get("gap_count", len(_list(time.get("gaps")))))),
        ]
    if time and not time.get("checked"):
        note = str(time.get("note") or "acquisition stability not checked")
    elif not time:
        note = "qc.json records no time course (acquisition stability not checked)"
    elif image is None:
        note = "the time course in qc.json cannot be drawn"
    else:
        note = ""
    return {"image": image, "rows": rows, "summary": summary, "note": note}


def _list(value: Any) -> list[Any]:
    """A JSON list, or an empty one for anything else."""
    return list(value) if isinstance(value, list | tuple) else []


def _flag_views(profile: Mapping[str, Any]) -> tuple[list[dict[str, str]], bool]:
    """profile.json flags as title, code, message and colour (red for the flags that change
    what the whole report means), and whether profile.json records flags at all."""
    raw = profile.get("flags")
    views = []
    for flag in _list(raw):
        if isinstance(flag, Mapping):
            code, message = str(flag.get("code") or ""), str(flag.get("message") or "")
        else:
            code, message = "", str(flag)
        views.append(
            {
                "code": code or DASH,
                "title": FLAG_TITLES.get(code, code.replace("_", " ") or "Flag"),
                "message": message or "no message recorded",
                "css": "bad" if code in RED_FLAGS else "warn",
            }
        )
    views.sort(key=lambda view: view["css"] != "bad")  # red first, else in file order
    return views, isinstance(raw, list | tuple)


#: Flags saying a template gate was used as drawn rather than fitted to the sample.
UNFITTED_FLAGS = frozenset({"no_blast_population", "gate_not_fitted"})


def _gating_view(profile: Mapping[str, Any]) -> dict[str, Any]:
    """profile.json ``gating``: which engine gated (our fitted template or a lab's own
    gating), from which file, whether it was fitted to this sample, and a lab's mapping of
    its populations onto ours. Empty rows when profile.json does not record it."""
    gating = profile.get("gating")
    if not isinstance(gating, Mapping):
        return {"rows": [], "populations": [], "notes": []}
    engine = str(gating.get("engine") or "")
    if engine == "template":
        engine_text = "antigen-profile Gating-ML template"
    elif engine == "lab":
        kind = gating.get("kind")
        engine_text = "the lab's own gating" + (f" ({kind})" if kind else "")
    else:
        engine_text = engine or DASH
    fitted = _truthy(gating.get("fitted"))
    unfitted = [
        f
        for f in _list(profile.get("flags"))
        if isinstance(f, Mapping) and f.get("code") in UNFITTED_FLAGS
    ]
    if fitted is True:
        fitted_text = "yes: the template's gates are fitted to this sample's populations"
        if unfitted:
            fitted_text += (
                f", except {len(unfitted)} gate(s) used as drawn because no population was "
                "found (see Flags)"
            )
    elif fitted is False:
        fitted_text = "no: the gates were applied as drawn"
    else:
        fitted_text = DASH
    rows = [("Engine", engine_text), ("Gating file", str(gating.get("file") or DASH))]
    if gating.get("sample"):
        rows.append(("Sample in the gating file", str(gating.get("sample"))))
    rows.append(("Fitted to this sample", fitted_text))
    known = {"engine", "kind", "file", "sample", "fitted", "populations", "notes"}
    rows += [(str(k), fmt_value(v)) for k, v in gating.items() if k not in known]
    populations = gating.get("populations")
    mapping = (
        [(str(k), fmt_value(v)) for k, v in populations.items()]
        if isinstance(populations, Mapping)
        else []
    )
    return {"rows": rows, "populations": mapping, "notes": _as_list(gating.get("notes"))}


def _table_note(table: Table | None, name: str, qc_failed: bool) -> str:
    """Why an optional table shows nothing: absent, header only, or QC failed."""
    if table is None:
        return f"{name} not found: this results folder predates the co-expression analysis."
    if not table.rows:
        if qc_failed:
            return f"{name} has no rows: QC failed, no blast was gated."
        return f"{name} has no rows: no blasts, or no target with a threshold, to assess per cell."
    return ""


def _patterns_view(
    table: Table | None, qc_failed: bool
) -> tuple[list[str], list[dict[str, Any]], str | None, str]:
    """coexpression.tsv as targets, pattern rows, the UpSet chart and a note.

    A cell of a target column that is not a boolean makes the chart undrawable (a wrong dot
    is worse than no chart); the table still lists the rows.
    """
    note = _table_note(table, "coexpression.tsv", qc_failed)
    if table is None or not table.rows:
        return [], [], None, note
    targets = [c for c in table.columns if c not in COEXPRESSION_LEADING]
    rows, drawable = [], True
    for row in table.rows:
        members = [_truthy(row.get(t)) for t in targets]
        drawable = drawable and all(m is not None for m in members)
        pattern = row.get("pattern") or ""
        escape = pattern == ESCAPE_PATTERN
        pct = fmt_pct2(row.get("pct_blasts"))
        text = DASH if pct == DASH else f"{pct}%"
        if escape:
            text += f"\n({fmt_count(row.get('events'))} events)"
        rows.append(
            {
                "label": pattern or DASH,
                "n_targets": row.get("n_targets") or DASH,
                "events": fmt_count(row.get("events")),
                "pct": pct,
                "text": text,
                "members": [m is True for m in members],
                "escape": escape,
            }
        )
    image = None
    if drawable and targets:
        image = plots.upset_plot(
            [{**r, "pct": row.get("pct_blasts")} for r, row in zip(rows, table.rows, strict=True)],
            targets,
            escape_label="negative for every target: escapes every product",
        )
    elif targets:
        note = "coexpression.tsv has a target cell that is not true/false: no chart drawn."
    else:
        note = "coexpression.tsv lists no target column: no chart drawn."
    return targets, rows, image, note


def _coverage_view(
    table: Table | None, eligible: Sequence[str], recommended: str, qc_failed: bool
) -> dict[str, Any]:
    """coverage.tsv rows for display: each combination's targets (eligible ones marked), its
    coverage and its uncovered share with the interval, the recommended one highlighted."""
    note = _table_note(table, "coverage.tsv", qc_failed)
    eligible_set = {t.upper() for t in eligible}
    rows = []
    for row in table.rows if table is not None else []:
        label = row.get("combination") or ""
        targets = [t for t in label.split("+") if t]
        n = _number(row.get("n_products"))
        rows.append(
            {
                "label": label or DASH,
                "targets": [
                    {"name": t, "css": "pos" if t.upper() in eligible_set else "neutral"}
                    for t in targets
                ],
                "n_products": DASH if n is None else f"{n:g}",
                "short": n is not None and n <= DEFAULT_COMBINATION_SIZE,
                "covered_pct": fmt_pct2(row.get("covered_pct")),
                "uncovered_events": fmt_count(row.get("uncovered_events")),
                "uncovered_pct": fmt_pct2(row.get("uncovered_pct")),
                "uncovered_ci": fmt_interval(
                    row.get("uncovered_ci_low"), row.get("uncovered_ci_high"), digits=2
                ),
                "recommended": bool(recommended) and label == recommended,
            }
        )
    return {
        "rows": rows,
        "short": [r for r in rows if r["short"]],
        "hidden": sum(not r["short"] for r in rows),
        "note": note,
        "blasts": fmt_count(table.rows[0].get("blasts")) if table and table.rows else DASH,
    }


def _combination_view(decision: Mapping[str, Any]) -> dict[str, Any]:
    """decision.json ``combination``: the recommended products with their coverage and escape
    interval, or why none was named (none qualifies; not assessed; not recorded)."""
    if "combination" not in decision:
        return {
            "status": "not_recorded",
            "note": "decision.json records no combination: it predates the coverage analysis.",
        }
    combination = decision.get("combination")
    if not isinstance(combination, Mapping):
        status = decision.get("antigen_status") or DASH
        eligible = _as_list(decision.get("eligible_targets"), ",")
        return {
            "status": "not_assessed",
            "note": (
                "No combination was assessed: that needs a usable antigen profile (antigen "
                f"status: {status}), per-cell coverage and at least one eligible target "
                f"(eligible: {', '.join(eligible) or 'none'})."
            ),
        }
    label = str(combination.get("label") or "")
    best = _as_list(combination.get("best_combination"))
    view = {
        "status": "chosen" if label else "none_qualifies",
        "label": label or "none",
        "targets": _as_list(combination.get("combination")) or [t for t in label.split("+") if t],
        "n_products": fmt_value(combination.get("n_products")),
        "coverage_pct": fmt_pct2(combination.get("coverage_pct")),
        "uncovered_pct": fmt_pct2(combination.get("uncovered_pct")),
        "uncovered_ci": fmt_interval(
            combination.get("uncovered_ci_low"), combination.get("uncovered_ci_high"), digits=2
        ),
        "confidence": fmt_confidence(combination.get("confidence")),
        "reason": str(combination.get("reason") or "no reason recorded"),
        "best": "+".join(best),
        "best_coverage_pct": fmt_pct2(combination.get("best_coverage_pct")),
        "max_products": fmt_value(combination.get("max_products")),
        "min_coverage_pct": fmt_value(combination.get("min_coverage_pct")),
        "note": "",
    }
    view["best_differs"] = bool(view["best"]) and view["best"] != label
    return view


def fmt_confidence(value: Any) -> str:
    """A confidence level (0.95) as "95%", or "95%" when it is not recorded (the default)."""
    number = _number(value)
    if number is None or not 0 < number < 1:
        return "95%"
    return f"{100 * number:g}%"


def _interval_confidence(profile: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """The confidence level of antigens.tsv's interval, for its column header: the recorded
    setting when profile.json has one, else the level decision.json gives the coverage
    intervals (the profile stage uses one level for both), else the 95% default."""
    settings = profile.get("settings") if isinstance(profile.get("settings"), Mapping) else {}
    positivity = settings.get("positivity")
    positivity = positivity if isinstance(positivity, Mapping) else {}
    combination = decision.get("combination")
    for value in (
        settings.get("confidence"),
        positivity.get("confidence"),
        combination.get("confidence") if isinstance(combination, Mapping) else None,
    ):
        if _number(value) is not None:
            return fmt_confidence(value)
    return fmt_confidence(None)


def _escape_view(files: SampleFiles, eligible: Sequence[str], qc_failed: bool) -> dict[str, Any]:
    """Everything the "Co-expression and escape" section shows."""
    combination = _combination_view(files.decision)
    recommended = combination.get("label", "") if combination["status"] == "chosen" else ""
    targets, patterns, image, pattern_note = _patterns_view(files.coexpression, qc_failed)
    trial = files.decision.get("trial")
    trial_targets = _as_list(trial.get("targets")) if isinstance(trial, Mapping) else []
    escape = next((p for p in patterns if p["escape"]), None)
    return {
        "targets": targets,
        "not_assessable": [t for t in trial_targets if targets and t not in targets],
        "patterns": patterns,
        "image": image,
        "pattern_note": pattern_note,
        "escape": escape,
        "coverage": _coverage_view(files.coverage, eligible, recommended, qc_failed),
        "combination": combination,
    }


# --------------------------------------------------------------------------- audit, patient


#: Packages that draw and write the report itself (not the numbers: those are in profile.json).
RENDER_SOFTWARE = ("matplotlib", "jinja2")


def render_software() -> list[tuple[str, str]]:
    """Versions of the packages rendering this report, for the audit trail."""
    versions = [("antigen-profile (report)", __version__)]
    for package in RENDER_SOFTWARE:
        try:
            versions.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            versions.append((package, "not installed"))
    return versions


def canonical_sha256(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data``: the form the profile stage hashes the resolved
    configuration in (sorted keys, no spaces), so the report can check the config it prints."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _config_view(profile: Mapping[str, Any]) -> dict[str, Any]:
    """profile.json ``config`` as indented JSON, with whether its canonical SHA-256 equals the
    ``config`` input's (a printed configuration that was not the one run would be worse than
    none)."""
    config = profile.get("config")
    if not isinstance(config, Mapping):
        return {"text": "", "sha256": "", "check": "not_recorded", "check_class": "neutral"}
    digest = canonical_sha256(config)
    recorded = [
        str(i.get("sha256") or "")
        for i in _list(profile.get("inputs"))
        if isinstance(i, Mapping) and i.get("role") == "config"
    ]
    if not recorded:
        check, css = "no config input recorded to compare with", "warn"
    elif digest in recorded:
        check, css = "matches the config input's SHA-256", "good"
    else:
        check, css = "differs from the config input's SHA-256", "bad"
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return {"text": text, "sha256": digest, "check": check, "check_class": css}


def _stain_views(profile: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every detector with its stain name ($PnS) as the file wrote it and the marker or
    scatter name found there, so a reviewer sees how each marker was recognised."""
    stains = profile.get("stains")
    markers = profile.get("markers") if isinstance(profile.get("markers"), Mapping) else {}
    found: dict[str, list[str]] = {}
    for marker, channel in markers.items():
        found.setdefault(str(channel), []).append(str(marker))
    rows = []
    if isinstance(stains, Mapping):
        for channel, stain in stains.items():
            rows.append(
                {
                    "channel": str(channel),
                    "stain": str(stain or ""),
                    "marker": ", ".join(found.pop(str(channel), [])),
                }
            )
    for channel, names in found.items():  # markers on channels profile.json lists no stain for
        rows.append({"channel": channel, "stain": "", "marker": ", ".join(names)})
    return rows


def _patient_views(sample_id: str, patient_samples: Sequence[str] | None) -> list[dict[str, Any]]:
    """The patient's samples (ids in timepoint order, as the workflow passes them), each
    linking to its report in the sibling folder; empty when the patient has this sample only
    or the caller gave none. Ids that could leave the results folder are shown unlinked."""
    samples = list(dict.fromkeys(str(s) for s in patient_samples or [] if str(s).strip()))
    if len(samples) < 2:
        return []
    return [
        {
            "sample_id": s,
            "href": f"../{quote(s, safe='')}/report.html" if s not in {".", ".."} else "",
            "current": s == sample_id,
        }
        for s in samples
    ]


def _positive_control_views(
    table: Table | None, settings: Mapping[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    """positive_controls.tsv by target and as rows, and a note when the file is absent.

    A carrier population mostly below the blasts' threshold (fewer than the configured
    ``partial`` share of its events above it) is marked for checking: the stain or the
    threshold is then suspect, whatever the blasts show. No other judgement is made here.
    """
    if table is None:
        return (
            {},
            [],
            (
                "positive_controls.tsv not found: this results folder predates the internal "
                "positive controls."
            ),
        )
    limits = (settings or {}).get("call_limits") if isinstance(settings, Mapping) else None
    low = _number(limits.get("partial")) if isinstance(limits, Mapping) else None
    low = 20.0 if low is None else low
    by_target: dict[str, dict[str, Any]] = {}
    rows = []
    for row in table.rows:
        pct = _number(row.get("pct_positive"))
        population = (row.get("population") or "").strip()
        check = pct is not None and pct < low
        view = {
            "target": row.get("target") or DASH,
            "population": population,
            "expected": row.get("expected") or "",
            "events": fmt_count(row.get("events")),
            "positive_events": fmt_count(row.get("positive_events")),
            "pct": DASH if pct is None else f"{pct:.1f}%",
            "threshold": fmt_num(row.get("threshold")),
            "note": row.get("note") or "",
            "measured": pct is not None,
            "check": check,
            "css": "warn" if check else ("good" if pct is not None else "neutral"),
            "low_limit": f"{low:g}",
        }
        rows.append(view)
        by_target.setdefault(str(row.get("target") or "").upper(), view)
    note = "" if rows else "positive_controls.tsv has no rows: QC failed or no target configured."
    return by_target, rows, note


def sample_context(
    files: SampleFiles,
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything the sample template shows, already formatted for display.

    ``patient_samples``: the ids of the patient's samples in timepoint order, listed with
    links when there is more than this one.
    """
    qc, profile, decision = files.qc, files.profile, files.decision
    sample_id = decision.get("sample_id") or qc.get("sample_id") or profile.get("sample_id") or "?"
    qc_status = qc.get("status", "")
    antigen_status = decision.get("antigen_status", "")
    qc_failed = qc_status == "fail" or antigen_status == "qc_failed"
    quantified = _as_list(profile.get("quantified")) or _as_list(config.get("quantified"))
    defined_by = _as_list(profile.get("blast_defined_by"))
    quantified_upper = {m.upper() for m in quantified}
    circular = [m for m in defined_by if m.upper() in quantified_upper]
    settings, settings_recorded = _settings_groups(profile, config, decision)
    flags, flags_recorded = _flag_views(profile)
    eligible = _as_list(decision.get("eligible_targets"), ",")
    escape = _escape_view(files, eligible, qc_failed)
    combination = escape["combination"]
    ids = _unique(
        str(i)
        for i in [
            qc.get("sample_id"),
            profile.get("sample_id"),
            decision.get("sample_id"),
            *(row.get("sample_id") for row in files.antigens),
        ]
        if i
    )
    trial = decision.get("trial") or {}
    decision_value = decision.get("decision", "")
    saturated = (qc.get("metrics") or {}).get("saturated_fraction") or {}
    warnings = _unique(_as_list(qc.get("warnings")) + _as_list(profile.get("warnings")))
    controls_by_target, control_rows, controls_note = _positive_control_views(
        files.positive_controls,
        profile.get("settings") if isinstance(profile.get("settings"), Mapping) else None,
    )
    return {
        "version": __version__,
        "sample_id": sample_id,
        "patient_id": decision.get("patient_id") or DASH,
        "timepoint": decision.get("timepoint") or DASH,
        "trial_name": trial.get("name") or "trial not recorded",
        "trial_version": trial.get("version") or DASH,
        "decision": decision_value or "not recorded",
        "decision_class": _css(DECISION_CLASS, decision_value),
        "decision_reasons": _as_list(decision.get("decision_reasons")),
        "eligible_targets": eligible,
        "off_tumour": [
            {
                "target": t,
                "note": off_tumour_note(t),
                "control": controls_by_target.get(t.upper()),
            }
            for t in eligible
        ],
        "positive_controls": control_rows,
        "positive_controls_note": controls_note,
        "positive_controls_recorded": files.positive_controls is not None,
        "patient_samples": _patient_views(str(sample_id), patient_samples),
        "csp": SAMPLE_CSP,
        "flags": flags,
        "flags_recorded": flags_recorded,
        "red_flags": sum(f["css"] == "bad" for f in flags),
        "combination": combination,
        "escape": escape,
        "gating_engine": _gating_view(profile),
        "blast_events": fmt_count(decision.get("blast_events")),
        "blast_pct": fmt_pct(decision.get("blast_pct_leukocytes")),
        "cd19_status": decision.get("cd19_status") or DASH,
        "antigen_status": antigen_status or DASH,
        "antigen_status_class": _css(STATUS_CLASS, antigen_status),
        "antigen_reasons": _as_list(decision.get("antigen_reasons")),
        "clinical_status": decision.get("clinical_status") or DASH,
        "clinical_status_class": _css(STATUS_CLASS, decision.get("clinical_status")),
        "clinical_reasons": _as_list(decision.get("clinical_reasons")),
        "id_mismatch": ids if len(ids) > 1 else [],
        "qc_failed": qc_failed,
        "failure_kind": qc.get("failure") or "",
        "failure_reasons": _unique(
            _as_list(qc.get("reasons")) + _as_list(decision.get("antigen_reasons"))
        ),
        "qc_status": qc_status or DASH,
        "qc_class": _css(QC_CLASS, qc_status),
        "qc_reasons": _as_list(qc.get("reasons")),
        "qc_warnings": _as_list(qc.get("warnings")),
        "profile_warnings": _as_list(profile.get("warnings")),
        "warning_count": len(warnings),
        "qc_file": qc.get("file") or DASH,
        "events_total": fmt_count(qc.get("events_total", profile.get("events"))),
        "events_kept": fmt_count(qc.get("events_kept")),
        "saturated": [(str(k), fmt_value(v)) for k, v in saturated.items()],
        "time_course": _time_course_view(qc),
        "spillover_source": (qc.get("metrics") or {}).get("spillover_source")
        or profile.get("spillover_source")
        or DASH,
        "populations": files.populations,
        "gates": _gate_views(files),
        "defined_by": defined_by,
        "circular": circular,
        "quantified": quantified,
        "antigens": _antigen_views(files, circular),
        "has_density": _has_density(files),
        "has_interval": _has_interval(files),
        "confidence": _interval_confidence(profile, decision),
        "rules": _rule_views(decision),
        "settings": settings,
        "settings_recorded": settings_recorded,
        "max_plot_events": fmt_count((config.get("report") or {}).get("max_plot_events")),
        "inputs": [
            {"role": i.get("role", ""), "path": i.get("path", ""), "sha256": i.get("sha256", "")}
            for i in profile.get("inputs") or []
            if isinstance(i, Mapping)
        ],
        "fcs_version": profile.get("fcs_version") or DASH,
        "cytometer": profile.get("cytometer") or DASH,
        "markers": [(str(k), str(v)) for k, v in (profile.get("markers") or {}).items()],
        "control_markers": _as_list(profile.get("control_markers")),
        "control_note": profile.get("control_note") or "",
        "software": [(str(k), str(v)) for k, v in (profile.get("software") or {}).items()],
        "render_software": render_software(),
        "created": profile.get("created") or DASH,
        "host": profile.get("host") or DASH,
        "fcs_keywords": [
            (str(k), fmt_value(v)) for k, v in _mapping(profile.get("fcs_keywords")).items()
        ],
        "stains": _stain_views(profile),
        "config_view": _config_view(profile),
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, Mapping) else {}


def render_sample_report(
    sample_dir: Path | Mapping[str, str | Path],
    config: Mapping[str, Any],
    patient_samples: Sequence[str] | None = None,
) -> str:
    """Return the self-contained HTML report of one sample.

    Parameters
    ----------
    sample_dir
        ``results/{sample_id}/`` holding the files of docs/outputs.md, or those files by
        key (:data:`antigen_profile.outputs.REPORT_READS`) as a rule declared them.
    config
        The workflow configuration; only used to label plots and, when profile.json records
        no settings, to print the configured ones (marked as such).
    patient_samples
        The ids of every sample of this sample's patient, in timepoint order; with more than
        one, the report lists them with links to their reports (``../{id}/report.html``).
    """
    files = read_sample(sample_dir)
    context = sample_context(files, config, patient_samples)
    return environment().get_template("sample.html").render(**context)


# --------------------------------------------------------------------------- cohort report


def _cell(value: Any) -> str:
    """A recommendations.tsv cell as text ('' for NaN/None, as pandas reads empty cells)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _sample_file(results_dir: Path, sample_id: str, name: str) -> Path | None:
    """``{results_dir}/{sample_id}/{name}``, or None when the sample id could point outside
    the results folder (an id from a file is not trusted as a path)."""
    if not sample_id or sample_id in {".", ".."} or "/" in sample_id or "\\" in sample_id:
        return None
    return Path(results_dir) / sample_id / name


def _sample_json(results_dir: Path, sample_id: str, name: str) -> dict[str, Any] | None:
    """``{results_dir}/{sample_id}/{name}`` as a JSON object, or None when it is missing,
    unreadable, not an object, or would lie outside the results folder."""
    path = _sample_file(results_dir, sample_id, name)
    if path is None:
        return None
    try:
        data = _read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _trials(results_dir: Path, sample_ids: Sequence[str]) -> list[str]:
    """Distinct "name version" of the trial rules the samples were decided against.

    More than one means the cohort was decided against different rule versions, which the
    reader must see.
    """
    seen: list[str] = []
    for sample_id in sample_ids:
        decision = _sample_json(results_dir, sample_id, "decision.json")
        if decision is None:
            continue
        trial = decision.get("trial") if isinstance(decision.get("trial"), Mapping) else {}
        label = f"{trial.get('name', '?')} {trial.get('version', '')}".strip()
        if label not in seen:
            seen.append(label)
    return seen


def _flag_count(results_dir: Path, sample_id: str) -> tuple[str, str]:
    """Number of flags in a sample's profile.json and its CSS class (red when one of them is
    a red flag); a dash when profile.json is missing or records no flags."""
    profile = _sample_json(results_dir, sample_id, "profile.json")
    flags = None if profile is None else profile.get("flags")
    if not isinstance(flags, list):
        return DASH, "neutral"
    if not flags:
        return "0", "good"
    red = any(isinstance(f, Mapping) and f.get("code") in RED_FLAGS for f in flags)
    return str(len(flags)), "bad" if red else "warn"


def _sort_number(value: Any) -> str:
    """A cell's numeric sort key for the table script ("" when there is no number)."""
    number = _number(value)
    return "" if number is None else repr(number)


#: Content-Security-Policy of the cohort index: as the sample report's, plus the one inline
#: script (sorting and filtering), allowed by its hash.
COHORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{script}'; "
    "base-uri 'none'; form-action 'none'"
)
COHORT_SCRIPT = "_cohort.js"


def _script_hash(name: str) -> str:
    """CSP source of an inline script template: ``sha256-<base64>`` of its rendered text,
    exactly as ``{% include %}`` puts it between the script tags."""
    import base64

    text = environment().get_template(name).render()
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _read_optional_tsv(path: Path | None) -> Table | None:
    """A TSV as text rows, or None when absent or unreadable (the cohort index says so)."""
    if path is None:
        return None
    try:
        return _read_table(path)
    except (OSError, ValueError, csv.Error):
        return None


def _markers(config: Mapping[str, Any], tables: Iterable[Table | None]) -> list[str]:
    """Antigens for the heat map: the configured ``quantified`` order, then any other marker
    the samples' antigens.tsv list, in first-seen order."""
    markers = [str(m) for m in _list(config.get("quantified"))]
    for table in tables:
        for row in table.rows if table is not None else []:
            marker = row.get("marker") or ""
            if marker and marker not in markers:
                markers.append(marker)
    return markers


def _heatmap_view(
    results_dir: Path, sample_ids: Sequence[str], config: Mapping[str, Any]
) -> dict[str, Any]:
    """% positive blasts per antigen and sample, from each sample's antigens.tsv: the heat map
    and its numbers. Calls without a trustworthy number (too few events, no reference) and
    samples without antigens.tsv rows are grey, never zero."""
    tables = {
        sid: _read_optional_tsv(_sample_file(results_dir, sid, "antigens.tsv"))
        for sid in sample_ids
    }
    markers = _markers(config, tables.values())
    values = np.full((len(sample_ids), len(markers)), np.nan)
    rows = []
    for i, sid in enumerate(sample_ids):
        table = tables[sid]
        by_marker = {r.get("marker", ""): r for r in (table.rows if table else [])}
        cells = []
        for j, marker in enumerate(markers):
            row = by_marker.get(marker)
            call = (row or {}).get("call", "")
            pct = None if row is None or call in NOT_CALLED else _number(row.get("pct_positive"))
            if pct is not None:
                values[i, j] = pct
            cells.append(
                {
                    "text": DASH if pct is None else f"{pct:.1f}",
                    "call": call or ("not in antigens.tsv" if table and table.rows else DASH),
                    "css": _css(CALL_CLASS, call),
                }
            )
        rows.append({"sample_id": sid, "cells": cells, "missing": table is None})
    image = None
    if sample_ids and markers and np.isfinite(values).any():
        image = plots.cohort_heatmap_plot(list(sample_ids), markers, values)
    return {"image": image, "markers": markers, "rows": rows}


def _loss_rows(timeline: Table | None) -> dict[str, list[dict[str, str]]]:
    """patient_timeline.tsv rows flagged ``loss``, by patient."""
    losses: dict[str, list[dict[str, str]]] = {}
    for row in timeline.rows if timeline else []:
        if _truthy(row.get("loss")) is True:
            losses.setdefault(row.get("patient_id", ""), []).append(row)
    return losses


def _timeline_plots(timeline: Table | None) -> list[dict[str, Any]]:
    """One multi-line plot per patient with more than one sample: each antigen's % positive
    (and ABC median when calibrated) over the samples in the timeline's order, losses red."""
    if timeline is None:
        return []
    patients: dict[str, list[dict[str, str]]] = {}
    for row in timeline.rows:
        patients.setdefault(row.get("patient_id", ""), []).append(row)
    views = []
    for patient_id, rows in patients.items():
        samples: list[str] = []
        timepoints: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: _number(r.get("order")) or 0):
            sid = row.get("sample_id", "")
            if sid not in timepoints:
                samples.append(sid)
                timepoints[sid] = row.get("timepoint") or ""
        if len(samples) < 2:
            continue
        markers = list(dict.fromkeys(r.get("marker", "") for r in rows))
        cell = {(r.get("sample_id", ""), r.get("marker", "")): r for r in rows}
        series = {m: [_number((cell.get((s, m)) or {}).get("pct_positive")) for s in samples]
                  for m in markers}  # fmt: skip
        losses = {m: [_truthy((cell.get((s, m)) or {}).get("loss")) is True for s in samples]
                  for m in markers}  # fmt: skip
        density = {m: [_number((cell.get((s, m)) or {}).get("abc_median")) for s in samples]
                   for m in markers}  # fmt: skip
        labels = [f"{s}\n{timepoints[s]}" if timepoints[s] else s for s in samples]
        views.append(
            {
                "patient_id": patient_id,
                "samples": [{"sample_id": s, "timepoint": timepoints[s] or DASH} for s in samples],
                "image": plots.patient_timeline_plot(patient_id, labels, series, losses, density),
                "losses": [
                    f"{m} at {s}"
                    for m in markers
                    for s, lost in zip(samples, losses[m], strict=True)
                    if lost
                ],
            }
        )
    return views


def _patients_view(results_dir: Path) -> dict[str, Any]:
    """The Patients section: patients.tsv (antigen loss in red) and the timeline plots, or a
    note when the files are absent (a results folder older than the timeline)."""
    patients = _read_optional_tsv(Path(results_dir) / "patients.tsv")
    timeline = _read_optional_tsv(Path(results_dir) / "patient_timeline.tsv")
    rows = []
    for row in patients.rows if patients else []:
        decision = row.get("decision") or ""
        rows.append(
            {
                "patient_id": row.get("patient_id") or DASH,
                "samples": [
                    {"sample_id": sid, "href": f"{quote(sid, safe='')}/report.html"}
                    for sid in _as_list(row.get("samples"), ",")
                ],
                "timepoints": ", ".join(t or DASH for t in (row.get("timepoints") or "").split(","))
                or DASH,
                "latest": row.get("latest_sample_id") or DASH,
                "decision": decision or DASH,
                "decision_class": _css(DECISION_CLASS, decision),
                "eligible_targets": _as_list(row.get("eligible_targets"), ","),
                "combination": row.get("recommended_combination") or DASH,
                "antigen_loss": _as_list(row.get("antigen_loss"), ";"),
                # one text: a reason may itself hold "; " (the separator of the column)
                "review_reasons": _as_list(row.get("review_reasons")),
            }
        )
    notes = []
    if patients is None:
        notes.append("patients.tsv not found: this results folder predates the patient table.")
    if timeline is None:
        notes.append(
            "patient_timeline.tsv not found: antigens over each patient's samples cannot be shown."
        )
    plots_ = _timeline_plots(timeline)
    return {
        "rows": rows,
        "plots": plots_,
        "notes": notes,
        "losses": sum(bool(r["antigen_loss"]) for r in rows),
        "multi": len(plots_),
    }


def cohort_context(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Rows, counts by decision, trial versions, the % positive heat map and the patients'
    timelines for the cohort index."""
    missing = {"sample_id", "decision"} - set(recommendations.columns)
    if missing:
        raise KeyError(f"recommendations lack column(s) {', '.join(sorted(missing))}")
    results_dir = Path(results_dir)
    rows = []
    for record in recommendations.to_dict(orient="records"):
        sample_id = _cell(record.get("sample_id"))
        decision = _cell(record.get("decision"))
        antigen_status = _cell(record.get("antigen_status"))
        clinical_status = _cell(record.get("clinical_status"))
        flags, flags_class = _flag_count(results_dir, sample_id)
        qc = _sample_json(results_dir, sample_id, "qc.json") or {}
        qc_status = str(qc.get("status") or "")
        rows.append(
            {
                "sample_id": sample_id,
                "href": f"{quote(sample_id, safe='')}/report.html",
                "patient_id": _cell(record.get("patient_id")) or DASH,
                "decision": decision or DASH,
                "decision_key": decision,
                "decision_class": _css(DECISION_CLASS, decision),
                "eligible_targets": _as_list(_cell(record.get("eligible_targets")), ","),
                "blast_events": fmt_count(record.get("blast_events")),
                "blast_events_sort": _sort_number(record.get("blast_events")),
                "blast_pct": fmt_pct(record.get("blast_pct_leukocytes")),
                "blast_pct_sort": _sort_number(record.get("blast_pct_leukocytes")),
                "cd19_status": _cell(record.get("cd19_status")) or DASH,
                "antigen_status": antigen_status or DASH,
                "antigen_status_class": _css(STATUS_CLASS, antigen_status),
                "clinical_status": clinical_status or DASH,
                "clinical_status_class": _css(STATUS_CLASS, clinical_status),
                "clinical_reasons": _as_list(_cell(record.get("clinical_reasons")), ";"),
                "combination": _cell(record.get("recommended_combination")) or DASH,
                "combination_pct": fmt_pct2(record.get("combination_coverage_pct")),
                "combination_pct_sort": _sort_number(record.get("combination_coverage_pct")),
                "flags": flags,
                "flags_sort": "" if flags == DASH else flags,
                "flags_class": flags_class,
                "qc_status": qc_status or DASH,
                "qc_class": _css(QC_CLASS, qc_status),
                "qc_warnings": len(_as_list(qc.get("warnings"))),
            }
        )
    tally: dict[str, int] = {name: 0 for name in DECISION_ORDER}
    for row in rows:
        key = row["decision"] if row["decision"] != DASH else "not recorded"
        tally[key] = tally.get(key, 0) + 1
    counts = [{"decision": k, "count": n, "css": _css(DECISION_CLASS, k)} for k, n in tally.items()]
    sample_ids = [r["sample_id"] for r in rows if r["sample_id"]]
    return {
        "version": __version__,
        "rows": rows,
        "counts": counts,
        "decisions": [c["decision"] for c in counts if c["decision"] != "not recorded"],
        "total": len(rows),
        "trials": _trials(results_dir, sample_ids),
        "heatmap": _heatmap_view(results_dir, sample_ids, config or {}),
        "patients": _patients_view(results_dir),
        "csp": COHORT_CSP.format(script=_script_hash(COHORT_SCRIPT)),
        "script": COHORT_SCRIPT,
    }


def render_cohort_report(
    results_dir: Path, recommendations: pd.DataFrame, config: Mapping[str, Any]
) -> str:
    """Return the cohort index: every sample with its decision, linked to its own report.

    Parameters
    ----------
    results_dir
        The results folder; each sample's report is ``{sample_id}/report.html`` below it, its
        decision.json names the trial version, its antigens.tsv feeds the heat map and its
        qc.json the QC column; patients.tsv and patient_timeline.tsv feed the Patients section.
    recommendations
        recommendations.tsv as a DataFrame (one row per sample, contract columns).
    config
        The workflow configuration: only the order of the antigens (``quantified``) is used;
        nothing is recomputed from it.
    """
    context = cohort_context(Path(results_dir), recommendations, config)
    return environment().get_template("cohort.html").render(**context)


# --------------------------------------------------------------------------- writing


def write_html(html: str, path: Path) -> None:
    """Write ``html`` atomically: a reader opening the report while the workflow runs, or
    after a crash, sees either the old report or the new one, never half a file."""
    write_text(path, html)
