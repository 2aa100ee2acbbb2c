"""Per-batch effect estimators: each returns a frozen ``EffectEstimate``.

Example
-------
>>> import numpy as np
>>> from assimilate.simulate import simulate_ab_stream
>>> batch = simulate_ab_stream(rng=np.random.default_rng(0)).batches[0]
>>> estimate_effect(batch, method="difference_in_means", treatment="treatment", outcome="outcome").method
'difference_in_means'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from assimilate._validation import check_choice
from assimilate.estimators.aipw import aipw, aipw_from_arrays
from assimilate.estimators.design_matrix import DesignMatrix, encode_covariates
from assimilate.estimators.difference import difference_in_means
from assimilate.estimators.influence import (
    InfluenceContributions,
    influence_contributions,
    influence_from_arrays,
)
from assimilate.estimators.models import PropensityModel, fit_propensity
from assimilate.estimators.n_of_1 import n_of_1, n_of_1_from_arrays, washout_mask
from assimilate.estimators.outcome import OutcomeFallback, OutcomeModel, fit_outcome_model
from assimilate.estimators.regression import regression_adjustment, regression_adjustment_from_arrays
from assimilate.estimators.result import ESTIMAND_WORDS, ESTIMANDS, EffectEstimate, Estimand
from assimilate.estimators.weighting import ipw, ipw_from_arrays

EstimatorName = Literal["difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw"]
ESTIMATORS: tuple[EstimatorName, ...] = (
    "difference_in_means",
    "regression_adjustment",
    "lin_interacted",
    "ipw",
    "aipw",
)
MethodName = EstimatorName | Literal["n_of_1"]
SINGLE_SUBJECT: tuple[Literal["n_of_1"], ...] = ("n_of_1",)
"""Estimators of one subject's series (not of units): by name in ``estimate_effect`` only."""
_ESTIMANDS_OF: dict[str, tuple[Estimand, ...]] = {
    **dict.fromkeys(ESTIMATORS, ESTIMANDS),
    "n_of_1": ("ATE",),
}


def supported_estimands(method: str) -> tuple[Estimand, ...]:
    """The estimands an estimator can deliver, so a study asking for another can be refused at load.

    Parameters
    ----------
    method : str
        An estimator name (:data:`ESTIMATORS` or ``"n_of_1"``).

    Returns
    -------
    tuple of str
        ``("ATE", "ATT", "ATC")`` for the unit-level estimators (the difference in means under
        randomization, where the three are equal), ``("ATE",)`` for ``n_of_1`` (one subject: the
        average effect over its days).

    Examples
    --------
    >>> supported_estimands("aipw")
    ('ATE', 'ATT', 'ATC')
    >>> supported_estimands("n_of_1")
    ('ATE',)
    """
    check_choice("method", method, (*ESTIMATORS, *SINGLE_SUBJECT))
    return _ESTIMANDS_OF[method]


def _check_estimand(method: str, estimand: str) -> Estimand:
    checked = check_choice("estimand", estimand, ESTIMANDS)
    supported = supported_estimands(method)
    if checked not in supported:
        raise ValueError(
            f"estimator {method!r} cannot estimate the {checked} ({ESTIMAND_WORDS[checked]}); "
            f"it estimates {', '.join(supported)} only"
        )
    return checked


def estimate_effect(
    data: pd.DataFrame,
    *,
    method: MethodName,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    estimand: Estimand = "ATE",
    **options: Any,
) -> EffectEstimate:
    """Run one estimator by name; ``options`` go to that estimator (e.g. ``n_folds``, ``bounds``).

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    method : {"difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw", "n_of_1"}
        The estimator (``"n_of_1"``: one subject's daily series; needs ``time=`` and takes
        ``washout=``, ``trend=``, ``se_method=``, see :func:`n_of_1`).
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Covariates (ignored by ``difference_in_means``).
    estimand : {"ATE", "ATT", "ATC"}
        Average effect over all units, the treated or the controls (see :func:`supported_estimands`;
        ``n_of_1`` estimates the ATE only).
    **options
        Estimator-specific keyword options.

    Returns
    -------
    EffectEstimate
        With ``estimand`` as asked.

    Raises
    ------
    ValueError
        Naming the method and the estimand when the method cannot deliver it.
    """
    check_choice("method", method, (*ESTIMATORS, *SINGLE_SUBJECT))
    chosen = _check_estimand(method, estimand)
    if method == "n_of_1":
        return n_of_1(data, treatment=treatment, outcome=outcome, covariates=covariates, **options)
    if method == "difference_in_means":
        return difference_in_means(data, treatment=treatment, outcome=outcome, estimand=chosen)
    if method in ("regression_adjustment", "lin_interacted"):
        return regression_adjustment(
            data,
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            interacted=method == "lin_interacted",
            estimand=chosen,
            **options,
        )
    if method == "ipw":
        return ipw(
            data, treatment=treatment, outcome=outcome, covariates=covariates, estimand=chosen, **options
        )
    return aipw(data, treatment=treatment, outcome=outcome, covariates=covariates, estimand=chosen, **options)


def estimate_all(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    methods: Sequence[EstimatorName] = ESTIMATORS,
    rng: np.random.Generator | None = None,
    n_folds: int | None = None,
    estimand: Estimand = "ATE",
    **propensity_options: Any,
) -> dict[str, EffectEstimate]:
    """Every requested estimator on one batch, keyed by method name.

    ``propensity_options`` (``policy``, ``bounds``) go to IPW and AIPW; ``n_folds`` and ``rng`` to AIPW;
    ``estimand`` to every estimator (checked for all of them before any runs).
    """
    for method in methods:
        _check_estimand(method, estimand)
    results: dict[str, EffectEstimate] = {}
    for method in methods:
        options: dict[str, Any] = {}
        if method in ("ipw", "aipw"):
            options.update(propensity_options)
        if method == "aipw" and n_folds:
            options.update(n_folds=n_folds, rng=rng)
        results[method] = estimate_effect(
            data,
            method=method,
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            estimand=estimand,
            **options,
        )
    return results


__all__ = [
    "ESTIMANDS",
    "ESTIMAND_WORDS",
    "ESTIMATORS",
    "SINGLE_SUBJECT",
    "DesignMatrix",
    "EffectEstimate",
    "Estimand",
    "EstimatorName",
    "InfluenceContributions",
    "MethodName",
    "OutcomeFallback",
    "OutcomeModel",
    "PropensityModel",
    "aipw",
    "aipw_from_arrays",
    "difference_in_means",
    "encode_covariates",
    "estimate_all",
    "estimate_effect",
    "fit_outcome_model",
    "fit_propensity",
    "influence_contributions",
    "influence_from_arrays",
    "ipw",
    "ipw_from_arrays",
    "n_of_1",
    "n_of_1_from_arrays",
    "regression_adjustment",
    "regression_adjustment_from_arrays",
    "supported_estimands",
    "washout_mask",
]

# Standard-error choices (HC0-HC3, CR1, CR2) and duplicated units (issue 14).
from assimilate.estimators.duplicates import (  # noqa: E402
    DUPLICATE_POLICIES,
    DuplicatePolicy,
    DuplicateUnits,
    DuplicateUnitsError,
    duplicate_unit_clusters,
    find_duplicate_units,
)
from assimilate.estimators.variance import (  # noqa: E402
    SE_TYPES,
    SandwichResult,
    SEType,
    cluster_robust_standard_error,
    ols_standard_error,
    t_conf_int,
    with_standard_error,
)

__all__ += [
    "DUPLICATE_POLICIES",
    "SE_TYPES",
    "DuplicatePolicy",
    "DuplicateUnits",
    "DuplicateUnitsError",
    "SEType",
    "SandwichResult",
    "cluster_robust_standard_error",
    "duplicate_unit_clusters",
    "find_duplicate_units",
    "ols_standard_error",
    "t_conf_int",
    "with_standard_error",
]

# Separation and singular designs in the logistic fits (issue 14).
from assimilate.estimators.models import SeparationError, SingularDesignError  # noqa: E402
from assimilate.estimators.separation import Separation, detect_separation  # noqa: E402

__all__ += ["Separation", "SeparationError", "SingularDesignError", "detect_separation"]

# Instrumental variables: 2SLS with weak-instrument diagnostics and gate (issue 15).
from assimilate.estimators.iv import (  # noqa: E402
    IV_SE_TYPES,
    IVSEType,
    two_stage_least_squares,
    two_stage_least_squares_from_arrays,
    two_stage_least_squares_with_influence,
)
from assimilate.estimators.iv_diagnostics import (  # noqa: E402
    AndersonRubinSet,
    ReducedForm,
    anderson_rubin_set_of,
    weak_instrument_verdict,
)
from assimilate.estimators.result import RESULT_ESTIMANDS, ResultEstimand  # noqa: E402

__all__ += [
    "IV_SE_TYPES",
    "RESULT_ESTIMANDS",
    "AndersonRubinSet",
    "IVSEType",
    "ReducedForm",
    "ResultEstimand",
    "anderson_rubin_set_of",
    "two_stage_least_squares",
    "two_stage_least_squares_from_arrays",
    "two_stage_least_squares_with_influence",
    "weak_instrument_verdict",
]

# Threads of the block-wise passes (issue 17): the same results on any thread count.
from assimilate.estimators._threads import parallel_passes, pass_threads  # noqa: E402

__all__ += ["parallel_passes", "pass_threads"]

# One batch under a study's plan: nuisance models fitted once, every estimator and verdict (issue 12).
from assimilate.estimators.batch import BatchFit, fit_batch  # noqa: E402

__all__ += ["BatchFit", "fit_batch"]

# Difference in differences and event studies: TWFE, Callaway & Sant'Anna, the pre-trend test (issue 15).
from assimilate.estimators.did import (  # noqa: E402
    FIXED_EFFECTS,
    SMALL_SAMPLES,
    FixedEffects,
    SmallSample,
    difference_in_differences,
    event_study,
)
from assimilate.estimators.did_diagnostics import PreTrendVerdict, pre_trend_test  # noqa: E402
from assimilate.estimators.did_results import EventStudy  # noqa: E402
from assimilate.estimators.did_staggered import (  # noqa: E402
    BASE_PERIODS,
    CONTROL_GROUPS,
    BasePeriod,
    ControlGroup,
    GroupTimeATT,
    group_time_att,
)

__all__ += [
    "BASE_PERIODS",
    "CONTROL_GROUPS",
    "FIXED_EFFECTS",
    "SMALL_SAMPLES",
    "BasePeriod",
    "ControlGroup",
    "EventStudy",
    "FixedEffects",
    "GroupTimeATT",
    "PreTrendVerdict",
    "SmallSample",
    "difference_in_differences",
    "event_study",
    "group_time_att",
    "pre_trend_test",
]

# Effects by segment: the batch's estimator on each segment's rows (issue 16).
from assimilate.estimators.segments import (  # noqa: E402
    SegmentEffect,
    SegmentEffects,
    quantile_edges,
    segment_effects,
    stack_segment_effects,
)

__all__ += ["SegmentEffect", "SegmentEffects", "quantile_edges", "segment_effects", "stack_segment_effects"]
