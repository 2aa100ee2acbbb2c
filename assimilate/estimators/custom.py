"""A team's own estimator in a study: the contract it keeps and how a batch runs it.

A study may name its own estimators (``custom_estimators: {cuped: "team_estimators.cuped:estimate"}``);
the shell imports each function at load time (``resources/custom_estimators.py``: the library never
imports user code) and :func:`assimilate.estimators.batch.fit_batch` runs it on every batch. The
contract, ``tau_hat = f(batch)`` with ``SE^2 = sum psi_i^2 / n^2`` when it gives influence values::

    function(data: DataFrame, *, treatment: str, outcome: str, covariates: tuple[str, ...],
             estimand: str, rng: numpy.random.Generator) -> EffectEstimate | InfluenceContributions

``data`` is the batch's valid rows; ``covariates`` are the study's model columns (covariates, then
categorical ones as text); ``estimand`` is the plan's (``"ATE"``, ``"ATT"`` or ``"ATC"``) and the
estimate must state it; ``rng`` is the batch's seeded generator. Returning
:class:`~assimilate.estimators.influence.InfluenceContributions` (one ``psi_i`` per row, in the
input order) lets the pipeline cluster the standard error (CR1) and fuse batches that share units;
an ``EffectEstimate`` alone is accepted and the returning-units check is then not assessed.
Anything else the function does (an exception, another type, a non-finite estimate, a negative or
non-finite SE, another estimand) is that batch's estimation failure, with the estimator and the rule
in the reason: never a crashed run.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.estimators import difference_in_means
>>> def mine(data, *, treatment, outcome, covariates, estimand, rng):
...     return difference_in_means(data, treatment=treatment, outcome=outcome)
>>> frame = pd.DataFrame({"d": [0, 0, 1, 1], "y": [1.0, 2.0, 3.0, 5.0]})
>>> est, influence = run_custom_estimator(mine, "mine", frame, treatment="d", outcome="y",
...     covariates=(), estimand="ATE", rng=np.random.default_rng(0))
>>> est.method, est.estimate, influence is None
('mine', 2.5, True)
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate.estimators.influence import InfluenceContributions
from assimilate.estimators.result import EffectEstimate
from assimilate.estimators.variance import cluster_codes, cluster_robust_standard_error

CONTRACT_KEYWORDS = ("treatment", "outcome", "covariates", "estimand", "rng")
"""The keyword arguments every custom estimator accepts (after the batch's rows)."""
CONTRACT = (
    "function(data, *, treatment, outcome, covariates, estimand, rng) -> EffectEstimate or "
    "InfluenceContributions (assimilate/estimators/custom.py)"
)
CustomEstimator = Callable[..., Any]


def contract_problem(function: Any) -> str | None:
    """Why ``function`` cannot keep the contract (not callable, a keyword it does not accept), or None.

    Parameters
    ----------
    function : object
        The object a study's ``custom_estimators`` target names.

    Returns
    -------
    str or None
        The reason, e.g. ``"does not accept the keyword(s) 'rng'"``.
    """
    if not callable(function):
        return f"is a {type(function).__name__}, not a function"
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None  # a builtin without a signature: its calls will tell
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    accepted = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    missing = [k for k in CONTRACT_KEYWORDS if k not in accepted]
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if missing:
        return f"does not accept the keyword(s) {', '.join(repr(k) for k in missing)}; the contract is {CONTRACT}"
    if not positional and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return f"takes no positional argument for the batch's rows; the contract is {CONTRACT}"
    return None


def run_custom_estimator(
    function: CustomEstimator,
    name: str,
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: tuple[str, ...],
    estimand: str,
    rng: np.random.Generator,
) -> tuple[EffectEstimate, InfluenceContributions | None]:
    """Run a custom estimator on one batch and hold its result to the contract.

    Parameters
    ----------
    function : callable
        The team's estimator (resolved by the shell).
    name : str
        Its name in the study (the estimate's ``method``).
    data : DataFrame
        The batch's valid rows.
    treatment, outcome : str
        Column names.
    covariates : tuple of str
        The study's model columns.
    estimand : str
        The plan's estimand, which the estimate must state.
    rng : numpy.random.Generator
        The batch's generator.

    Returns
    -------
    tuple
        The estimate (``method`` set to ``name``) and its influence values, or None when it gave none.

    Raises
    ------
    ValueError
        Naming the estimator and the rule it broke; an exception of the function is reported as one.
    """
    where = f"custom estimator {name!r}"
    try:
        result = function(
            data.copy(),
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            estimand=estimand,
            rng=rng,
        )
    except Exception as error:  # the team's code: any failure is this batch's verdict, not a crash
        raise ValueError(f"{where} raised {type(error).__name__}: {error}") from error
    influence = result if isinstance(result, InfluenceContributions) else None
    estimate = result.estimate if influence is not None else result
    if not isinstance(estimate, EffectEstimate):
        raise ValueError(
            f"{where} returned a {type(result).__name__}, not an EffectEstimate or InfluenceContributions; "
            f"the contract is {CONTRACT}"
        )
    if not math.isfinite(estimate.estimate):
        raise ValueError(f"{where} returned a non-finite estimate ({estimate.estimate!r}); it must be finite")
    if not math.isfinite(estimate.std_error) or estimate.std_error < 0:
        raise ValueError(
            f"{where} returned the standard error {estimate.std_error!r}; it must be finite and >= 0"
        )
    if estimate.estimand != estimand:
        raise ValueError(
            f"{where} returned the {estimate.estimand} for a study of the {estimand}; it must estimate the {estimand}"
        )
    if influence is not None and (influence.n != len(data) or not np.all(np.isfinite(influence.values))):
        raise ValueError(
            f"{where} returned {influence.n} influence values for {len(data)} rows; it must return one finite "
            "value per row, in the rows' order"
        )
    estimate = dataclasses.replace(estimate, method=name)
    if influence is not None:
        influence = InfluenceContributions(estimate=estimate, values=influence.values)
    return estimate, influence


def clustered_custom_estimate(
    name: str, estimate: EffectEstimate, influence: InfluenceContributions | None, clusters: NDArray[np.int64]
) -> EffectEstimate:
    """``estimate`` with the CR1 standard error summed from its influence values within ``clusters``.

    Parameters
    ----------
    name : str
        The estimator's name, for the reason.
    estimate : EffectEstimate
        The custom estimator's estimate.
    influence : InfluenceContributions or None
        Its influence values; without them the SE cannot be clustered.
    clusters : ndarray of int
        One cluster code per row.

    Returns
    -------
    EffectEstimate
        Its ``diagnostics["standard_error"]`` carries ``df = G - 1`` for the t interval.

    Raises
    ------
    ValueError
        When the estimator gave no influence values.
    """
    if influence is None:
        raise ValueError(
            f"custom estimator {name!r} returned no influence values, so its standard error cannot be "
            "clustered as the study asks: return InfluenceContributions"
        )
    codes = cluster_codes(clusters, n=influence.n)
    groups = int(codes.max()) + 1
    entry = {
        "se_type": "CR1",
        "cluster": "labels",
        "n_clusters": groups,
        "df": groups - 1,
        "replaced_se_method": estimate.se_method,
    }
    return dataclasses.replace(
        estimate,
        std_error=cluster_robust_standard_error(influence.values, codes),
        se_method="cr1",
        diagnostics={**estimate.diagnostics, "standard_error": entry},
    )


__all__ = [
    "CONTRACT",
    "CONTRACT_KEYWORDS",
    "CustomEstimator",
    "clustered_custom_estimate",
    "contract_problem",
    "run_custom_estimator",
]
