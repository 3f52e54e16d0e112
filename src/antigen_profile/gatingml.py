"""Gating-ML 2.0 as both gating routes read it: the namespaces and one safe document reader.

Our template (:mod:`antigen_profile.gating`) and a lab's own gating
(:mod:`antigen_profile.lab_gating`) are the same kind of file from possibly untrusted hands,
so they are read the same way here: a regular file under the size cap, parsed without DTD,
entities or network, and no DOCTYPE at all (issue 14). Each caller words its own refusals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from antigen_profile.inputs import (
    NOT_FOUND,
    InputFileError,
    has_doctype,
    read_gating_bytes,
    safe_xml_parser,
)

GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
DATATYPE_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"
TRANSFORMS_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
#: The prefixes Gating-ML documents (and our messages) use for its namespaces.
PREFIXES = {GATING_NS: "gating", DATATYPE_NS: "data-type", TRANSFORMS_NS: "transforms"}


def gating_tag(name: str) -> str:
    """``name`` in the ``gating`` namespace, as lxml spells a qualified name."""
    return f"{{{GATING_NS}}}{name}"


def datatype_tag(name: str) -> str:
    """``name`` in the ``data-type`` namespace."""
    return f"{{{DATATYPE_NS}}}{name}"


def transforms_tag(name: str) -> str:
    """``name`` in the ``transforms`` namespace."""
    return f"{{{TRANSFORMS_NS}}}{name}"


def one_line(text: str) -> str:
    """A parser or schema message on one line, namespaces written as their prefixes, so a
    refusal reads as the file does."""
    for uri, prefix in PREFIXES.items():
        text = text.replace(f"{{{uri}}}", f"{prefix}:")
    return " ".join(str(text).split())


def read_xml(
    path: Path,
    what: str,
    error: Callable[[str], Exception],
    *,
    syntax: str,
    empty: str,
    doctype: str,
    not_found: str | None = None,
    reason: Callable[[str], str] = one_line,
) -> tuple[Any, bytes]:
    """The parsed document's root and the bytes it was parsed from, or ``error(message)``.

    ``what`` names the file in the input checks' own messages; ``syntax``, ``empty``,
    ``doctype`` and ``not_found`` (default: the input check's message) are the caller's
    refusals, with ``{path}`` and (``syntax``) ``{reason}``: the parser's message passed
    through ``reason``.
    """
    from lxml import etree

    try:
        data = read_gating_bytes(path, what)
    except InputFileError as exc:
        if not_found is not None and exc.problem == NOT_FOUND:
            raise error(not_found.format(path=path)) from None
        raise error(str(exc)) from None
    try:
        root = etree.fromstring(data, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise error(syntax.format(path=path, reason=reason(str(exc)))) from None
    if root is None:
        raise error(empty.format(path=path))
    if has_doctype(root):
        raise error(doctype.format(path=path))
    return root, data
