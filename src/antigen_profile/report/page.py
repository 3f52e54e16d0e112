"""What both report pages share: the Jinja2 environment, the Content-Security-Policy and the
atomic writer.

Every template autoescapes (nothing is marked safe), so a string from a result file is text on
the page, never markup; the policy is the second wall, should a string ever escape escaping.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import (
    Environment,
    FileSystemBytecodeCache,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from antigen_profile.files import write_text
from antigen_profile.report.format import fmt_count, fmt_pct


def content_security_policy(script: str = "none") -> str:
    """The page's Content-Security-Policy: nothing may load or run except the inline styles,
    the data: images the page itself carries and, when ``script`` names one by its hash
    (``sha256-...``), that inline script.

    A report opened from an e-mail then makes no network request, and a string that escaped
    escaping could neither run a script nor fetch anything.
    """
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{script}'; "
        "base-uri 'none'; form-action 'none'"
    )


@cache
def environment() -> Environment:
    """The shared Jinja2 environment (templates are compiled once per process), autoescaping
    every template and every string.

    Compiled templates are also kept in Jinja2's per-user cache folder in the temporary
    directory (keyed by each template's source checksum, so an edited template is compiled
    anew): compiling the pages is 0.07 s of every per-sample job otherwise (issue 19)."""
    env = Environment(
        loader=PackageLoader("antigen_profile.report", "templates"),
        bytecode_cache=FileSystemBytecodeCache(),
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count_fmt=fmt_count, pct_fmt=fmt_pct)
    return env


def write_html(html: str, path: Path) -> None:
    """Write ``html`` atomically: a reader opening the report while the workflow runs, or
    after a crash, sees either the old report or the new one, never half a file."""
    write_text(path, html)
