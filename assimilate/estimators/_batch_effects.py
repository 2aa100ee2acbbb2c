"""Every estimator a plan configures, run on one batch from already fitted nuisance models.

Each estimate ``tau_hat`` comes with its influence values ``psi_i`` (``SE^2 = sum psi_i^2 / n^2``);
the study's clustered or HC standard error is taken from the same fit (CR1 sums ``psi_i`` within
clusters), so no estimator is run twice. Used by :func:`assimilate.estimators.batch.fit_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._validation import check_choice
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators._inputs import BatchArrays, batch_arrays
from assimilate.estimators.custom import CustomEstimator, clustered_custom_estimate, run_custom_estimator
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.duplicates import duplicate_unit_clusters
from assimilate.estimators.influence import (
    INFLUENCE_METHODS,
    InfluenceContributions,
    influence_contributions,
    influence_from_arrays,
)
from assimilate.estimators.iv import two_stage_least_squares_with_influence
from assimilate.estimators.iv_diagnostics import IV_METHOD
from assimilate.estimators.models import PropensityModel
from assimilate.estimators.n_of_1 import n_of_1
from assimilate.estimators.outcome import OutcomeModel
from assimilate.estimators.result import ESTIMANDS, EffectEstimate
from assimilate.estimators.variance import t_conf_int, with_standard_error

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

EFFECT_COLUMNS = [
    "method",
    "is_primary",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "n_treated",
    "n_control",
    "se_method",
    "error",
    "diagnostics_json",
    "batch_rules",
]
ESTIMATION_RULE = "the primary estimator returns a finite estimate and a positive standard error"


class Nuisance(NamedTuple):
    """The batch's fitted models, or None with the reason the fit failed ("" when never tried)."""

    propensity: PropensityModel | None
    propensity_error: str
    outcome: OutcomeModel | None
    outcome_error: str


class BatchEffects(NamedTuple):
    table: pd.DataFrame  # one row per estimator (EFFECT_COLUMNS; batch_rules left blank)
    verdict: Verdict  # estimation: the primary estimate is usable
    influence: InfluenceContributions | None  # the primary's, when usable
    estimates: dict[str, EffectEstimate]
    errors: dict[str, str]


def estimate_batch(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    *,
    batch: str,
    rng: np.random.Generator,
    problem: str | None,
    design: DesignMatrix | None,
    fits: Nuisance,
    custom: Mapping[str, CustomEstimator] | None = None,
    weights: NDArray[np.float64] | None = None,
) -> BatchEffects:
    """All configured estimators, the verdict on the primary one, and its per-row influence values.

    ``custom`` holds the functions of the plan's ``custom_estimators`` (resolved by the shell);
    ``weights`` the rows' sampling weights (checked, mean 1), which every unit-level estimator takes.
    """
    rows: list[dict[str, Any]] = []
    estimates: dict[str, EffectEstimate] = {}
    errors: dict[str, str] = {}
    primary_fit: InfluenceContributions | None = None
    arrays = _CheckedArrays(valid, plan, weights, design)
    for method in plan.estimators:
        row: dict[str, Any] = {"method": method, "is_primary": method == plan.primary_estimator}
        try:
            if problem is not None:
                raise ValueError(problem)
            if method in plan.custom_estimators:
                est, influence = _custom_estimate(method, plan, valid, rng, custom or {})
            else:
                est, influence = _estimate(method, arrays, rng, design, fits)
            primary_fit = influence if row["is_primary"] else primary_fit
            clusters = _clusters(plan, valid) if method in plan.custom_estimators else None
            if clusters is not None:  # the study's CR1, summed from the custom estimator's influence values
                est = clustered_custom_estimate(method, est, influence, clusters)
            elif method != IV_METHOD and method not in plan.custom_estimators:
                # 2SLS clusters its own SE, first stage and AR set alike; a custom one above
                est = _study_standard_error(plan, valid, est, influence, weights)
            lower, upper = t_conf_int(est, alpha=0.05)
            estimates[method] = est
            row |= {
                "estimate": est.estimate,
                "std_error": est.std_error,
                "ci_lower": lower,
                "ci_upper": upper,
                "n_treated": est.n_treated,
                "n_control": est.n_control,
                "se_method": est.se_method,
                "error": "",
                "diagnostics_json": json.dumps(
                    {**est.diagnostics, "estimand": est.estimand}, sort_keys=True, default=str
                ),
            }
        except ValueError as error:
            row["error"] = errors[method] = str(error)
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    table["error"] = table["error"].fillna("")
    table = table.astype({"n_treated": "Int64", "n_control": "Int64"})  # one column type for every batch
    primary = table[table["is_primary"]].iloc[0]
    usable = primary["error"] == "" and np.isfinite(primary["estimate"]) and primary["std_error"] > 0
    problem_text = primary["error"] or "the standard error is not positive"
    verdict = Verdict.evaluate(
        "estimation",
        value=float(primary["std_error"]) if usable else float("nan"),
        threshold=0.0,
        rule=ESTIMATION_RULE,
        passed=bool(usable),
        reason="" if usable else f"batch {batch}: {plan.primary_estimator}: {problem_text}",
    )
    return BatchEffects(table, verdict, primary_fit if usable else None, estimates, errors)


class _CheckedArrays:
    """The batch's arrays after the estimators' own checks, built once per encoding of the covariates.

    A batch that fails a check (a constant outcome or covariate, one arm too small) fails it with
    the same message for every estimator that reads these arrays, as it did when each built its own.
    """

    def __init__(
        self,
        valid: pd.DataFrame,
        plan: AnalysisPlan,
        weights: NDArray[np.float64] | None = None,
        design: DesignMatrix | None = None,
    ) -> None:
        self.valid, self.plan, self.weights = valid, plan, weights
        self.design = design  # the nuisance models' design (the plan's levels), not encoded twice
        self._built: dict[bool, BatchArrays | ValueError] = {}

    def __call__(self, *, declared_levels: bool) -> BatchArrays:
        """With the plan's declared categorical levels (the nuisance models' design) or the levels seen."""
        declared = declared_levels and bool(self.plan.categorical)
        if declared not in self._built:
            try:
                self._built[declared] = batch_arrays(
                    self.valid,
                    treatment=self.plan.treatment,
                    outcome=self.plan.outcome,
                    covariates=self.plan.model_columns,
                    categories=self.plan.categorical if declared else None,
                    design=self.design
                    if declared == bool(self.plan.categorical) or _as_seen(self.design)
                    else None,
                )
            except ValueError as error:
                self._built[declared] = error
        built = self._built[declared]
        if isinstance(built, ValueError):
            raise ValueError(str(built))
        return built


def _as_seen(design: DesignMatrix | None) -> bool:
    """Whether ``design``, encoded with the declared levels, serves the regressions on the levels seen.

    It does when every declared level is seen: both designs then span the same columns, whichever
    level is the reference, and a regression's estimate, standard errors and influence values
    depend on that span alone (a 1e7-row design is 0.7 GB; they agree to rounding).
    """
    if design is None:
        return False
    for column, levels in design.categories.items():
        seen = np.zeros(design.n_rows, dtype=np.int64)  # rows at a level other than the reference
        for level in levels[1:]:
            indicator = design.values[:, design.columns.index(f"{column}[{level}]")]
            if not indicator.any():
                return False
            seen += indicator.astype(np.int64)
        if seen.all():  # no row at the reference level
            return False
    return True


def _estimate(
    method: str,
    arrays: _CheckedArrays,
    rng: np.random.Generator,
    design: DesignMatrix | None,
    fits: Nuisance,
) -> tuple[EffectEstimate, InfluenceContributions | None]:
    """One estimator's estimate with its influence values (None for one subject's days)."""
    valid, plan, weights = arrays.valid, arrays.plan, arrays.weights
    treatment, outcome = plan.treatment, plan.outcome
    if method == "n_of_1":
        # One subject's days: the study file's washout, and the Kenward-Roger df carried into the
        # fused posterior (assimilate/estimators/n_of_1.py).
        days = plan.n_of_1
        options: dict[str, Any] = (
            {}
            if days is None
            else {
                "time": days.time,
                "washout": days.washout_days,
                "trend": days.trend,
                "fusion_correction": True,
            }
        )
        if plan.estimand != "ATE":  # the plan's load rules say so too
            raise ValueError(f"estimator 'n_of_1' cannot estimate the {plan.estimand}; it estimates ATE only")
        estimate = n_of_1(
            valid, treatment=treatment, outcome=outcome, covariates=plan.model_columns, **options
        )
        return estimate, None
    if method == IV_METHOD:
        fit = two_stage_least_squares_with_influence(
            valid,
            treatment=treatment,
            outcome=outcome,
            instruments=plan.instruments,
            covariates=plan.model_columns,
            clusters=_clusters(plan, valid),
            se_type=plan.standard_errors,  # type: ignore[arg-type]  # the plan allows HC0, HC1, CR1 only
            categories=plan.categorical or None,
        )
        return fit.estimate, fit
    chosen = check_choice("method", method, INFLUENCE_METHODS)
    estimand = check_choice("estimand", plan.estimand, ESTIMANDS)
    if chosen == "difference_in_means":  # no covariates, so its own checks
        fit = influence_contributions(
            valid, method=chosen, treatment=treatment, outcome=outcome, estimand=estimand, weights=weights
        )
        return fit.estimate, fit
    if chosen not in ("ipw", "aipw"):  # no nuisance model: the regression on the levels seen
        checked = arrays(declared_levels=False)
        fit = influence_from_arrays(
            checked.design,
            checked.treatment,
            checked.outcome,
            method=chosen,
            estimand=estimand,
            weights=weights,
        )
        return fit.estimate, fit
    checked = arrays(declared_levels=True)  # the estimator's own checks of the batch first
    options = _nuisance(chosen, plan, rng, fits)
    fit = influence_from_arrays(
        design,
        checked.treatment,
        checked.outcome,
        method=chosen,
        estimand=estimand,
        weights=weights,
        **options,
    )
    return fit.estimate, fit


def _custom_estimate(
    method: str,
    plan: AnalysisPlan,
    valid: pd.DataFrame,
    rng: np.random.Generator,
    custom: Mapping[str, CustomEstimator],
) -> tuple[EffectEstimate, InfluenceContributions | None]:
    """A custom estimator of the plan, run under the contract (assimilate/estimators/custom.py)."""
    function = custom.get(method)
    if function is None:
        raise ValueError(
            f"custom estimator {method!r} ({plan.custom_estimators[method]}) was not resolved: "
            "the shell passes its function to fit_batch (custom=)"
        )
    return run_custom_estimator(
        function,
        method,
        valid,
        treatment=plan.treatment,
        outcome=plan.outcome,
        covariates=tuple(plan.model_columns),
        estimand=plan.estimand,
        rng=rng,
    )


def _nuisance(method: str, plan: AnalysisPlan, rng: np.random.Generator, fits: Nuisance) -> dict[str, Any]:
    """IPW's and AIPW's options: the fitted models, or (AIPW cross-fitted) the folds to fit on."""
    bounds = (plan.propensity.bounds[0], plan.propensity.bounds[1])
    options: dict[str, Any] = {"policy": plan.propensity.policy, "bounds": bounds}
    if method == "aipw" and plan.cross_fitting_folds:
        return options | {"n_folds": plan.cross_fitting_folds, "rng": rng}
    if fits.propensity is None:  # the error the estimator's own fit would have raised
        raise ValueError(fits.propensity_error or "the propensity model was not fitted")
    if method == "ipw":
        return options | {"propensity": fits.propensity}
    if fits.outcome is None:
        raise ValueError(fits.outcome_error or "the outcome model was not fitted")
    return options | {"propensity": fits.propensity, "outcome_fit": fits.outcome}


def _clusters(plan: AnalysisPlan, valid: pd.DataFrame) -> NDArray[np.int64] | None:
    """Each row's cluster (its cluster column, repeated units kept), or None when not clustered."""
    if not plan.clustered:
        return None
    return duplicate_unit_clusters(
        valid, unit_id=plan.unit_id, policy=plan.duplicate_units, cluster=plan.cluster
    )


def _study_standard_error(
    plan: AnalysisPlan,
    valid: pd.DataFrame,
    est: EffectEstimate,
    influence: InfluenceContributions | None,
    weights: NDArray[np.float64] | None = None,
) -> EffectEstimate:
    """The estimate with the study's standard error: clustered on its cluster column and repeated units, or
    the HC type it names; unchanged when the study asks for neither."""
    if not plan.clustered and plan.standard_errors is None:
        return est
    labels = duplicate_unit_clusters(
        valid, unit_id=plan.unit_id, policy=plan.duplicate_units, cluster=plan.cluster
    )
    return with_standard_error(
        est,
        valid,
        treatment=plan.treatment,
        outcome=plan.outcome,
        covariates=list(plan.model_columns),
        cluster=labels,
        se_type=plan.standard_errors,
        influence=influence,
        weights=weights,
    )
