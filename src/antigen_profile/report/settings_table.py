"""The Settings section of the sample report: every setting the numbers depend on, in words.

Everything profile.json records under ``settings`` is printed, leaf by leaf with a
plain-language label; when it records none, the configuration given to the report is printed
instead and the page says so. The trial's combination limits come from decision.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from antigen_profile.report.format import DASH, fmt_value

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


def settings_groups(
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
