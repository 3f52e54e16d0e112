"""Which configuration each workflow stage reads: its settings and its files.

Snakemake reruns a job when one of its declared inputs or params changes, and only then. So
every stage's rule declares the files the configuration points at (the gating template, the
trial, a compensation matrix, a lab's gating) as inputs, and the values that change a number
as one hashed param (:func:`digest`: a short SHA-256, so a changed threshold shows in the log
as one line, not the whole configuration twice). The stage's script rebuilds its
configuration from the sections that digest covers and the rule's inputs, and nothing else
(:func:`stage_config`), so a setting no rule declared cannot change a result unseen.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Config sections read by the per-sample analysis (``pipeline.profile_sample``).
PROFILE_SETTINGS = (
    "markers",
    "scatter",
    "quantified",
    "blast_definition",
    "positive_controls",
    "b_lineage_markers",
    "blast_mimics",
    "logicle",
    "positivity",
    "floors",
    "calibration",
    "qc",
    "report",
    "lab_gating",
    "compensation",
)
#: ... by the trial decision (``steps.decide_sample``).
DECISION_SETTINGS = ("floors",)
#: ... by the specimen's merge and decision (``steps.decide_specimen``).
SPECIMEN_SETTINGS = ("floors", "quantified", "b_lineage_markers")
#: ... by the specimen's report.
SPECIMEN_REPORT_SETTINGS = ("quantified",)
#: ... by the cohort tables (``steps.write_cohort_table``).
COHORT_SETTINGS = ("timepoints",)
#: ... by the sample report (labels, and settings a profile.json predating them lacks).
REPORT_SETTINGS = ("quantified", "positivity", "floors", "logicle", "qc", "report")
#: ... by the cohort report.
COHORT_REPORT_SETTINGS = ("quantified",)

#: Files the configuration names, as (section or None, key) -> the rule input carrying it.
CONFIG_FILES: dict[tuple[str | None, str], str] = {
    (None, "gating_template"): "template",
    (None, "trial"): "trial",
    ("compensation", "matrix"): "matrix",
    ("lab_gating", "file"): "lab_gating",
    ("calibration", "bead_fcs"): "beads",
}


def settings(config: Mapping[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """The ``sections`` of ``config`` without the file paths in them (those are inputs)."""
    out = {key: copy.deepcopy(config[key]) for key in sections if key in config}
    for section, key in CONFIG_FILES:
        if section is not None and isinstance(out.get(section), dict) and key in out[section]:
            out[section][key] = None
    return out


def digest(config: Mapping[str, Any], sections: tuple[str, ...]) -> str:
    """The rule param standing for a stage's :func:`settings`: SHA-256 (16 hex digits) of
    their canonical JSON."""
    text = json.dumps(settings(config, sections), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def declared(config: Mapping[str, Any], sections: tuple[str, ...], param: str) -> dict[str, Any]:
    """A job's :func:`settings` from the workflow ``config``, checked against the ``param``
    its rule declared (:func:`digest`): they differ only if the configuration changed after
    the workflow was read, and then the job must not run on settings nobody declared."""
    found = digest(config, sections)
    if found != param:
        raise RuntimeError(
            f"the configuration changed after the workflow was read (settings {found}, rule "
            f"declared {param}); start the run again"
        )
    return settings(config, sections)


def profile_inputs(config: Mapping[str, Any]) -> dict[str, str]:
    """The files the configuration makes every profile job read: the lab's gating or our
    template, the trial (its targets), and a compensation matrix when one is set."""
    lab = (config.get("lab_gating") or {}).get("file")
    files = {"lab_gating": str(lab)} if lab else {"template": str(config["gating_template"])}
    files["trial"] = str(config["trial"])
    matrix = (config.get("compensation") or {}).get("matrix")
    if matrix:
        files["matrix"] = str(matrix)
    return files


def stage_config(declared: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's configuration from its rule's params (``declared``, see :func:`settings`)
    and inputs: each file the configuration names is the rule's input of that name, or
    absent."""
    config = copy.deepcopy(dict(declared))
    named = dict(inputs.items())  # a Snakemake Namedlist's `in` tests values, not names
    for (section, key), name in CONFIG_FILES.items():
        value = str(named[name]) if name in named and name != "beads" else None
        if section is None:
            if value is not None:
                config[key] = value
        elif isinstance(config.get(section), dict):
            config[section][key] = value
    return config
