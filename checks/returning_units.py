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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from assimilate.admission import unit_batches
from assimilate.design.plan import ONE_SUBJECT, AnalysisPlan
from assimilate.diagnostics import Verdict
from assimilate.filters import SharedUnits, shared_unit_covariance

INFLUENCE_TABLE = "batch_influence"
MATERIAL_SE_CHANGE = 0.05
RULE = (
    f"no unit returns, or the standard error of the running average changes by at most "
    f"{MATERIAL_SE_CHANGE:.0%} when the estimated correlation with earlier batches is used"
)


def standard_error_ratio(shared: SharedUnits) -> float:
    """SE of the precision-weighted average of the batches with their correlation, over the SE without."""
    variance = np.diagonal(shared.covariance)
    keep = variance > 0
    if int(keep.sum()) < 2:
        return 1.0
    var, sd = variance[keep], np.sqrt(variance[keep])
    weights = (1.0 / var) / np.sum(1.0 / var)
    dependent = weights @ (shared.correlation[np.ix_(keep, keep)] * np.outer(sd, sd)) @ weights
    return math.sqrt(float(dependent) / float(np.sum(weights * weights * var)))


def returning_units_verdict(
    influence: pd.DataFrame, this_batch: pd.DataFrame, batch: str, *, kalman: bool = True
) -> tuple[Verdict, dict[str, object]]:
    """The check of ``batch`` against every earlier batch with stored influence values.

    ``influence`` holds the stored rows of any partitions (those not before ``batch`` are ignored);
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
    earlier = influence[influence["partition_key"] < batch] if not influence.empty else influence
    labels = sorted(set(earlier["partition_key"])) if not earlier.empty else []
    rows = pd.concat([earlier, this_batch.assign(partition_key=batch)], ignore_index=True)
    shared = shared_unit_covariance(unit_batches(rows, [*labels, batch]), labels=[*labels, batch])
    share = float(shared.returning_share[-1])
    ratio = standard_error_ratio(shared)
    change = abs(ratio - 1.0)
    previous, largest = shared.correlation_with_previous[-1], shared.max_correlation_with_earlier[-1]
    metadata: dict[str, object] = {
        # A standing panel returns every batch: one alert for the study, not one per batch.
        "alert_scope": "study",
        "returning_share": share,
        "returning_units": int(shared.n_returning[-1]),
        "units": int(shared.n_units[-1]),
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
    plan: AnalysisPlan, influence: pd.DataFrame, this_batch: pd.DataFrame, batch: str
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
