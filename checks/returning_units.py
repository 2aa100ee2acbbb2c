"""Returning units: does this batch share units with earlier ones, and does it matter for the fusion?

Each batch stores every row's unit id and the primary estimator's influence value
(``batch_influence``). From them :func:`assimilate.filters.shared_unit_covariance` estimates the
covariance of the batch estimates that share units. The check on ``batch_effect`` (WARN) reports
the share of the batch's units seen in an earlier batch and the estimated correlation with the
earlier batches.

Rule (material correlation): the standard error of the precision-weighted average of the batches
so far, with the estimated correlation, differs from the one that assumes independent batches by
more than ``MATERIAL_SE_CHANGE`` (5%), and units return. Below that an interval built as if the
batches were independent would be off by less than 5% of its width. A failure is a warning, not
an exclusion: the posterior conditions on the estimated correlation (Kalman backend) and the
always-valid interval uses it too; the check tells the team that it does.

Reading: the check needs every earlier batch's rows only when some unit is in two batches. So it
asks the warehouse which other stored batches hold any of this batch's units (a probe), and
stores the answer with the batch (``unit_overlap``: did its units meet another batch's when it was
checked). When no earlier batch is met and every earlier batch's own answer was no, no unit is in
two of the batches so far: of two batches that share a unit, the one checked later saw the other's
rows (runs of one study never overlap, and a step stores each batch before it checks the next), so
its answer is yes. The batches are then independent and the earlier batches' labels are all the
check reads (:class:`DisjointHistory`). A stale yes (the other batch was corrected since) or a
batch stored without an answer only costs the full read. A history of fresh units then costs a
probe per batch, not a read and a factorization of every stored influence value (quadratic over a
backfill). Each answer also counts its batch's influence values, so the labels come from the
answers when their counts add up to the table's rows, not from a pass over every stored label.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assimilate.admission import unit_batches
from assimilate.design.plan import ONE_SUBJECT, AnalysisPlan
from assimilate.diagnostics import Verdict
from assimilate.filters import SharedUnits, shared_unit_covariance
from resources.arrow_memory import ARROW_TEXT
from resources.warehouse import Warehouse

INFLUENCE_TABLE = "batch_influence"
MATERIAL_SE_CHANGE = 0.05
RULE = (
    f"no unit returns, or the standard error of the running average changes by at most "
    f"{MATERIAL_SE_CHANGE:.0%} when the estimated correlation with earlier batches is used"
)


OVERLAP_TABLE = "unit_overlap"  # per batch: whether its units met another stored batch's when checked
# The other stored batches that hold any of this batch's units (their ids are the bound list).
_MET_SQL = (
    "SELECT DISTINCT partition_key FROM {table} "
    "WHERE partition_key <> $batch AND unit_id IN (SELECT value FROM {values} AS batch_units)"
)
_STORED_BATCHES_SQL = "SELECT DISTINCT partition_key FROM {table}"
_STORED_ROWS_SQL = "SELECT count(*) AS stored_rows FROM {table}"


@dataclass(frozen=True)
class DisjointHistory:
    """The earlier batches with stored influence values, when no unit is in two of them or in this batch."""

    labels: tuple[str, ...]


@dataclass(frozen=True)
class InfluenceHistory:
    """What the returning-units check of a batch reads, and whether the batch's units met another's.

    ``influence`` is every stored influence row, or a :class:`DisjointHistory` when no unit is in
    two of the batches so far; ``meets_others`` is the batch's answer for ``unit_overlap``.
    """

    influence: pd.DataFrame | DisjointHistory
    meets_others: bool

    def overlap_row(self, influence_rows: int) -> pd.DataFrame:
        """The batch's row of ``unit_overlap``, stored with its ``influence_rows`` influence values."""
        return pd.DataFrame({"meets_others": [self.meets_others], "influence_rows": [influence_rows]})


def earlier_influence(reader: Warehouse, study: str, batch: str, units: pd.Series) -> InfluenceHistory:
    """What the check of ``batch`` reads: the stored influence rows, or only the earlier batches' labels.

    ``units`` are the unit ids of the batch's valid rows (a superset of its influence rows' ids, so
    a returning unit is never missed). Every stored row is read unless the probe and the earlier
    batches' stored answers show that no unit is in two batches (module docstring).
    """
    # Arrow text as it is: its unique() costs 0.9 GB for 1e7 ids, and IN needs no distinct values
    batch_units = units if units.dtype == ARROW_TEXT else pd.Series(pd.unique(units.astype(str)))
    met = reader.read_query_on(study, INFLUENCE_TABLE, _MET_SQL, {"batch": batch}, values=batch_units)
    if met is None:  # nothing stored yet
        return InfluenceHistory(DisjointHistory(()), meets_others=False)
    met_keys = {str(k) for k in met["partition_key"]}
    if not any(k < batch for k in met_keys):
        answers = reader.read_table(study, OVERLAP_TABLE)
        labels = [label for label in _stored_labels(reader, study, answers) if label < batch]
        if _all_answered_no(answers, labels):
            return InfluenceHistory(DisjointHistory(tuple(labels)), meets_others=bool(met_keys))
    return InfluenceHistory(reader.read_table(study, INFLUENCE_TABLE), meets_others=bool(met_keys))


def stored_influence(reader: Warehouse, study: str) -> pd.DataFrame:
    """Every stored influence row; none (an empty frame) when no unit is in two stored batches.

    The batches' ``unit_overlap`` answers tell (module docstring); with no shared unit the
    posterior's correlation is the identity whatever the rows are, so they need not be read.
    """
    answers = reader.read_table(study, OVERLAP_TABLE)
    if _all_answered_no(answers, _stored_labels(reader, study, answers)):
        return pd.DataFrame()
    return reader.read_table(study, INFLUENCE_TABLE)


def _stored_labels(reader: Warehouse, study: str, answers: pd.DataFrame) -> list[str]:
    """The batches with stored influence rows, sorted: by their answers when these count every row.

    Each answer is stored in one write with its batch's influence rows, so it counts them exactly.
    When the answers' counts add up to the table's rows, no stored row is without an answer: the
    batches with a count above zero are the stored ones. A count of the table is far cheaper than
    its distinct labels (a hash of every row's label), which are read only otherwise (an answer
    stored by an earlier version has no count).
    """
    counted = "influence_rows" in answers and not answers.empty and answers["influence_rows"].notna().all()
    if counted:
        stored = reader.read_query_on(study, INFLUENCE_TABLE, _STORED_ROWS_SQL)
        if stored is not None and int(stored["stored_rows"].iloc[0]) == int(answers["influence_rows"].sum()):
            pairs = zip(answers["partition_key"], answers["influence_rows"], strict=True)
            return sorted(str(k) for k, n in pairs if n > 0)
    stored = reader.read_query_on(study, INFLUENCE_TABLE, _STORED_BATCHES_SQL)
    return sorted(str(k) for k in stored["partition_key"]) if stored is not None else []


def _all_answered_no(answers: pd.DataFrame, labels: list[str]) -> bool:
    """Whether each of these batches answered that its units met no other stored batch's."""
    said = (
        dict(zip(answers["partition_key"].astype(str), answers["meets_others"], strict=True))
        if not answers.empty
        else {}
    )
    return all(label in said and not said[label] for label in labels)


def standard_error_ratio(shared: SharedUnits) -> float:
    """SE of the precision-weighted average of the batches with their correlation, over the SE without.

    Exactly 1 when no unit is in two batches (their correlation is the identity).
    """
    if shared.is_disjoint:
        return 1.0
    variance = np.diagonal(shared.covariance)
    keep = variance > 0
    if int(keep.sum()) < 2:
        return 1.0
    var, sd = variance[keep], np.sqrt(variance[keep])
    weights = (1.0 / var) / np.sum(1.0 / var)
    dependent = weights @ (shared.correlation[np.ix_(keep, keep)] * np.outer(sd, sd)) @ weights
    return math.sqrt(float(dependent) / float(np.sum(weights * weights * var)))


def returning_units_verdict(
    influence: pd.DataFrame | DisjointHistory, this_batch: pd.DataFrame, batch: str, *, kalman: bool = True
) -> tuple[Verdict, dict[str, object]]:
    """The check of ``batch`` against every earlier batch with stored influence values.

    ``influence`` holds the stored rows of any partitions (those not before ``batch`` are ignored),
    or the earlier batches' labels when no unit is in two batches (:func:`earlier_influence`);
    ``this_batch`` is the batch's own rows (``assimilate.estimators.batch.INFLUENCE_COLUMNS``).
    ``kalman`` says whether the posterior can condition on the correlation (the particle filter
    assumes independent batches).
    """
    if this_batch.empty:
        return Verdict.undefined(
            "returning_units",
            threshold=MATERIAL_SE_CHANGE,
            rule=RULE,
            reason=f"batch {batch}: no influence values (the primary estimator gave no estimate)",
        ), {}
    if isinstance(influence, DisjointHistory):  # the correlation is the identity
        labels = list(influence.labels)
        share, ratio, returning, units = 0.0, 1.0, 0, int(this_batch["unit_id"].nunique())
        previous = largest = 0.0 if labels else math.nan
    else:
        earlier = influence[influence["partition_key"] < batch] if not influence.empty else influence
        labels = sorted(set(earlier["partition_key"])) if not earlier.empty else []
        current = this_batch.assign(partition_key=batch).reset_index(drop=True)
        # pandas warns on (and will change) the dtypes of a concat with an empty frame: skip it
        rows = pd.concat([earlier, current], ignore_index=True) if not earlier.empty else current
        shared = shared_unit_covariance(unit_batches(rows, [*labels, batch]), labels=[*labels, batch])
        share, ratio = float(shared.returning_share[-1]), standard_error_ratio(shared)
        returning, units = int(shared.n_returning[-1]), int(shared.n_units[-1])
        previous, largest = shared.correlation_with_previous[-1], shared.max_correlation_with_earlier[-1]
    change = abs(ratio - 1.0)
    metadata: dict[str, object] = {
        # A standing panel returns every batch: one alert for the study, not one per batch.
        "alert_scope": "study",
        "returning_share": share,
        "returning_units": returning,
        "units": units,
        "earlier_batches": len(labels),
        "correlation_with_previous": float(previous) if math.isfinite(previous) else "n/a",
        "max_correlation_with_earlier": float(largest) if math.isfinite(largest) else "n/a",
        "standard_error_ratio": ratio,
    }
    material = share > 0 and change > MATERIAL_SE_CHANGE
    shown = f"{previous:.3f}" if math.isfinite(previous) else "n/a"
    reason = (
        f"batch {batch}: {share:.0%} of its units were seen in an earlier batch; correlation with the "
        f"previous batch {shown}; assuming independence would misstate the running average's "
        f"standard error by {change:.0%}"
    )
    if material:
        reason += (
            ": the posterior and the always-valid interval use the estimated correlation"
            if kalman
            else ": the always-valid interval uses the estimated correlation; the particle posterior "
            "assumes independent batches and does not"
        )
    return Verdict.evaluate(
        "returning_units",
        value=change,
        threshold=MATERIAL_SE_CHANGE,
        rule=RULE,
        passed=not material,
        reason=reason,
    ), metadata


def batch_returning_units(
    plan: AnalysisPlan, influence: pd.DataFrame | DisjointHistory, this_batch: pd.DataFrame, batch: str
) -> tuple[Verdict, dict[str, object]]:
    """:func:`returning_units_verdict` under ``plan``: its backend, and not assessed for one subject."""
    verdict, metadata = returning_units_verdict(
        influence, this_batch, batch, kalman=plan.backend.kind == "kalman"
    )
    if plan.single_subject:  # no per-unit values: one subject's days, none of which returns
        verdict = dataclasses.replace(verdict, reason=ONE_SUBJECT)
    elif this_batch.empty and plan.primary_estimator in plan.custom_estimators:
        reason = (
            f"batch {batch}: not assessed: the custom estimator {plan.primary_estimator!r} gave no per-unit "
            "influence values (it returns an EffectEstimate alone, or gave no estimate: see the estimation "
            "check); return InfluenceContributions to assess returning units"
        )
        verdict = dataclasses.replace(verdict, reason=reason)
    return verdict, metadata
