"""The reports as a reviewer opens them: in a real browser, offline, from a single file.

Headless Chromium (Debian's ``chromium`` package, /usr/bin/chromium; nothing is installed here)
is driven over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``: the
protocol's JSON messages, each ended by a NUL byte, on file descriptors 3 and 4), so no
WebSocket client and no port are needed. For the per-sample report (copied alone into an empty
folder, as an e-mail attachment would be), a specimen's report (a panel split over two tubes)
and the cohort index, of a small cohort profiled by the real pipeline, the tests assert: no
console error or uncaught exception, no request other than the file itself and its data: URIs,
every image decodes, the cohort table sorts and filters, and the links from the index to the
specimen and from the specimen to its tubes (and back) reach their reports. Screenshots are
kept in tests/artifacts/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from antigen_profile.config import load_config
from antigen_profile.outputs import COHORT_FILES
from antigen_profile.paths import REPO_ROOT
from antigen_profile.pipeline import profile_sample
from antigen_profile.sheets import patient_record, read_patients, read_review
from antigen_profile.simulate import write_demo_tube
from antigen_profile.split_panel import write_split_specimen
from antigen_profile.steps import (
    decide_sample,
    decide_specimen,
    patient_param,
    write_cohort_report,
    write_cohort_table,
    write_sample_report,
    write_specimen_report,
)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (path for path in CHROMIUM_CANDIDATES if os.access(path, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason=(
        "headless Chromium not found (looked for $CHROMIUM and "
        f"{', '.join(CHROMIUM_CANDIDATES)}); install Debian's chromium package: "
        "apt-get install -y chromium"
    ),
)

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
#: The flags the issue asks for: no sandbox (root in a container), no GPU, and nothing that
#: would make the browser itself talk to the network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}

#: A patient with two samples (so the cohort draws a timeline with a loss: P03's tube shows
#: CD20 on 35% of blasts, P01's on 0.5%) and one with too few blasts (grey heat map row).
SHEET = (
    ("P01-D", "P01", "P03-R1", "P03-R1_control", "diagnosis"),
    ("P01-R1", "P01", "P01-R1", "P01-R1_control", "relapse"),
    ("P06-R1", "P06", "P06-R1", "", "relapse"),
)
#: A specimen whose panel is split over two tubes (P08's CD22 in tube A, CD20 in B): demo
#: patient, specimen id, timepoint.
SPLIT = ("P08-R1", "P08-R1-split", "relapse")


# --------------------------------------------------------------------------- DevTools client


class CDPError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Chromium:
    """Headless Chromium and one DevTools connection over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        to_browser_r, self._write = os.pipe()
        self._read, from_browser_w = os.pipe()
        # Park the browser's ends above fd 10 so that moving them to 3 and 4 in the child
        # cannot clobber one another.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        os.close(to_browser_r)
        os.close(from_browser_w)

        def plumb() -> None:  # runs in the child between fork and exec
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=plumb,  # single-threaded test process
        )
        for fd in high:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            data = data[os.write(self._write, data) :]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(remaining, 0))
            if not ready:
                raise CDPError("no answer from Chromium in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise CDPError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Send one command and return its result; events meanwhile go to ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str, timeout: float = 20.0) -> dict[str, Any]:
        """The first event ``method`` of ``session`` (already received or still to come)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        """Ask the browser to quit, then make sure it has."""
        with contextlib.suppress(CDPError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


class Page:
    """One tab, with what it logged and requested since it was opened."""

    def __init__(self, browser: Chromium, url: str) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.first_event = len(browser.events)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", VIEWPORT)
        self.url = url
        self.call("Page.navigate", {"url": url})
        browser.wait_for("Page.loadEventFired", self.session)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A command in this tab's session."""
        return self.browser.call(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited); raises on a throw."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _events(self, *methods: str) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self.browser.events[self.first_event :]
            if e.get("sessionId") == self.session and e.get("method") in methods
        ]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations, failed
        loads) since the tab was opened."""
        found = []
        for event in self._events("Runtime.consoleAPICalled"):
            if event.get("type") in {"error", "assert"}:
                found.append(" ".join(str(a.get("value", a)) for a in event.get("args", [])))
        for event in self._events("Runtime.exceptionThrown"):
            found.append(str(event.get("exceptionDetails")))
        for event in self._events("Log.entryAdded"):
            entry = event.get("entry", {})
            if entry.get("level") == "error":
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return found

    def requests(self) -> list[str]:
        """Every URL the page requested."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
            )

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input and type, as a keyboard would (fires the input event)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def images(self) -> list[dict[str, Any]]:
        """Every <img> after decoding: its natural size and whether decoding failed."""
        return self.evaluate(
            "Promise.all(Array.from(document.images, img => img.decode().then("
            "() => ({src: img.src.slice(0, 40), w: img.naturalWidth, h: img.naturalHeight}),"
            " e => ({src: img.src.slice(0, 40), w: 0, h: 0, error: String(e)}))))"
        )

    def screenshot(self, path: Path, max_height: int = 3200) -> Path:
        """A PNG of the top of the page (whole width, up to ``max_height`` pixels)."""
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height, "scale": 1},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort run through the same functions the workflow's rules call (~12 s): each
    tube profiled and decided, each specimen (a tube alone, or the split one's two tubes)
    merged, decided and reported, the cohort tables from the specimens' decisions."""
    root = tmp_path_factory.mktemp("browser")
    demo = root / "demo"
    for tube in {t for row in SHEET for t in row[2:4] if t}:
        write_demo_tube(tube, demo)
    demo_sample, split_id, split_timepoint = SPLIT
    split = write_split_specimen(demo_sample, demo, specimen_id=split_id)
    config = load_config()
    out = root / "results"
    config["results"] = str(out)
    patients = REPO_ROOT / "resources" / "demo" / "patients.tsv"
    # sample_id, patient_id, fcs, control, timepoint, specimen_id
    tubes = [
        (sid, pid, demo / "fcs" / f"{tube}.fcs",
         demo / "fcs" / f"{control}.fcs" if control else None, timepoint, sid)
        for sid, pid, tube, control, timepoint in SHEET
    ] + [
        (name, "P08", fcs, control, split_timepoint, split_id)
        for name, fcs, control in split.tubes
    ]  # fmt: skip
    for sample_id, patient_id, fcs, control, timepoint, specimen_id in tubes:
        profile_sample(sample_id, fcs, out / sample_id, config, control=control)
        decide_sample(
            out / sample_id, sample_id, patient_id, patients, config["trial"], config,
            timepoint, specimen_id=specimen_id,
        )  # fmt: skip
    specimens: dict[str, list[tuple[str, str, str]]] = {}
    for sample_id, patient_id, _, _, timepoint, specimen_id in tubes:
        specimens.setdefault(specimen_id, []).append((sample_id, patient_id, timepoint))
    sheet = read_patients(patients)
    for specimen_id, members in specimens.items():
        _, patient_id, timepoint = members[0]
        folder = out / "specimens" / specimen_id
        decide_specimen(
            specimen_id, {sid: out / sid for sid, *_ in members}, patient_id,
            patient_param(patient_record(sheet, patient_id)), config["trial"], config, folder,
            timepoint=timepoint,
        )  # fmt: skip
        write_specimen_report(folder, config)
    write_cohort_table([out / "specimens" / s / "decision.json" for s in specimens], out, config)
    for sample_id, patient_id, *_ in tubes:
        siblings = [row[0] for row in tubes if row[1] == patient_id]  # in timepoint order
        write_sample_report(out / sample_id, config, siblings)
    write_cohort_report(out / "recommendations.tsv", out / "report.html", config)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    assert CHROMIUM is not None
    chromium = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.call("Browser.getVersion", timeout=30)
        yield chromium
    finally:
        chromium.close()


def assert_clean(page: Page, images_expected: bool = True) -> None:
    """No error logged, nothing requested but the file itself and data: URIs, and every
    image decoded to a real picture (a specimen's report draws none)."""
    assert page.errors() == []
    outside = [u for u in page.requests() if u != page.url and not u.startswith("data:")]
    assert outside == [], f"the report requested {outside}"
    images = page.images()
    assert bool(images) is images_expected, "expected inline images" if images_expected else images
    broken = [i for i in images if not (i["w"] > 0 and i["h"] > 0)]
    assert broken == []


# --------------------------------------------------------------------------- tests


def test_sample_report_opens_alone_offline(
    results: Path, browser: Chromium, tmp_path: Path
) -> None:
    """The report copied alone into an empty folder (an e-mail attachment) renders fully."""
    attachment = tmp_path / "attachment" / "P01-R1 report.html"
    attachment.parent.mkdir()
    shutil.copy(results / "P01-R1" / "report.html", attachment)
    page = Page(browser, attachment.as_uri())
    assert_clean(page)
    assert page.evaluate("document.title").startswith("P01-R1")
    sections = page.evaluate(
        "['summary','qc','gating','antigens','positive-controls','escape','rules','audit']"
        ".filter(id => !document.getElementById(id))"
    )
    assert sections == []
    # the patient's other sample is a link to its report in the sibling folder
    assert page.evaluate(
        "Array.from(document.querySelectorAll('#patient-samples a'), a => a.getAttribute('href'))"
    ) == ["../P01-D/report.html"]
    # the resolved configuration opens (collapsed by default) and is the run's
    assert page.evaluate("document.querySelector('#audit-config').open") is False
    page.click("#audit-config summary")
    assert page.evaluate("document.querySelector('#audit-config').open") is True
    assert '"percentile": 99.5' in page.evaluate("document.querySelector('pre.config').textContent")
    assert page.evaluate("document.scripts.length") == 0
    page.screenshot(ARTIFACTS / "sample_report.png")
    assert page.errors() == []


def test_failed_and_thin_sample_report_renders(results: Path, browser: Chromium) -> None:
    """Too few blasts: no number, yet the page loads cleanly with its plots."""
    page = Page(browser, (results / "P06-R1" / "report.html").as_uri())
    assert_clean(page)


def _column(page: Page, index: int) -> list[str]:
    """The sort keys (data-sort, else text) of the visible rows in one column."""
    return page.evaluate(
        "Array.from(document.querySelectorAll('#samples-table tbody tr'))"
        f".filter(r => !r.hidden).map(r => {{ const c = r.cells[{index}];"
        " return c.hasAttribute('data-sort') ? c.getAttribute('data-sort')"
        " : c.textContent.trim(); })"
    )


def test_cohort_report_sorts_and_filters(results: Path, browser: Chromium) -> None:
    page = Page(browser, (results / "report.html").as_uri())
    assert_clean(page)
    headers = page.evaluate(
        "Array.from(document.querySelectorAll('#samples-table thead th'),"
        " th => th.textContent.trim())"
    )
    blast_pct = headers.index("Blasts % leukocytes")
    sample = headers.index("Specimen")
    everyone = ["P01-D", "P01-R1", "P06-R1", "P08-R1-split"]  # sort keys: the specimen ids
    assert _column(page, sample) == everyone  # recommendations order
    assert page.evaluate("document.getElementById('filter-controls').hidden") is False

    th = f"#samples-table thead th:nth-child({blast_pct + 1})"
    page.click(f"{th} button")
    values = [float(v) for v in _column(page, blast_pct)]
    assert values == sorted(values) and len(values) == 4
    assert page.evaluate(f"document.querySelector('{th}').getAttribute('aria-sort')") == "ascending"
    page.click(f"{th} button")
    values = [float(v) for v in _column(page, blast_pct)]
    assert values == sorted(values, reverse=True)
    page.click(f"#samples-table thead th:nth-child({sample + 1}) button")
    assert _column(page, sample) == everyone

    page.type_into("#sample-filter", "p01")
    assert _column(page, sample) == ["P01-D", "P01-R1"]
    assert page.evaluate("document.getElementById('samples-shown').textContent") == (
        "2 of 4 specimens shown"
    )
    page.evaluate(
        "(() => { const s = document.getElementById('decision-filter'); s.value = 'needs_review';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    assert _column(page, sample) == []  # P01's specimens are candidates; P06, P08 filtered out
    page.evaluate(
        "(() => { const f = document.getElementById('sample-filter'); f.value = '';"
        " f.dispatchEvent(new Event('input')); })()"
    )
    assert _column(page, sample) == ["P06-R1", "P08-R1-split"]
    page.evaluate(
        "(() => { const s = document.getElementById('decision-filter'); s.value = '';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    assert len(_column(page, sample)) == 4

    # the heat map and the patient's timeline (loss of CD20 in red) are there and decode
    assert page.evaluate("document.querySelector('#cohort-heatmap img').naturalWidth") > 0
    assert page.evaluate("document.querySelector('#timeline-1 img').naturalWidth") > 0
    assert "CD20" in page.evaluate("document.querySelector('#patients-table tr.loss').textContent")
    page.screenshot(ARTIFACTS / "cohort_report.png")
    assert page.errors() == []


def _links(page: Page, selector: str) -> list[Path]:
    """The files the links matching ``selector`` point to, resolved by the browser against
    the page's own address."""
    urls = page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)}), a => a.href)"
    )
    assert urls, f"no link matches {selector}"
    paths = []
    for url in urls:
        parsed = urlparse(url)
        assert parsed.scheme == "file", url
        paths.append(Path(unquote(parsed.path)))
    return paths


def test_cohort_links_reach_the_specimen_and_its_tubes(results: Path, browser: Chromium) -> None:
    """Index row -> the split specimen's report -> each tube's report -> back to the
    specimen's; every page opens cleanly."""
    _, split_id, _ = SPLIT
    tubes = [f"{split_id}-A", f"{split_id}-B"]
    index = Page(browser, (results / "report.html").as_uri())
    row = "#samples-table tbody tr:nth-child(4)"
    (specimen,) = _links(index, f"{row} td:first-child > a")
    assert specimen == results / "specimens" / split_id / "report.html" and specimen.is_file()
    assert _links(index, f"{row} ul.tubes a") == [results / t / "report.html" for t in tubes]

    page = Page(browser, specimen.as_uri())
    assert_clean(page, images_expected=False)
    assert page.evaluate("document.scripts.length") == 1  # the sign-off form's, by its hash
    assert page.evaluate("document.title").startswith(split_id)
    reached = _links(page, "#tubes-table a")
    assert reached == [results / t / "report.html" for t in tubes]
    assert all(path.is_file() for path in reached)
    # the coverage table says which pairs were counted per cell and which only bounded
    known = page.evaluate(
        "Array.from(document.querySelectorAll('#coverage-short tr td:last-child'),"
        " td => td.textContent.trim())"
    )
    assert any(k.startswith("measured together in") for k in known)
    assert any(k.startswith("stained in different tubes") for k in known)
    page.screenshot(ARTIFACTS / "specimen_report.png")
    assert page.errors() == []

    tube = Page(browser, reached[0].as_uri())
    assert_clean(tube)
    assert _links(tube, "#specimen-note a") == [specimen, specimen]

    # a tube that is its own specimen has a (short) specimen page pointing at the tube
    alone = Page(browser, (results / "specimens" / "P06-R1" / "report.html").as_uri())
    assert_clean(alone, images_expected=False)
    assert _links(alone, "#one-tube a") == [results / "P06-R1" / "report.html"]
    # ... and its sign-off is reachable from the index row and from the tube's own report
    signoff = results / "specimens" / "P06-R1" / "report.html"
    rows = index.evaluate(
        "Array.from(document.querySelectorAll('#samples-table tbody tr a.signoff'),"
        " a => a.getAttribute('href'))"
    )
    assert "specimens/P06-R1/report.html#review" in rows
    assert len(rows) == index.evaluate(
        "document.querySelectorAll('#samples-table tbody tr').length"
    )
    tube_alone = Page(browser, (results / "P06-R1" / "report.html").as_uri())
    assert _links(tube_alone, "#signoff-link a") == [signoff]


def test_a_script_injected_into_the_report_cannot_run(
    results: Path, browser: Chromium, tmp_path: Path
) -> None:
    """Defence in depth: even a script that slipped past escaping is blocked by the reports'
    Content-Security-Policy (and the browser logs the violation)."""
    html = (results / "report.html").read_text(encoding="utf-8")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(
        html.replace("</main>", "<script>document.title = 'pwned'</script></main>", 1),
        encoding="utf-8",
    )
    page = Page(browser, tampered.as_uri())
    assert page.evaluate("document.title") != "pwned"
    assert any("Content Security Policy" in e for e in page.errors())


def _set(page: Page, selector: str, value: str) -> None:
    """Set a select or date input as its picker would, firing its change event."""
    page.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        f" e.value = {json.dumps(value)};"
        " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


def test_the_sign_off_form_writes_a_row_the_workflow_signs(
    results: Path, browser: Chromium, tmp_path: Path
) -> None:
    """A reviewer fills in the specimen report's form (offline, within its CSP); the row it
    writes, copied or downloaded into review.tsv, is accepted by the workflow's own sheet
    check and signs the specimen in the cohort table."""
    specimen = "P06-R1"
    page = Page(browser, (results / "specimens" / specimen / "report.html").as_uri())
    assert_clean(page, images_expected=False)
    shown_hash = page.evaluate("document.getElementById('result-hash').value")
    assert shown_hash.startswith("r1-")
    page.type_into("#signoff-reviewer", "Dr\tA. Reviewer")  # a tab cannot split the row
    _set(page, "#signoff-verdict", "override")
    _set(page, "#signoff-date", "2026-12-04")
    page.click("#signoff-targets input[value=CD22]")
    assert "reason" in page.evaluate("document.getElementById('signoff-missing').textContent")
    page.type_into("#signoff-reason", "CD10 on hematogones; CD22 alone")
    assert page.evaluate("document.getElementById('signoff-missing').textContent") == ""
    row = page.evaluate("document.getElementById('signoff-row').value")
    assert row.split("\t") == [
        specimen, "Dr A. Reviewer", "override", "CD22", "CD10 on hematogones; CD22 alone",
        "2026-12-04", shown_hash,
    ]  # fmt: skip
    assert page.evaluate("document.getElementById('signoff-row').readOnly") is True
    # the download: a data: URL holding the header and the row; the click saves it
    href = page.evaluate("document.getElementById('signoff-download').href")
    prefix = "data:text/tab-separated-values;charset=utf-8,"
    assert href.startswith(prefix)
    downloaded = unquote(href[len(prefix) :])
    browser.call(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    page.click("#signoff-download")
    saved = tmp_path / f"review-{specimen}.tsv"
    deadline = time.monotonic() + 20
    while not saved.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert saved.read_text(encoding="utf-8") == downloaded
    assert page.errors() == []  # nothing the CSP blocked
    page.screenshot(ARTIFACTS / "specimen_sign_off.png")

    # the workflow's own check accepts it, and the cohort table then shows it signed
    specimens = sorted(p.name for p in (results / "specimens").iterdir())
    trial_targets = ["CD22", "CD123", "CD38", "CD10", "CD20"]
    assert read_review(saved, specimens, trial_targets)[specimen]["result_hash"] == shown_hash
    config = load_config()
    out = {key: tmp_path / name for key, name in COHORT_FILES.items()}
    decisions = [results / "specimens" / s / "decision.json" for s in specimens]
    write_cohort_table(decisions, out, config, review_sheet=saved)
    with open(out["recommendations"], encoding="utf-8", newline="") as handle:
        table = {r["specimen_id"]: r for r in csv.DictReader(handle, delimiter="\t")}
    assert table[specimen]["review_status"] == "signed"
    assert table[specimen]["final_decision"] == "candidate"
    assert table[specimen]["final_targets"] == "CD22"
    assert table[specimen]["reviewed_by"] == "Dr A. Reviewer"
    others = [r["review_status"] for s, r in table.items() if s != specimen]
    assert set(others) == {"unreviewed"}
