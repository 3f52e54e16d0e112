# Config, sheets, trial and output locations: checked here, at parse time, so a bad input
# stops the run before any job, in one line naming the fix.
import functools
from pathlib import Path

from snakemake.exceptions import WorkflowError

from antigen_profile import demo, outputs, stages
from antigen_profile.cohort import timepoint_rank
from antigen_profile.config import ConfigError, missing_files, resolve_paths, validate_config
from antigen_profile.trial import TrialError, load_trial
from antigen_profile.steps import patient_param, run_summary
from antigen_profile.sheets import (
    SheetError,
    marker_control_columns,
    patient_record,
    read_patients,
    read_review,
    read_samples,
)

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))

# Relative paths in the config are relative to the working directory (run from the repository).
resolve_paths(config, Path.cwd())
RESULTS = str(Path(config["results"]))

# The demo cohort's FCS files are made by the workflow itself (rule demo_tube).
DEMO_DIR = (Path(workflow.basedir) / "resources" / "demo").resolve()
IS_DEMO = Path(config["samples"]).resolve() == DEMO_DIR / "samples.tsv"
DEMO_TUBES = set(demo.tube_names())


def _demo_makes(path):
    return IS_DEMO and path.parent == DEMO_DIR / "fcs" and path.suffix == ".fcs" and path.stem in DEMO_TUBES


_missing = missing_files(config)
if _missing:
    raise WorkflowError("nothing was run: " + "\n".join(_missing))
try:
    TRIAL = load_trial(config["trial"])
except TrialError as exc:
    raise WorkflowError(f"trial rules rejected, nothing was run: {exc}")
try:
    SAMPLES = read_samples(config["samples"], producible=_demo_makes)
    PATIENTS = read_patients(config["patients"])
except SheetError as exc:
    raise WorkflowError(f"sample or patient sheet rejected, nothing was run:\n{exc}")
SAMPLE_IDS = list(SAMPLES["sample_id"])
# Each row as a plain dict: input and params functions run once per job, and a DataFrame row
# lookup costs 50 times a dict's (the DAG of a 10,000-sample archive, issue 19).
SAMPLE_ROWS = SAMPLES.to_dict("index")
ID_PATTERN = r"[A-Za-z0-9._-]+"
# specimen_id -> its tubes in sheet order (a tube without specimen_id is its own specimen).
SPECIMENS = {
    str(specimen): [str(s) for s in rows["sample_id"]]
    for specimen, rows in SAMPLES.groupby("specimen_id", sort=False)
}
SPECIMEN_IDS = list(SPECIMENS)
# Tubes that are not a specimen of their own id (rules tube and specimen).
SPLIT_TUBES = [s for s in SAMPLE_IDS if SPECIMENS.get(s) != [s]]
# Reviewers' sign-offs (config review: review.tsv), checked here like the other sheets.
REVIEW_SHEET = config.get("review") or None
try:
    REVIEWS = read_review(REVIEW_SHEET, SPECIMENS, TRIAL.targets) if REVIEW_SHEET else {}
except SheetError as exc:
    raise WorkflowError(f"review sheet rejected, nothing was run:\n{exc}")
MARKER_CONTROLS = marker_control_columns(SAMPLES)


def _tubes():
    columns = ["fcs", "control_fcs", "bead_fcs", *MARKER_CONTROLS]
    return [p for c in columns if c in SAMPLES for p in SAMPLES[c] if p]


_layout = outputs.layout_problems(
    RESULTS,
    SAMPLE_IDS,
    {
        "sample sheet": [config["samples"]],
        "patient sheet": [config["patients"]],
        "review sheet": [REVIEW_SHEET] if REVIEW_SHEET else [],
        "tube": _tubes(),
        "gates file": [p for p in SAMPLES["gates"] if p],
        "config file": list(stages.profile_inputs(config).values()),
    },
    specimen_ids=SPECIMEN_IDS,
)
if _layout:
    raise WorkflowError("output locations rejected, nothing was run:\n" + "\n".join(_layout))

_unknown = sorted(set(SAMPLES["patient_id"]) - set(PATIENTS["patient_id"]))
if _unknown:
    logger.warning(
        f"patients not in {config['patients']}: {', '.join(_unknown)}; their clinical status "
        "will be undetermined"
    )

# Ids are checked against the sheet schema's pattern (no "/"), so a wildcard is one path
# segment of those characters: {sample}/x never matches specimens/{specimen}/x. (An
# alternation of every id made each match cost time in proportion to the cohort, and the
# DAG build grow with its square: issue 19.)
wildcard_constraints:
    sample=ID_PATTERN,
    specimen=ID_PATTERN,


def sample_inputs(wildcards):
    """The stained tube and, when the sheet names them, its control tubes, beads and its
    corrected gates (an input of this tube's profile only: a reviewer's edit reruns this
    tube and its specimen, nothing else)."""
    row = SAMPLE_ROWS[wildcards.sample]
    inputs = {"fcs": row["fcs"]}
    if row["gates"]:
        inputs["gates"] = row["gates"]
    if row["control_fcs"]:
        inputs["control"] = row["control_fcs"]
    for column in MARKER_CONTROLS:
        if row[column]:
            inputs[column] = row[column]
    beads = row["bead_fcs"] or config["calibration"].get("bead_fcs")
    if beads:
        inputs["beads"] = beads
    return inputs


def _timepoint_order():
    """patient_id -> its sample ids in timepoint order (config timepoints.order, others after
    in sheet order); built once: a lookup per sample, not a scan of the sheet."""
    order = config["timepoints"]["order"]
    by_patient = {}
    for i, (sample_id, patient, timepoint) in enumerate(
        zip(SAMPLES["sample_id"], SAMPLES["patient_id"], SAMPLES["timepoint"])
    ):
        by_patient.setdefault(patient, []).append(
            (timepoint_rank(timepoint or "", order, i), str(sample_id))
        )
    return {p: [s for _, s in sorted(rows, key=lambda r: r[0])] for p, rows in by_patient.items()}


PATIENT_SAMPLES = _timepoint_order()


def _sheet_facts(sample_id):
    """A tube's patient_id, the patient's row (editing one patient reruns that patient's
    jobs only) and its timepoint."""
    row = SAMPLE_ROWS[sample_id]
    return {
        "patient_id": row["patient_id"],
        "patient": patient_row(row["patient_id"]),
        "timepoint": row["timepoint"] or None,
    }


def tube_sheet(wildcards):
    """What the sheets say about this tube, as one param (Snakemake inspects every callable
    param of every job: one instead of five, issue 19): _sheet_facts, its specimen_id, and
    the sample ids of the patient in timepoint order, so the report can link to the others.
    JSON text with <, > and & escaped (steps.patient_param): params are printed in
    Snakemake's own report, which does not escape them."""
    facts = _sheet_facts(wildcards.sample)
    return patient_param(
        {
            **facts,
            "specimen_id": SAMPLE_ROWS[wildcards.sample]["specimen_id"],
            "patient_samples": PATIENT_SAMPLES[facts["patient_id"]],
        }
    )


def specimen_inputs(wildcards):
    """Each tube's profile files the specimen step reads, as ``{key}_{i}`` for the i-th tube
    of params.tubes (a rule's inputs are flat names)."""
    return {
        f"{key}_{i}": path.replace("{sample}", sample_id)
        for i, sample_id in enumerate(SPECIMENS[wildcards.specimen])
        for key, path in outputs.sample_patterns(RESULTS, outputs.SPECIMEN_READS).items()
    }


def specimen_sheet(wildcards):
    """The specimen's _sheet_facts, from its first tube (its tubes share patient and
    timepoint), as escaped JSON text like tube_sheet's."""
    return patient_param(_sheet_facts(SPECIMENS[wildcards.specimen][0]))


# Never made and never there: see own_specimen_inputs.
NOT_ONE_TUBE = f"{RESULTS}/.not-a-one-tube-specimen"


def own_specimen_inputs(wildcards):
    """Rule one_tube_specimen's inputs: the tube's (sample_inputs) when the tube is its own
    specimen; otherwise a file no rule makes, which tells Snakemake to take rules tube and
    specimen instead (a rule whose input cannot be made is skipped)."""
    if SPECIMENS.get(wildcards.sample) != [wildcards.sample]:
        return {"not_a_one_tube_specimen": NOT_ONE_TUBE}
    return sample_inputs(wildcards)


@functools.cache
def patient_row(patient_id):
    """The patient's row of the sheet (None: not in it), looked up once per patient."""
    return patient_record(PATIENTS, patient_id)


def review_param(specimen_id):
    """This specimen's review row as JSON text (``null``: none), a param of its job only:
    editing one row of review.tsv reruns that specimen's job, not the others'."""
    return patient_param(REVIEWS.get(specimen_id))


def report_file(path, category, key, caption, wildcard="sample"):
    """A file that also goes into Snakemake's own report (`snakemake --report`), filed under
    its {wildcard} and labelled with it as ``key``, captioned by workflow/report/{caption}.rst."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=f"{{{wildcard}}}",
        labels={key: f"{{{wildcard}}}", "file": Path(path).name},
    )
