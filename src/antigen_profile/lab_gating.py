"""A lab's own gating: a Gating-ML 2.0 file or a FlowJo 10 workspace instead of our template.

Labs that already gate B-ALL their own way should not have to redraw their gates in our
template. Their file names detectors (``$PnN``), carries its own compensation and transforms,
and names populations its own way; a mapping from config ties their populations to ours
(``blasts``, ``lymphocytes``, ``leukocytes``; optionally ``cells``, ``singlets``). FlowKit does
all the gating, exactly as it does for our template, so both routes share one engine (checked
event for event against the ISAC Gating-ML 2.0 compliance data in the tests).

A FlowJo workspace is read through FlowKit's :class:`flowkit.Workspace`; the gating strategy
of one of its samples becomes the template for every tube.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from antigen_profile.errors import AntigenProfileError
from antigen_profile.fcs_write import format_spillover, write_fcs_to
from antigen_profile.gatingml import DATATYPE_NS, TRANSFORMS_NS, read_xml
from antigen_profile.populations import percent, population_table

__all__ = [
    "ACQUISITION_DEFINED",
    "OPTIONAL_POPULATIONS",
    "OWN_POPULATIONS",
    "REQUIRED_POPULATIONS",
    "LabGating",
    "LabGatingError",
    "LabGatingResult",
    "flowkit_sample",
    "template_workspace",
]

#: Our populations a lab's mapping must name, and those it may name.
REQUIRED_POPULATIONS: tuple[str, ...] = ("blasts", "lymphocytes", "leukocytes")
OPTIONAL_POPULATIONS: tuple[str, ...] = ("cells", "singlets")
#: Every population our ``gates.xml`` export names by its gate id: a reviewer's corrected copy
#: of it (``populations=None``) maps each of these it holds to itself, so the stages that read
#: monocytes or granulocytes (positive controls, CD34's negative) see them as our template did.
OWN_POPULATIONS: tuple[str, ...] = (
    *REQUIRED_POPULATIONS,
    *OPTIONAL_POPULATIONS,
    "monocytes",
    "granulocytes",
)
#: FlowJo's name for the matrix an instrument wrote into the FCS file: each tube brings its own.
ACQUISITION_DEFINED = "Acquisition-defined"
SUFFIXES = (".xml", ".wsp")

_TRANSFORM_KINDS = {
    "LinearTransform": "linear",
    "LogTransform": "log",
    "WSPLogTransform": "log",
    "LogicleTransform": "logicle",
    "HyperlogTransform": "hyperlog",
    "AsinhTransform": "asinh",
    "WSPBiexTransform": "biex",
    "RatioTransform": "ratio",
}


class LabGatingError(AntigenProfileError, ValueError):
    """A lab gating file that cannot be read or applied; one line: file, problem, fix."""


@contextmanager
def _quiet() -> Iterator[None]:
    """FlowKit's warnings silenced: what they say that matters is checked and worded here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: Exception) -> str:
    """FlowKit's reason for a refusal, for a one-line message."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


@dataclass
class LabGatingResult:
    """A lab's gating applied to one tube.

    Attributes
    ----------
    masks : dict of str to numpy.ndarray
        Our population names (only the mapped ones) -> bool membership over the events.
    gates : list of dict
        Every gate of the lab's tree as a ``gates.json`` entry (docs/outputs.md) in gating
        order; ids are valid XML ids (our name for a mapped gate), ``name`` and ``path`` keep
        the lab's own spelling.
    counts : dict of str to int
        Every gate path (``"Cells/Single Cells/CD45+"``) -> event count.
    defined_by : dict of str to list of str
        Our population -> every dimension used on its way from the root (marker names where
        the caller gave a marker map, else detectors): what a reviewer needs to judge whether
        the blasts were defined with an antigen reported on them.
    notes : list of str
        How compensation was done, and anything else a reviewer should know.
    gate_masks : dict of str to numpy.ndarray
        ``gates.json`` id -> membership of every gate, for the plots of each gate over its
        parent's events.
    """

    masks: dict[str, np.ndarray]
    gates: list[dict[str, Any]]
    counts: dict[str, int]
    defined_by: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    gate_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _display: Callable[[str], tuple[np.ndarray, np.ndarray | None]] | None = field(
        default=None, repr=False, compare=False
    )
    _parents: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_total(self) -> int:
        return int(next(iter(self.masks.values())).size) if self.masks else 0

    def display(self, gate_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The gate's x (and y) values of every event in display scale (the lab's own
        compensation and transform), for ``plotdata.npz``; ``y`` is ``None`` for 1-D gates.

        ``gate_id`` is a ``gates.json`` id or one of our population names. Boolean gates have
        no axes and raise :class:`LabGatingError`.
        """
        if self._display is None:
            raise LabGatingError("this result holds no events to display")
        return self._display(gate_id)

    def populations(self) -> pd.DataFrame:
        """The ``populations.tsv`` table for our mapped populations; a population's parent is
        its nearest mapped ancestor in the lab's tree (empty at the top)."""
        n = self.n_total
        parents = {name: self._parents.get(name) for name in self.masks}
        return population_table(
            (
                (name, parent, int(mask.sum()), int(self.masks[parent].sum()) if parent else n)
                for (name, mask), parent in zip(self.masks.items(), parents.values(), strict=True)
            ),
            n,
        )


@dataclass(frozen=True)
class _Node:
    """One population of the lab's tree (a quadrant counts as one; its container does not)."""

    name: str
    path: tuple[str, ...]  # gate path without "root", own name last
    parent: tuple[str, ...] | None  # the parent population's path
    result_path: tuple[str, ...]  # FlowKit's gate_path for the results lookup
    gate: Any  # the FlowKit gate (the QuadrantGate for a quadrant)
    quadrant: Any = None  # the Quadrant for a quadrant population

    @property
    def key(self) -> str:
        return "/".join(self.path)


# ------------------------------------------------------------------------------------------
# Reading the lab's file
# ------------------------------------------------------------------------------------------


def _read_xml(path: Path, what: str, named_in: str) -> tuple[Any, bytes]:
    """The document's root and the bytes it was parsed from.

    Only a regular file under :data:`~antigen_profile.inputs.MAX_GATING_BYTES` is read (a
    FIFO would block, ``/dev/zero`` never end), and it is parsed without resolving entities
    or touching the network: the file comes from outside the project, and a DOCTYPE has no
    business in Gating-ML or a FlowJo workspace.
    """
    return read_xml(
        path,
        f"{what} file",
        LabGatingError,
        not_found=f"{{path}}: cannot be read (not found); check the {what} path in {named_in}",
        syntax="{path}: not a readable XML file ({reason}); export it again from the gating "
        "software as Gating-ML 2.0 (.xml) or a FlowJo 10 workspace (.wsp)",
        empty="{path}: the file holds no XML document; export it again",
        doctype="{path}: declares a DOCTYPE, which Gating-ML and FlowJo workspaces never do; "
        "export the file again from the gating software",
        reason=lambda text: text.splitlines()[0] if text else "syntax error",
    )


def _read_document(
    path: Path, what: str = "lab gating", named_in: str = "config"
) -> tuple[str, bytes, int, str]:
    """What FlowKit is to parse: the kind (``flowjo`` or ``gatingml``), the document, how
    many workspace samples got a copy of a shared matrix, and the SHA-256 of the bytes read
    (the file exactly as applied, for the audit trail).

    The file is read once and parsed once here; FlowKit (whose readers take a file, not a
    tree) gets the bytes already read, re-serialised only when a matrix was embedded. Our
    tree is freed when this returns, before FlowKit builds its own, so the two never
    coexist: a tree takes about 8x the file in memory (issue 14).
    """
    from lxml import etree

    root, data = _read_xml(path, what, named_in)
    checksum = hashlib.sha256(data).hexdigest()
    tag = _local(root.tag)
    if tag == "Workspace":
        embedded = _embed_shared_matrices(root)
        if embedded:
            del data  # the serialised copy replaces it
            data = etree.tostring(root)
        return "flowjo", data, embedded, checksum
    if tag == "Gating-ML":
        return "gatingml", data, 0, checksum
    raise LabGatingError(
        f"{path}: the document is a <{tag}>, neither Gating-ML 2.0 nor a FlowJo workspace; "
        "export the gating again"
    )


def _local(tag: Any) -> str:
    return str(tag).rpartition("}")[2]


def _embed_shared_matrices(root: Any) -> int:
    """Give every workspace Sample a copy of the compensation matrix its gates use.

    FlowJo 10.8 and later (and FlowKit's own ``export_wsp``) keep a matrix once, under
    ``Workspace/Matrices``, while FlowKit 1.3 reads compensation only from each ``Sample``;
    without the copy the ``Comp-`` dimensions of the gates match no channel. The matrix is
    recognised by its prefixed detector names among the Sample's gate dimensions, so samples
    that are not compensated stay so. Returns how many samples were completed.
    """
    tag = f"{{{TRANSFORMS_NS}}}spilloverMatrix"
    params_tag = f"{{{DATATYPE_NS}}}parameters"
    name_attr = f"{{{DATATYPE_NS}}}name"
    matrices = root.find("Matrices")
    shared = [] if matrices is None else matrices.findall(tag)
    if not shared:
        return 0
    completed = 0
    sample_list = root.find("SampleList")
    for sample in [] if sample_list is None else sample_list.findall("Sample"):
        own = sample.findall(tag)
        if any(m.find(params_tag) is not None for m in own):
            continue  # the sample carries a full copy already
        used = {el.get(name_attr) for el in sample.iter(f"{{{DATATYPE_NS}}}fcs-dimension")} - {None}
        hits = []
        for matrix in shared:
            prefix, suffix = matrix.get("prefix", ""), matrix.get("suffix", "")
            params = matrix.find(params_tag)
            detectors = [] if params is None else [p.get(name_attr) for p in params]
            if any(f"{prefix}{d}{suffix}" in used for d in detectors if d):
                hits.append(matrix)
        if len(hits) != 1:
            continue
        for stub in own:
            sample.remove(stub)
        sample.insert(1, copy.deepcopy(hits[0]))
        completed += 1
    return completed


def _find_matching(nodes: Sequence[_Node], ref: str) -> list[_Node]:
    """Nodes a mapping entry names: a gate name (ambiguous when several gates share it), a
    path (``"Cells/Singlets/CD45+/Blasts"``) or its tail (``"CD45+/Blasts"``), or a path from
    the root with a leading slash (``"/Cells"``, for a name that repeats further down)."""
    text = ref.strip()
    parts = tuple(p for p in text.strip("/").split("/") if p)
    if text.startswith("/"):  # an absolute path: from the root, nothing else
        return [n for n in nodes if n.path == parts]
    if len(parts) > 1:
        exact = [n for n in nodes if n.path == parts]
        tail = exact or [n for n in nodes if n.path[-len(parts) :] == parts]
        if tail:
            return tail
    return [n for n in nodes if n.name == text]  # a name may itself contain a slash


def _xml_id(name: str, taken: set[str]) -> str:
    """A valid, unused XML id (NCName) for a lab's gate name such as "CD45+" or "Q1: A-, B+"."""
    text = name.replace("+", "pos")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    if not text or not re.match(r"[A-Za-z_]", text):
        text = f"g_{text}"
    candidate, n = text, 2
    while candidate in taken:
        candidate, n = f"{text}_{n}", n + 1
    taken.add(candidate)
    return candidate


# ------------------------------------------------------------------------------------------
# FlowKit samples from our arrays
# ------------------------------------------------------------------------------------------


def flowkit_sample(
    events: np.ndarray,
    channels: Sequence[str],
    spillover: pd.DataFrame | None,
    sample_id: str,
    labels: Sequence[str] | None = None,
) -> Any:
    """A :class:`flowkit.Sample` holding our events exactly, with the spillover as the
    sample's ``$SPILLOVER`` so that a gate's ``FCS`` compensation means this tube's matrix.

    FlowKit builds in-memory samples through a float32 FCS file (its own TODO says so); the
    float64 events are put back afterwards so that an event sitting on a gate edge is judged
    on the same number FlowKit would read from the file.
    """
    import flowio
    import flowkit as fk

    data = np.asarray(events, dtype=np.float64)
    meta = {"$FIL": f"{sample_id}.fcs"}
    if spillover is not None and not spillover.empty:
        detectors = [str(c) for c in spillover.columns]
        meta["$SPILLOVER"] = format_spillover(detectors, spillover.to_numpy(dtype=np.float64))
    handle = io.BytesIO()
    write_fcs_to(handle, data, channels, labels, meta)
    handle.seek(0)
    with _quiet():
        sample = fk.Sample(flowio.FlowData(handle), sample_id=sample_id)
    sample._raw_events = data.copy()  # float64 back (see docstring)
    return sample


# ------------------------------------------------------------------------------------------
# The lab's gating
# ------------------------------------------------------------------------------------------


class LabGating:
    """A lab's gating strategy, mapped to our populations.

    Parameters
    ----------
    path : str or Path
        A Gating-ML 2.0 file (``.xml``) or a FlowJo 10 workspace (``.wsp``); the content
        decides which (a FlowJo workspace saved as ``.xml`` works too).
    populations : mapping of str to str, or None
        Our population -> the lab's population: a gate name, or a path such as
        ``"Singlets/CD45+/Blasts"`` (or its tail) where names repeat; a leading ``/`` anchors
        the path at the root. ``blasts``, ``lymphocytes`` and ``leukocytes`` are required;
        ``cells`` and ``singlets`` optional. One lab gate may serve several of ours.
        ``None``: the file is our own ``gates.xml`` export (corrected by a reviewer), a
        Gating-ML file whose gates carry our population names (:data:`OWN_POPULATIONS`).
    sample_name : str, optional
        For a workspace, the sample whose gates to use, or a sample group (its first sample,
        in name order). Default: the first sample of "All Samples", else of the workspace.
        FlowJo keeps the complete gate tree only with each sample, so a sample is needed.
    what, named_in : str
        How messages name the file and where it was given (``"corrected gates"``,
        ``"the samples.tsv gates column"``), so each refusal points at the right place.
    """

    def __init__(
        self,
        path: str | Path,
        populations: Mapping[str, str] | None,
        sample_name: str | None = None,
        *,
        what: str = "lab gating",
        named_in: str = "config",
    ) -> None:
        self.path = Path(path)
        self.what = what
        #: How to mend a file that does not fit the tube: a reviewer's copy of our export
        #: already names this tube's detectors, so only an edit outside its gates breaks it.
        self._panel_fix = (
            "use a gating made for this panel"
            if populations is not None
            else "edit the gates of this tube's own gates.xml, keeping its dimensions"
        )
        if self.path.suffix.lower() not in SUFFIXES:
            raise LabGatingError(
                f"{self.path}: {what} must be a Gating-ML 2.0 .xml or a FlowJo 10 .wsp "
                f"file, not {self.path.suffix or 'a file without extension'}"
            )
        self.sample_name: str | None = None
        self.kind, document, self.matrices_embedded, self.sha256 = _read_document(
            self.path, what, named_in
        )
        if populations is None and self.kind != "gatingml":
            raise LabGatingError(
                f"{self.path}: {what} must be Gating-ML 2.0 (our gates.xml, edited), not a "
                "FlowJo workspace; export the corrected gates as Gating-ML 2.0"
            )
        if self.kind == "flowjo":
            self._strategy = self._load_workspace(document, sample_name)
        else:
            self._strategy = self._load_gatingml(document)
        del document  # FlowKit keeps what it needs; the text is not held for the run
        self.nodes = self._collect_nodes()
        if not self.nodes:
            raise LabGatingError(f"{self.path}: holds no gates; export the file with its gates")
        if populations is None:
            self.populations = self._own_populations()
        else:
            self.populations = self._check_mapping(populations)
        resolved = {ours: self._resolve(ours, ref) for ours, ref in self.populations.items()}
        order = {node.key: i for i, node in enumerate(self.nodes)}
        #: Our population -> the lab's node, in gating order.
        self.resolved = dict(sorted(resolved.items(), key=lambda item: order[item[1].key]))

    def to_gatingml(self) -> str:
        """The lab's gates as Gating-ML 2.0 (a workspace's tree exported by FlowKit): what was
        applied, for ``gates.xml``."""
        import flowkit as fk

        buffer = io.BytesIO()
        with _quiet():
            fk.export_gatingml(self._strategy, buffer)
        return buffer.getvalue().decode("utf-8")

    # -- loading ----------------------------------------------------------------------------

    def _load_gatingml(self, document: bytes) -> Any:
        import flowkit as fk

        try:
            with _quiet():
                return fk.parse_gating_xml(io.BytesIO(document))
        except Exception as exc:
            reason = _first_line(exc)
            raise LabGatingError(
                f"{self.path}: not a valid Gating-ML 2.0 document ({reason}); validate it "
                "against the Gating-ML 2.0 schema or export it again"
            ) from None

    def _load_workspace(self, document: bytes, sample_name: str | None) -> Any:
        import flowkit as fk

        try:
            with _quiet():
                workspace = fk.Workspace(io.BytesIO(document), load_missing_file_data=True)
                samples = workspace.get_sample_ids(loaded_only=False)
                groups = workspace.get_sample_groups()
        except Exception as exc:
            reason = _first_line(exc)
            raise LabGatingError(
                f"{self.path}: not a FlowJo 10 workspace FlowKit can read ({reason}); save it "
                "again from FlowJo 10 with linear, log, logicle, biex or arcsinh transforms"
            ) from None
        if not samples:
            raise LabGatingError(
                f"{self.path}: the workspace holds no sample, and FlowJo stores the gate tree "
                "with each sample; save it with the template applied to at least one sample"
            )
        chosen = self._choose_sample(workspace, samples, groups, sample_name)
        self.sample_name = chosen
        return workspace.get_gating_strategy(chosen)

    def _choose_sample(
        self, workspace: Any, samples: list[str], groups: list[str], wanted: str | None
    ) -> str:
        if wanted is not None and wanted in samples:
            return wanted
        group = wanted if wanted is not None else "All Samples"
        if group in groups:
            members = workspace.get_sample_ids(group_name=group, loaded_only=False)
            if members:
                return str(members[0])
            if wanted is not None:
                raise LabGatingError(
                    f"{self.path}: sample group {wanted!r} has no sample; choose a sample "
                    f"({', '.join(samples)}) or a group with samples"
                )
        if wanted is not None:
            raise LabGatingError(
                f"{self.path}: no sample or group {wanted!r}; samples: {', '.join(samples)}; "
                f"groups: {', '.join(groups) or 'none'}"
            )
        return str(samples[0])

    def _collect_nodes(self) -> list[_Node]:
        """Every population, in gating order (each parent before its children)."""
        from flowkit.exceptions import QuadrantReferenceError

        strategy = self._strategy
        found: list[_Node] = []
        for name, gate_path in strategy.get_gate_ids():
            quadrant = None
            try:
                gate = strategy.get_gate(name, gate_path=gate_path)
                parent_path = tuple(gate_path)
            except QuadrantReferenceError:  # a quadrant: its container holds the gate
                parent_path = tuple(gate_path[:-1])
                gate = strategy.get_gate(gate_path[-1], gate_path=parent_path)
                quadrant = gate.quadrants[name]
            if quadrant is None and type(gate).__name__ == "QuadrantGate":
                continue  # a container, not a population: its quadrants are
            found.append(
                _Node(
                    name=name,
                    path=(*gate_path[1:], name),
                    parent=parent_path[1:] or None,
                    result_path=parent_path,
                    gate=gate,
                    quadrant=quadrant,
                )
            )
        children: dict[tuple[str, ...] | None, list[_Node]] = {}
        for node in found:
            children.setdefault(node.parent, []).append(node)
        ordered: list[_Node] = []

        def visit(parent: tuple[str, ...] | None) -> None:
            for node in children.get(parent, []):
                ordered.append(node)
                visit(node.path)

        visit(None)
        return ordered

    def _check_mapping(self, populations: Mapping[str, str]) -> dict[str, str]:
        allowed = (*REQUIRED_POPULATIONS, *OPTIONAL_POPULATIONS)
        unknown = [k for k in populations if k not in allowed]
        if unknown:
            raise LabGatingError(
                f"{self.path}: the population mapping names {', '.join(unknown)}, which are "
                f"not ours; map only {', '.join(allowed)}"
            )
        missing = [k for k in REQUIRED_POPULATIONS if not str(populations.get(k) or "").strip()]
        if missing:
            raise LabGatingError(
                f"{self.path}: the population mapping lacks {', '.join(missing)}; name the lab's "
                f"gate for each of {', '.join(REQUIRED_POPULATIONS)}"
            )
        return {k: str(v) for k, v in populations.items() if str(v or "").strip()}

    def _own_populations(self) -> dict[str, str]:
        """Each of our populations the file holds under its own name (our export's gate ids),
        mapped to itself; every required one must be there, once."""
        names = [node.name for node in self.nodes]
        missing = [ours for ours in REQUIRED_POPULATIONS if ours not in names]
        if missing:
            raise LabGatingError(
                f"{self.path}: the {self.what} lack our population(s) {', '.join(missing)} "
                f"(gates found: {', '.join(self.gate_names)}); edit the gates of the tube's "
                "own gates.xml without renaming or deleting them"
            )
        return {ours: ours for ours in OWN_POPULATIONS if ours in names}

    def _resolve(self, ours: str, ref: str) -> _Node:
        hits = _find_matching(self.nodes, ref)
        where = f"{self.path}" + (f" (sample {self.sample_name})" if self.sample_name else "")
        if not hits:
            raise LabGatingError(
                f"{where}: population {ref!r} (mapped to our {ours}) is not in the gating tree; "
                f"available gates: {', '.join(self.gate_names)}"
            )
        if len(hits) > 1:
            raise LabGatingError(
                f"{where}: population {ref!r} (mapped to our {ours}) is ambiguous; give its "
                f"path, one of: {', '.join(n.key for n in hits)}"
            )
        return hits[0]

    # -- information ------------------------------------------------------------------------

    @property
    def gate_names(self) -> list[str]:
        """Every gate path of the lab's tree, in gating order."""
        return [n.key for n in self.nodes]

    @property
    def dimensions(self) -> list[str]:
        """Channels (or stain labels) the lab's gates read, in first-use order."""
        names: list[str] = []
        for node in self.nodes:
            for name in self._node_channels(node):
                if name not in names:
                    names.append(name)
        return names

    def _node_channels(self, node: _Node) -> list[str]:
        out: list[str] = []
        for dim in getattr(node.gate, "dimensions", []) or []:
            kind = type(dim).__name__
            if kind == "RatioDimension":
                xform = self._strategy.transformations.get(dim.ratio_ref)
                out += [str(d) for d in getattr(xform, "dimensions", [])]
            elif kind == "QuadrantDivider":
                out.append(str(dim.dimension_ref))
            else:
                out.append(str(dim.id))
        return out

    # -- applying ---------------------------------------------------------------------------

    def apply(
        self,
        events: np.ndarray,
        channels: list[str],
        spillover: pd.DataFrame | None,
        sample_id: str,
        *,
        labels: Sequence[str] | None = None,
        markers: Mapping[str, str] | None = None,
    ) -> LabGatingResult:
        """Gate one tube with the lab's gates.

        Parameters
        ----------
        events : numpy.ndarray
            ``(n_events, n_channels)`` uncompensated events on FlowKit's preprocessed scale
            (``Tube.events``, after QC).
        channels : list of str
            Detector names (``$PnN``) of the columns.
        spillover : pandas.DataFrame or None
            The tube's spillover: what a Gating-ML ``FCS`` compensation-ref and FlowJo's
            "Acquisition-defined" matrix mean for this tube.
        sample_id : str
            Names the sample in messages.
        labels : sequence of str, optional
            ``$PnS`` stain labels, for gates that name a stain instead of a detector.
        markers : mapping of str to str, optional
            Marker -> detector (``Tube.markers``): ``defined_by`` then says ``CD45`` rather
            than ``V500-C-A``.
        """
        data = np.asarray(events, dtype=np.float64)
        channels = [str(c) for c in channels]
        self._check_tube(data, channels, spillover, sample_id, labels)
        strategy = copy.deepcopy(self._strategy)  # FlowKit caches compensated events per id
        notes = self._compensation(strategy, spillover)
        sample = flowkit_sample(data, channels, spillover, sample_id, labels)
        try:
            with _quiet():
                results = strategy.gate_sample(sample)
        except Exception as exc:
            reason = _first_line(exc)
            raise LabGatingError(
                f"{sample_id}: {self.path} ({self.what}) cannot be applied ({reason}); "
                f"{self._panel_fix}"
            ) from None
        membership = {
            node.key: np.asarray(
                results.get_gate_membership(node.name, gate_path=node.result_path), dtype=bool
            )
            for node in self.nodes
        }
        counts = {key: int(mask.sum()) for key, mask in membership.items()}
        ids = self._gate_ids()
        gates = [self._gate_json(node, ids, counts, data.shape[0], strategy) for node in self.nodes]
        masks = {ours: membership[node.key] for ours, node in self.resolved.items()}
        detector_marker = {str(d): str(m) for m, d in (markers or {}).items()}
        defined_by = {
            ours: [detector_marker.get(d, d) for d in self._lineage_channels(node)]
            for ours, node in self.resolved.items()
        }
        by_id = {ids[n.key]: n for n in self.nodes} | dict(self.resolved)
        display = _Display(strategy, sample, spillover, by_id)
        return LabGatingResult(
            masks=masks,
            gates=gates,
            counts=counts,
            defined_by=defined_by,
            notes=notes,
            gate_masks={ids[key]: mask for key, mask in membership.items()},
            _display=display,
            _parents=self._mapped_parents(),
        )

    def _check_tube(
        self,
        data: np.ndarray,
        channels: list[str],
        spillover: pd.DataFrame | None,
        sample_id: str,
        labels: Sequence[str] | None,
    ) -> None:
        if data.ndim != 2 or data.shape[1] != len(channels):
            raise LabGatingError(
                f"{sample_id}: events of shape {data.shape} do not match {len(channels)} channels"
            )
        if len(set(channels)) != len(channels):
            raise LabGatingError(
                f"{sample_id}: duplicate detector names in the tube; FlowKit needs unique $PnN"
            )
        if spillover is not None and not spillover.empty:
            outside = [str(c) for c in spillover.columns if str(c) not in channels]
            if outside or list(map(str, spillover.index)) != list(map(str, spillover.columns)):
                raise LabGatingError(
                    f"{sample_id}: the spillover matrix must be square over the tube's "
                    f"detectors (not in the tube: {', '.join(outside) or 'none'})"
                )
        known = set(channels) | {c.replace("/", "_") for c in channels}
        known |= {str(s) for s in labels or [] if s}
        for matrix in self._strategy.comp_matrices.values():
            known |= {str(f) for f in getattr(matrix, "fluorochromes", []) if f}
        missing = [d for d in self.dimensions if d not in known]
        if missing:
            raise LabGatingError(
                f"{sample_id}: {self.path} ({self.what}) needs {', '.join(missing)}, not in "
                f"this tube ({', '.join(channels)}); {self._panel_fix}"
            )

    def _compensation(self, strategy: Any, spillover: pd.DataFrame | None) -> list[str]:
        """Put the tube's own matrix where the lab's gating asks for the file's matrix, and
        say in plain words what compensation the gates saw."""
        import flowkit as fk

        has_spill = spillover is not None and not spillover.empty
        refs = {
            str(getattr(dim, "compensation_ref", None))
            for node in self.nodes
            for dim in getattr(node.gate, "dimensions", []) or []
        } - {"None", "uncompensated"}
        notes: list[str] = []
        for ref in sorted(refs):
            if ref == "FCS":
                notes.append(
                    "compensation: the tube's own spillover (Gating-ML compensation-ref FCS)"
                    if has_spill
                    else "gates ask for the file's spillover (FCS) but the tube has none: "
                    "uncompensated, as Gating-ML 2.0 prescribes"
                )
            elif ref.lower() == ACQUISITION_DEFINED.lower() and self.kind == "flowjo":
                stored = strategy.comp_matrices[ref]
                if not has_spill:
                    notes.append(
                        f"compensation: the tube has no spillover; used the workspace's stored "
                        f"copy of {ref!r} (from sample {self.sample_name})"
                    )
                    continue
                assert spillover is not None
                lacking = [d for d in stored.detectors if d not in list(spillover.columns)]
                if lacking:
                    raise LabGatingError(
                        f"{self.path}: the workspace compensates {', '.join(lacking)} with the "
                        "acquisition matrix, but this tube's spillover lacks them; use a "
                        "gating made for this panel"
                    )
                strategy.comp_matrices[ref] = fk.Matrix(
                    spillover.to_numpy(dtype=np.float64), [str(c) for c in spillover.columns]
                )
                notes.append(f"compensation: the tube's own spillover (FlowJo {ref!r} matrix)")
            else:
                notes.append(
                    f"compensation: the lab's matrix {ref!r} from {self.path.name}, as stored "
                    "there (not the tube's spillover)"
                )
        if not refs:
            notes.append("compensation: none (the lab's gates use uncompensated values)")
        return notes

    def _gate_ids(self) -> dict[str, str]:
        """Gate path -> XML id: our name for a mapped gate, else the lab's name made valid."""
        taken: set[str] = set()
        ids: dict[str, str] = {}
        by_key: dict[str, str] = {}
        for ours, node in self.resolved.items():  # one gate mapped twice keeps its first name
            by_key.setdefault(node.key, ours)
        for node in self.nodes:  # mapped names first, so ours always win
            if node.key in by_key:
                ids[node.key] = by_key[node.key]
                taken.add(by_key[node.key])
        for node in self.nodes:
            if node.key not in ids:
                ids[node.key] = _xml_id(node.name, taken)
        return ids

    def _mapped_parents(self) -> dict[str, str | None]:
        ours_by_key = {node.key: ours for ours, node in self.resolved.items()}
        by_key = {node.key: node for node in self.nodes}
        parents: dict[str, str | None] = {}
        for ours, node in self.resolved.items():
            parent = node.parent
            while parent is not None and "/".join(parent) not in ours_by_key:
                above = by_key.get("/".join(parent))
                parent = above.parent if above else None
            parents[ours] = ours_by_key["/".join(parent)] if parent is not None else None
        return parents

    def _lineage_channels(self, node: _Node) -> list[str]:
        """Channels of the node, its ancestors and (for Boolean gates) the gates it combines."""
        by_key = {n.key: n for n in self.nodes}
        names: list[str] = []
        seen: set[str] = set()

        def walk(current: _Node | None) -> None:
            if current is None or current.key in seen:
                return
            seen.add(current.key)
            if current.parent is not None:
                walk(by_key.get("/".join(current.parent)))
            for ref in getattr(current.gate, "gate_refs", []) or []:
                ref_path = (*tuple(ref["path"])[1:], ref["ref"])
                walk(by_key.get("/".join(ref_path)))
            for name in self._node_channels(current):
                if name not in names:
                    names.append(name)

        walk(node)
        return names

    def _gate_json(
        self,
        node: _Node,
        ids: Mapping[str, str],
        counts: Mapping[str, int],
        n_total: int,
        strategy: Any,
    ) -> dict[str, Any]:
        parent_key = "/".join(node.parent) if node.parent is not None else None
        parent_events = counts[parent_key] if parent_key is not None else n_total
        entry: dict[str, Any] = {
            "id": ids[node.key],
            "parent": ids[parent_key] if parent_key is not None else None,
        }
        entry.update(_shape_json(node, ids, strategy))
        entry["events"] = counts[node.key]
        # JSON has no NaN: an empty parent gives no percentage rather than an invalid file
        entry["pct_parent"] = percent(counts[node.key], parent_events) if parent_events else None
        entry["name"] = node.name
        entry["path"] = node.key
        return entry


def _axis_json(dim: Any, strategy: Any) -> dict[str, Any]:
    kind = type(dim).__name__
    if kind == "RatioDimension":
        name = str(dim.ratio_ref)
    elif kind == "QuadrantDivider":
        name = str(dim.dimension_ref)
    else:
        name = str(dim.id)
    ref = getattr(dim, "transformation_ref", None)
    xform = strategy.transformations.get(ref) if ref else None
    return {
        "dimension": name,
        "transform": _TRANSFORM_KINDS.get(type(xform).__name__, ref) if ref else None,
        "transform_id": ref,
    }


def _bound(value: Any) -> float | None:
    """A coordinate for JSON: ``None`` for an open end, or where a transform gave no number
    (a log axis below zero), since JSON has no NaN."""
    if value is None:
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def _shape_json(node: _Node, ids: Mapping[str, str], strategy: Any) -> dict[str, Any]:
    """Type, axes and coordinates in display scale (FlowKit keeps gates transformed)."""
    gate = node.gate
    kind = type(gate).__name__
    if node.quadrant is not None:
        dividers = [d for d in gate.dimensions if d.id in node.quadrant.divider_refs]
        axes = [_axis_json(d, strategy) for d in dividers]
        bounds = {
            key: [_bound(v) for v in node.quadrant.get_divider_range(d.id)]
            for key, d in zip(("x", "y", "z"), dividers, strict=False)
        }
        return {
            "type": "rectangle",
            "x": axes[0],
            "y": axes[1] if len(axes) > 1 else None,
            "bounds": bounds,
            "quadrant_of": node.gate.gate_name,
        }
    if kind.endswith("BooleanGate"):
        refs = [
            {
                "id": ids.get("/".join((*tuple(r["path"])[1:], r["ref"])), r["ref"]),
                "complement": bool(r.get("complement", False)),
            }
            for r in gate.gate_refs
        ]
        return {"type": "boolean", "operation": str(gate.type), "refs": refs, "x": None, "y": None}
    dims = list(gate.dimensions)
    axes = [_axis_json(d, strategy) for d in dims]
    entry: dict[str, Any] = {"x": axes[0], "y": axes[1] if len(axes) > 1 else None}
    if len(axes) > 2:
        entry["more_dimensions"] = axes[2:]
    if kind.endswith("PolygonGate"):
        entry["type"] = "polygon"
        entry["vertices"] = [[_bound(c) for c in vertex] for vertex in gate.vertices]
    elif kind.endswith("RectangleGate"):
        entry["type"] = "rectangle"
        keys = ["x", "y", *[f"d{i}" for i in range(3, len(dims) + 1)]]
        entry["bounds"] = {
            k: [_bound(d.min), _bound(d.max)] for k, d in zip(keys, dims, strict=False)
        }
    elif kind.endswith("EllipsoidGate"):
        entry["type"] = "ellipse"
        entry["mean"] = [_bound(c) for c in gate.coordinates]
        entry["covariance"] = [[_bound(c) for c in row] for row in gate.covariance_matrix]
        entry["distance_square"] = _bound(gate.distance_square)
    else:
        entry["type"] = kind.removesuffix("Gate").lower()
    if getattr(gate, "use_complement", False):
        entry["complement"] = True
    return entry


class _Display:
    """Values of a gate's axes in display scale, computed only when a plot asks for them."""

    def __init__(
        self,
        strategy: Any,
        sample: Any,
        spillover: pd.DataFrame | None,
        nodes: Mapping[str, _Node],
    ) -> None:
        self.strategy = strategy
        self.sample = sample
        self.spillover = spillover
        self.nodes = dict(nodes)
        self._compensated: dict[str, np.ndarray] = {}

    def __call__(self, gate_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        node = self.nodes.get(gate_id)
        if node is None:
            raise LabGatingError(f"no gate {gate_id!r}; gates: {', '.join(self.nodes)}")
        dims = list(getattr(node.gate, "dimensions", []) or [])
        if node.quadrant is not None:
            dims = [d for d in dims if d.id in node.quadrant.divider_refs]
        if not dims:
            raise LabGatingError(f"gate {gate_id!r} combines other gates and has no axes")
        x = self._values(dims[0])
        return x, (self._values(dims[1]) if len(dims) > 1 else None)

    def _events(self, comp_ref: str | None) -> np.ndarray:
        import flowkit as fk

        raw = self.sample.get_events(source="raw")
        no_spill = self.spillover is None or self.spillover.empty
        if comp_ref in (None, "uncompensated") or (comp_ref == "FCS" and no_spill):
            return raw
        assert comp_ref is not None
        if comp_ref not in self._compensated:
            if comp_ref == "FCS":
                assert self.spillover is not None
                matrix = fk.Matrix(
                    self.spillover.to_numpy(dtype=np.float64),
                    [str(c) for c in self.spillover.columns],
                )
            else:
                matrix = self.strategy.comp_matrices[comp_ref]
            self._compensated[comp_ref] = np.asarray(matrix.apply(self.sample))
        return self._compensated[comp_ref]

    def _column(self, name: str, comp_ref: str | None) -> int:
        pnn = list(self.sample.pnn_labels)
        for labels in (pnn, list(self.sample.pns_labels), [c.replace("/", "_") for c in pnn]):
            if name in labels:
                return labels.index(name)
        matrix = self.strategy.comp_matrices.get(comp_ref) if comp_ref else None
        if matrix is not None and name in list(matrix.fluorochromes):
            return pnn.index(matrix.detectors[list(matrix.fluorochromes).index(name)])
        raise LabGatingError(f"dimension {name!r} is not a channel of {self.sample.id}")

    def _values(self, dim: Any) -> np.ndarray:
        kind = type(dim).__name__
        comp_ref = getattr(dim, "compensation_ref", None)
        if kind == "RatioDimension":
            values = np.asarray(self.strategy.transformations[dim.ratio_ref].apply(self.sample))
        else:
            name = dim.dimension_ref if kind == "QuadrantDivider" else dim.id
            values = self._events(comp_ref)[:, self._column(str(name), comp_ref)]
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        ref = getattr(dim, "transformation_ref", None)
        if ref:
            values = np.asarray(self.strategy.transformations[ref].apply(values.reshape(-1, 1)))
        return values.reshape(-1)


# ------------------------------------------------------------------------------------------
# Our template as a lab-style FlowJo workspace
# ------------------------------------------------------------------------------------------


def template_workspace(
    template: str | Path,
    detectors: Mapping[str, str],
    out: str | Path,
    *,
    names: Mapping[str, str] | None = None,
    spillover: pd.DataFrame | None = None,
    channels: Sequence[str] | None = None,
    group: str = "B-ALL template",
    sample_name: str = "template",
    matrix_name: str = ACQUISITION_DEFINED,
) -> Path:
    """Write one of our marker-named Gating-ML templates as a FlowJo 10 workspace on
    detector names, the way a lab would keep it.

    A lab can open it in FlowJo as a starting point, and it lets the tests (and an end-to-end
    workflow test) check the workspace route against our own template. Gates are written at
    the template's coordinates; the per-sample fitting of our engine (``<fit>`` specs) is not
    part of a FlowJo workspace.

    Parameters
    ----------
    template : path
        A Gating-ML template in marker names (``resources/gates/b-all-blasts.xml``).
    detectors : mapping of str to str
        Template dimension -> detector (``{"CD45": "V500-C-A"}``); unmapped names are kept.
    out : path
        The ``.wsp`` to write (atomically).
    names : mapping of str to str, optional
        Template gate id -> the population name in the workspace (``{"leukocytes": "CD45+"}``).
    spillover : pandas.DataFrame, optional
        Written as FlowJo's acquisition matrix (``matrix_name``); gates on its detectors are
        compensated with it (with the tube's own spillover when read by :class:`LabGating`).
    channels : sequence of str, optional
        The panel's ``$PnN`` for the workspace's sample (default: the detectors used).
    """
    import flowkit as fk
    from flowkit import Dimension
    from flowkit import gates as fk_gates
    from lxml import etree

    from antigen_profile.files import atomic_write

    names = dict(names or {})
    with _quiet():
        source = fk.parse_gating_xml(str(template))
    has_spill = spillover is not None and not spillover.empty
    compensated = {str(c) for c in spillover.columns} if has_spill else set()
    strategy = fk.GatingStrategy()
    if has_spill:
        assert spillover is not None
        strategy.add_comp_matrix(
            matrix_name,
            fk.Matrix(spillover.to_numpy(dtype=np.float64), [str(c) for c in spillover.columns]),
        )
    for xform_id, xform in source.transformations.items():
        strategy.add_transform(xform_id, xform)
    for gate_name, gate_path in source.get_gate_ids():
        gate = source.get_gate(gate_name, gate_path=gate_path)
        dims = []
        for dim in gate.dimensions:
            detector = detectors.get(str(dim.id), str(dim.id))
            comp = matrix_name if detector in compensated else "uncompensated"
            dims.append(
                Dimension(
                    detector,
                    compensation_ref=comp,
                    transformation_ref=dim.transformation_ref,
                    range_min=dim.min,
                    range_max=dim.max,
                )
            )
        new_name = names.get(gate_name, gate_name)
        kind = type(gate).__name__
        if kind.endswith("PolygonGate"):
            vertices = [[float(c) for c in vertex] for vertex in gate.vertices]
            new_gate: Any = fk_gates.PolygonGate(new_name, dims, vertices)
        elif kind.endswith("RectangleGate"):
            new_gate = fk_gates.RectangleGate(new_name, dims)
        else:
            raise ValueError(
                f"{template}: gate {gate_name} is a {kind}; a FlowJo export needs polygon or "
                "rectangle gates"
            )
        strategy.add_gate(new_gate, ("root", *(names.get(p, p) for p in gate_path[1:])))
    used = list(dict.fromkeys([*(detectors.get(d, d) for d in _dims(source)), *compensated]))
    panel = list(channels) if channels is not None else used
    sample = flowkit_sample(np.zeros((1, len(panel))), panel, spillover, sample_name)
    buffer = io.BytesIO()
    with _quiet():
        fk.Session(gating_strategy=strategy, fcs_samples=[sample]).export_wsp(buffer, group)
    root = etree.fromstring(buffer.getvalue())
    _embed_shared_matrices(root)  # where FlowJo 10 (and FlowKit's reader) look for it
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return atomic_write(out, lambda handle: handle.write(xml), "wb")


def _dims(strategy: Any) -> Iterable[str]:
    for gate_name, gate_path in strategy.get_gate_ids():
        for dim in strategy.get_gate(gate_name, gate_path=gate_path).dimensions:
            yield str(dim.id)
