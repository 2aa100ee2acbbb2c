"""Difference in means with Welch's standard error: the naive (unadjusted) effect.

``tau = mean(y | d = 1) - mean(y | d = 0)``, ``SE = sqrt(s1^2 / n1 + s0^2 / n0)``. In a randomized
design the treated and the controls are random samples of one population, so the ATT and the ATC
equal the ATE and this one number estimates all three; ``estimand`` only labels the result.

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
from numpy.typing import NDArray

from assimilate._validation import check_choice
from assimilate.estimators._inputs import batch_arrays
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

FloatArray = NDArray[np.float64]


def difference_in_means(
    data: pd.DataFrame, *, treatment: str, outcome: str, estimand: Estimand = "ATE"
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

    Returns
    -------
    EffectEstimate
        ``method="difference_in_means"``, ``se_method="welch"``.
    """
    arrays = batch_arrays(data, treatment=treatment, outcome=outcome)
    return difference_in_means_from_arrays(
        arrays.treatment, arrays.outcome, outcome_name=outcome, estimand=estimand
    )


def difference_in_means_from_arrays(
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    outcome_name: str = "outcome",
    estimand: Estimand = "ATE",
) -> EffectEstimate:
    """Difference in means on arrays (the core of :func:`difference_in_means`)."""
    check_choice("estimand", estimand, ESTIMANDS)
    treated = treatment == 1
    y1, y0 = outcome[treated], outcome[~treated]
    estimate = float(y1.mean() - y0.mean())
    variance = float(np.var(y1, ddof=1)) / len(y1) + float(np.var(y0, ddof=1)) / len(y0)
    if variance <= 0:
        raise ValueError(
            f"outcome column {outcome_name!r} is constant in both arms: the standard error is zero"
        )
    return EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(variance),
        n_treated=len(y1),
        n_control=len(y0),
        method="difference_in_means",
        se_method="welch",
        estimand=estimand,
    )
