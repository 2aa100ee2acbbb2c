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
from assimilate.estimators.result import EffectEstimate
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


def estimate_effect(
    data: pd.DataFrame,
    *,
    method: MethodName,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
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
    **options
        Estimator-specific keyword options.

    Returns
    -------
    EffectEstimate
    """
    check_choice("method", method, (*ESTIMATORS, *SINGLE_SUBJECT))
    if method == "n_of_1":
        return n_of_1(data, treatment=treatment, outcome=outcome, covariates=covariates, **options)
    if method == "difference_in_means":
        return difference_in_means(data, treatment=treatment, outcome=outcome)
    if method in ("regression_adjustment", "lin_interacted"):
        return regression_adjustment(
            data,
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            interacted=method == "lin_interacted",
            **options,
        )
    if method == "ipw":
        return ipw(data, treatment=treatment, outcome=outcome, covariates=covariates, **options)
    return aipw(data, treatment=treatment, outcome=outcome, covariates=covariates, **options)


def estimate_all(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    methods: Sequence[EstimatorName] = ESTIMATORS,
    rng: np.random.Generator | None = None,
    n_folds: int | None = None,
    **propensity_options: Any,
) -> dict[str, EffectEstimate]:
    """Every requested estimator on one batch, keyed by method name.

    ``propensity_options`` (``policy``, ``bounds``) go to IPW and AIPW; ``n_folds`` and ``rng`` to AIPW.
    """
    results: dict[str, EffectEstimate] = {}
    for method in methods:
        options: dict[str, Any] = {}
        if method in ("ipw", "aipw"):
            options.update(propensity_options)
        if method == "aipw" and n_folds:
            options.update(n_folds=n_folds, rng=rng)
        results[method] = estimate_effect(
            data, method=method, treatment=treatment, outcome=outcome, covariates=covariates, **options
        )
    return results


__all__ = [
    "ESTIMATORS",
    "SINGLE_SUBJECT",
    "DesignMatrix",
    "EffectEstimate",
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
    "washout_mask",
]
