"""A sample's profile as computed, and the one writer of its files.

:func:`antigen_profile.pipeline.compute_profile` returns a :class:`SampleProfile`;
:func:`write_profile` writes it to the paths of :data:`antigen_profile.outputs.PROFILE_FILES`.
A sample that could not be analysed is the same object (:meth:`SampleProfile.failed`:
header-only tables and the reason), written by the same writer, so a new output is added here
and in ``outputs.py`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile.coverage import COVERAGE_COLUMNS, UPSET_COLUMNS
from antigen_profile.files import write_json, write_npz, write_text, write_tsv
from antigen_profile.populations import POPULATION_COLUMNS
from antigen_profile.qc import QCResult
from antigen_profile.quantify import ANTIGEN_COLUMNS, POSITIVE_CONTROL_COLUMNS


@dataclass
class SampleProfile:
    """Everything the ``profile`` step writes for one sample, one field per output file."""

    sample_id: str
    fcs: str  # the tube as given, named in qc.json
    qc: QCResult  # qc.json
    document: dict[str, Any]  # profile.json
    populations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=POPULATION_COLUMNS)
    )
    antigens: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ANTIGEN_COLUMNS))
    coverage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COVERAGE_COLUMNS))
    coexpression: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UPSET_COLUMNS))
    positive_controls: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=POSITIVE_CONTROL_COLUMNS)
    )
    calibration: dict[str, Any] = field(default_factory=dict)  # bead curves by detector
    gates: list[dict[str, Any]] = field(default_factory=list)  # gates.json
    gatingml: str = ""  # gates.xml
    plotdata: dict[str, np.ndarray] = field(default_factory=dict)
    #: Not analysed (unreadable, wrong panel, failed QC, compensation or gating): every table
    #: is header-only and ``qc`` says why.
    failed: bool = False

    @classmethod
    def failed_sample(
        cls, sample_id: str, fcs: str | Path, qc: QCResult, document: dict[str, Any]
    ) -> SampleProfile:
        """The profile of a sample that cannot be analysed: header-only tables, no gates, and
        the reason in ``qc``."""
        return cls(sample_id, str(fcs), qc, document, failed=True)

    @property
    def status(self) -> str:
        """``fail`` for a sample not analysed, else the QC status (``pass``/``warn``)."""
        return "fail" if self.failed else self.qc.status


def write_profile(profile: SampleProfile, out: Mapping[str, Path]) -> None:
    """Write every file of ``profile`` to its path in ``out`` (keys of
    :data:`~antigen_profile.outputs.PROFILE_FILES`); ``profile.json`` last, as before."""
    write_tsv(out["populations"], profile.populations)
    write_tsv(out["antigens"], profile.antigens)
    write_tsv(out["coverage"], profile.coverage)
    write_tsv(out["coexpression"], profile.coexpression)
    write_json(out["calibration"], profile.calibration)
    write_tsv(out["positive_controls"], profile.positive_controls)
    write_json(out["qc"], profile.qc.to_json(profile.sample_id, profile.fcs))
    write_json(out["gates"], profile.gates)
    write_text(out["gatingml"], profile.gatingml)
    write_npz(out["plotdata"], profile.plotdata)
    write_json(out["profile"], profile.document)
