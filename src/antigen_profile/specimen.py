"""One specimen from several tubes: the antigen profile of a marrow whose panel is split.

A B-ALL panel of 8-10 colours spreads the CAR-T targets over two or three tubes that share a
backbone (CD45, SSC, often CD34), as the EuroFlow BCP-ALL tubes do. Every tube is profiled on
its own (its blasts gated on the backbone); this module merges what the tubes measured into
the specimen's answer, and says where the merge is uncertain:

- **Blasts agree between tubes.** They are the same cells, so each tube's blast share of
  leukocytes must agree within counting error plus the gate's tolerance; a larger gap points
  at a mislabelled tube or a gate that went wrong, and is flagged for review.
- **One value per antigen, by a stated rule.** An antigen measured in several tubes takes the
  value of the tube with the most blast events (the narrowest interval); every tube's value
  stays in the table, and values whose 95% intervals do not overlap are flagged.
- **Co-expression only within a tube.** Whether one blast carries CD22 *or* CD10 is known
  per cell only when both were stained in the same tube. For a combination spread over
  tubes the data bound its coverage: at least the best single target's, at most the sum of
  theirs (capped at 100%). The specimen recommends on the lower bound and says which
  combinations were measured together.
- **A failed tube measures nothing.** Its antigens are not measured in the specimen; the
  other tubes still count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from antigen_profile.cells import jsonable
from antigen_profile.coverage import COVERAGE_COLUMNS, DECIMALS, SEPARATOR
from antigen_profile.outputs import SPECIMEN_READS, sample_paths
from antigen_profile.quantify import ANTIGEN_COLUMNS, lineage_flags
from antigen_profile.vocabulary import Call, QCStatus

#: Two tubes' blast shares of leukocytes may differ by counting error (1.96 standard errors)
#: plus this much: the larger of an absolute gap (fraction of leukocytes) and a relative one.
SHARE_TOLERANCE_ABS = 0.02
SHARE_TOLERANCE_REL = 0.15
#: The rule that picks one tube's value for an antigen measured in several, said in outputs.
VALUE_RULE = "the tube with the most blast events"
#: Profile flags a specimen decides again on its merged table, not taken from one tube.
SPECIMEN_LEVEL_FLAGS = frozenset({"possible_lineage_switch"})


@dataclass(frozen=True)
class TubeResult:
    """What one tube of a specimen gave: its antigen and coverage tables (as written to
    ``antigens.tsv`` / ``coverage.tsv``), its blast and leukocyte counts, and whether it was
    analysed (``failure``: why not)."""

    sample_id: str
    antigens: pd.DataFrame
    coverage: pd.DataFrame
    blasts: int
    leukocytes: int
    failure: str | None = None
    flags: tuple[dict[str, str], ...] = ()
    qc: Mapping[str, Any] = field(default_factory=dict)
    populations: pd.DataFrame | None = None

    @property
    def measured(self) -> list[str]:
        """Antigens this tube measured with a usable number (a % positive)."""
        if self.failure is not None or self.antigens.empty:
            return []
        rows = self.antigens[self.antigens["pct_positive"].notna()]
        return [str(m) for m in rows["marker"]]


def tube_from_outputs(
    sample_id: str, where: str | Path | Mapping[str, str | Path], floor: int
) -> TubeResult:
    """A tube as its profile wrote it (its folder, or the files a rule declared:
    :data:`~antigen_profile.outputs.SPECIMEN_READS`). It counts as not analysed when QC
    failed or its blasts are fewer than ``floor`` (the quantification floor): its numbers
    then say nothing about the specimen."""
    files = sample_paths(where, SPECIMEN_READS)
    qc = _json(files["qc"])
    populations = pd.read_csv(files["populations"], sep="\t")
    counts = dict(zip(populations["population"].astype(str), populations["events"], strict=True))
    blasts, leukocytes = int(counts.get("blasts", 0)), int(counts.get("leukocytes", 0))
    failure = None
    if qc.get("status") == QCStatus.FAIL:
        failure = "QC failed: " + ("; ".join(map(str, qc.get("reasons") or [])) or "see qc.json")
    elif blasts < floor:
        failure = f"{blasts} blast events, fewer than the {floor} needed to quantify antigens"
    coverage = files["coverage"]
    return TubeResult(
        sample_id,
        pd.read_csv(files["antigens"], sep="\t"),
        pd.read_csv(coverage, sep="\t") if coverage.is_file() else pd.DataFrame(),
        blasts,
        leukocytes,
        failure,
        tuple(_json(files["profile"]).get("flags") or ()),
        qc,
        populations,
    )


def _json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return data if isinstance(data, dict) else {}


@dataclass
class SpecimenProfile:
    """The merged answer: per antigen the chosen row (``antigens``; ``sample_id`` says which
    tube) and every tube's row (``measurements``), coverage per combination with bounds
    (``coverage``), the flags for review and the targets no tube measured, with why."""

    specimen_id: str
    tubes: list[str]
    antigens: pd.DataFrame
    measurements: pd.DataFrame
    coverage: pd.DataFrame
    flags: list[dict[str, str]] = field(default_factory=list)
    #: Marker -> the antigens.tsv row saying why no tube gave a number (``note``).
    unmeasured_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unmeasured(self) -> dict[str, str]:
        """Marker -> why no tube of the specimen gave it a number."""
        return {m: str(r["note"]) for m, r in self.unmeasured_rows.items()}

    def antigen_table(self, markers: Sequence[str]) -> pd.DataFrame:
        """``antigens.tsv`` of the specimen: one row per marker in ``markers`` order, the
        measured from their chosen tube (``sample_id``), the others saying why not."""
        measured = {str(r["marker"]): r for r in self.antigens.to_dict("records")}
        rows = [measured.get(m) or self.unmeasured_rows[m] for m in markers]
        columns = list(self.antigens.columns) or list(ANTIGEN_COLUMNS)
        extra = [c for r in rows for c in r if c not in columns]
        table = pd.DataFrame(rows, columns=[*columns, *dict.fromkeys(extra)])
        for column in ("events", "positive_events"):  # counts stay integers, as a tube's
            if column in table:
                table[column] = pd.to_numeric(table[column]).round().astype("Int64")
        return table


def blast_share_flags(tubes: Sequence[TubeResult]) -> list[dict[str, str]]:
    """A flag for each pair of analysed tubes whose blast shares of leukocytes differ by more
    than counting error and the gate's tolerance (see :data:`SHARE_TOLERANCE_ABS`)."""
    flags = []
    shares = [(t, t.blasts / t.leukocytes) for t in tubes if t.failure is None and t.leukocytes]
    for (a, pa), (b, pb) in combinations(shares, 2):
        se = math.sqrt(pa * (1 - pa) / a.leukocytes + pb * (1 - pb) / b.leukocytes)
        allowed = 1.96 * se + max(SHARE_TOLERANCE_ABS, SHARE_TOLERANCE_REL * (pa + pb) / 2)
        if abs(pa - pb) > allowed:
            flags.append(
                {
                    "code": "blast_share_disagrees",
                    "message": f"blasts are {100 * pa:.1f}% of leukocytes in {a.sample_id} but "
                    f"{100 * pb:.1f}% in {b.sample_id} (allowed gap {100 * allowed:.1f} "
                    "points): check the tube labels and both blast gates",
                }
            )
    return flags


def merge_antigens(
    tubes: Sequence[TubeResult], markers: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, str]], dict[str, dict[str, Any]]]:
    """The specimen's antigen table (one row per marker measured anywhere, from the tube with
    the most blast events), every tube's rows, flags for intervals that do not overlap, and
    per marker no tube measured the row that says why (``call`` and ``note``)."""
    rows = []
    for tube in tubes:
        for marker in tube.measured:
            row = tube.antigens[tube.antigens["marker"] == marker].iloc[0]
            rows.append(row.to_dict() | {"_blasts": tube.blasts})
    measurements = pd.DataFrame(rows)
    chosen, flags = [], []
    for marker in markers:
        found = [r for r in rows if r["marker"] == marker]
        if not found:
            continue
        best = max(found, key=lambda r: (r["_blasts"], -_order(tubes, r["sample_id"])))
        chosen.append(best)
        for a, b in combinations(found, 2):
            if a["pct_ci_high"] < b["pct_ci_low"] or b["pct_ci_high"] < a["pct_ci_low"]:
                flags.append(
                    {
                        "code": "tubes_disagree",
                        "message": f"{marker}: {a['pct_positive']:.1f}% positive in "
                        f"{a['sample_id']} but {b['pct_positive']:.1f}% in {b['sample_id']} "
                        f"(95% intervals do not overlap); the specimen uses {best['sample_id']}"
                        f" ({VALUE_RULE})",
                    }
                )
    unmeasured = {
        marker: _why_unmeasured(tubes, marker)
        for marker in markers
        if not any(r["marker"] == marker for r in rows)
    }
    columns = [c for c in (measurements.columns if rows else []) if c != "_blasts"]
    table = pd.DataFrame(chosen, columns=[*columns, "_blasts"]).drop(columns="_blasts")
    measurements = measurements.drop(columns="_blasts") if rows else measurements
    return table.reset_index(drop=True), measurements, flags, unmeasured


def _why_unmeasured(tubes: Sequence[TubeResult], marker: str) -> dict[str, Any]:
    """The antigens.tsv row of a marker no tube gave a number for: a failed tube that
    stained it (its own call, the failure as note), else an analysed tube's own row (no
    reference, too few events, shared detector), else not in any tube's panel. A lone tube's
    row is kept as it is: the specimen is the tube."""
    base = {"population": "blasts", "marker": marker, "pct_positive": None}
    if len(tubes) == 1 and _row_of(tubes[0], marker) is not None:
        return dict(_row_of(tubes[0], marker) or {})
    failed = [t for t in tubes if t.failure is not None and _stained(t, marker)]
    if failed:
        reasons = "; ".join(f"{t.sample_id} not analysed: {t.failure}" for t in failed)
        own = _row_of(failed[0], marker) or {"call": Call.NOT_MEASURED}
        return base | {
            "sample_id": failed[0].sample_id,
            "call": own["call"],
            "note": reasons,
        }
    for tube in tubes:
        row = _row_of(tube, marker)
        if row is not None and _stained(tube, marker):
            note = row.get("note")
            row["note"] = f"in {tube.sample_id}" + (
                f": {note}" if isinstance(note, str) and note else ""
            )
            return row
    return base | {
        "sample_id": "",
        "call": Call.NOT_IN_PANEL,
        "note": f"no tube of the specimen stained {marker}",
    }


def _row_of(tube: TubeResult, marker: str) -> dict[str, Any] | None:
    if tube.antigens.empty:
        return None
    rows = tube.antigens[tube.antigens["marker"] == marker]
    return None if rows.empty else rows.iloc[0].to_dict()


def specimen_coverage(
    tubes: Sequence[TubeResult], antigens: pd.DataFrame, targets: Sequence[str]
) -> pd.DataFrame:
    """Coverage of every combination of the measured ``targets`` for the specimen.

    A combination whose targets were all stained in one analysed tube takes that tube's
    per-cell row (the tube with most blasts if several): ``measured_together`` is the tube's
    id and the bounds equal the value. Otherwise ``covered_pct`` is the lower bound (the best
    single target's), ``covered_pct_high`` the upper (the sum, capped at 100), and the escape
    interval is the best single target's: the conservative figure a recommendation may use.
    """
    by_marker = {str(r["marker"]): r for _, r in antigens.iterrows()}
    measured = [t for t in targets if t in by_marker]
    singles = {}
    for marker in measured:
        row = by_marker[marker]
        tube = next(t for t in tubes if t.sample_id == row["sample_id"])
        singles[marker] = _row(tube.coverage, marker)
    out = []
    for size in range(1, len(measured) + 1):
        for combo in combinations(measured, size):
            name = SEPARATOR.join(combo)
            together = [
                t for t in tubes if set(combo) <= set(t.measured) and _row(t.coverage, name)
            ]
            if together:
                tube = max(together, key=lambda t: t.blasts)
                row = dict(_row(tube.coverage, name) or {})
                row.update(measured_together=tube.sample_id, covered_pct_high=row["covered_pct"])
            else:
                parts = [singles[m] for m in combo if singles[m]]
                if len(parts) < len(combo):
                    continue  # a target without a per-cell row: nothing to bound it with
                best = max(parts, key=lambda r: r["covered_pct"])
                high = min(100.0, sum(float(r["covered_pct"]) for r in parts))
                row = dict(best)
                row.update(
                    combination=name,
                    n_products=size,
                    measured_together="",
                    covered_pct_high=round(high, DECIMALS),
                )
            out.append(row)
    columns = [*COVERAGE_COLUMNS, "covered_pct_high", "measured_together"]
    table = pd.DataFrame(out, columns=columns)
    if table.empty:
        return table
    table["_rank"] = range(len(table))
    table = table.sort_values(
        ["n_products", "covered_pct", "_rank"], ascending=[True, False, True], kind="stable"
    )
    return table.drop(columns="_rank").reset_index(drop=True)


def merge_specimen(
    specimen_id: str,
    tubes: Sequence[TubeResult],
    markers: Sequence[str],
    targets: Sequence[str],
    b_lineage: Sequence[str] | None = None,
) -> SpecimenProfile:
    """The specimen's profile from its tubes (in sheet order). With ``b_lineage`` the
    lineage-switch flag is decided on the merged table: a tube that stains no B-lineage
    antigen but CD20 would raise it alone, the specimen only when every B-lineage antigen
    measured in any tube is negative."""
    antigens, measurements, flags, unmeasured = merge_antigens(tubes, markers)
    coverage = specimen_coverage(tubes, antigens, targets)
    if len(tubes) == 1:  # the tube is the specimen: its own flags, in their order
        flags = [dict(f) for f in tubes[0].flags]
    else:
        flags = blast_share_flags(tubes) + flags + tube_flags(tubes)
        if b_lineage is not None and not antigens.empty:
            flags += lineage_flags(antigens, list(b_lineage))
    return SpecimenProfile(
        specimen_id,
        [t.sample_id for t in tubes],
        antigens,
        measurements,
        coverage,
        flags,
        unmeasured,
    )


def tube_flags(tubes: Sequence[TubeResult]) -> list[dict[str, str]]:
    """Each analysed tube's gating and profile flags, named after their tube (a failed tube
    gives its failure instead, under ``tube_not_analysed``): a reviewer must see them for
    the specimen."""
    flags = []
    for tube in tubes:
        if tube.failure is not None:
            flags.append(
                {
                    "code": "tube_not_analysed",
                    "message": f"{tube.sample_id} not analysed ({tube.failure}): the targets "
                    "only it stained are unknown for the specimen",
                }
            )
            continue
        for flag in tube.flags:
            if flag.get("code") in SPECIMEN_LEVEL_FLAGS:
                continue
            flags.append(
                {
                    "code": str(flag.get("code", "flag")),
                    "message": f"{tube.sample_id}: {flag.get('message', '')}",
                }
            )
    return flags


def specimen_document(profile: SpecimenProfile, tubes: Sequence[TubeResult]) -> dict[str, Any]:
    """``specimen.json``: the tubes (counts, QC, what each measured), the rule choosing one
    value per antigen, every tube's measurement, the flags and the targets nobody measured."""
    return jsonable(
        {
            "specimen_id": profile.specimen_id,
            "tubes": [
                {
                    "sample_id": t.sample_id,
                    "qc_status": t.qc.get("status"),
                    "analysed": t.failure is None,
                    "failure": t.failure,
                    "blast_events": t.blasts,
                    "leukocyte_events": t.leukocytes,
                    "blast_pct_leukocytes": round(100.0 * t.blasts / t.leukocytes, 4)
                    if t.leukocytes
                    else None,
                    "measured": t.measured,
                }
                for t in tubes
            ],
            "value_rule": VALUE_RULE,
            "measurements": profile.measurements.to_dict("records"),
            "measured_together": sorted(
                {
                    str(c)
                    for c, t in zip(
                        profile.coverage.get("combination", []),
                        profile.coverage.get("measured_together", []),
                        strict=True,
                    )
                    if t
                }
            ),
            "flags": profile.flags,
            "unmeasured": profile.unmeasured,
        }
    )


def _row(table: pd.DataFrame, combination: str) -> Mapping[str, object] | None:
    if table.empty:
        return None
    rows = table[table["combination"] == combination]
    return None if rows.empty else rows.iloc[0].to_dict()


def _order(tubes: Sequence[TubeResult], sample_id: object) -> int:
    return next(i for i, t in enumerate(tubes) if t.sample_id == sample_id)


def _stained(tube: TubeResult, marker: str) -> bool:
    """Whether a tube's panel holds ``marker`` (its row is not ``not_in_panel``); a tube that
    failed before its panel was read names none, and is then taken to have carried every
    marker not found elsewhere."""
    if tube.antigens.empty:
        return True
    row = _row_of(tube, marker)
    return row is not None and str(row.get("call")) != Call.NOT_IN_PANEL


def specimen_qc(tubes: Sequence[TubeResult]) -> dict[str, Any]:
    """The specimen's QC for the decision: a lone tube's own; of several, failed only when
    every tube failed QC (the others' antigens still count: a failed tube is flagged,
    :func:`tube_flags`), else the analysed tubes' warnings, each named after its tube."""
    if len(tubes) == 1:
        return dict(tubes[0].qc)
    statuses = [t.qc.get("status") for t in tubes]
    if all(s == QCStatus.FAIL for s in statuses):
        reasons = [f"{t.sample_id}: {r}" for t in tubes for r in t.qc.get("reasons") or []]
        return {"status": QCStatus.FAIL, "reasons": reasons, "warnings": []}
    warnings = [
        f"{t.sample_id}: {w}"
        for t in tubes
        if t.qc.get("status") == QCStatus.WARN
        for w in t.qc.get("warnings") or []
    ]
    status = QCStatus.WARN if QCStatus.WARN in statuses else QCStatus.PASS
    return {"status": status, "reasons": [], "warnings": warnings}


def specimen_populations(tubes: Sequence[TubeResult]) -> pd.DataFrame | None:
    """The populations the specimen's blast count comes from: the analysed tube's with the
    most blasts (the same rule as its antigen values), or, none analysed, the tube's with
    the most."""
    analysed = [t for t in tubes if t.failure is None] or list(tubes)
    return max(analysed, key=lambda t: t.blasts).populations
