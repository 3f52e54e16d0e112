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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import pandas as pd

from antigen_profile.coverage import COVERAGE_COLUMNS, DECIMALS, SEPARATOR

#: Two tubes' blast shares of leukocytes may differ by counting error (1.96 standard errors)
#: plus this much: the larger of an absolute gap (fraction of leukocytes) and a relative one.
SHARE_TOLERANCE_ABS = 0.02
SHARE_TOLERANCE_REL = 0.15
#: The rule that picks one tube's value for an antigen measured in several, said in outputs.
VALUE_RULE = "the tube with the most blast events"


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

    @property
    def measured(self) -> list[str]:
        """Antigens this tube measured with a usable number (a % positive)."""
        if self.failure is not None or self.antigens.empty:
            return []
        rows = self.antigens[self.antigens["pct_positive"].notna()]
        return [str(m) for m in rows["marker"]]


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
    unmeasured: dict[str, str] = field(default_factory=dict)


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
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, str]], dict[str, str]]:
    """The specimen's antigen table (one row per marker measured anywhere, from the tube with
    the most blast events), every tube's rows, flags for intervals that do not overlap, and
    the markers no tube measured with the reason."""
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
    unmeasured = {}
    for marker in markers:
        if any(r["marker"] == marker for r in rows):
            continue
        failed = [t for t in tubes if t.failure is not None and _stained(t, marker)]
        if failed:
            reasons = "; ".join(f"{t.sample_id} not analysed: {t.failure}" for t in failed)
            unmeasured[marker] = reasons
        else:
            unmeasured[marker] = "no tube of the specimen measured it"
    columns = [c for c in (measurements.columns if rows else []) if c != "_blasts"]
    table = pd.DataFrame(chosen, columns=[*columns, "_blasts"]).drop(columns="_blasts")
    measurements = measurements.drop(columns="_blasts") if rows else measurements
    return table.reset_index(drop=True), measurements, flags, unmeasured


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
) -> SpecimenProfile:
    """The specimen's profile from its tubes (in sheet order)."""
    antigens, measurements, flags, unmeasured = merge_antigens(tubes, markers)
    coverage = specimen_coverage(tubes, antigens, targets)
    flags = blast_share_flags(tubes) + flags
    return SpecimenProfile(
        specimen_id,
        [t.sample_id for t in tubes],
        antigens,
        measurements,
        coverage,
        flags,
        unmeasured,
    )


def _row(table: pd.DataFrame, combination: str) -> Mapping[str, object] | None:
    if table.empty:
        return None
    rows = table[table["combination"] == combination]
    return None if rows.empty else rows.iloc[0].to_dict()


def _order(tubes: Sequence[TubeResult], sample_id: object) -> int:
    return next(i for i, t in enumerate(tubes) if t.sample_id == sample_id)


def _stained(tube: TubeResult, marker: str) -> bool:
    """Whether a (failed) tube's table names ``marker``; a tube that failed before its panel
    was read names none, and is then taken to have carried every marker not found elsewhere."""
    if tube.antigens.empty:
        return True
    return marker in set(tube.antigens["marker"])
