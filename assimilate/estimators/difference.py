"""Difference in means with Welch's standard error: the naive (unadjusted) effect.

``tau = mean(y | d = 1) - mean(y | d = 0)``, ``SE = sqrt(s1^2 / n1 + s0^2 / n0)``. In a randomized
design the treated and the controls are random samples of one population, so the ATT and the ATC
equal the ATE and this one number estimates all three; ``estimand`` only labels the result.

With sampling weights ``w`` (each row stands for ``w_i`` units of the population) the arm means are
weighted, ``ybar_a = sum_{i in a} w_i y_i / W_a`` with ``W_a = sum_{i in a} w_i``: the weighted
least-squares coefficient of ``y ~ 1 + d``. Its SE is that regression's HC2 (statsmodels' WLS
``cov_type="HC2"``): ``SE^2 = sum_a sum_{i in a} w_i^2 (y_i - ybar_a)^2 / (W_a^2 (1 - w_i / W_a))``,
which is Welch's exactly when the weights are equal.

Example
-------
>>> import pandas as pd
>>> frame = pd.DataFrame({"d": [0, 0, 1, 1], "y": [1.0, 2.0, 3.0, 5.0]})
>>> difference_in_means(frame, treatment="d", outcome="y").estimate
2.5
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from assimilate._validation import check_choice
from assimilate.estimators._inputs import batch_arrays, sampling_weights
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

FloatArray = NDArray[np.float64]


def difference_in_means(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    estimand: Estimand = "ATE",
    weights: ArrayLike | None = None,
) -> EffectEstimate:
    """Difference of the arm means with a Welch (unequal-variance) standard error.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment : str
        0/1 treatment column.
    outcome : str
        Outcome column (binary or continuous).
    estimand : {"ATE", "ATT", "ATC"}
        The label of the result: randomized, the three are equal (module docstring).
    weights : array_like, optional
        Sampling weights, one per row, positive: the population's (weighted) difference in means.

    Returns
    -------
    EffectEstimate
        ``method="difference_in_means"``, ``se_method="welch"`` (``"hc2"`` when weighted).
    """
    arrays = batch_arrays(data, treatment=treatment, outcome=outcome)
    return difference_in_means_from_arrays(
        arrays.treatment,
        arrays.outcome,
        outcome_name=outcome,
        estimand=estimand,
        weights=sampling_weights(weights, len(arrays.outcome)),
    )


def difference_in_means_from_arrays(
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    outcome_name: str = "outcome",
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> EffectEstimate:
    """Difference in means on arrays (the core of :func:`difference_in_means`; ``weights`` checked)."""
    check_choice("estimand", estimand, ESTIMANDS)
    if weights is not None:
        estimate, values = weighted_difference(treatment, outcome, weights)
        variance = float(values @ values) / len(values) ** 2
        return _result(estimate, variance, treatment, outcome_name, estimand, "hc2")
    treated = treatment == 1
    y1, y0 = outcome[treated], outcome[~treated]
    estimate = float(y1.mean() - y0.mean())
    variance = float(np.var(y1, ddof=1)) / len(y1) + float(np.var(y0, ddof=1)) / len(y0)
    return _result(estimate, variance, treatment, outcome_name, estimand, "welch")


def weighted_difference(
    treatment: NDArray[np.int64], outcome: FloatArray, weights: FloatArray
) -> tuple[float, FloatArray]:
    """The weighted difference in means and its HC2 influence values (``SE^2 = sum psi^2 / n^2``).

    ``psi_i = ± n w_i (y_i - ybar_a) / (W_a sqrt(1 - w_i / W_a))``, + for the treated: the WLS
    coefficient's HC2 contributions, the leverage of row ``i`` being ``w_i / W_a``.
    """
    n = len(outcome)
    values = np.empty(n)
    means = []
    for arm, sign in ((treatment == 1, 1.0), (treatment != 1, -1.0)):
        w, y = weights[arm], outcome[arm]
        total = float(w.sum())
        mean = float(w @ y) / total
        means.append(mean)
        leverage = w / total
        if np.any(leverage >= 1.0 - 1e-12):
            raise ValueError(
                "one unit carries all the weight of its arm: the HC2 standard error is undefined"
            )
        values[arm] = sign * n * w * (y - mean) / (total * np.sqrt(1.0 - leverage))
    return means[0] - means[1], values


def _result(
    estimate: float,
    variance: float,
    treatment: NDArray[np.int64],
    outcome_name: str,
    estimand: Estimand,
    se_method: str,
) -> EffectEstimate:
    if variance <= 0:
        raise ValueError(
            f"outcome column {outcome_name!r} is constant in both arms: the standard error is zero"
        )
    n_treated = int(np.count_nonzero(treatment == 1))
    return EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(variance),
        n_treated=n_treated,
        n_control=len(treatment) - n_treated,
        method="difference_in_means",
        se_method=se_method,
        estimand=estimand,
        diagnostics={"sampling_weights": True} if se_method == "hc2" else {},
    )
