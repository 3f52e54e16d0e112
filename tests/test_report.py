"""Tests of the report stage: built on fake result folders that follow docs/outputs.md."""

from __future__ import annotations

import base64
import csv
import html as html_lib
import io
import json
import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from antigen_profile.cohort import RECOMMENDATION_COLUMNS
from antigen_profile.coverage import (
    COVERAGE_COLUMNS,
    UPSET_COLUMNS,
    coverage_table,
    recommend_combination,
    upset_data,
)
from antigen_profile.ingest import Tube
from antigen_profile.outputs import SPECIMEN_FILES, SPECIMEN_WRITES
from antigen_profile.populations import POPULATION_COLUMNS
from antigen_profile.qc import QCSettings, check_acquisition
from antigen_profile.quantify import ANTIGEN_COLUMNS, POSITIVE_CONTROL_COLUMNS
from antigen_profile.report import (
    plots,
    render_cohort_report,
    render_sample_report,
    render_specimen_report,
    write_html,
)
from antigen_profile.report.offtumour import NO_NOTE, OFF_TUMOUR_NOTES, off_tumour_note

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DASH = "\u2014"

CONFIG: dict[str, Any] = {
    "quantified": ["CD19", "CD22", "CD123", "CD38", "CD10", "CD20"],
    "positivity": {
        "percentile": 99.5,
        "call_limits": {"partial": 20, "positive": 80},
        "min_reference_events": 200,
        "intensity": {"bright_rmfi": 10},
    },
    "floors": {"detect": 20, "quantify": 50},
    "logicle": {"T": 262144, "W": 0.5, "M": 4.5, "A": 0},
    "report": {"max_plot_events": 20000},
}


#: The trial's targets in its order (the canonical order of every combination).
TARGETS = ["CD22", "CD123", "CD38", "CD10", "CD20"]
#: Bead-calibrated density columns of antigens.tsv (docs/outputs.md), after the interval ones.
DENSITY_COLUMNS = ["abc_median", "abc_q25", "abc_q75", "low_density"]
#: antigens.tsv as written before intervals, intensity and density existed.
OLD_ANTIGEN_COLUMNS = ANTIGEN_COLUMNS[: ANTIGEN_COLUMNS.index("note") + 1]
#: An amber flag every default fake sample carries.
AMBER_FLAG = {
    "code": "backbone_not_applied",
    "message": "blasts: CD10 + not applied: no clear split on this sample",
}
LINEAGE_FLAG = {
    "code": "possible_lineage_switch",
    "message": "blasts are negative for every B-lineage marker measured (CD19, CD22, CD10, CD20)",
}
NO_BLASTS_FLAG = {
    "code": "no_blast_population",
    "message": "blasts: no population found near the template's position",
}
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


# --------------------------------------------------------------------------- fake results


def _write_tsv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """A TSV as the profile stage writes it (header always, empty cells for missing)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(columns), delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})


def _gates() -> list[dict[str, Any]]:
    """Five gates covering polygon, rectangle, open-ended and 1-D shapes."""
    logicle = {"transform": "logicle"}
    return [
        {
            "id": "cells",
            "parent": "",
            "type": "polygon",
            "x": {"dimension": "FSC-A", "transform": None},
            "y": {"dimension": "SSC-A", "transform": None},
            "vertices": [[30000, 0], [262143, 0], [262143, 262143], [30000, 262143]],
            "events": 45000,
            "pct_parent": 90.0,
        },
        {
            "id": "singlets",
            "parent": "cells",
            "type": "polygon",
            "x": {"dimension": "FSC-A", "transform": None},
            "y": {"dimension": "FSC-H", "transform": None},
            "vertices": [[0, 0], [262143, 230000], [262143, 262143], [0, 30000]],
            "events": 43000,
            "pct_parent": 95.6,
        },
        {
            "id": "leukocytes",
            "parent": "singlets",
            "type": "rectangle",
            "x": {"dimension": "CD45", **logicle},
            "y": None,
            "bounds": {"x": [0.2, None], "y": None},
            "events": 40000,
            "pct_parent": 93.0,
        },
        {
            "id": "blasts",
            "parent": "leukocytes",
            "type": "polygon",
            "x": {"dimension": "CD45", **logicle},
            "y": {"dimension": "SSC-A", "transform": None},
            "vertices": [[0.28, 5000], [0.55, 5000], [0.55, 60000], [0.28, 60000]],
            "events": 24800,
            "pct_parent": 62.0,
        },
        {
            "id": "lymphocytes",
            "parent": "leukocytes",
            "type": "rectangle",
            "x": {"dimension": "CD45", **logicle},
            "y": {"dimension": "SSC-A", "transform": None},
            "bounds": {"x": [0.7, None], "y": [None, 50000]},
            "events": 6000,
            "pct_parent": 15.0,
        },
    ]


def _antigen_rows(sample_id: str, hostile_marker: bool) -> list[dict[str, Any]]:
    """antigens.tsv rows: called markers, one insufficient_events and one no_reference."""
    base = {"sample_id": sample_id, "population": "blasts"}
    rows = [
        {
            **base,
            "marker": "CD19",
            "events": 24800,
            "positive_events": 496,
            "pct_positive": 2.0,
            "median": 120.5,
            "rmfi": 1.1,
            "threshold": 2500.0,
            "threshold_source": "internal:lymphocytes",
            "call": "negative",
            "note": "",
            "pct_ci_low": 1.83,
            "pct_ci_high": 2.18,
        },
        {
            **base,
            "marker": "CD22",
            "events": 24800,
            "positive_events": 22568,
            "pct_positive": 91.0,
            "median": 18234.0,
            "rmfi": 14.2,
            "threshold": 2600.0,
            "threshold_source": "control:blasts",
            "call": "positive",
            "note": "",
            "pct_ci_low": 90.64,
            "pct_ci_high": 91.36,
            "intensity": "bright",
            "abc_median": 4120.4,
            "abc_q25": 3010.0,
            "abc_q75": 5600.2,
            "low_density": False,
        },
        {
            **base,
            "marker": "CD10",
            "events": 24800,
            "positive_events": 11656,
            "pct_positive": 47.0,
            "median": 3100.0,
            "rmfi": 3.3,
            "threshold": 2200.0,
            "threshold_source": "mixture:blasts",
            "call": "partial",
            "note": "threshold from a two-component mixture fit on the blasts themselves",
            "pct_ci_low": 46.38,
            "pct_ci_high": 47.62,
            "intensity": "dim",
            "abc_median": 850.0,
            "abc_q25": 610.0,
            "abc_q75": 1190.0,
            "low_density": True,
        },
        {
            **base,
            "marker": "CD123",
            "events": 24800,
            "positive_events": 1240,
            "pct_positive": 5.0,
            "median": 410.0,
            "rmfi": 1.2,
            "threshold": 2100.0,
            "threshold_source": "marker_control:blasts",
            "call": "negative",
            "note": "",
            "pct_ci_low": 4.73,
            "pct_ci_high": 5.28,
        },
        {
            **base,
            "marker": "CD38",
            "events": 24800,
            "positive_events": None,
            "pct_positive": None,
            "median": 5120.0,
            "rmfi": None,
            "threshold": None,
            "threshold_source": "none",
            "call": "no_reference",
            "note": "no valid reference: T/NK cells carry CD38 and no control tube was given",
        },
        {
            **base,
            "marker": "CD20",
            "events": 31,
            "positive_events": None,
            "pct_positive": None,
            "median": 777.0,
            "rmfi": None,
            "threshold": None,
            "threshold_source": "internal:lymphocytes",
            "call": "insufficient_events",
            "note": "31 blast events, below the quantification floor of 50",
        },
    ]
    if hostile_marker:
        rows.append(
            {
                **base,
                "marker": HOSTILE,
                "events": 24800,
                "positive_events": 10,
                "pct_positive": 0.04,
                "median": 1.0,
                "rmfi": 1.0,
                "threshold": 10.0,
                "threshold_source": "control:blasts",
                "call": "negative",
                "note": HOSTILE,
            }
        )
    return rows


def _plotdata(
    rows: Sequence[Mapping[str, Any]], gates: Sequence[Mapping[str, Any]], n: int
) -> dict[str, np.ndarray]:
    """plotdata.npz arrays: parent events per gate, blasts/reference/threshold per marker."""
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {}
    for gate in gates:
        gid = gate["id"]
        logicle_x = gate["x"]["transform"] == "logicle"
        x = rng.uniform(0, 1, n) if logicle_x else rng.uniform(0, 262143, n)
        arrays[f"gate/{gid}/x"] = x.astype(np.float32)
        if gate["y"] is not None:
            arrays[f"gate/{gid}/y"] = rng.uniform(0, 262143, n).astype(np.float32)
        arrays[f"gate/{gid}/inside"] = rng.random(n) < 0.6
    for row in rows:
        marker = str(row["marker"])
        events = min(int(row["events"]), n)
        arrays[f"blasts/{marker}"] = rng.normal(0.6, 0.1, events).astype(np.float32)
        if row["threshold_source"] != "none":
            arrays[f"reference/{marker}"] = rng.normal(0.25, 0.05, n // 4).astype(np.float32)
            arrays[f"threshold/{marker}"] = np.array([0.4], dtype=np.float32)
    return arrays


def _positive_matrix() -> pd.DataFrame:
    """Per-blast positivity for the assessable targets, consistent with the antigen rows:
    CD22 22,568, CD123 1,240, CD10 11,656 of 24,800 positive (CD38 and CD20 have no
    threshold). CD10 is placed on most CD22-negative blasts, so CD22+CD10 covers 98.26% and
    332 blasts (1.34%) are negative for every target."""
    n = 24800
    cd22, cd123, cd10 = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    cd22[:2232] = False
    cd10[:1800] = True
    cd10[2232 : 2232 + 9856] = True
    cd123[1800:1900] = True
    cd123[20000:21140] = True
    return pd.DataFrame({"CD22": cd22, "CD123": cd123, "CD10": cd10})


def _coverage_files(sample_dir: Path, sample_id: str) -> pd.DataFrame:
    """coverage.tsv and coexpression.tsv as the profile stage writes them; returns coverage."""
    positive = _positive_matrix()
    positive.attrs["not_assessable"] = ["CD38", "CD20"]
    coverage = coverage_table(positive, sample_id)
    coverage.to_csv(sample_dir / "coverage.tsv", sep="\t", index=False)
    upset_data(positive).to_csv(sample_dir / "coexpression.tsv", sep="\t", index=False)
    return coverage


def make_sample(
    root: Path,
    sample_id: str = "P01-R1",
    *,
    decision: str = "candidate",
    hostile: bool = False,
    blast_defined_by: Sequence[str] = ("CD45", "SSC-A"),
    n_events: int = 2000,
    new_files: bool = True,
    flags: Sequence[Mapping[str, str]] = (AMBER_FLAG,),
    combination: Any = "computed",
) -> Path:
    """Write a complete, valid result folder for a profiled sample.

    With ``new_files`` (default) the folder has everything docs/outputs.md describes today:
    coverage.tsv, coexpression.tsv, ``flags`` and ``gating`` in profile.json, the interval,
    intensity and density columns of antigens.tsv, and decision.json's ``combination``
    (``"computed"``: what recommend_combination makes of coverage.tsv). Without it, the
    folder of an older version: none of those.
    """
    sample_dir = root / sample_id.replace("/", "_")
    sample_dir.mkdir(parents=True)
    eligible = ["CD10", "CD22"] if decision == "candidate" else []
    warning = HOSTILE if hostile else "FSC-A: 1.1% saturated events"
    (sample_dir / "qc.json").write_text(
        json.dumps(
            {
                "sample_id": sample_id,
                "file": f"/data/{sample_id}.fcs",
                "status": "warn",
                "reasons": [],
                "warnings": [warning],
                "events_total": 50000,
                "events_kept": 50000,
                "metrics": {
                    "saturated_fraction": {"FSC-A": 0.011, "SSC-A": 0.0},
                    "spillover_source": "$SPILLOVER",
                },
            }
        ),
        encoding="utf-8",
    )
    _write_tsv(
        sample_dir / "populations.tsv",
        POPULATION_COLUMNS,
        [
            {
                "population": g["id"],
                "parent": g["parent"],
                "events": g["events"],
                "pct_parent": g["pct_parent"],
                "pct_total": round(100 * g["events"] / 50000, 2),
            }
            for g in _gates()
        ],
    )
    rows = _antigen_rows(sample_id, hostile)
    columns = ANTIGEN_COLUMNS + DENSITY_COLUMNS if new_files else OLD_ANTIGEN_COLUMNS
    _write_tsv(sample_dir / "antigens.tsv", columns, rows)
    (sample_dir / "gates.json").write_text(json.dumps(_gates()), encoding="utf-8")
    np.savez_compressed(sample_dir / "plotdata.npz", **_plotdata(rows, _gates(), n_events))
    profile: dict[str, Any] = {"settings": {}}
    trial: dict[str, Any] = {"name": "4SCAR", "version": "1.0"}
    extra: dict[str, Any] = {}
    if new_files:
        coverage = _coverage_files(sample_dir, sample_id)
        profile = {
            "flags": list(flags),
            "gating": {"engine": "template", "file": "resources/gates/b-all.xml", "fitted": True},
            "settings": {
                "qc": {
                    "min_events": 5000,
                    "time": {"max_gap_seconds": 1.0, "min_rate_fraction": 0.3},
                    "gating": {"max_doublet_fraction": 0.15},
                }
            },
        }
        trial |= {"max_products": 2, "min_coverage_pct": 95.0, "targets": TARGETS}
        if combination == "computed":
            combination = recommend_combination(coverage, 2, 95.0, allowed=eligible).to_dict()
        extra["combination"] = combination
    (sample_dir / "profile.json").write_text(
        json.dumps(
            {
                **profile,
                "sample_id": sample_id,
                "inputs": [
                    {"role": "sample", "path": f"/data/{sample_id}.fcs", "sha256": "ab" * 32},
                    {"role": "config", "path": "config/config.yaml", "sha256": "cd" * 32},
                ],
                "fcs_version": "FCS3.1",
                "cytometer": "Navios",
                "events": 50000,
                "markers": {"CD45": "KrO-A", "CD22": "PE-A"},
                "control_markers": [],
                "spillover_source": "$SPILLOVER",
                "warnings": ["no control tube; internal references"],
                "blast_defined_by": list(blast_defined_by),
                "quantified": CONFIG["quantified"],
                "settings": {
                    "percentile": 99.5,
                    "call_limits": {"partial": 20, "positive": 80},
                    "floors": {"detect": 20, "quantify": 50},
                    "logicle": CONFIG["logicle"],
                    **profile["settings"],
                },
                "software": {"antigen-profile": "0.1.0", "flowkit": "1.3.2"},
                "created": "2025-01-15",
            }
        ),
        encoding="utf-8",
    )
    (sample_dir / "decision.json").write_text(
        json.dumps(
            {
                "sample_id": sample_id,
                "patient_id": "P01",
                "timepoint": "relapse",
                "trial": trial,
                "blast_events": 24800,
                "blast_pct_leukocytes": 62.0,
                "cd19_status": "negative",
                "eligible_targets": eligible,
                "antigen_status": "ok",
                "antigen_reasons": [],
                "clinical_status": "eligible",
                "clinical_reasons": [],
                "decision": decision,
                "decision_reasons": ["CD22 on 91.0% of blasts (>= 20%)"],
                "rules": [
                    {
                        "id": "kps",
                        "kind": "clinical",
                        "text": "Karnofsky score above 80",
                        "field": "kps",
                        "op": ">",
                        "threshold": 80,
                        "value": 90,
                        "outcome": "pass",
                    },
                    {
                        "id": "hiv",
                        "kind": "clinical",
                        "text": "HIV infection",
                        "field": "hiv",
                        "op": "==",
                        "threshold": "no",
                        "value": None,
                        "outcome": "unknown",
                    },
                ],
                **extra,
            }
        ),
        encoding="utf-8",
    )
    return sample_dir


def make_failed_sample(root: Path, sample_id: str = "P02-R1") -> Path:
    """A QC-failed sample: header-only TSVs, no gates, empty plotdata, antigen_status qc_failed."""
    sample_dir = root / sample_id
    sample_dir.mkdir(parents=True)
    reason = "only 812 events, below qc.min_events (5000)"
    (sample_dir / "qc.json").write_text(
        json.dumps(
            {
                "sample_id": sample_id,
                "file": f"/data/{sample_id}.fcs",
                "status": "fail",
                "reasons": [reason],
                "warnings": [],
                "events_total": 812,
                "events_kept": 812,
                "metrics": {},
            }
        ),
        encoding="utf-8",
    )
    _write_tsv(sample_dir / "populations.tsv", POPULATION_COLUMNS, [])
    _write_tsv(sample_dir / "antigens.tsv", ANTIGEN_COLUMNS, [])
    _write_tsv(sample_dir / "coverage.tsv", COVERAGE_COLUMNS, [])
    _write_tsv(sample_dir / "coexpression.tsv", UPSET_COLUMNS, [])
    (sample_dir / "gates.json").write_text("[]", encoding="utf-8")
    np.savez(sample_dir / "plotdata.npz")
    (sample_dir / "profile.json").write_text(
        json.dumps(
            {
                "sample_id": sample_id,
                "inputs": [],
                "warnings": [],
                "blast_defined_by": [],
                "flags": [],
                "quantified": CONFIG["quantified"],
                "settings": {},
                "software": {},
                "created": "2025-01-15",
            }
        ),
        encoding="utf-8",
    )
    (sample_dir / "decision.json").write_text(
        json.dumps(
            {
                "sample_id": sample_id,
                "patient_id": "P02",
                "timepoint": "relapse",
                "trial": {"name": "4SCAR", "version": "1.0"},
                "blast_events": None,
                "blast_pct_leukocytes": None,
                "cd19_status": None,
                "eligible_targets": [],
                "antigen_status": "qc_failed",
                "antigen_reasons": [reason],
                "clinical_status": "eligible",
                "clinical_reasons": [],
                "decision": "needs_review",
                "decision_reasons": ["QC failed: antigen profile unavailable"],
                "rules": [],
                "combination": None,
            }
        ),
        encoding="utf-8",
    )
    return sample_dir


# --------------------------------------------------------------------------- HTML helpers


class _Tables(HTMLParser):
    """Collect every table as rows of cell texts (enough to check what a reader sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> list[list[list[str]]]:
    """All tables of a page."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def table_starting_with(html: str, *headers: str) -> list[list[str]]:
    """The table whose header row starts with the given column names."""
    for table in tables(html):
        if table and table[0][: len(headers)] == list(headers):
            return table
    raise AssertionError(f"no table with headers {headers}")


def png_images(html: str) -> list[bytes]:
    """Decoded inline PNG images of a page."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def assert_no_external_urls(html: str, scripts: int = 0) -> None:
    """No src/href may point outside the file (reports are read offline), and no script but
    ``scripts`` inline ones (the cohort index's sorting and filtering) without a src."""
    targets = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I)
    assert targets, "expected some links or images"
    for target in targets:
        assert not re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", target, flags=re.I), target
        assert not target.lower().startswith(("http:", "https:", "javascript:")), target
    assert "http://" not in html and "https://" not in html
    tags = re.findall(r"<script\b[^>]*>", html, flags=re.I)
    assert tags == ["<script>"] * scripts, tags
    assert "Content-Security-Policy" in html and "default-src 'none'" in html_lib.unescape(html)


# --------------------------------------------------------------------------- sample report


@pytest.fixture
def fast_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the gate, antigen and UpSet plots by a 1-pixel PNG, for tests that read the
    report's text only: drawing is what makes a report slow, and the plots are tested on
    their own (the time course is kept: whether it is drawn is part of what is tested)."""

    def stub(*_args: Any, **_kwargs: Any) -> str:
        return TINY_PNG

    for name in ("gate_plot", "antigen_plot", "upset_plot"):
        monkeypatch.setattr(plots, name, stub)


@pytest.fixture(scope="module")
def sample_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One rendered report shared by the read-only checks (rendering is the slow part)."""
    return render_sample_report(make_sample(tmp_path_factory.mktemp("results")), CONFIG)


def test_sample_report_has_every_section(sample_html: str) -> None:
    for anchor in ("summary", "qc", "gating", "antigens", "rules", "settings", "audit"):
        assert f'id="{anchor}"' in sample_html
    assert "Decision support, not a diagnosis" in sample_html
    assert "4SCAR" in sample_html and "1.0" in sample_html
    summary = sample_html.split('id="summary"', 1)[1].split("</section>", 1)[0]
    for text in (
        "P01-R1",
        "P01",
        "relapse",
        "24,800",
        "62.0",
        "negative",
        "candidate",
        "CD10",
        "CD22",
        "CD22 on 91.0% of blasts",
    ):
        assert text in summary
    assert 'class="summary good"' in sample_html
    assert "Blasts defined by" in sample_html and "Circular gating" not in sample_html
    assert 'id="id-mismatch"' not in sample_html and 'id="qc-failed"' not in sample_html


def test_every_gate_has_a_valid_png(sample_html: str) -> None:
    figures = re.findall(r'<figure id="gate-\d+">(.*?)</figure>', sample_html, flags=re.S)
    assert len(figures) == len(_gates())
    for figure, gate in zip(figures, _gates(), strict=True):
        assert 'src="data:image/png;base64,' in figure
        assert gate["id"] in figure
    images = png_images(sample_html)
    assert len(images) == len(_gates()) + 6 + 1  # a histogram per marker, the UpSet chart
    for data in images:
        assert data.startswith(PNG_SIGNATURE)
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_gate_counts_come_from_gates_json(sample_html: str) -> None:
    assert "24,800 events, 62.0% of parent" in sample_html
    assert "from leukocytes" in sample_html


def test_antigen_table_values_and_dashes(sample_html: str) -> None:
    table = table_starting_with(
        sample_html,
        "Marker",
        "Blast events",
        "Positive events",
        "% positive (95% CI)",
        "Median",
        "rMFI",
        "Density",
        "Threshold",
    )
    header, *rows = table
    by_marker = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(by_marker) == {"CD19", "CD22", "CD10", "CD123", "CD38", "CD20"}
    assert by_marker["CD22"]["% positive (95% CI)"] == "91.0% (90.6\u201391.4)"
    assert by_marker["CD22"]["Threshold"] == "2,600"
    assert by_marker["CD22"]["Call"] == "positive bright"  # the intensity badge follows
    for marker, call in (("CD20", "insufficient_events"), ("CD38", "no_reference")):
        row = by_marker[marker]
        assert row["Call"] == call
        for column in ("Positive events", "% positive (95% CI)", "rMFI", "Threshold"):
            assert row[column] == DASH, (marker, column)
        assert row["Note"]
    assert by_marker["CD20"]["Median"] == DASH  # 31 events: no median worth printing
    assert by_marker["CD38"]["Median"] == "5,120"  # blasts measured, only the reference lacks


def test_rules_and_settings_are_printed(sample_html: str) -> None:
    rules = table_starting_with(sample_html, "Rule", "Kind", "Condition", "Value")
    assert rules[1][:2] == ["kps", "clinical"] and rules[1][-1] == "pass"
    assert rules[2][3] == DASH and rules[2][-1] == "unknown"
    assert 'class="badge warn">unknown' in sample_html
    table = table_starting_with(sample_html, "Setting", "Key", "Value")
    settings = {key: value for _, key, value in table[1:]}
    assert settings["percentile"] == "99.5"
    assert settings["call_limits"].startswith("negative < 20% \u2264 partial < 80% \u2264 positive")
    assert settings["floors"] == "detect: 20, quantify: 50"
    assert "profile.json records no settings" not in sample_html


def test_audit_trail(sample_html: str) -> None:
    assert "ab" * 32 in sample_html and "cd" * 32 in sample_html
    assert "/data/P01-R1.fcs" in sample_html
    assert "flowkit" in sample_html and "1.3.2" in sample_html
    assert "2025-01-15" in sample_html and "FCS3.1" in sample_html


def test_sample_report_is_self_contained(sample_html: str) -> None:
    assert_no_external_urls(sample_html)
    assert "<style>" in sample_html and '<link rel="stylesheet"' not in sample_html


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    sample_dir = make_sample(tmp_path, sample_id=HOSTILE, hostile=True, n_events=300)
    # a gate whose id and dimension are hostile too; "$" would trip matplotlib's mathtext
    gates = json.loads((sample_dir / "gates.json").read_text(encoding="utf-8"))
    gates.append(
        {
            "id": HOSTILE,
            "parent": "blasts",
            "type": "rectangle",
            "x": {"dimension": "$\\frac{CD34$", "transform": "logicle"},
            "y": None,
            "bounds": {"x": [0.5, None], "y": None},
            "events": 10,
            "pct_parent": 0.1,
        }
    )
    (sample_dir / "gates.json").write_text(json.dumps(gates), encoding="utf-8")
    plotdata = dict(np.load(sample_dir / "plotdata.npz"))
    plotdata[f"gate/{HOSTILE}/x"] = np.linspace(0, 1, 50, dtype=np.float32)
    plotdata[f"gate/{HOSTILE}/inside"] = np.linspace(0, 1, 50) > 0.5
    np.savez(sample_dir / "plotdata.npz", **plotdata)

    html = render_sample_report(sample_dir, CONFIG)
    assert HOSTILE not in html
    assert "<script" not in html.lower()
    # sample id (title, header), marker (table, caption), gate, warning, note: all escaped
    assert html.count(ESCAPED) >= 8
    figures = re.findall(r'<figure id="gate-\d+">(.*?)</figure>', html, flags=re.S)
    assert len(figures) == len(gates) and all("data:image/png" in f for f in figures)
    assert_no_external_urls(html)


def test_circular_gating_is_flagged(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path, blast_defined_by=["CD45", "SSC-A", "CD22"])
    html = render_sample_report(sample_dir, CONFIG)
    assert "Circular gating" in html
    summary = html.split('id="summary"', 1)[1].split("</section>", 1)[0]
    assert "Circular gating" in summary and "CD22" in summary
    alert = html.split("<h3>Circular gating</h3>", 1)[1].split("</div>", 1)[0]
    assert "CD22" in alert and "CD45" not in alert
    table = table_starting_with(html, "Marker", "Blast events")
    assert [row[0] for row in table[1:] if "gated on" in row[0]] == ["CD22 gated on"]


def test_sample_id_mismatch_is_flagged(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path, n_events=100)
    decision = json.loads((sample_dir / "decision.json").read_text(encoding="utf-8"))
    decision["sample_id"] = "P09-R1"
    (sample_dir / "decision.json").write_text(json.dumps(decision), encoding="utf-8")
    html = render_sample_report(sample_dir, CONFIG)
    alert = html.split('id="id-mismatch"', 1)[1].split("</div>", 1)[0]
    assert "P01-R1" in alert and "P09-R1" in alert


@pytest.mark.parametrize(("decision", "css"), [("not_candidate", "bad"), ("needs_review", "warn")])
def test_decision_colour(tmp_path: Path, fast_plots: None, decision: str, css: str) -> None:
    html = render_sample_report(make_sample(tmp_path, decision=decision, n_events=200), CONFIG)
    assert f'class="summary {css}"' in html
    assert f'decision-big {css}">{decision}<' in html


def test_qc_failed_sample_shows_reason_not_plots(tmp_path: Path) -> None:
    html = render_sample_report(make_failed_sample(tmp_path), CONFIG)
    assert 'id="qc-failed"' in html
    alert = html.split('id="qc-failed"', 1)[1].split("</div>", 1)[0]
    assert "only 812 events, below qc.min_events (5000)" in alert
    assert "<img" not in html
    assert "qc_failed" in html and "needs_review" in html
    assert "Decision support, not a diagnosis" in html
    assert_no_external_urls(html)


def test_missing_result_file_fails_loudly(tmp_path: Path) -> None:
    sample_dir = make_sample(tmp_path, n_events=100)
    (sample_dir / "decision.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"decision\.json"):
        render_sample_report(sample_dir, CONFIG)


def test_full_size_report_stays_small(tmp_path: Path) -> None:
    html = render_sample_report(make_sample(tmp_path, n_events=20000), CONFIG)
    assert len(html.encode("utf-8")) < 1_500_000


# --------------------------------------------------------------------------- flags, escape


def _between(html: str, start: str, end: str) -> str:
    """The part of a page from ``start`` to the next ``end``."""
    assert start in html, start
    return html.split(start, 1)[1].split(end, 1)[0]


def _summary(html: str) -> str:
    return _between(html, 'id="summary"', "</section>")


def _flags(html: str) -> str:
    return _between(html, '<section id="flags"', "</section>")


def _escape(html: str) -> str:
    return _between(html, '<h2 id="escape">', '<h2 id="rules">')


def _table_by_id(html: str, table_id: str) -> list[list[str]]:
    """The table with this id, as rows of cell texts."""
    fragment = _between(html, f'<table id="{table_id}"', "</table>")
    return tables(f"<table {fragment}</table>")[0]


def _kv(html: str, table_id: str) -> dict[str, str]:
    """A settings table (Setting, Key, Value) by its id, as key -> value."""
    rows = _table_by_id(html, table_id)
    assert rows[0] == ["Setting", "Key", "Value"]
    return {key: value for _, key, value in rows[1:]}


FLAG_BOX = re.compile(
    r'<div class="flag (\w+)"[^>]*>\s*<b>([^<]*)</b> <span class="mono">([^<]*)</span>'
    r"\s*<div>([^<]*)</div>"
)


def test_flags_are_shown_under_the_summary(tmp_path: Path, fast_plots: None) -> None:
    flags = [AMBER_FLAG, LINEAGE_FLAG, NO_BLASTS_FLAG]
    html = render_sample_report(make_sample(tmp_path, flags=flags, n_events=50), CONFIG)
    # right under the summary, before any other section
    assert html.index("</section>") < html.index('<section id="flags"') < html.index('id="qc"')
    boxes = FLAG_BOX.findall(_flags(html))
    assert [(css, code) for css, _, code, _ in boxes] == [
        ("bad", "possible_lineage_switch"),  # red flags first
        ("bad", "no_blast_population"),
        ("warn", "backbone_not_applied"),
    ]
    messages = {code: html_lib.unescape(message) for _, _, code, message in boxes}
    for flag in flags:
        assert messages[flag["code"]] == flag["message"]
    assert boxes[0][1] == "Possible lineage switch"
    summary = _summary(html)
    assert '<span class="badge bad">3 flags</span>' in summary
    # the fitted template still says which gate was left as drawn
    engine = {row[0]: row[1] for row in table_starting_with(html, "Engine")}
    assert engine["Fitted to this sample"].startswith("yes")
    assert "1 gate(s) used as drawn" in engine["Fitted to this sample"]


def test_one_amber_flag_and_gating_engine(sample_html: str) -> None:
    (box,) = FLAG_BOX.findall(_flags(sample_html))
    assert box == (
        "warn",
        "B-lineage backbone not applied",
        AMBER_FLAG["code"],
        AMBER_FLAG["message"],
    )
    assert '<span class="badge warn">1 flag</span>' in _summary(sample_html)
    engine = {row[0]: row[1] for row in table_starting_with(sample_html, "Engine")}
    assert engine["Engine"] == "antigen-profile Gating-ML template"
    assert engine["Gating file"] == "resources/gates/b-all.xml"
    assert engine["Fitted to this sample"].startswith("yes")


def test_lab_gating_shows_its_population_mapping(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path, n_events=50)
    path = sample_dir / "profile.json"
    profile = json.loads(path.read_text(encoding="utf-8"))
    profile["gating"] = {
        "engine": "lab",
        "kind": "flowjo",
        "file": "/lab/B-ALL.wsp",
        "sample": "P01 relapse.fcs",
        "populations": {"blasts": "/Cells/Singlets/CD45dim", "lymphocytes": "/Cells/Lymphs"},
        "notes": ["ellipse gate approximated by a 64-vertex polygon"],
        "fitted": False,
    }
    path.write_text(json.dumps(profile), encoding="utf-8")
    html = render_sample_report(sample_dir, CONFIG)
    engine = {row[0]: row[1] for row in table_starting_with(html, "Engine")}
    assert engine["Engine"] == "the lab's own gating (flowjo)"
    assert engine["Sample in the gating file"] == "P01 relapse.fcs"
    assert engine["Fitted to this sample"] == "no: the gates were applied as drawn"
    mapping = table_starting_with(html, "Our population", "Lab's population")
    assert mapping[1:] == [
        ["blasts", "/Cells/Singlets/CD45dim"],
        ["lymphocytes", "/Cells/Lymphs"],
    ]
    assert "ellipse gate approximated by a 64-vertex polygon" in html


def _antigen_table(html: str) -> dict[str, dict[str, str]]:
    header, *rows = table_starting_with(html, "Marker", "Blast events")
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_antigen_interval_intensity_density_and_reference(sample_html: str) -> None:
    by_marker = _antigen_table(sample_html)
    cd22, cd10, cd123 = by_marker["CD22"], by_marker["CD10"], by_marker["CD123"]
    assert cd10["% positive (95% CI)"] == "47.0% (46.4\u201347.6)"
    assert cd10["Call"] == "partial dim"
    assert '<span class="badge warn">dim</span>' in sample_html
    assert '<span class="badge pos">bright</span>' in sample_html
    assert cd22["Density"] == "ABC 4,120 (IQR 3,010\u20135,600)"  # low_density False: no badge
    assert cd10["Density"] == "ABC 850 (IQR 610\u20131,190) low density"
    assert sample_html.count('<span class="badge bad">low density</span>') == 1
    assert by_marker["CD38"]["Density"] == DASH and by_marker["CD20"]["Density"] == DASH
    assert cd10["Threshold source"].startswith("mixture fit on the blasts themselves")
    assert "weakest reference" in cd10["Threshold source"]
    assert sample_html.count('<span class="badge warn">weakest reference</span>') == 1
    assert cd123["Threshold source"] == "FMO for this antigen marker_control:blasts"
    assert by_marker["CD19"]["Threshold source"] == (
        "internal negative: lymphocytes internal:lymphocytes"
    )
    # no interval or intensity where no number is trusted
    assert by_marker["CD38"]["% positive (95% CI)"] == DASH
    assert by_marker["CD38"]["Call"] == "no_reference"


def test_upset_chart_is_a_png(sample_html: str) -> None:
    figure = re.search(r'<figure id="escape-upset"[^>]*>(.*?)</figure>', sample_html, re.S)
    assert figure is not None
    (image,) = png_images(figure.group(1))
    assert image.startswith(PNG_SIGNATURE)
    pixels = mpimg.imread(io.BytesIO(image), format="png")
    assert pixels.shape[1] > 1.5 * pixels.shape[0] > 300  # a wide chart of legible size
    caption = figure.group(1)
    assert "CD22, CD123, CD10" in caption and "1.34% of blasts (332 events)" in caption
    patterns = table_starting_with(_escape(sample_html), "Pattern", "Targets", "Events")
    assert patterns[1] == ["CD22", "1", "11,572", "46.66"]
    assert ["none escapes every product", "0", "332", "1.34"] in patterns
    assert '<tr class="escape">' in _escape(sample_html)


def test_coverage_tables(sample_html: str) -> None:
    escape = _escape(sample_html)
    header, *rows = _table_by_id(escape, "coverage-short")
    assert header == [
        "Combination",
        "Products",
        "Covered %",
        "Uncovered events",
        "Uncovered % (95% CI)",
    ]
    assert [row[1] for row in rows] == ["1", "1", "1", "2", "2", "2"]  # singles and pairs
    assert rows[3] == ["CD22 + CD10 recommended", "2", "98.26", "432", "1.74 (1.58\u20131.91)"]
    assert rows[0] == ["CD22", "1", "91.00", "2,232", "9.00 (8.65\u20139.36)"]
    assert escape.count('<tr class="recommended">') == 2  # in the short and the full table
    full = _between(escape, '<details id="coverage-full">', "</details>")
    assert "all 7 combinations" in full
    assert _table_by_id(full, "coverage-all")[-1][0] == "CD22 + CD123 + CD10"
    # eligible targets in blue, the others neutral
    assert '<span class="badge neutral">CD123</span>' in escape
    assert '<span class="badge pos">CD10</span>' in escape
    assert "Not assessable per cell" in escape and "CD38, CD20." in escape


def test_recommended_combination(sample_html: str) -> None:
    box = _between(sample_html, 'id="combination-box"', "</div>\n\n")
    reason = (
        "CD22+CD10 (2 products) covers 98.26% of blasts, at least 95% with 95% confidence "
        "(uncovered 1.74%, "
        "95% CI 1.58-1.91%); no single eligible product does (best CD22, 91%)"
    )
    assert reason in box
    rows = {row[0]: row[1] for row in tables(box)[0]}
    assert rows["Blasts covered"] == "98.26%"
    assert rows["Blasts uncovered (95% CI)"] == "1.74% (1.58\u20131.91)"
    summary = _summary(sample_html)
    combination = _between(summary, 'id="summary-combination"', "</td>")
    assert "CD22" in combination and "CD10" in combination
    assert "covers 98.26% of blasts" in combination


def test_settings_include_qc_and_trial_limits(sample_html: str) -> None:
    trial = _kv(sample_html, "settings-trial")
    assert trial == {
        "trial.max_products": "2",
        "trial.min_coverage_pct": "95",
        "trial.confidence": "0.95",
    }
    qc = _kv(sample_html, "settings-qc")
    assert qc["qc.min_events"] == "5000"
    assert qc["qc.time.max_gap_seconds"] == "1"
    assert qc["qc.gating.max_doublet_fraction"] == "0.15"
    main = _kv(sample_html, "settings-positivity")
    assert main["intensity.bright_rmfi"].startswith("10 (from the configuration")
    assert main["min_reference_events"].startswith("200 (from the configuration")
    assert "Most CAR-T products given together" in sample_html


def test_off_tumour_notes_for_eligible_targets_only(sample_html: str) -> None:
    notes = _between(_summary(sample_html), 'id="off-tumour"', "</ul>")
    for target in ("CD10", "CD22"):
        assert OFF_TUMOUR_NOTES[target] in notes
    for target in ("CD123", "CD38", "CD20"):
        if OFF_TUMOUR_NOTES[target] != OFF_TUMOUR_NOTES["CD22"]:
            assert OFF_TUMOUR_NOTES[target] not in sample_html
    assert "basophils" not in sample_html and "daratumumab" not in sample_html


def test_off_tumour_note_lookup() -> None:
    assert off_tumour_note("cd22") == OFF_TUMOUR_NOTES["CD22"]
    assert off_tumour_note("CD7") == NO_NOTE
    assert set(OFF_TUMOUR_NOTES) == set(TARGETS)
    assert "daratumumab" in OFF_TUMOUR_NOTES["CD38"]


def test_old_results_folder_still_renders(tmp_path: Path, fast_plots: None) -> None:
    """A folder written before coverage, flags, intervals and combinations existed."""
    html = render_sample_report(make_sample(tmp_path, new_files=False, n_events=50), CONFIG)
    escape = _escape(html)
    assert "coverage.tsv not found: this results folder predates" in escape
    assert "coexpression.tsv not found" in escape
    assert "decision.json records no combination" in escape
    assert 'id="escape-upset"' not in escape
    assert "profile.json records no flags" in _flags(html)
    assert "not recorded" in _between(_summary(html), 'id="summary-flags"', "</td>")
    assert "profile.json does not record which gating engine" in html
    by_marker = _antigen_table(html)
    assert by_marker["CD22"]["% positive"] == "91.0%"  # no interval column, no density
    assert "Density" not in by_marker["CD22"] and by_marker["CD22"]["Call"] == "positive"
    assert _kv(html, "settings-trial")["trial.max_products"] == "not recorded in decision.json"
    assert_no_external_urls(html)


def test_header_only_coverage_is_explained(tmp_path: Path, fast_plots: None) -> None:
    """Too few blasts for a per-cell analysis: the files exist with a header only."""
    sample_dir = make_sample(tmp_path, decision="needs_review", combination=None, n_events=50)
    _write_tsv(sample_dir / "coverage.tsv", COVERAGE_COLUMNS, [])
    _write_tsv(sample_dir / "coexpression.tsv", UPSET_COLUMNS, [])
    escape = _escape(render_sample_report(sample_dir, CONFIG))
    assert "coverage.tsv has no rows: no blasts, or no target with a threshold" in escape
    assert "coexpression.tsv has no rows" in escape
    assert "No combination was assessed" in escape and "eligible: none" in escape
    assert "<table" not in escape and 'id="escape-upset"' not in escape


def test_qc_failed_sample_has_no_escape_section(tmp_path: Path, fast_plots: None) -> None:
    html = render_sample_report(make_failed_sample(tmp_path), CONFIG)
    escape = _escape(html)
    assert "No co-expression: QC failed." in escape
    assert "antigen status: qc_failed" in escape
    assert "No flag raised by the profile." in _flags(html)


def test_no_combination_qualifies(tmp_path: Path, fast_plots: None) -> None:
    coverage = coverage_table(_positive_matrix(), "P01-R1")
    choice = recommend_combination(coverage, 1, 95.0, allowed=["CD10", "CD22"]).to_dict()
    assert choice["label"] == ""
    html = render_sample_report(make_sample(tmp_path, combination=choice, n_events=50), CONFIG)
    box = _between(html, 'id="combination-box"', "</div>")
    assert "No combination qualifies." in box and choice["reason"] in box
    assert "CD22 (91.00%), short of 95%" in box
    assert "none qualifies" in _between(_summary(html), 'id="summary-combination"', "</td>")
    assert '<tr class="recommended">' not in html


def test_hostile_flags_and_reasons_are_escaped(tmp_path: Path, fast_plots: None) -> None:
    combination = {
        "combination": [HOSTILE],
        "label": HOSTILE,
        "n_products": 1,
        "coverage_pct": 99.0,
        "reason": HOSTILE,
        "best_combination": [HOSTILE, "CD22"],
    }
    flags = [{"code": HOSTILE, "message": HOSTILE}, {"code": "gate_not_fitted", "message": HOSTILE}]
    sample_dir = make_sample(tmp_path, flags=flags, combination=combination, n_events=50)
    path = sample_dir / "profile.json"
    profile = json.loads(path.read_text(encoding="utf-8"))
    profile["gating"] = {"engine": HOSTILE, "file": HOSTILE, "populations": {HOSTILE: HOSTILE}}
    path.write_text(json.dumps(profile), encoding="utf-8")
    html = render_sample_report(sample_dir, CONFIG)
    assert HOSTILE not in html and "<script" not in html.lower()
    assert _flags(html).count(ESCAPED) == 4  # code and message of the unknown flag, a message
    assert html.count(ESCAPED) >= 12
    assert_no_external_urls(html)


def test_upset_figure_draws_what_the_file_says() -> None:
    table = upset_data(_positive_matrix())
    targets = [c for c in table.columns if c not in UPSET_COLUMNS]
    patterns = [
        {
            "label": row["pattern"],
            "pct": row["pct_blasts"],
            "members": [row[t] for t in targets],
            "escape": row["pattern"] == "none",
        }
        for row in table.to_dict("records")
    ]
    fig = plots.upset_figure(patterns, targets)
    assert fig is not None
    bars, matrix = fig.axes
    heights = [bar.get_height() for bar in bars.containers[0]]
    assert heights == pytest.approx(list(table["pct_blasts"]))
    colours = [bar.get_facecolor() for bar in bars.containers[0]]
    red, blue = to_rgba(plots.GATE_COLOUR), to_rgba(plots.BLAST_COLOUR)
    assert [c == red for c in colours] == list(table["pattern"] == "none")
    assert all(c == blue for c, p in zip(colours, table["pattern"], strict=True) if p != "none")
    on = sum(len(c.get_offsets()) for c in matrix.collections[1:] if hasattr(c, "get_sizes"))
    assert on == int(table["n_targets"].sum())
    assert sorted(t.get_text() for t in matrix.get_yticklabels()) == sorted(targets)
    assert bars.get_ylim()[0] == 0 and max(bars.get_yticks()) <= 100


def test_upset_figure_with_nothing_or_odd_names() -> None:
    assert plots.upset_figure([], ["CD22"]) is None
    assert (
        plots.upset_figure([{"label": "none", "pct": 1, "members": [], "escape": True}], []) is None
    )
    odd = [{"label": "$\\frac{x$", "pct": "n/a", "members": [True], "escape": False}]
    assert plots.upset_plot(odd, ["$\\frac{CD34$"]).startswith("data:image/png;base64,")


# --------------------------------------------------------------------------- QC time course


def _course(bins: int = 60, width: float = 1.0) -> dict[str, Any]:
    """A qc.json time course: ~500 events per 1-s bin, a clog at 20-30 s (dropped), a signal
    shift at 40-45 s (dropped)."""
    starts = [round(i * width, 4) for i in range(bins)]
    events = [500 + (7 * i) % 23 for i in range(bins)]
    kept = [True] * bins
    for i in range(20, 30):
        events[i], kept[i] = 20, False
    for i in range(40, 45):
        kept[i] = False
    return {"bin_seconds": width, "start_s": starts, "events": events, "kept": kept}


DROPPED = [
    {
        "start_s": 20.0,
        "end_s": 30.0,
        "reason": "clog",
        "events": 200,
        "pct_events": 0.7,
        "detail": "flow rate 4% of the run's level (505 events/s)",
    },
    {
        "start_s": 40.0,
        "end_s": 45.0,
        "reason": "signal_shift",
        "events": 2510,
        "pct_events": 8.6,
        "detail": "PE-A +0.39 decades",
    },
]


def _with_time_course(
    sample_dir: Path,
    course: Any = None,
    dropped: Sequence[Mapping[str, Any]] = DROPPED,
    **qc_fields: Any,
) -> Path:
    """Rewrite a sample's qc.json with a time course, its dropped periods and metrics."""
    path = sample_dir / "qc.json"
    qc = json.loads(path.read_text(encoding="utf-8"))
    qc["metrics"]["time"] = {
        "channel": "Time",
        "checked": True,
        "duration_s": 60.0,
        "bins": 60,
        "bin_seconds": 1.0,
        "level_events_per_s": 505.0,
        "level_events_per_bin": 505.0,
        "gap_count": 0,
        "gaps": [],
        "events_dropped": 2710,
        "pct_events_dropped": 9.3,
        "stable_time_fraction": 0.75,
    }
    qc["dropped"] = list(dropped)
    qc["time_course"] = _course() if course is None else course
    qc.update(qc_fields)
    path.write_text(json.dumps(qc), encoding="utf-8")
    return sample_dir


def _qc_section(html: str) -> str:
    return html.split('<h2 id="qc">', 1)[1].split('<h2 id="gating">', 1)[0]


def test_qc_time_course_plot_and_dropped_table(tmp_path: Path) -> None:
    sample_dir = _with_time_course(make_sample(tmp_path, n_events=200))
    html = render_sample_report(sample_dir, CONFIG)
    qc = _qc_section(html)
    figure = re.search(r'<figure id="qc-time-course"[^>]*>(.*?)</figure>', qc, flags=re.S)
    assert figure is not None
    (image,) = png_images(figure.group(1))
    pixels = mpimg.imread(io.BytesIO(image), format="png")
    assert pixels.shape[1] > 2 * pixels.shape[0]  # a wide plot, not a square one
    assert len(png_images(html)) == len(_gates()) + 6 + 1 + 1  # + time course + UpSet
    header, *rows = table_starting_with(qc, "From (s)", "To (s)", "Reason")
    assert header == ["From (s)", "To (s)", "Reason", "Events dropped", "% of events", "Why"]
    assert rows == [
        [
            "20.0",
            "30.0",
            "clog (flow rate well below the run's level)",
            "200",
            "0.7",
            "flow rate 4% of the run's level (505 events/s)",
        ],
        ["40.0", "45.0", "signal shift", "2,510", "8.6", "PE-A +0.39 decades"],
    ]
    summary = {row[0]: row[1] for row in table_starting_with(qc, "Time channel")}
    assert summary["Events dropped"] == "2,710 (9.3%)"
    assert summary["Stable acquisition time"] == "75.0%"
    assert summary["Level (median event's flow rate)"] == "505 events/s"
    assert 'id="qc-time-note"' not in qc and "nothing dropped" not in qc
    assert_no_external_urls(html)


def _legend_and_spans(fig: Any) -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    """Legend texts and, per label, the x-ranges of the shaded spans."""
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    spans: dict[str, list[tuple[float, float]]] = {}
    for patch in ax.patches:
        x0, _, x1, _ = patch.get_extents().transformed(ax.transData.inverted()).bounds
        spans.setdefault(patch.get_gid(), []).append((round(x0, 1), round(x0 + x1, 1)))
    return texts, spans


def test_time_course_figure_shades_dropped_bins_by_reason() -> None:
    fig = plots.time_course_figure(_course(), DROPPED, level=505.0)
    assert fig is not None
    texts, spans = _legend_and_spans(fig)
    assert texts == ["dropped: clog", "dropped: signal shift", "events per bin", "run's level"]
    assert spans["dropped: clog"] == [(20.0, 30.0)]
    assert spans["dropped: signal shift"] == [(40.0, 45.0)]
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 60.0)
    assert ax.get_xlabel() == "time (s)" and "bin" in ax.get_ylabel()


def test_time_course_figure_follows_the_kept_flags() -> None:
    """Dropped bins without a matching period are still shaded (plainly "dropped"), and a
    period whose bins were kept is not: the shading shows what QC actually removed."""
    course = _course()
    course["kept"][50] = False
    wrong = [{**DROPPED[0], "start_s": 0.0, "end_s": 10.0}]  # bins 0-10 were kept
    texts, spans = _legend_and_spans(plots.time_course_figure(course, wrong))
    assert texts == ["dropped", "events per bin"]  # no level given: no dashed line
    assert spans["dropped"] == [(20.0, 30.0), (40.0, 45.0), (50.0, 51.0)]


@pytest.mark.parametrize(
    "course",
    [
        None,
        {"start_s": [0, 1, 2], "events": [1, 2], "kept": [True, True, True]},
        {"start_s": ["a"], "events": [1], "kept": [True]},
        {"start_s": [], "events": [], "kept": []},
        [1, 2, 3],
    ],
)
def test_unusable_time_course_draws_nothing(course: Any) -> None:
    assert plots.time_course_figure(course) is None
    assert plots.time_course_plot(course) is None


def test_report_without_time_course_still_renders(tmp_path: Path) -> None:
    """A qc.json written before the time course existed: a note, no plot, nothing dropped."""
    html = render_sample_report(make_sample(tmp_path, n_events=100), CONFIG)
    qc = _qc_section(html)
    assert 'id="qc-time-course"' not in qc
    assert "qc.json records no time course (acquisition stability not checked)" in qc
    assert "nothing dropped" in qc
    assert len(png_images(html)) == len(_gates()) + 6 + 1


def test_report_says_why_stability_was_not_checked(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path, n_events=100)
    note = "no Time channel: acquisition stability not checked"
    path = sample_dir / "qc.json"
    qc = json.loads(path.read_text(encoding="utf-8"))
    qc["metrics"]["time"] = {"channel": None, "checked": False, "note": note}
    qc.update(dropped=[], time_course=None)
    path.write_text(json.dumps(qc), encoding="utf-8")
    section = _qc_section(render_sample_report(sample_dir, CONFIG))
    assert f'<p class="muted" id="qc-time-note">{note}</p>' in section
    assert 'id="qc-time-course"' not in section
    assert "<th>Time channel</th>" not in section  # no summary of a check not run


def test_malformed_time_course_renders_a_note(tmp_path: Path, fast_plots: None) -> None:
    course = {"bin_seconds": 1, "start_s": [0, 1], "events": [5], "kept": [True, True]}
    sample_dir = _with_time_course(make_sample(tmp_path, n_events=100), course=course)
    section = _qc_section(render_sample_report(sample_dir, CONFIG))
    assert "the time course in qc.json cannot be drawn" in section
    assert 'id="qc-time-course"' not in section
    assert table_starting_with(section, "From (s)")[1][0] == "20.0"  # the table still shows


def test_qc_failed_sample_shows_its_time_course(tmp_path: Path) -> None:
    """A sample failed for unstable acquisition: the alert gives the reason, the QC section
    shows the time course that explains it, and nothing is gated."""
    reason = "only 25% of the acquisition time was stable (clog), less than the 50% required"
    clog = {**DROPPED[0], "start_s": 10.0, "end_s": 55.0, "detail": HOSTILE}
    course = _course()
    course["kept"] = [not 10 <= i < 55 for i in range(60)]
    sample_dir = _with_time_course(
        make_failed_sample(tmp_path),
        course=course,
        dropped=[clog],
        status="fail",
        reasons=[reason],
    )
    html = render_sample_report(sample_dir, CONFIG)
    alert = html.split('id="qc-failed"', 1)[1].split("</div>", 1)[0]
    assert reason in alert
    qc = _qc_section(html)
    assert 'id="qc-time-course"' in qc and len(png_images(html)) == 1
    rows = table_starting_with(qc, "From (s)")[1:]
    assert rows[0][:5] == [
        "10.0",
        "55.0",
        "clog (flow rate well below the run's level)",
        "200",
        "0.7",
    ]
    assert HOSTILE not in html and ESCAPED in qc
    assert "No gating: QC failed." in html and "No antigen quantified: QC failed." in html
    assert_no_external_urls(html)


def test_report_draws_the_time_course_qc_writes(tmp_path: Path) -> None:
    """End to end: check_acquisition on a clogged run, its qc.json, the report's plot."""
    rng = np.random.default_rng(4)
    times = np.concatenate(
        [rng.uniform(0, 40, 20_000), rng.uniform(40, 60, 500), rng.uniform(60, 120, 30_000)]
    )
    times.sort()
    events = np.column_stack(
        [rng.lognormal(11, 0.2, (times.size, 3)), times]
    )  # FSC-A, SSC-A, PE-A, Time
    channels = ["FSC-A", "SSC-A", "PE-A", "Time"]
    tube = Tube(
        path=Path("x.fcs"),
        events=events,
        channels=channels,
        labels=["", "", "CD22 PE", ""],
        markers={"FSC-A": "FSC-A", "SSC-A": "SSC-A", "CD22": "PE-A", "Time": "Time"},
        spillover=None,
        spillover_source="none",
        keywords={},
        ranges={c: 262143.0 for c in channels},
        sha256="0" * 64,
    )
    result = check_acquisition(tube, QCSettings())
    sample_dir = make_sample(tmp_path, n_events=100)
    (sample_dir / "qc.json").write_text(
        json.dumps(result.to_json("P01-R1", "/data/P01-R1.fcs")), encoding="utf-8"
    )
    qc = _qc_section(render_sample_report(sample_dir, CONFIG))
    assert 'id="qc-time-course"' in qc
    rows = table_starting_with(qc, "From (s)")[1:]
    assert [row[2] for row in rows] == ["clog (flow rate well below the run's level)"]
    assert abs(float(rows[0][0]) - 40) <= 1.1 and abs(float(rows[0][1]) - 60) <= 1.1


# --------------------------------------------------------------------------- cohort report


def _recommendations(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """recommendations.tsv read as the workflow reads it (empty cells become NaN)."""
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=RECOMMENDATION_COLUMNS).to_csv(buffer, sep="\t", index=False)
    buffer.seek(0)
    return pd.read_csv(buffer, sep="\t")


def test_cohort_report_links_and_counts(tmp_path: Path) -> None:
    make_sample(tmp_path, "P01-R1", n_events=50)  # one amber flag
    make_sample(tmp_path, "P04-R1", n_events=50, flags=[AMBER_FLAG, LINEAGE_FLAG])
    make_sample(tmp_path, "P03 R1", n_events=50, new_files=False)  # no flags recorded
    base = {
        "patient_id": "P01",
        "blast_events": 24800,
        "blast_pct_leukocytes": 62.0,
        "cd19_status": "negative",
        "antigen_status": "ok",
        "clinical_status": "eligible",
        "clinical_reasons": "",
    }
    rows = [
        {
            **base,
            "sample_id": "P01-R1",
            "eligible_targets": "CD10,CD22",
            "decision": "candidate",
            "recommended_combination": "CD22+CD10",
            "combination_coverage_pct": 98.26,
        },
        {**base, "sample_id": "P03 R1", "eligible_targets": "CD22", "decision": "candidate"},
        {
            **base,
            "sample_id": "P04-R1",
            "eligible_targets": "",
            "decision": "not_candidate",
            "clinical_status": "excluded",
            "clinical_reasons": "hiv; kps",
        },
        {
            **base,
            "sample_id": "P02-R1",
            "eligible_targets": "",
            "decision": "needs_review",
            "antigen_status": "qc_failed",
            "blast_events": None,
            "blast_pct_leukocytes": None,
        },
        {
            **base,
            "sample_id": HOSTILE,
            "eligible_targets": "",
            "decision": "needs_review",
            "clinical_status": "undetermined",
            "clinical_reasons": HOSTILE,
        },
    ]
    html = render_cohort_report(tmp_path, _recommendations(rows), CONFIG)

    hrefs = re.findall(r'<a href="([^"]+)">', html)
    assert "P01-R1/report.html" in hrefs
    assert "P03%20R1/report.html" in hrefs
    assert "%3Cscript%3Ealert%281%29%3C%2Fscript%3E/report.html" in hrefs
    # an old table (no specimen_id, tubes): each sample is its own specimen of one tube,
    # linked to the tube's report
    assert len([h for h in hrefs if h.endswith("/report.html")]) == len(rows)

    tile = r'<div class="tile \w+"><b>(\d+)</b>(\w+)</div>'
    tiles = {decision: int(n) for n, decision in re.findall(tile, html)}
    assert tiles == {"candidate": 2, "needs_review": 2, "not_candidate": 1}

    table = table_starting_with(html, "Specimen", "Patient", "Decision", "Eligible targets")
    # the parser unescapes entities: every sample is listed, in the given order
    assert [row[0] for row in table[1:]] == [r["sample_id"] for r in rows]
    by_id = {row[0]: row for row in table[1:]}
    assert by_id["P01-R1"][3] == "CD10 CD22"
    assert by_id["P02-R1"][4] == DASH and by_id["P02-R1"][7] == "qc_failed"
    assert "hiv" in by_id["P04-R1"][8] and "kps" in by_id["P04-R1"][8]
    assert table[0][9:] == [
        "Recommended combination", "Combination coverage %", "Flags", "QC", "Review"
    ]  # fmt: skip
    # the review cell: its status, then the link to the specimen page's sign-off form
    signed = "unreviewedsign off"
    assert by_id["P01-R1"][9:] == ["CD22+CD10", "98.26", "1", "warn 1 warning", signed]
    assert by_id["P04-R1"][9:] == [DASH, DASH, "2", "warn 1 warning", signed]
    assert 'href="specimens/P01-R1/report.html#review">sign off</a>' in html
    assert by_id["P03 R1"][11] == DASH and by_id["P02-R1"][11] == DASH  # not recorded / no file
    assert by_id["P02-R1"][12] == DASH  # no qc.json
    flag_cells = re.findall(
        r'<td class="num" data-sort="\d*"><span class="badge (\w+)">(\d+)</span></td>', html
    )
    assert flag_cells == [("warn", "1"), ("bad", "2")]
    assert "4SCAR 1.0" in html
    assert HOSTILE not in html and ESCAPED in html
    assert "Decision support, not a diagnosis" in html
    assert_no_external_urls(html, scripts=1)


def test_cohort_report_from_an_older_recommendations_table(tmp_path: Path) -> None:
    """recommendations.tsv written before combinations: dashes, not an error."""
    frame = pd.DataFrame({"sample_id": ["P01-R1"], "decision": ["candidate"]})
    html = render_cohort_report(tmp_path, frame, CONFIG)
    row = table_starting_with(html, "Specimen", "Patient")[1]
    assert row[0] == "P01-R1" and row[9:] == [DASH, DASH, DASH, DASH, "unreviewedsign off"]


def test_cohort_report_requires_contract_columns(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="decision"):
        render_cohort_report(tmp_path, pd.DataFrame({"sample_id": ["a"]}), CONFIG)


# --------------------------------------------------------------------------- writing


def test_write_html_is_atomic_and_utf8(tmp_path: Path) -> None:
    target = tmp_path / "P01" / "report.html"
    write_html("<p>old</p>", target)
    write_html("<p>CD22 \u2265 20 % \u00b5</p>", target)
    assert target.read_bytes().decode("utf-8") == "<p>CD22 \u2265 20 % \u00b5</p>"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


# --------------------------------------------------------------------------- issue 7 and 6

#: Every hostile string the reports must show as text (issue 7).
HOSTILE_STRINGS = (
    HOSTILE,
    '"><img src=x onerror=alert(1)>',
    "it's \"quoted\" & 'x'",
    "\u00dcn\u00efc\u00f8d\u00e9 \u6297\u539f",
)


def _text(html: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, entities decoded, spaces joined."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _positive_controls(sample_dir: Path) -> None:
    """positive_controls.tsv: CD10 on granulocytes fine, CD38 on lymphocytes far too low
    (a failed stain), CD22 with no gated normal carrier."""
    _write_tsv(
        sample_dir / "positive_controls.tsv",
        POSITIVE_CONTROL_COLUMNS,
        [
            {"target": "CD38", "population": "lymphocytes", "expected": "T and NK carry CD38",
             "events": 7900, "positive_events": 395, "pct_positive": 5.0, "threshold": 476.4},
            {"target": "CD10", "population": "granulocytes", "expected": "neutrophils carry CD10",
             "events": 7584, "positive_events": 6825, "pct_positive": 89.99, "threshold": 456.3},
            {"target": "CD22", "population": "", "expected": HOSTILE, "threshold": 495.8,
             "note": "no gated normal population carries this target in this panel"},
        ],
    )  # fmt: skip


def test_positive_controls_next_to_each_eligible_target(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path)  # eligible: CD10, CD22
    _positive_controls(sample_dir)
    html = render_sample_report(sample_dir, CONFIG)
    summary = _text(_summary(html))
    assert "CD10 off-tumour" in summary
    control = "internal positive control: granulocytes 90.0% above threshold of 7,584 events"
    assert control in summary
    assert "internal positive control: no gated normal population carries this target" in summary
    assert "CD38" not in summary.split("Eligible targets", 1)[1].split("Why", 1)[0]
    table = _table_by_id(html, "positive-controls-table")
    assert table[0][:3] == ["Target", "Normal carrier", "Expected"]
    rows = {row[0]: row for row in table[1:]}
    assert rows["CD38"][5] == "5.0% below 20%: check the stain"  # a failed stain shows here
    assert rows["CD10"][5] == "90.0%" and rows["CD10"][3] == "7,584"
    assert rows["CD22"][1] == "none gated" and rows["CD22"][5] == DASH
    assert HOSTILE not in html and ESCAPED in html
    assert 'id="positive-controls-note"' not in html


def test_absent_positive_controls_are_said(tmp_path: Path, fast_plots: None) -> None:
    html = render_sample_report(make_sample(tmp_path), CONFIG)
    assert "positive_controls.tsv not found" in html
    assert "internal positive control: not recorded (no positive_controls.tsv)" in html


def test_patient_samples_are_linked_in_the_given_order(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path, "P01-R1")
    html = render_sample_report(sample_dir, CONFIG, ["P01-D", "P01-R1", "P01 F", ".."])
    cell = html.split('id="patient-samples">', 1)[1].split("</td>", 1)[0]
    assert re.findall(r'href="([^"]+)"', cell) == ["../P01-D/report.html", "../P01%20F/report.html"]
    assert cell.index("P01-D") < cell.index("<b>P01-R1</b> ") < cell.index("P01 F")
    assert "→ ..<br>" in cell  # ".." is listed, never linked
    alone = render_sample_report(sample_dir, CONFIG, ["P01-R1"])
    assert 'id="patient-samples"' not in alone
    assert 'id="patient-samples"' not in render_sample_report(sample_dir, CONFIG)


def _audit_profile(sample_dir: Path, tamper: bool = False) -> dict[str, Any]:
    """Add issue 7's audit fields to profile.json: the resolved config with its hash among
    the inputs, the host, hostile FCS keywords and stain names."""
    from antigen_profile.report.audit_trail import canonical_sha256

    path = sample_dir / "profile.json"
    profile = json.loads(path.read_text(encoding="utf-8"))
    config = {**CONFIG, "results": "/data/results", "note": HOSTILE_STRINGS[3]}
    digest = canonical_sha256(config)
    profile["inputs"] = [i for i in profile["inputs"] if i["role"] != "config"] + [
        {"role": "config", "path": "(resolved configuration)", "sha256": digest}
    ]
    profile["config"] = {**config, "floors": {"detect": 1, "quantify": 2}} if tamper else config
    profile["host"] = "node-17.cluster"
    profile["fcs_keywords"] = {"$FIL": HOSTILE_STRINGS[0], "$CYT": HOSTILE_STRINGS[1]}
    profile["stains"] = {
        "PE-A": f"CD22 PE {HOSTILE_STRINGS[2]}",
        "FITC-A": f"CD20 {HOSTILE_STRINGS[3]}",
        "Time": "",
    }
    profile["markers"] = {"CD22": "PE-A", "CD20": "FITC-A", "CD45": "KrO-A"}
    path.write_text(json.dumps(profile), encoding="utf-8")
    return profile


def test_audit_trail_shows_config_host_keywords_and_stains(
    tmp_path: Path, fast_plots: None
) -> None:
    sample_dir = make_sample(tmp_path)
    profile = _audit_profile(sample_dir)
    html = render_sample_report(sample_dir, CONFIG)
    audit = html.split('id="audit"', 1)[1]
    assert "node-17.cluster" in audit
    keywords = dict(_table_by_id(html, "audit-keywords"))
    assert keywords == {"$FIL": HOSTILE_STRINGS[0], "$CYT": HOSTILE_STRINGS[1]}
    stains = _table_by_id(html, "audit-stains")
    assert stains[1:] == [
        ["PE-A", f"CD22 PE {HOSTILE_STRINGS[2]}", "CD22"],
        ["FITC-A", f"CD20 {HOSTILE_STRINGS[3]}", "CD20"],
        ["Time", "", DASH],
        ["KrO-A", "", "CD45"],  # a marker on a channel without a recorded stain
    ]
    config_text = html.split('<pre class="config">', 1)[1].split("</pre>", 1)[0]
    assert json.loads(html_lib.unescape(config_text)) == profile["config"]
    assert 'class="badge good">matches the config input&#39;s SHA-256' in audit
    assert '<details id="audit-config">' in audit  # folded away by default
    for text in HOSTILE_STRINGS[:3]:
        assert text not in html
    assert HOSTILE_STRINGS[3] in html  # non-ASCII is written as UTF-8, not mangled
    assert "matplotlib" in audit and "jinja2" in audit


def test_a_printed_config_that_was_not_the_run_one_is_red(tmp_path: Path, fast_plots: None) -> None:
    sample_dir = make_sample(tmp_path)
    _audit_profile(sample_dir, tamper=True)
    html = render_sample_report(sample_dir, CONFIG)
    assert 'class="badge bad">differs from the config input&#39;s SHA-256' in html
    html = render_sample_report(make_sample(tmp_path / "old"), CONFIG)
    assert "does not record the resolved configuration" in html


def _patient_files(root: Path, patient: str = "P01") -> None:
    """patients.tsv and patient_timeline.tsv: ``patient`` with two samples and a CD22 loss."""
    from antigen_profile.cohort import PATIENT_TABLE_COLUMNS as PATIENT_COLUMNS
    from antigen_profile.cohort import TIMELINE_COLUMNS

    _write_tsv(
        root / "patients.tsv",
        PATIENT_COLUMNS,
        [
            {"patient_id": patient, "samples": "P01-D,P01-R1", "timepoints": f"diagnosis,{HOSTILE}",
             "latest_sample_id": "P01-R1", "latest_timepoint": HOSTILE, "decision": "candidate",
             "eligible_targets": "CD10", "recommended_combination": "CD10",
             "antigen_loss": "CD22 fell 60 points to 31% (P01-R1, relapse)",
             "review_reasons": "a; b"},
            {"patient_id": "P02", "samples": "P02-R1", "timepoints": "", "latest_sample_id":
             "P02-R1", "decision": "needs_review"},
        ],
    )  # fmt: skip
    rows = []
    for order, (sample_id, timepoint, cd22, loss) in enumerate(
        [("P01-D", "diagnosis", 91.0, False), ("P01-R1", HOSTILE, 31.0, True)], start=1
    ):
        for marker, pct in (("CD22", cd22), ("CD10", 47.0), ("CD19", None)):
            rows.append(
                {"patient_id": patient, "sample_id": sample_id, "timepoint": timepoint,
                 "order": order, "marker": marker, "pct_positive": pct,
                 "call": "positive" if pct else "insufficient_events",
                 "abc_median": 4000.0 if marker == "CD22" else None,
                 "change_points": -60.0 if loss and marker == "CD22" else None,
                 "loss": loss and marker == "CD22"}
            )  # fmt: skip
    _write_tsv(root / "patient_timeline.tsv", TIMELINE_COLUMNS, rows)


def _cohort_rows() -> pd.DataFrame:
    base = {"blast_events": 24800, "cd19_status": "negative", "antigen_status": "ok",
            "clinical_status": "eligible", "clinical_reasons": ""}  # fmt: skip
    return _recommendations(
        [
            {**base, "sample_id": "P01-D", "patient_id": "P01", "decision": "candidate",
             "blast_pct_leukocytes": 62.0, "eligible_targets": "CD10,CD22"},
            {**base, "sample_id": "P01-R1", "patient_id": "P01", "decision": "candidate",
             "blast_pct_leukocytes": 8.5, "eligible_targets": "CD10"},
            {**base, "sample_id": "P02-R1", "patient_id": "P02", "decision": "needs_review",
             "blast_pct_leukocytes": None, "eligible_targets": ""},
        ]
    )  # fmt: skip


def test_cohort_heatmap_reads_each_antigens_tsv(tmp_path: Path) -> None:
    make_sample(tmp_path, "P01-D", n_events=50)
    make_sample(tmp_path, "P01-R1", n_events=50)
    make_failed_sample(tmp_path, "P02-R1")
    html = render_cohort_report(tmp_path, _cohort_rows(), CONFIG)
    figure = html.split('<figure id="cohort-heatmap"', 1)[1].split("</figure>", 1)[0]
    (png,) = png_images(figure)
    assert png.startswith(PNG_SIGNATURE)
    values = html.split('<details id="heatmap-values">', 1)[1].split("</details>", 1)[0]
    table = tables(values)[0]
    assert table[0] == ["Specimen", *CONFIG["quantified"]]
    rows = {row[0]: row[1:] for row in table[1:]}
    # CD38 has no reference and CD20 too few events: no number, never a zero
    assert rows["P01-D"] == [
        "2.0 negative", "91.0 positive", "5.0 negative", f"{DASH} no_reference", "47.0 partial",
        f"{DASH} insufficient_events",
    ]  # fmt: skip
    assert rows["P02-R1"] == [DASH] * 6  # QC failed: header-only antigens.tsv


def test_cohort_table_carries_sort_keys_and_qc(tmp_path: Path, fast_plots: None) -> None:
    make_sample(tmp_path, "P01-D", n_events=50)
    make_failed_sample(tmp_path, "P02-R1")
    html = render_cohort_report(tmp_path, _cohort_rows(), CONFIG)
    body = html.split('<table id="samples-table"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<tr data-decision="(\w*)">', body) == [
        "candidate", "candidate", "needs_review",
    ]  # fmt: skip
    assert re.findall(r'<td class="num" data-sort="([^"]*)">[\d.,\u2014]+</td><td>', body) == [
        "62.0", "8.5", "",
    ]  # fmt: skip
    assert body.count('data-type="num"') == 4
    qc = [row[-2] for row in table_starting_with(html, "Specimen", "Patient")[1:]]
    assert qc == ["warn 1 warning", DASH, "fail"]
    assert '<select id="decision-filter">' in html and 'id="sample-filter"' in html


def test_cohort_script_is_allowed_by_its_hash_only(tmp_path: Path) -> None:
    import hashlib

    html = render_cohort_report(tmp_path, _cohort_rows(), CONFIG)
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = html_lib.unescape(re.search(r'Content-Security-Policy" content="([^"]+)"', html)[1])
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "fetch(" not in script and "XMLHttpRequest" not in script and "innerHTML" not in script
    assert_no_external_urls(html, scripts=1)


def test_cohort_patients_section_flags_loss_in_red(tmp_path: Path) -> None:
    make_sample(tmp_path, "P01-D", n_events=50)
    _patient_files(tmp_path, patient=HOSTILE)
    html = render_cohort_report(tmp_path, _cohort_rows(), CONFIG)
    patients = _table_by_id(html, "patients-table")
    assert patients[0][:3] == ["Patient", "Specimens", "Timepoints"]
    assert patients[1][0] == HOSTILE and patients[1][2] == f"diagnosis, {HOSTILE}"
    assert patients[1][6] == "CD22 fell 60 points to 31% (P01-R1, relapse)"
    assert patients[1][7] == "a; b"  # a reason holding the separator is not cut in two
    assert patients[2][6] == "none" and patients[2][2] == DASH
    assert re.search(r'<tr class="loss"><td>[^<]*</td>', html)
    assert '<ul class="plain lossnote">' in html
    section = html.split('id="patients"', 1)[1]
    assert re.findall(r'href="([^"]+)"', section.split("</table>", 1)[0]) == [
        "P01-D/report.html", "P01-R1/report.html", "P02-R1/report.html",
    ]  # fmt: skip
    figure = section.split('<figure id="timeline-1">', 1)[1].split("</figure>", 1)[0]
    assert png_images(figure)[0].startswith(PNG_SIGNATURE)
    assert "Loss: CD22 at P01-R1." in figure
    assert 'id="timeline-2"' not in html  # P02 has one sample only
    assert HOSTILE not in html and ESCAPED in html
    assert_no_external_urls(html, scripts=1)


def test_cohort_without_patient_files_says_so(tmp_path: Path, fast_plots: None) -> None:
    html = render_cohort_report(tmp_path, _cohort_rows(), CONFIG)
    assert "patients.tsv not found" in html and "patient_timeline.tsv not found" in html
    assert 'id="heatmap-note"' in html  # no antigens.tsv anywhere: nothing to draw


def test_cohort_heatmap_figure_greys_missing_numbers() -> None:
    values = np.array([[2.0, np.nan], [95.0, 40.0]])
    fig = plots.cohort_heatmap_figure(["S1", "$S_2$"], ["CD19", "CD22"], values)
    assert fig is not None
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    assert np.ma.getmaskarray(image).tolist() == [[False, True], [False, False]]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["2", DASH, "95", "40"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["S1", "$S_2$"]
    assert plots.cohort_heatmap_figure([], ["CD19"], np.empty((0, 1))) is None
    assert plots.cohort_heatmap_plot(["S1"], ["CD19"], np.array([[50.0]])).startswith(
        "data:image/png;base64,"
    )


def test_patient_timeline_figure_draws_losses_red() -> None:
    fig = plots.patient_timeline_figure(
        "P01",
        ["P01-D\ndiagnosis", "P01-R1\nrelapse", "P01-F"],
        {"CD22": [91.0, 31.0, None], "CD10": [47.0, None, 50.0]},
        losses={"CD22": [False, True, False], "CD10": [False, False, False]},
        density={"CD22": [4000.0, 900.0, None], "CD10": [None, None, None]},
    )
    assert fig is not None and len(fig.axes) == 2  # % positive and density panels
    red = [
        line
        for line in fig.axes[0].get_lines()
        if to_rgba(line.get_color()) == to_rgba(plots.LOSS_COLOUR)
    ]
    assert red, "the fall must be drawn in red"
    assert any(t.get_text() == "CD22 loss" for t in fig.axes[0].texts)
    # CD10 is connected across the unmeasured sample: two points, one line
    cd10 = next(line for line in fig.axes[0].get_lines() if line.get_label() == "CD10")
    assert list(cd10.get_xdata()) == [0, 2]
    assert plots.patient_timeline_figure("P01", ["one"], {"CD22": [1.0]}) is None
    no_density = plots.patient_timeline_figure("P01", ["a", "b"], {"CD22": [1.0, 2.0]})
    assert no_density is not None and len(no_density.axes) == 1


# --------------------------------------------------------------------------- specimens (issue 16)

#: A split specimen's tubes: A and B analysed (both measured CD19, A with fewer blasts), C
#: failed QC and its CD20 is unknown.
SPLIT_TUBES = ("S1-A", "S1-B", "S1-C")
#: The default configuration's B-lineage markers and timepoints, for the specimen step.
SPECIMEN_CONFIG: dict[str, Any] = {
    **CONFIG,
    "b_lineage_markers": ["CD19", "CD22", "CD10", "CD20", "CD24", "CD79a"],
    "timepoints": {"order": ["diagnosis", "relapse"], "loss_points": 30},
}
TRIAL_FILE = Path(__file__).resolve().parents[1] / "config" / "trials" / "4scar.yaml"


def _antigen(tube: str, marker: str, pct: float | None, call: str, **extra: Any) -> dict[str, Any]:
    """One antigens.tsv row of a fake specimen (interval of +-0.6 points around ``pct``)."""
    events = {"S1-A": 9000, "S1-B": 12000}.get(tube)
    row = {
        "sample_id": tube,
        "population": "blasts",
        "marker": marker,
        "events": events,
        "positive_events": None if pct is None or events is None else round(events * pct / 100),
        "pct_positive": pct,
        "pct_ci_low": None if pct is None else pct - 0.6,
        "pct_ci_high": None if pct is None else pct + 0.6,
        "threshold_source": "control:blasts",
        "call": call,
    }
    return row | extra


def make_specimen(root: Path, specimen_id: str = "S1", text: str = "gate drift") -> dict[str, Path]:
    """``specimens/{specimen_id}/`` of a three-tube specimen as the specimen step writes it,
    with ``text`` in every free-text field (failure, flag messages, notes, reasons, patient id
    and timepoint); returns the files by key (``render_specimen_report``'s argument)."""
    a, b, c = SPLIT_TUBES
    folder = root / "specimens" / specimen_id
    folder.mkdir(parents=True)
    failure = f"QC failed: {text}"
    why_cd20 = f"{c} not analysed: {failure}"
    antigens = [
        _antigen(b, "CD19", 3.0, "negative"),
        _antigen(a, "CD22", 91.0, "positive", intensity="bright"),
        _antigen(b, "CD123", 40.0, "partial"),
        _antigen(b, "CD38", None, "no_reference", note=f"in {b}: no valid reference ({text})"),
        _antigen(a, "CD10", 47.0, "partial"),
        {"sample_id": c, "population": "blasts", "marker": "CD20", "call": "not_measured",
         "note": why_cd20},
    ]  # fmt: skip
    _write_tsv(folder / "antigens.tsv", ANTIGEN_COLUMNS, antigens)
    coverage = [
        (a, "CD22", 1, 91.0, 91.0, a),
        (b, "CD123", 1, 40.0, 40.0, b),
        (a, "CD10", 1, 47.0, 47.0, a),
        (a, "CD22+CD10", 2, 93.0, 93.0, a),
        (a, "CD22+CD123", 2, 91.0, 100.0, ""),
        (a, "CD123+CD10", 2, 47.0, 87.0, ""),
        (a, "CD22+CD123+CD10", 3, 93.0, 100.0, ""),
    ]
    _write_tsv(
        folder / "coverage.tsv",
        [*COVERAGE_COLUMNS, "covered_pct_high", "measured_together"],
        [
            {"sample_id": tube, "combination": name, "n_products": n, "blasts": 9000,
             "covered_pct": low, "uncovered_pct": round(100 - low, 2),
             "uncovered_ci_low": round(99.4 - low, 2), "uncovered_ci_high": round(100.6 - low, 2),
             "covered_pct_high": high, "measured_together": together}
            for tube, name, n, low, high, together in coverage
        ],
    )  # fmt: skip
    measurements = [
        _antigen(a, "CD19", 8.0, "negative"),
        *(r for r in antigens if r["marker"] in {"CD19", "CD22", "CD123", "CD10"}),
    ]
    tubes = [
        {"sample_id": a, "qc_status": "pass", "analysed": True, "failure": None,
         "blast_events": 9000, "leukocyte_events": 30000, "blast_pct_leukocytes": 30.0,
         "measured": ["CD19", "CD22", "CD10"]},
        {"sample_id": b, "qc_status": "warn", "analysed": True, "failure": None,
         "blast_events": 12000, "leukocyte_events": 34000, "blast_pct_leukocytes": 35.2941,
         "measured": ["CD19", "CD123"]},
        {"sample_id": c, "qc_status": "fail", "analysed": False, "failure": failure,
         "blast_events": 0, "leukocyte_events": 0, "blast_pct_leukocytes": None, "measured": []},
    ]  # fmt: skip
    flags = [
        {"code": "tubes_disagree", "message": f"CD19: 8.0% positive in {a} but 3.0% in {b} "
         f"(95% intervals do not overlap); the specimen uses {b} ({text})"},
        {"code": "blast_share_disagrees", "message": f"blasts are 30.0% of leukocytes in {a} "
         f"but 35.3% in {b} ({text})"},
        {"code": "tube_not_analysed", "message": f"{c} not analysed ({failure}): the targets "
         "only it stained are unknown for the specimen"},
    ]  # fmt: skip
    (folder / "specimen.json").write_text(
        json.dumps(
            {
                "specimen_id": specimen_id,
                "tubes": tubes,
                "value_rule": "the tube with the most blast events",
                "measurements": measurements,
                "measured_together": ["CD10", "CD123", "CD22", "CD22+CD10"],
                "flags": flags,
                "unmeasured": {"CD38": antigens[3]["note"], "CD20": why_cd20},
            }
        ),
        encoding="utf-8",
    )
    rules = [
        {"id": f"target_{t}", "kind": "antigen", "target": t, "text": f"{t} on at least 20% of "
         "blasts", "field": "pct_positive", "op": ">=", "threshold": 20.0, "value": v,
         "outcome": outcome, "note": note, "near_cutoff": False}
        for t, v, outcome, note in (
            ("CD22", 91.0, "pass", None), ("CD123", 40.0, "pass", None),
            ("CD38", None, "unknown", f"CD38 call is no_reference: {antigens[3]['note']}"),
            ("CD10", 47.0, "pass", None),
            ("CD20", None, "unknown", f"CD20 call is not_measured: {why_cd20}"),
        )
    ]  # fmt: skip
    (folder / "decision.json").write_text(
        json.dumps(
            {
                "sample_id": None,
                "specimen_id": specimen_id,
                "tubes": list(SPLIT_TUBES),
                "patient_id": f"P07 {text}",
                "timepoint": f"relapse {text}",
                "trial": {"name": "4SCAR", "version": "1.0", "targets": TARGETS,
                          "max_products": 2, "min_coverage_pct": 90.0},
                "blast_events": 12000,
                "blast_pct_leukocytes": 35.2941,
                "cd19_status": "negative",
                "eligible_targets": ["CD22", "CD123", "CD10"],
                "unknown_targets": ["CD38", "CD20"],
                "antigen_status": "ok",
                "antigen_reasons": [],
                "clinical_status": "undetermined",
                "clinical_reasons": [f"Haemoglobin above 80 g/L: unknown ({text})"],
                "decision": "needs_review",
                "decision_reasons": [f"Needs review: 2 target(s) unknown ({text})"],
                "review_reasons": [f"CD22+CD123 stained in different tubes ({text})"],
                "qc_status": "warn",
                "rules": rules,
                "combination": {
                    "label": "CD22+CD123", "combination": ["CD22", "CD123"], "n_products": 2,
                    "coverage_pct": 91.0, "uncovered_pct": 9.0, "uncovered_ci_low": 8.4,
                    "uncovered_ci_high": 9.6, "confidence": 0.95, "max_products": 2,
                    "min_coverage_pct": 90.0, "best_combination": ["CD22", "CD123"],
                    "best_coverage_pct": 91.0, "reason": f"the smallest that covers ({text})",
                },
            }
        ),
        encoding="utf-8",
    )  # fmt: skip
    return {k: folder / n for k, n in SPECIMEN_FILES.items() if k != "report"}


def _rows_by_first(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row for row in table[1:]}


def test_specimen_report_shows_its_tubes_values_and_bounds(tmp_path: Path) -> None:
    html = render_specimen_report(make_specimen(tmp_path), CONFIG)
    assert_no_external_urls(html, scripts=0)
    csp = html_lib.unescape(re.search(r'Content-Security-Policy" content="([^"]+)"', html)[1])
    assert "script-src 'none'" in csp
    assert "Specimen: S1" in html and 'id="split-panel"' in html
    # the tubes: QC, analysed or why not, blasts, what each measured; each linked to its report
    tubes = _rows_by_first(_table_by_id(html, "tubes-table"))
    assert list(tubes) == list(SPLIT_TUBES)
    assert tubes["S1-A"][1:] == ["pass", "yes", "9,000", "30,000", "30.0", "CD19 CD22 CD10"]
    assert tubes["S1-C"][1:3] == ["fail", "not analysed QC failed: gate drift"]
    assert tubes["S1-C"][-1] == "nothing"
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert {f"../../{t}/report.html" for t in SPLIT_TUBES} <= set(hrefs)
    # antigens: the tube each number comes from, every tube's value where several measured it
    antigens = _rows_by_first(_table_by_id(html, "antigens-table"))
    assert antigens["CD19"][1:6] == ["S1-B", "12,000", "360", "3.0% (2.4\u20133.6)", "negative"]
    every = antigens["CD19"][6]  # list items, joined by the table parser
    assert every.startswith("S1-A: 8.0% (7.4\u20138.6) negative of 9,000 blasts")
    assert "S1-B: 3.0% (2.4\u20133.6) negative of 12,000 blasts, used" in every
    assert every.endswith("tubes disagree") and every.count("used") == 1
    assert antigens["CD22"][1] == "S1-A" and antigens["CD22"][6] == "one tube"
    assert antigens["CD38"][4:6] == [DASH, "no_reference"]  # no number without a reference
    assert antigens["CD20"][1:6] == ["S1-C", DASH, DASH, DASH, "not_measured"]
    assert antigens["CD20"][7] == "S1-C not analysed: QC failed: gate drift"
    rule = _text(_between(html, 'id="value-rule"', "</p>"))
    assert "takes the value of the tube with the most blast events" in rule
    assert "Measured in more than one tube: CD19." in rule
    # targets: eligible, and unknown with why
    targets = _rows_by_first(_table_by_id(html, "targets-table"))
    assert targets["CD22"][1:4] == ["eligible", "91.0% (90.4\u201391.6)", "S1-A"]
    assert targets["CD20"][1] == "unknown"
    assert (
        targets["CD20"][-1] == "CD20 call is not_measured: S1-C not analysed: QC failed: gate drift"
    )
    unknown = _text(_between(html, 'id="unknown-targets"', "</ul>"))
    assert "CD38 CD38 call is no_reference" in unknown and "CD20 CD20 call is" in unknown
    assert "CD22+CD123 stained in different tubes (gate drift)" in _between(
        html, 'id="review-reasons"', "</div>"
    )
    # coverage: measured together in a tube, or bounded across tubes; pairs first
    short = _rows_by_first(_table_by_id(html, "coverage-short"))
    assert short["CD22"][2:] == [
        "91.00",
        "91.00",
        "9.00 (8.40\u20139.60)",
        "measured together in S1-A",
    ]
    assert short["CD22 + CD123 recommended"][2:4] == ["91.00", "100.00"]
    assert short["CD22 + CD123 recommended"][5] == (
        "stained in different tubes bounds 91.00\u2013100.00%"
    )
    assert "CD22 + CD123 + CD10" not in short
    full = _rows_by_first(_table_by_id(html, "coverage-all"))
    assert full["CD22 + CD123 + CD10"][2:4] == ["93.00", "100.00"]
    box = _text(_between(html, 'id="combination-box"', "</table>"))
    assert "stained in different tubes: between 91.00% and 100.00%" in box
    summary = _text(_summary(html))
    assert "covers 91.00% of blasts at least (stained in different tubes)" in summary
    # flags: the blast-share disagreement is red and comes first
    boxes = FLAG_BOX.findall(_flags(html))
    assert [(css, code) for css, _, code, _ in boxes] == [
        ("bad", "blast_share_disagrees"), ("warn", "tubes_disagree"), ("warn", "tube_not_analysed"),
    ]  # fmt: skip
    assert '<span class="badge bad">3 flags</span>' in _between(html, 'id="summary-flags"', "</td>")


def test_specimen_report_escapes_every_free_text(tmp_path: Path) -> None:
    """Failure reasons, flag messages, notes, patient reasons, ids of the patient and the
    timepoint: text on the page, never markup."""
    for i, text in enumerate(HOSTILE_STRINGS):
        html = render_specimen_report(make_specimen(tmp_path / str(i), text=text), CONFIG)
        assert_no_external_urls(html, scripts=0)
        if text != HOSTILE_STRINGS[-1]:
            assert text not in html, text
        seen = _text(html)
        for expected in (
            f"not analysed QC failed: {text}",  # the failure, in the tubes table
            f"the specimen uses S1-B ({text})",  # a flag message
            f"in S1-B: no valid reference ({text})",  # an antigen's note
            f"Haemoglobin above 80 g/L: unknown ({text})",  # a patient reason
            f"CD22+CD123 stained in different tubes ({text})",  # a review reason
            f"Patient P07 {text}",
            f"Timepoint relapse {text}",
            f"the smallest that covers ({text})",
        ):
            assert expected in seen, expected
    assert "\u00dcn\u00efc\u00f8d\u00e9 \u6297\u539f" in html  # UTF-8 kept as text


def _tube_for_specimen(root: Path, sample_id: str, status: str = "warn") -> Path:
    """A tube's result folder (small: its plots are not drawn here) with QC ``status``."""
    folder = make_sample(root, sample_id, n_events=50)
    qc = json.loads((folder / "qc.json").read_text(encoding="utf-8"))
    if status == "fail":
        qc |= {"status": "fail", "reasons": [f"only 812 events {HOSTILE}"]}
    (folder / "qc.json").write_text(json.dumps(qc), encoding="utf-8")
    return folder


def _decide_specimen(
    root: Path, specimen_id: str, tubes: Sequence[str], timepoint: str = "relapse"
) -> dict[str, Any]:
    """The specimen step on tube folders under ``root``, as the workflow runs it."""
    from antigen_profile.steps import decide_specimen

    return decide_specimen(
        specimen_id,
        {t: root / t for t in tubes},
        "P01",
        None,
        TRIAL_FILE,
        SPECIMEN_CONFIG,
        root / "specimens" / specimen_id,
        timepoint=timepoint,
    )


def test_specimen_report_of_the_specimen_step_lists_every_tubes_value(
    tmp_path: Path, fast_plots: None
) -> None:
    """Two full-panel tubes merged by the real specimen step: every antigen measured twice,
    each with both tubes' values, the one used marked."""
    for tube in ("S2-A", "S2-B"):
        _tube_for_specimen(tmp_path, tube)
    decision = _decide_specimen(tmp_path, "S2", ["S2-A", "S2-B"])
    folder = tmp_path / "specimens" / "S2"
    html = render_specimen_report({k: folder / SPECIMEN_FILES[k] for k in SPECIMEN_WRITES}, CONFIG)
    assert_no_external_urls(html, scripts=0)
    antigens = _rows_by_first(_table_by_id(html, "antigens-table"))
    measured = [m for m, row in antigens.items() if row[3] != DASH]
    assert measured and all(
        "S2-A:" in antigens[m][6] and "S2-B:" in antigens[m][6] for m in measured
    )
    assert all(antigens[m][6].count(", used") == 1 for m in measured)
    assert f"Measured in more than one tube: {', '.join(measured)}." in _text(html)
    assert decision["decision"] in _text(_summary(html))
    # each tube's own flags are the specimen's, named after their tube
    assert "S2-A: blasts: CD10 + not applied" in _text(_flags(html))


def test_one_tube_specimen_page_links_to_its_tube(tmp_path: Path, fast_plots: None) -> None:
    _tube_for_specimen(tmp_path, "P01-R1")
    _decide_specimen(tmp_path, "P01-R1", ["P01-R1"])
    folder = tmp_path / "specimens" / "P01-R1"
    html = render_specimen_report({k: folder / SPECIMEN_FILES[k] for k in SPECIMEN_WRITES}, CONFIG)
    note = _between(html, 'id="one-tube"', "</div>")
    assert '<a href="../../P01-R1/report.html">P01-R1</a>' in note
    assert 'id="split-panel"' not in html and 'id="id-mismatch"' not in html
    assert_no_external_urls(html, scripts=0)


def test_specimen_files_that_disagree_are_an_alert(tmp_path: Path) -> None:
    files = make_specimen(tmp_path)
    decision = json.loads(files["decision"].read_text(encoding="utf-8"))
    decision |= {"specimen_id": "S9", "tubes": ["S1-A", "S1-B"]}
    files["decision"].write_text(json.dumps(decision), encoding="utf-8")
    alert = _text(_between(render_specimen_report(files, CONFIG), 'id="id-mismatch"', "</div>"))
    assert "specimen S1 vs S9; tubes S1-A, S1-B, S1-C vs S1-A, S1-B" in alert


def test_specimen_report_needs_its_files(tmp_path: Path) -> None:
    files = make_specimen(tmp_path)
    files["specimen"].unlink()
    with pytest.raises(FileNotFoundError, match=r"specimen\.json"):
        render_specimen_report(files, CONFIG)
    files = make_specimen(tmp_path / "old")
    files["coverage"].unlink()  # optional: said, not raised
    html = render_specimen_report(files, CONFIG)
    assert "coverage.tsv not found." in html


def test_a_tube_of_a_split_specimen_points_to_the_specimen(
    tmp_path: Path, fast_plots: None
) -> None:
    folder = make_sample(tmp_path, "S1-A", n_events=50)
    decision = json.loads((folder / "decision.json").read_text(encoding="utf-8"))
    (folder / "decision.json").write_text(
        json.dumps(decision | {"specimen_id": "S1"}), encoding="utf-8"
    )
    html = render_sample_report(folder, CONFIG)
    note = _between(html, 'id="specimen-note"', "</div>")
    assert note.count('href="../specimens/S1/report.html"') == 2
    assert "The patient's recommendation is the specimen's" in _text(note)
    assert html.index('id="specimen-note"') < html.index('id="summary"')
    # a tube that is its own specimen, or a decision older than specimens: no note
    for own in ({"specimen_id": "S1-A"}, {}):
        (folder / "decision.json").write_text(json.dumps(decision | own), encoding="utf-8")
        assert 'id="specimen-note"' not in render_sample_report(folder, CONFIG)


def test_cohort_rows_are_specimens(tmp_path: Path, fast_plots: None) -> None:
    """A split specimen's row links to the specimen's report and each tube to its own; its
    flags are the specimen's, its QC the worst tube's, its heat map row the merged values;
    the patient's timeline has one point per specimen, not per tube."""
    from antigen_profile.steps import write_cohort_table

    _tube_for_specimen(tmp_path, "P01-R1")
    _tube_for_specimen(tmp_path, "S1-A")
    _tube_for_specimen(tmp_path, "S1-B", status="fail")
    _decide_specimen(tmp_path, "P01-R1", ["P01-R1"])
    _decide_specimen(tmp_path, "S1", ["S1-A", "S1-B"], timepoint="diagnosis")
    folders = [tmp_path / "specimens" / s for s in ("P01-R1", "S1")]
    write_cohort_table([f / "decision.json" for f in folders], tmp_path, SPECIMEN_CONFIG)
    table = pd.read_csv(
        tmp_path / "recommendations.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    html = render_cohort_report(tmp_path, table, CONFIG)
    assert_no_external_urls(html, scripts=1)

    rows = _rows_by_first(table_starting_with(html, "Specimen", "Patient"))
    split = "S1 (2 tubes)S1-AS1-B"  # the tubes listed under the specimen (parser joins them)
    assert list(rows) == ["P01-R1", split]
    body = _between(html, '<table id="samples-table"', "</table>")
    assert re.findall(r'<a href="([^"]+)">', body) == [
        "P01-R1/report.html", "specimens/S1/report.html", "S1-A/report.html", "S1-B/report.html",
    ]  # fmt: skip
    assert re.findall(r'<td data-sort="([^"]*)">', body) == ["P01-R1", "S1"]
    specimen = json.loads((folders[1] / "specimen.json").read_text(encoding="utf-8"))
    assert rows[split][-3] == str(len(specimen["flags"]))  # specimen.json's flags
    assert any(f["code"] == "tube_not_analysed" for f in specimen["flags"])
    assert rows[split][-2] == "fail 2 warnings S1-A: warn, S1-B: fail"
    assert rows["P01-R1"][-2] == "warn 1 warning"
    # the heat map row of S1: the merged antigens.tsv (S1-B failed: S1-A's numbers)
    values = _rows_by_first(
        tables(_between(html, '<details id="heatmap-values">', "</details>"))[0]
    )
    merged = pd.read_csv(folders[1] / "antigens.tsv", sep="\t").set_index("marker")
    assert values["S1"][2] == f"{merged.loc['CD22', 'pct_positive']:.1f} positive"
    assert set(merged.dropna(subset=["pct_positive"])["sample_id"]) == {"S1-A"}
    # one patient, two specimens in timepoint order, each point one specimen
    figure = _text(_between(html, '<figure id="timeline-1">', "</figure>"))
    assert "P01 : S1 (diagnosis) \u2192 P01-R1 (relapse)." in figure
    patients = _table_by_id(html, "patients-table")
    links = re.findall(r'href="([^"]+)"', _between(html, '<table id="patients-table"', "</table>"))
    assert links == ["specimens/S1/report.html", "P01-R1/report.html"]
    assert patients[1][1] == "S1, P01-R1"
