"""The status words the outputs are written in, named once.

A call, a decision or a rule outcome is read by several stages (quantify writes a call, the
decision reads it, the report colours it), so each word is spelled here and a typo is a
NameError instead of a silently different branch. Every member is a ``str`` equal to its word
(``StrEnum``): json, csv and pandas write the plain word, so the files stay as they were;
docs/outputs.md says what each word means to a reader.
"""

from __future__ import annotations

from enum import StrEnum


class Call(StrEnum):
    """``antigens.tsv`` ``call``: a measured category, or why there is no number."""

    POSITIVE = "positive"
    PARTIAL = "partial"
    NEGATIVE = "negative"
    #: Too few blasts to quantify (below the quantification floor).
    INSUFFICIENT_EVENTS = "insufficient_events"
    #: No control tube and no usable internal negative population.
    NO_REFERENCE = "no_reference"
    #: The antigen shares its only detector with another one.
    NOT_MEASURED = "not_measured"
    NOT_IN_PANEL = "not_in_panel"


#: Calls that carry a measurement; the others say why there is no number.
MEASURED_CALLS: frozenset[str] = frozenset({Call.NEGATIVE, Call.PARTIAL, Call.POSITIVE})


class Verdict(StrEnum):
    """``decision.json`` ``decision``: what the sample means for the trial."""

    CANDIDATE = "candidate"
    NOT_CANDIDATE = "not_candidate"
    NEEDS_REVIEW = "needs_review"


class AntigenStatus(StrEnum):
    """``decision.json`` ``antigen_status``: whether the antigen profile can be used."""

    OK = "ok"
    INSUFFICIENT_BLASTS = "insufficient_blasts"
    QC_FAILED = "qc_failed"


class ClinicalStatus(StrEnum):
    """``decision.json`` ``clinical_status``: the clinical rules taken together."""

    ELIGIBLE = "eligible"
    EXCLUDED = "excluded"
    UNDETERMINED = "undetermined"


class Outcome(StrEnum):
    """A trial rule's or a condition's outcome; unknown is never taken as pass."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


class QCStatus(StrEnum):
    """``qc.json`` ``status``: fail stops the analysis, warn sends the decision to review."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class ReferenceSource(StrEnum):
    """``antigens.tsv`` ``threshold_source``: the negative reference behind a threshold.

    Besides these, ``internal:<population>`` names an internal negative population.
    """

    CONTROL = "control:blasts"
    MARKER_CONTROL = "marker_control:blasts"
    #: Two-component mixture fit on the blasts themselves: the weakest reference.
    MIXTURE = "mixture:blasts"
    NONE = "none"


class ReviewStatus(StrEnum):
    """``recommendations.tsv`` ``review_status``: whether a reviewer signed this result."""

    UNREVIEWED = "unreviewed"
    SIGNED = "signed"
    #: Signed on a result that has changed since (data, configuration, gates or numbers).
    STALE = "stale"


class ReviewVerdict(StrEnum):
    """``review.tsv`` ``verdict``: the computed decision stands, or the reviewer's replaces it
    in ``final_decision`` (the computed one is kept beside it)."""

    CONFIRM = "confirm"
    OVERRIDE = "override"
