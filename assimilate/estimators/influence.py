"""Each unit's influence-function value in a batch estimate: what batches that share units need.

Every estimator here is asymptotically linear: ``tau_hat - tau ~ (1/n) sum_i psi_i`` with
``E[psi_i] = 0``, and its reported variance is ``std_error^2 = sum_i psi_i^2 / n^2``. Two batches
that share units then have ``Cov(tau_s, tau_t) ~ sum_{i in both} psi_is psi_it / (n_s n_t)``
(see :mod:`assimilate.filters.shared_units`). The values come from the same fit as the estimate,
so asking for them never changes the estimate or its standard error.

Example
-------
>>> import pandas as pd
>>> frame = pd.DataFrame({"d": [0, 0, 1, 1], "y": [1.0, 2.0, 3.0, 5.0]})
>>> fit = influence_contributions(frame, method="difference_in_means", treatment="d", outcome="y")
>>> fit.estimate.estimate, fit.values.round(3).tolist()
(2.5, [1.414, -1.414, -2.828, 2.828])
>>> bool(abs(fit.variance - fit.estimate.std_error**2) < 1e-12)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from assimilate._frozen import ReadOnlyArrays
from assimilate._validation import check_choice
from assimilate.estimators._inputs import batch_arrays, sampling_weights
from assimilate.estimators.aipw import aipw_with_influence
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.difference import difference_in_means_from_arrays, weighted_difference
from assimilate.estimators.regression import regression_with_influence
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand
from assimilate.estimators.weighting import ipw_with_influence

FloatArray = NDArray[np.float64]
InfluenceMethod = Literal["difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw"]
INFLUENCE_METHODS: tuple[InfluenceMethod, ...] = (
    "difference_in_means",
    "regression_adjustment",
    "lin_interacted",
    "ipw",
    "aipw",
)


@dataclass(frozen=True)
class InfluenceContributions(ReadOnlyArrays):
    """A batch estimate with the influence-function value of every row of the batch.

    Parameters
    ----------
    estimate : EffectEstimate
        The estimate, identical to the one the estimator returns alone.
    values : ndarray
        ``psi_i``, one per input row in the input order (read-only); 0 for rows an estimator
        left out (AIPW's trimmed units).

    Notes
    -----
    ``sum(values**2) / n**2`` equals ``estimate.std_error**2`` up to rounding for every method, with
    ``n = len(values)``. ``mean(values)`` is exactly 0 for the difference in means and AIPW and zero up
    to the propensity score equations for IPW; for regression adjustment the values carry HC3's
    leverage correction ``1 / (1 - h_ii)``, so their mean is only approximately 0 (``O(p / n)``):
    ``estimate - truth = mean(psi)`` holds to first order, as for HC3 itself.
    """

    estimate: EffectEstimate
    values: FloatArray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {values.shape}")
        if values.flags.writeable:
            values = values.copy()
            values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @property
    def n(self) -> int:
        """Rows of the batch (the ``n`` of ``sum psi^2 / n^2``)."""
        return len(self.values)

    @property
    def contributions(self) -> FloatArray:
        """``psi_i / n``: each row's share of ``estimate - truth``."""
        return self.values / self.n

    @property
    def variance(self) -> float:
        """``sum psi_i^2 / n^2``: the estimate's variance from its influence values."""
        return float(self.values @ self.values) / (self.n * self.n)


def influence_contributions(
    data: pd.DataFrame,
    *,
    method: InfluenceMethod,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    categories: Mapping[str, Sequence[str]] | None = None,
    estimand: Estimand = "ATE",
    weights: ArrayLike | None = None,
    **options: Any,
) -> InfluenceContributions:
    """Run one estimator by name and return its estimate with each row's influence value.

    Parameters
    ----------
    data : DataFrame
        One row per unit; the values are aligned with its rows.
    method : {"difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw"}
        The estimator, as in :func:`assimilate.estimators.estimate_effect`.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Covariates (ignored by ``difference_in_means``).
    categories : mapping, optional
        Allowed levels of categorical covariates.
    estimand : {"ATE", "ATT", "ATC"}
        The estimand, as in :func:`assimilate.estimators.estimate_effect`.
    weights : array_like, optional
        Sampling weights, one per row, positive: the population's estimand, each estimator's
        weighted version (its module says how), ``sum psi^2 / n^2`` still its variance.
    **options
        Estimator options (``n_folds``, ``rng``, ``policy``, ``bounds``, ``outcome_kind`` ...).

    Returns
    -------
    InfluenceContributions
        ``estimate`` equals the estimator's own result bit for bit.

    Notes
    -----
    ``difference_in_means``: ``psi_i = n (y_i - ybar_1) / sqrt(n_1 (n_1 - 1))`` for treated units and
    ``-n (y_i - ybar_0) / sqrt(n_0 (n_0 - 1))`` for controls: the textbook ``n (y_i - ybar_a) / n_a``
    with Welch's ``n_a / (n_a - 1)``, so ``sum psi^2 / n^2`` is Welch's variance exactly.
    ``regression_adjustment``, ``lin_interacted``: ``psi_i = n [(X'X)^-1 x_i]_d e_i / (1 - h_ii)``,
    whose squares sum to the HC3 variance (MacKinnon & White 1985). ``ipw``: the stacked
    M-estimation influence with the estimated propensity (Lunceford & Davidian 2004). ``aipw``:
    ``psi_i = (n / n_kept) (phi_i - tau)`` for kept units and 0 for trimmed ones.

    The ATT and ATC: the difference in means and the plain regression give the ATE's values (the
    same number estimates all three); the interacted regression adds the estimated covariate means'
    part; IPW stacks its odds-weighted means with the propensity score; AIPW's are
    ``(n / n_kept)`` times its doubly robust score (:mod:`assimilate.estimators.aipw`). Every
    estimand keeps ``sum psi^2 / n^2 = std_error^2``.
    """
    check_choice("method", method, INFLUENCE_METHODS)
    check_choice("estimand", estimand, ESTIMANDS)
    if method == "difference_in_means":
        if options or categories:
            raise TypeError(f"difference_in_means takes no options, got {sorted(options) or ['categories']}")
        arrays = batch_arrays(data, treatment=treatment, outcome=outcome)
        return _difference(
            arrays.treatment,
            arrays.outcome,
            outcome_name=outcome,
            estimand=estimand,
            weights=sampling_weights(weights, len(arrays.outcome)),
        )
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    return influence_from_arrays(
        arrays.design,
        arrays.treatment,
        arrays.outcome,
        method=method,
        estimand=estimand,
        weights=sampling_weights(weights, len(arrays.outcome)),
        **options,
    )


def influence_from_arrays(
    design: DesignMatrix | None,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    method: InfluenceMethod,
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
    **options: Any,
) -> InfluenceContributions:
    """:func:`influence_contributions` on validated arrays (``design`` may be None for the difference in means).

    ``weights``: sampling weights already checked (:func:`~assimilate.estimators._inputs.sampling_weights`).
    """
    check_choice("method", method, INFLUENCE_METHODS)
    check_choice("estimand", estimand, ESTIMANDS)
    if weights is not None:
        options = {**options, "weights": weights}
    if method == "difference_in_means":
        if set(options) - {"weights"}:
            raise TypeError(f"difference_in_means takes no options, got {sorted(options)}")
        return _difference(treatment, outcome, estimand=estimand, weights=weights)
    if design is None:
        raise ValueError(f"{method} needs a design matrix")
    if method in ("regression_adjustment", "lin_interacted"):
        fit, values = regression_with_influence(
            design, treatment, outcome, interacted=method == "lin_interacted", estimand=estimand, **options
        )
        assert values is not None
        return InfluenceContributions(fit, _read_only(values))
    if method == "ipw":
        fit, values = ipw_with_influence(design, treatment, outcome, estimand=estimand, **options)
        return InfluenceContributions(fit, _read_only(values))
    fit, centred, keep = aipw_with_influence(design, treatment, outcome, estimand=estimand, **options)
    n = len(outcome)
    if len(centred) == n:
        return InfluenceContributions(fit, _read_only(centred))
    values = np.zeros(n)
    values[keep] = centred * (n / len(centred))
    return InfluenceContributions(fit, _read_only(values))


def _difference(
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    outcome_name: str = "outcome",
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> InfluenceContributions:
    fit = difference_in_means_from_arrays(
        treatment, outcome, outcome_name=outcome_name, estimand=estimand, weights=weights
    )
    if weights is not None:
        return InfluenceContributions(fit, _read_only(weighted_difference(treatment, outcome, weights)[1]))
    treated = treatment == 1
    y1, y0 = outcome[treated], outcome[~treated]
    n, n1, n0 = len(outcome), len(y1), len(y0)
    values = np.empty(n)
    values[treated] = (y1 - y1.mean()) * (n / math.sqrt(n1 * (n1 - 1)))
    values[~treated] = (y0 - y0.mean()) * (-n / math.sqrt(n0 * (n0 - 1)))
    return InfluenceContributions(fit, _read_only(values))


def _read_only(values: FloatArray) -> FloatArray:
    values.setflags(write=False)
    return values
