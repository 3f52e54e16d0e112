"""Reports a reviewer can trust, on a real workflow run (issue 7).

One small cohort goes through ``snakemake`` as users run it. Every string a file or a sheet
brings into the reports is hostile: the FCS keywords ($FIL, $CYT, every $PnS), the file names
of the stained, control and bead tubes, the patient ids and the timepoints (sample ids cannot
be: the sheet's schema refuses them). The tests check that

- the reports show each of them as text, escaped, with non-ASCII intact (b); among them a
  specimen split over two tubes (issue 16), one unreadable under a hostile file name, so its
  failure reason, the flags, the notes of the antigens it left unmeasured and the rules' notes
  all carry hostile text into the specimen's report;
- ``snakemake --report`` packs the per-sample reports and the key tables with their captions;
- a second run on the same inputs writes byte-identical tables and identical audit hashes,
  the profile's ``created`` time stamp being the only difference (c).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from test_workflow import snakemake  # the workflow run the README way, shared

from antigen_profile.simulate import Lognormal, demo_tube_events, demo_tube_spec, write_fcs
from antigen_profile.split_panel import (
    SPLIT_CONTROL_EVENTS,
    SPLIT_EVENTS,
    TWO_TUBES,
    split_tube_events,
    split_tube_spec,
)

pytestmark = pytest.mark.workflow

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
QUOTES = "it's \"quoted\" & 'x'"
UNICODE = "\u00dcn\u00efc\u00f8d\u00e9 \u6297\u539f"
HOSTILE = (SCRIPT, IMG, QUOTES, UNICODE)
#: Hostile strings that must never appear raw (the non-ASCII one must, as UTF-8 text).
DANGEROUS = (SCRIPT, IMG, QUOTES)

#: sample_id, patient_id, demo tube, timepoint, file name stem. One patient with two samples
#: (P03's tube at diagnosis, P01's at relapse: CD20 falls from 35% to 0.5%, a loss).
SAMPLES = (
    ("H1-D", SCRIPT, "P03-R1", UNICODE, f"dx {IMG}"),
    ("H1-R1", SCRIPT, "P01-R1", IMG, f"rel {UNICODE}"),
    ("H2-R1", QUOTES, "P02-R1", "relapse", f"q {QUOTES}"),
)
#: A specimen split over two tubes of patient QUOTES (demo P08's panel): tube A readable, tube B
#: unreadable (its hostile file name in the failure reason); sample_id, file name stem (no
#: "/" in a file name: SCRIPT goes in the timepoint).
SPLIT_ID = "H3-R1"
SPLIT_TIMEPOINT = f"dx {SCRIPT}"
SPLIT_TUBES = ((f"{SPLIT_ID}-A", f"split a {QUOTES}"), (f"{SPLIT_ID}-B", f"split b {IMG}"))
#: The files a run writes that must repeat byte for byte (profile.json: all but ``created``).
TABLE_SUFFIXES = (".tsv", ".json", ".xml")


def _hostile_labels(labels: list[str]) -> list[str]:
    """Every stain name ($PnS) followed by a hostile string: markers are still found."""
    return [
        f"{label} {HOSTILE[i % len(HOSTILE)]}" if label else label for i, label in enumerate(labels)
    ]


def _write_tube(path: Path, name: str, events: np.ndarray | None = None) -> Path:
    """A demo tube with hostile $FIL, $CYT and $PnS (its events and spillover unchanged)."""
    spec, _ = demo_tube_spec(name)
    if events is None:
        events, _ = demo_tube_events(name)
    keywords = {**spec.keywords(), "$FIL": f"{SCRIPT} {UNICODE}", "$CYT": f"{IMG} {QUOTES}"}
    channels = [c.name for c in spec.channels]
    labels = _hostile_labels([c.label or "" for c in spec.channels])
    return write_fcs(path, events, channels, labels, keywords)


def _write_split_tube(path: Path, control: bool = False) -> Path:
    """Tube A of demo P08's split panel (backbone, CD19, CD22, CD10) with hostile $FIL, $CYT
    and $PnS, as :func:`_write_tube` writes a full-panel one."""
    tube = TWO_TUBES[0]
    spec = split_tube_spec("P08-R1", tube, control)
    events = SPLIT_CONTROL_EVENTS if control else SPLIT_EVENTS
    data, _ = split_tube_events("P08-R1", tube, events, control, SPLIT_ID)
    keywords = {**spec.keywords(), "$FIL": f"{SCRIPT} {UNICODE}", "$CYT": f"{IMG} {QUOTES}"}
    labels = _hostile_labels([c.label or "" for c in spec.channels])
    return write_fcs(path, data, [c.name for c in spec.channels], labels, keywords)


def _write_beads(path: Path) -> Path:
    """QuantiBRITE-style PE beads (four levels, 0.25 MFI per molecule) with a hostile $FIL."""
    rng = np.random.default_rng(3)
    beads = []
    for molecules in (474, 5359, 23843, 62336):
        pe = Lognormal(0.25 * molecules, 0.06).draw(rng, 3000) + rng.normal(0, 15, 3000)
        beads.append(
            np.column_stack([rng.normal(60e3, 2e3, 3000), rng.normal(25e3, 1e3, 3000), pe])
        )
    keywords = {"$P1R": "262144", "$P2R": "262144", "$P3R": "262144", "$FIL": SCRIPT}
    return write_fcs(path, np.vstack(beads), ["FSC-A", "SSC-A", "PE-A"], None, keywords)


def _sheets(folder: Path) -> tuple[Path, Path]:
    """The tubes (hostile file names), samples.tsv and patients.tsv in ``folder``; cells with a
    double quote are quoted, as a spreadsheet exports them."""
    tubes = folder / "tubes"
    rows = []
    for sample_id, patient_id, tube, timepoint, stem in SAMPLES:
        _write_tube(tubes / f"{stem}.fcs", tube)
        _write_tube(tubes / f"{stem} control.fcs", f"{tube}_control")
        beads = ""
        if sample_id == "H1-R1":  # one calibrated sample: density, and a beads input hash
            beads = f"tubes/{_write_beads(tubes / f'beads {IMG}.fcs').name}"
        rows.append(
            {
                "sample_id": sample_id,
                "patient_id": patient_id,
                "fcs": f"tubes/{stem}.fcs",
                "control_fcs": f"tubes/{stem} control.fcs",
                "bead_fcs": beads,
                "timepoint": timepoint,
                "specimen_id": "",
            }
        )
    (a, a_stem), (b, b_stem) = SPLIT_TUBES
    _write_split_tube(tubes / f"{a_stem}.fcs")
    _write_split_tube(tubes / f"{a_stem} control.fcs", control=True)
    (tubes / f"{b_stem}.fcs").write_bytes(b"not an FCS file")
    for sample_id, stem, control in ((a, a_stem, f"tubes/{a_stem} control.fcs"), (b, b_stem, "")):
        rows.append(
            {
                "sample_id": sample_id,
                "patient_id": QUOTES,
                "fcs": f"tubes/{stem}.fcs",
                "control_fcs": control,
                "bead_fcs": "",
                "timepoint": SPLIT_TIMEPOINT,
                "specimen_id": SPLIT_ID,
            }
        )
    samples = folder / "samples.tsv"
    pd.DataFrame(rows).to_csv(samples, sep="\t", index=False)
    facts = {
        "age_years": 30, "kps": 90, "hgb_g_per_l": 110, "life_expectancy_months": 8,
        "prior_anti_cd19": "yes", "active_infection": "no", "hiv": "no", "hbv_hcv_active": "no",
        "pregnant_or_nursing": "no", "systemic_steroids_last_7d": "no",
    }  # fmt: skip
    patients = folder / "patients.tsv"
    pd.DataFrame([{"patient_id": p, **facts} for p in (SCRIPT, QUOTES)]).to_csv(
        patients, sep="\t", index=False
    )
    return samples, patients


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The hostile cohort run through Snakemake once (about 50 s); the tests share it."""
    folder = tmp_path_factory.mktemp("hostile")
    samples, patients = _sheets(folder)
    results = folder / "results"
    config = [
        "--config",
        f"samples={samples}",
        f"patients={patients}",
        f"results={results}",
    ]
    done = snakemake(*config)
    assert done.returncode == 0, done.stderr[-4000:]
    yield {"folder": folder, "results": results, "config": config}


class _Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str, scripts: int) -> None:
    """No hostile string raw, no injected element or handler, images only as data: URIs."""
    for text in DANGEROUS:
        assert text not in html, f"{text!r} is in the report unescaped"
    parser = _Elements()
    parser.feed(html)
    assert [t for t, _ in parser.tags if t == "script"] == ["script"] * scripts
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert str(attrs.get("src")).startswith("data:image/png;base64,"), attrs
        if tag == "script":
            assert "src" not in attrs


def test_hostile_strings_show_as_text_in_the_sample_report(run: dict[str, Any]) -> None:
    html = (run["results"] / "H1-R1" / "report.html").read_text(encoding="utf-8")
    assert_inert(html, scripts=0)
    for text in HOSTILE:
        assert str(escape(text)) in html, text
    text = _text(html)
    assert f"{SCRIPT} {UNICODE}" in text  # $FIL
    assert f"{IMG} {QUOTES}" in text  # $CYT
    for label in ("CD22-PE " + SCRIPT, "CD34 PerCP-Cy5.5 " + IMG, "PE-Cy7 CD19 " + QUOTES):
        assert label in text, label  # $PnS, as written, beside the marker found in it
    assert f"rel {UNICODE}.fcs" in text and f"beads {IMG}.fcs" in text  # file names
    assert f"Patient {SCRIPT}" in text and f"Timepoint {IMG}" in text  # sheet cells
    assert "Ünïcødé 抗原" in html  # UTF-8 kept, not mangled or entity-encoded
    # the same file names in the audit trail, with the SHA-256 of the bytes read
    profile = json.loads((run["results"] / "H1-R1" / "profile.json").read_text("utf-8"))
    roles = {i["role"]: i for i in profile["inputs"]}
    assert {"sample", "control", "beads", "gating_template", "trial", "config"} <= set(roles)
    for role in ("sample", "control", "beads", "gating_template", "trial"):
        path = Path(roles[role]["path"])
        assert roles[role]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), role
        assert roles[role]["sha256"] in html


def test_hostile_strings_show_as_text_in_the_cohort_report(run: dict[str, Any]) -> None:
    html = (run["results"] / "report.html").read_text(encoding="utf-8")
    assert_inert(html, scripts=1)
    text = _text(html)
    assert text.count(SCRIPT) >= 3  # patient id: two sample rows and the patients table
    assert QUOTES in text and UNICODE in text and IMG in text  # patient id, timepoints
    assert re.search(r'<tr class="loss"><td>&lt;script&gt;alert\(1\)&lt;/script&gt;</td>', html)
    assert 'id="timeline-1"' in html and "CD20 at H1-R1" in html


def test_hostile_strings_show_as_text_in_the_specimen_report(run: dict[str, Any]) -> None:
    """The split specimen's free text (the unreadable tube's failure, the flags, the unmeasured
    antigens' notes, the rules' notes, the patient reasons, patient id and timepoint) is text."""
    folder = run["results"] / "specimens" / SPLIT_ID
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert_inert(html, scripts=1)  # the sign-off form's, allowed by its hash
    text = _text(html)
    specimen = json.loads((folder / "specimen.json").read_text("utf-8"))
    decision = json.loads((folder / "decision.json").read_text("utf-8"))
    failed = [t for t in specimen["tubes"] if not t["analysed"]]
    assert [t["sample_id"] for t in failed] == [SPLIT_TUBES[1][0]]
    free = [
        failed[0]["failure"],
        *(f["message"] for f in specimen["flags"]),
        *specimen["unmeasured"].values(),
        *(r["note"] for r in decision["rules"] if r.get("kind") == "antigen" and r["note"]),
        *decision["review_reasons"],
    ]
    assert sum(IMG in t for t in free) >= 5, free  # the hostile file name went everywhere
    for item in free:
        assert " ".join(item.split()) in text, item
    assert f"Patient {QUOTES}" in text and f"Timepoint {SPLIT_TIMEPOINT}" in text
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert {f"../../{t}/report.html" for t, _ in SPLIT_TUBES} <= set(hrefs)
    # the tube's own report points to the specimen's, and is as inert
    tube = (run["results"] / SPLIT_TUBES[0][0] / "report.html").read_text(encoding="utf-8")
    assert_inert(tube, scripts=0)
    assert f'href="../specimens/{SPLIT_ID}/report.html"' in tube
    # the cohort index lists the specimen, not its tubes, and links it
    index = (run["results"] / "report.html").read_text(encoding="utf-8")
    assert f'href="specimens/{SPLIT_ID}/report.html"' in index


def test_snakemake_report_packs_reports_and_tables(run: dict[str, Any]) -> None:
    """``snakemake --report`` on the finished run: every per-sample report, antigens.tsv,
    recommendations.tsv and patients.tsv, with the captions from workflow/report/."""
    target = run["folder"] / "snakemake-report.zip"
    made = snakemake(*run["config"], "--report", str(target), timeout=300)
    assert made.returncode == 0, made.stderr[-4000:]
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        main = next(n for n in names if n.endswith("/report.html") and n.count("/") == 1)
        page = archive.read(main).decode("utf-8")
    zip_root = main.rsplit("/", 1)[0] + "/"
    packed = {n.rsplit("/", 1)[-1] for n in names if "/data/raw/" in n}
    assert packed == {
        "report.html", "antigens.tsv", "recommendations.tsv", "patients.tsv",
        "patient_timeline.tsv",
    }  # fmt: skip
    counts = [n.rsplit("/", 1)[-1] for n in names].count
    tubes = len(SAMPLES) + len(SPLIT_TUBES)
    specimens = len(SAMPLES) + 1
    # each tube, each specimen (a tube alone too), the cohort, Snakemake's
    assert counts("report.html") == tubes + specimens + 2
    assert counts("antigens.tsv") == tubes
    # each packed file is listed under its own path, with its sample as a label
    block = page.split('<script id="results">', 1)[1].split("</script>", 1)[0]
    results = json.loads(block.split("var results = ", 1)[1].rsplit(";", 1)[0])
    for sample_id, *_ in SAMPLES:
        for name in ("report.html", "antigens.tsv"):
            entry = results[str(run["results"] / sample_id / name)]
            assert entry["labels"] == {"sample": sample_id, "file": name}
            packed_file = zip_root + entry["data_uri"]
            with zipfile.ZipFile(target) as archive:
                assert archive.read(packed_file) == (run["results"] / sample_id / name).read_bytes()
    for name in ("recommendations.tsv", "patients.tsv", "patient_timeline.tsv", "report.html"):
        assert str(run["results"] / name) in results, name
    entry = results[str(run["results"] / "specimens" / SPLIT_ID / "report.html")]
    assert entry["labels"] == {"specimen": SPLIT_ID, "file": "report.html"}
    captions = [
        "Self-contained report of sample",
        "One row per sample (",
        "One row per patient (",
        "Antigens on the blasts of sample",
        "Self-contained report of specimen",
        "The cohort index",
    ]
    for caption in captions:
        assert caption in page, caption
    # the front page (workflow/report/workflow.rst) says what the archive is and what it is not
    assert "Decision support, not a diagnosis" in page
    # Snakemake's page embeds job params in a <script> without escaping: the per-sample job's
    # sheet param is JSON with <, > and & escaped, so the sheet's free text (here a patient_id
    # that is a script) shows as text, and the patient's samples are listed
    # (the page holds the param JSON-escaped twice: \\\" for each quote)
    assert r"patient_samples\\\": [\\\"H1-D\\\", \\\"H1-R1\\\"]" in page
    assert r"\\u003cscript\\u003ealert(1)" in page
    assert SCRIPT not in page


def _outputs(results: Path) -> dict[str, Path]:
    """Every table and JSON the run wrote, by path relative to the results folder."""
    return {
        str(p.relative_to(results)): p
        for p in sorted(results.rglob("*"))
        if p.suffix in TABLE_SUFFIXES and "logs" not in p.parts and "benchmarks" not in p.parts
    }


def test_rerun_gives_identical_tables_and_hashes(run: dict[str, Any]) -> None:
    """Runs last: recomputes everything into the same folder and compares."""
    results = run["results"]
    first = run["folder"] / "first"
    shutil.copytree(results, first)
    again = snakemake(*run["config"], "--forceall")
    assert again.returncode == 0, again.stderr[-4000:]
    before, after = _outputs(first), _outputs(results)
    assert before.keys() == after.keys() and len(before) > 30
    assert {"recommendations.tsv", "patients.tsv", "H1-R1/antigens.tsv"} <= before.keys()
    for name in sorted(before):
        old, new = before[name].read_bytes(), after[name].read_bytes()
        if name.endswith("profile.json"):
            a, b = json.loads(old), json.loads(new)
            assert a.pop("created") and b.pop("created")
            assert a == b, name  # same inputs, hashes, settings, software, host
            assert _diff(old, new) == ["created"], name
        else:
            assert old == new, f"{name} differs between two runs on the same inputs"
    for sample_id, *_ in SAMPLES:
        old = np.load(first / sample_id / "plotdata.npz")
        new = np.load(results / sample_id / "plotdata.npz")
        assert sorted(old.files) == sorted(new.files)
        for key in old.files:
            np.testing.assert_array_equal(old[key], new[key])
        # the report differs only by the time stamp it prints
        stamps = [
            json.loads((folder / sample_id / "profile.json").read_text("utf-8"))["created"]
            for folder in (first, results)
        ]
        reports = [(f / sample_id / "report.html").read_text("utf-8") for f in (first, results)]
        assert reports[0].replace(stamps[0], "T") == reports[1].replace(stamps[1], "T")
    assert (first / "report.html").read_bytes() == (results / "report.html").read_bytes()
    specimen_reports = sorted(p.relative_to(first) for p in first.glob("specimens/*/report.html"))
    assert len(specimen_reports) == len(SAMPLES) + 1  # they print no time stamp: identical
    for name in specimen_reports:
        assert (first / name).read_bytes() == (results / name).read_bytes(), name


def _diff(old: bytes, new: bytes) -> list[str]:
    """Top-level keys of two JSON documents whose values differ."""
    a, b = json.loads(old), json.loads(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _text(html: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace joined."""
    import html as html_lib

    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_sheets_and_files_were_really_hostile(run: dict[str, Any]) -> None:
    """Guard against a vacuous pass: the run really carried the hostile strings."""
    table = pd.read_csv(run["results"] / "recommendations.tsv", sep="\t", dtype=str)
    assert set(table["patient_id"]) == {SCRIPT, QUOTES}
    qc = json.loads((run["results"] / "H1-D" / "qc.json").read_text("utf-8"))
    assert IMG in qc["file"]
    profile = json.loads((run["results"] / "H1-D" / "profile.json").read_text("utf-8"))
    assert profile["fcs_keywords"]["$FIL"] == f"{SCRIPT} {UNICODE}"
    assert any(SCRIPT in stain for stain in profile["stains"].values())
