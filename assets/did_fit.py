"""A difference-in-differences batch's fit: the stored earlier periods and this one, estimated as a panel.

A did study's batch is one period. Its estimate needs the earlier periods' rows, which the
warehouse keeps (the ``covariates`` table of every batch, valid rows only): they are read with the
batch's other history, joined with this batch's rows, and
:func:`assimilate.estimators.did_batch.period_effect` gives the period's effect (post period) or
placebo (pre period), with each unit's influence value. The result is a ``BatchFit`` like
``fit_batch``'s, so the step stores and reports it the same way: a pre-period batch's primary row
carries the reason it gives no effect (``pre-period placebo: ...``, which keeps it out of the
posterior without a failed check), and its placebo is a second row that the pre-trend gate reads.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators._batch_effects import EFFECT_COLUMNS, ESTIMATION_RULE
from assimilate.estimators._batch_tables import INFLUENCE_COLUMNS, ROW_INDEX
from assimilate.estimators.batch import BatchFit
from assimilate.estimators.did_batch import PLACEBO, PeriodFit, period_effect
from assimilate.estimators.result import EffectEstimate
from assimilate.estimators.variance import t_conf_int
from resources.study import StudyConfig

PERIOD = "partition_key"
"""The period column of the joined panel: the batch label every stored row carries."""


def did_history_tables(study: StudyConfig) -> tuple[str, ...]:
    """The stored tables a did batch reads besides the others': earlier rows and the stored placebos."""
    return ("covariates", "batch_effects") if study.design.kind == "did" else ()


def panel_until(history: pd.DataFrame, valid: pd.DataFrame, batch: str) -> pd.DataFrame:
    """The stored rows of the batches before ``batch`` and this batch's valid rows, one frame."""
    earlier = history[history[PERIOD].astype(str) < batch] if not history.empty else history
    current = valid.assign(**{PERIOD: batch})
    return pd.concat([earlier, current], ignore_index=True) if not earlier.empty else current


def fit_period(study: StudyConfig, valid: pd.DataFrame, history: pd.DataFrame, batch: str) -> BatchFit:
    """The batch's :class:`BatchFit` under a did design (the estimation step's ``fit_batch``)."""
    design = study.design
    try:
        fit: PeriodFit | str = period_effect(
            panel_until(history, valid, batch),
            unit=study.unit_id,
            period=PERIOD,
            outcome=study.outcome,
            batch=batch,
            first_treated=design.first_treated,
            group=design.group,
            control_group=design.control,
        )
    except ValueError as error:
        fit = str(error)
    rows, influence, estimates, errors = _effect_rows(study, fit, valid, batch)
    verdict = _estimation_verdict(fit, rows, batch)
    frames = {
        "propensity_coefficients": pd.DataFrame(),
        "propensity_scores": pd.DataFrame(),
        "outcome_coefficients": pd.DataFrame(),
        "outcome_predictions": pd.DataFrame(),
        "effects": rows,
        "balance": pd.DataFrame(),
        "influence": influence,
    }
    verdicts = {
        name: Verdict.undefined(name, threshold=None, rule="", reason=study.design.not_assessed(name) or "")
        for name in ("overlap", "balance", "weak_instrument")
    }
    return BatchFit(
        batch=batch,
        n_rows=len(valid),
        propensity=None,
        propensity_error="",
        outcome=None,
        outcome_error="",
        overlap=None,
        balance=None,
        estimates=estimates,
        errors=errors,
        influence=None,
        verdicts={**verdicts, "estimation": verdict},
        frames=frames,
    )


def _row(estimate: EffectEstimate, primary: bool) -> dict[str, object]:
    lower, upper = t_conf_int(estimate, alpha=0.05)
    return {
        "method": estimate.method,
        "is_primary": primary,
        "estimate": estimate.estimate,
        "std_error": estimate.std_error,
        "ci_lower": lower,
        "ci_upper": upper,
        "n_treated": estimate.n_treated,
        "n_control": estimate.n_control,
        "se_method": estimate.se_method,
        "error": "",
        "diagnostics_json": json.dumps(
            {**estimate.diagnostics, "estimand": estimate.estimand}, sort_keys=True, default=str
        ),
    }


def _effect_rows(
    study: StudyConfig, fit: PeriodFit | str, valid: pd.DataFrame, batch: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, EffectEstimate], dict[str, str]]:
    """The effects table (the primary row first), the stored influence rows, estimates and errors."""
    primary = study.primary_estimator
    blank = {"method": primary, "is_primary": True, "estimate": np.nan, "std_error": np.nan, "error": ""}
    influence = pd.DataFrame(columns=INFLUENCE_COLUMNS)
    if isinstance(fit, str):
        rows, estimates, errors = [blank | {"error": fit}], {}, {primary: fit}
    elif fit.kind == "first":
        reason = f"{PLACEBO}: the panel's first period, the base of the next period's placebo; no cohort adopted yet"
        rows, estimates, errors = [blank | {"error": reason}], {}, {primary: reason}
    elif fit.kind == "pre" and fit.estimate is not None:
        reason = (
            f"{PLACEBO}: no cohort adopted by this period; its placebo ({fit.estimate.method}) is a lead of "
            "the pre-trend test"
        )
        rows = [blank | {"error": reason}, _row(fit.estimate, False)]
        estimates, errors = {fit.estimate.method: fit.estimate}, {primary: reason}
    else:
        assert fit.estimate is not None
        rows, estimates, errors = [_row(fit.estimate, True)], {primary: fit.estimate}, {}
    if not isinstance(fit, str) and fit.kind != "first":
        positions = dict(zip(valid[study.unit_id].astype(str), _row_index(valid), strict=True))
        frame = fit.influence_frame()
        influence = frame.assign(**{ROW_INDEX: [positions.get(u, -1) for u in frame["unit_id"]]})
        influence = influence[INFLUENCE_COLUMNS]
    table = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    table["error"] = table["error"].fillna("")
    table = table.astype({"n_treated": "Int64", "n_control": "Int64"})
    return table, influence, estimates, errors


def _row_index(valid: pd.DataFrame) -> np.ndarray:
    return valid[ROW_INDEX].to_numpy() if ROW_INDEX in valid.columns else np.arange(len(valid))


def _estimation_verdict(fit: PeriodFit | str, rows: pd.DataFrame, batch: str) -> Verdict:
    """Passes on a usable period effect; undefined for a pre-period (no effect to estimate); fails on an error."""
    if not isinstance(fit, str) and fit.kind != "post":
        reason = f"batch {batch}: {rows['error'].iloc[0]}"
        return Verdict.undefined("estimation", threshold=0.0, rule=ESTIMATION_RULE, reason=reason)
    primary = rows.iloc[0]
    usable = primary["error"] == "" and np.isfinite(primary["estimate"]) and primary["std_error"] > 0
    return Verdict.evaluate(
        "estimation",
        value=float(primary["std_error"]) if usable else float("nan"),
        threshold=0.0,
        rule=ESTIMATION_RULE,
        passed=bool(usable),
        reason="" if usable else f"batch {batch}: {primary['error'] or 'the standard error is not positive'}",
    )
