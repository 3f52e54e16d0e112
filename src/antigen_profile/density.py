"""Antigen density per blast, in molecules (ABC/MEF), from the calibration beads.

:mod:`antigen_profile.calibrate` fits a standard curve to a bead tube; this step applies the
curves to the blasts of each calibrated channel, fills the density columns of
``antigens.tsv`` and flags low densities. Without beads the columns stay empty: no density
is better than a guessed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile.ingest import Tube
from antigen_profile.qc import QCResult
from antigen_profile.quantify import DENSITY_COLUMNS, MEASURED_CALLS
from antigen_profile.references import ANY_MARKER


def add_density(
    table: pd.DataFrame,
    blasts: Mapping[str, np.ndarray],
    controls: Mapping[str, Mapping[str, np.ndarray]],
    tube: Tube,
    beads: Path | None,
    cal: Mapping[str, Any],
    qc: QCResult,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Fill ``abc_median``/``abc_q25``/``abc_q75`` and ``low_density`` in ``table`` for the
    channels config ``calibration`` (``cal``) names, from the ``beads`` tube (none: empty
    columns).

    Returns the low-density flags and ``calibration.json`` (each channel's standard curve).
    A bead curve that cannot be fitted, or settings that differ from the tube's, become QC
    warnings in ``qc``; the control tubes' median (``controls``, keyed by marker or
    :data:`~antigen_profile.references.ANY_MARKER`) is subtracted unless
    ``subtract_control`` is off.
    """
    # here, not at import: only a run with beads needs the curve fitting
    from antigen_profile.calibrate import (
        CalibrationError,
        CalibrationSettings,
        calibrate_file,
        density_fields,
        settings_mismatch,
    )

    for column in DENSITY_COLUMNS:
        table[column] = None
    curves: dict[str, Any] = {}
    if beads:
        settings = CalibrationSettings.from_config(cal)
        for detector, spec in (cal.get("channels") or {}).items():
            try:
                curves[detector] = calibrate_file(
                    beads,
                    detector,
                    spec["lot_values"],
                    settings,
                    model=spec.get("model", settings.model),
                    units=spec.get("units", settings.units),
                )
            except CalibrationError as exc:
                qc.warnings.append(str(exc))
    curves_json = {d: c.to_json() for d, c in curves.items()}
    limits = cal.get("low_density_below") or {}
    flags = []
    for index, row in table.iterrows():
        marker = str(row["marker"])
        curve = curves.get(tube.markers.get(marker, ""))
        if curve is None or marker not in blasts or row["call"] not in MEASURED_CALLS:
            continue
        if not curve.ok:
            table.at[index, "note"] = f"no density: bead curve refused ({curve.reason})"
            continue
        qc.warnings += settings_mismatch(curve, tube.keywords, tube.channels, curve.channel)
        control = controls.get(marker, controls.get(ANY_MARKER, {})).get(marker)
        background = 0.0
        if cal.get("subtract_control", True) and control is not None and control.size:
            background = float(np.median(curve.to_molecules(control)))
        fields = density_fields(curve.to_molecules(blasts[marker]), limits.get(marker), background)
        for key, value in fields.items():
            table.at[index, key] = value
        if fields["low_density"]:
            flags.append(
                {
                    "code": "low_density",
                    "message": f"{marker} median {fields['abc_median']:g} {curve.units} per blast "
                    f"is below the configured {limits[marker]:g} (not a published cut-off)",
                }
            )
    return flags, curves_json
