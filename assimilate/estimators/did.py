"""Difference in differences and event studies by two-way fixed effects, unit-clustered (CR1).

Model: ``y_it = a_i + l_t + beta D_it + x_it'c + e_it`` with ``D_it = 1[t >= g_i]`` (``g_i``: the
unit's first treated period); the event study replaces ``beta D_it`` by
``sum_{k != -1} beta_k 1[t - g_i = k]``. With one adoption period and two periods (the 2x2),
``beta`` is ``(ybar_T,post - ybar_T,pre) - (ybar_C,post - ybar_C,pre)``, the ATT under parallel
trends. With staggered adoption and effects that vary over cohorts or time, ``beta`` is a weighted
average of cohort effects with possibly negative weights (Goodman-Bacon 2021; de Chaisemartin &
D'Haultfoeuille 2020); use :func:`assimilate.estimators.did_staggered.group_time_att` there.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> unit = np.repeat(np.arange(200), 2); period = np.tile([0, 1], 200); treated = unit < 100
>>> y = rng.standard_normal(200)[unit] + 0.5 * period + 1.0 * (treated & (period == 1)) + rng.standard_normal(400)
>>> frame = pd.DataFrame({"unit": unit, "period": period, "treated": treated.astype(int), "y": y})
>>> fit = difference_in_differences(frame, unit="unit", period="period", outcome="y",
...                                 first_treated=1, group="treated")
>>> fit.estimand, fit.se_method, fit.diagnostics["standard_error"]["df"]
('ATT', 'cr1', 199)
>>> bool(abs(fit.estimate - 1.0) < 3 * fit.std_error)
True
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._frozen import to_jsonable
from assimilate._validation import check_choice
from assimilate.estimators._did_panel import NEVER, SAMPLINGS, Panel, Sampling, read_panel
from assimilate.estimators.design_matrix import encode_covariates
from assimilate.estimators.did_results import EventStudy
from assimilate.estimators.passes import gram, times
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]
FixedEffects = Literal["unit", "cohort"]
FIXED_EFFECTS: tuple[FixedEffects, ...] = ("unit", "cohort")
"""Unit effects ``a_i`` (panels), or cohort effects (one per first treated period; repeated cross-sections)."""
SmallSample = Literal["nested", "dummies"]
SMALL_SAMPLES: tuple[SmallSample, ...] = ("nested", "dummies")
"""CR1's ``(n-1)/(n-k)``: unit effects not counted in ``k`` (nested in the unit clusters), or counted."""
TWFE_METHOD = "difference_in_differences"
EVENT_STUDY_METHOD = "event_study_twfe"
_RANK_TOLERANCE = 1e-7  # of a column's norm (as QR's R_jj), from the Gram matrix


@dataclass(frozen=True)
class _Fit:
    coefficients: FloatArray
    covariance: FloatArray
    n_clusters: int
    n_parameters: int


def difference_in_differences(
    data: pd.DataFrame,
    *,
    unit: str,
    period: str,
    outcome: str,
    first_treated: Hashable,
    group: str | None = None,
    covariates: Sequence[str] = (),
    fixed_effects: FixedEffects | None = None,
    small_sample: SmallSample = "nested",
    sampling: Sampling = "panel",
    categories: Mapping[str, Sequence[str]] | None = None,
) -> EffectEstimate:
    """The 2x2 or multi-period difference in differences, ``beta`` of ``D_it``, unit-clustered.

    Parameters
    ----------
    data : DataFrame
        Long frame, one row per unit and period.
    unit, period, outcome : str
        Columns: the unit id (the cluster), the period (any ordered values), the outcome.
    first_treated : str or period value
        A column holding each unit's first treated period (missing or ``inf``: never treated), or
        one common adoption period with ``group`` naming the 0/1 column of the treated units.
    group : str, optional
        With a common ``first_treated`` period: the treated group's 0/1 column.
    covariates : sequence of str
        Time-varying covariates ``x_it`` (categoricals one-hot encoded).
    fixed_effects : {"unit", "cohort"}, optional
        ``a_i`` per unit (default for panels) or per cohort (default, and the only choice, for a
        repeated cross-section). With one adoption period, two periods and cohort effects this
        is the regression ``y ~ 1 + G + P + G P``.
    small_sample : {"nested", "dummies"}
        CR1 factor ``G/(G-1) (n-1)/(n-k)``: ``"nested"`` leaves the unit effects out of ``k``
        (they are nested in the unit clusters: the rule of R fixest's default ``fixef.K =
        "nested"`` and Stata's ``xtreg, fe``; Cameron & Miller 2015), ``"dummies"`` counts them
        (OLS with unit dummies, as statsmodels gives it; conservative with few periods).
    sampling : {"panel", "repeated_cross_section"}
        Whether units are followed over periods.
    categories : mapping, optional
        Allowed levels of categorical covariates.

    Returns
    -------
    EffectEstimate
        ``estimand="ATT"``, ``method="difference_in_differences"``, ``se_method="cr1"``;
        ``diagnostics["standard_error"]["df"] = G - 1`` (the ``t`` interval of
        :func:`assimilate.estimators.variance.t_conf_int`); ``n_treated``/``n_control``: units
        ever treated in the sample / never treated.

    Notes
    -----
    OLS by the Frisch-Waugh-Lovell theorem: unit effects are swept out by demeaning within unit,
    the period (and cohort) effects are dummies; ``X'X`` and ``X'y`` come from one block-wise
    pass (:func:`assimilate.estimators.passes.gram`). ``V = c sum_g (sum_{i in g} a_i e_i)^2`` with
    ``a_i`` the row of ``(X'X)^{-1} X'`` (Liang & Zeger 1986), as :mod:`assimilate.estimators.variance`.
    """
    effects = _fixed_effects(fixed_effects, sampling, small_sample)
    panel = read_panel(
        data,
        unit=unit,
        period=period,
        outcome=outcome,
        first_treated=first_treated,
        group=group,
        sampling=sampling,
    )
    treated = (panel.treated & (panel.period >= panel.cohort)).astype(np.float64)
    if treated.min() == treated.max():
        raise ValueError(
            "no treated row (unit-period after adoption), or every row treated: nothing to compare"
        )
    fit = _two_way(panel, treated[:, None], ["D"], data, covariates, categories, effects, small_sample)
    cohorts = panel.unit_cohorts()
    return EffectEstimate(
        estimate=float(fit.coefficients[0]),
        std_error=float(np.sqrt(fit.covariance[0, 0])),
        n_treated=int((cohorts != NEVER).sum()),
        n_control=int((cohorts == NEVER).sum()),
        method=TWFE_METHOD,
        se_method="cr1",
        estimand="ATT",
        diagnostics=to_jsonable(_diagnostics(panel, fit, effects, small_sample, len(data))),
    )


def event_study(
    data: pd.DataFrame,
    *,
    unit: str,
    period: str,
    outcome: str,
    first_treated: Hashable,
    group: str | None = None,
    covariates: Sequence[str] = (),
    reference: int = -1,
    fixed_effects: FixedEffects | None = None,
    small_sample: SmallSample = "nested",
    sampling: Sampling = "panel",
    categories: Mapping[str, Sequence[str]] | None = None,
) -> EventStudy:
    """Leads and lags relative to first treatment: the fully dynamic two-way fixed-effects regression.

    Parameters
    ----------
    data, unit, period, outcome, first_treated, group, covariates, fixed_effects, small_sample, sampling, categories
        As :func:`difference_in_differences`.
    reference : int
        The event time left out (its coefficient is 0): ``-1``, the period before adoption.

    Returns
    -------
    EventStudy
        One coefficient per observed event time ``k = t - g`` of the treated units except
        ``reference``, with their unit-clustered CR1 covariance (``df = G - 1``).

    Raises
    ------
    ValueError
        When ``reference`` is never observed, or the event times are collinear with the fixed
        effects (no never-treated units and every event time in the model: leave more out).

    Notes
    -----
    Event times are measured in periods (ranks of the period column). With staggered adoption and
    heterogeneous effects the TWFE coefficients mix other event times' effects (Sun & Abraham
    2021); the Callaway & Sant'Anna event-time aggregation
    (:meth:`assimilate.estimators.did_staggered.GroupTimeATT.event_time`) does not.
    """
    effects = _fixed_effects(fixed_effects, sampling, small_sample)
    panel = read_panel(
        data,
        unit=unit,
        period=period,
        outcome=outcome,
        first_treated=first_treated,
        group=group,
        sampling=sampling,
    )
    relative = panel.event_time()
    seen = sorted(int(k) for k in np.unique(relative[panel.treated]))
    if reference not in seen:
        raise ValueError(f"reference event time {reference} is not observed (event times seen: {seen})")
    times = [k for k in seen if k != reference]
    if not times:
        raise ValueError("only the reference event time is observed: no lead or lag to estimate")
    dummies = np.stack([(panel.treated & (relative == k)).astype(np.float64) for k in times], axis=1)
    names = [f"event_time[{k}]" for k in times]
    fit = _two_way(panel, dummies, names, data, covariates, categories, effects, small_sample)
    cohorts = panel.unit_cohorts()
    return EventStudy(
        event_times=tuple(times),
        estimate=fit.coefficients,
        covariance=fit.covariance,
        df=fit.n_clusters - 1,
        method=EVENT_STUDY_METHOD,
        reference=reference,
        n_treated=int((cohorts != NEVER).sum()),
        n_control=int((cohorts == NEVER).sum()),
        diagnostics=to_jsonable(_diagnostics(panel, fit, effects, small_sample, len(data))),
    )


def _fixed_effects(
    chosen: FixedEffects | None, sampling: Sampling, small_sample: SmallSample
) -> FixedEffects:
    check_choice("small_sample", small_sample, SMALL_SAMPLES)
    check_choice("sampling", sampling, SAMPLINGS)
    effects = check_choice(
        "fixed_effects", chosen or ("unit" if sampling == "panel" else "cohort"), FIXED_EFFECTS
    )
    if effects == "unit" and sampling == "repeated_cross_section":
        raise ValueError("fixed_effects='unit' needs a panel: a repeated cross-section takes 'cohort'")
    return effects


def _diagnostics(
    panel: Panel, fit: _Fit, effects: FixedEffects, small_sample: SmallSample, n_rows: int
) -> dict[str, Any]:
    cohorts = np.unique(panel.cohort[panel.treated])
    return {
        "fixed_effects": effects,
        "n_rows": n_rows,
        "n_periods": panel.n_periods,
        "cohorts": [panel.periods[int(g)] for g in cohorts],
        "n_parameters": fit.n_parameters,
        "standard_error": {
            "se_type": "CR1",
            "cluster": panel.unit_column,
            "n_clusters": fit.n_clusters,
            "df": fit.n_clusters - 1,
            "small_sample": small_sample,
        },
    }


def _dummies(codes: NDArray[np.int64], levels: int) -> FloatArray:
    """One column per level ``1 .. levels-1`` (level 0 the reference)."""
    out = np.zeros((len(codes), max(levels - 1, 0)))
    rows = np.flatnonzero(codes > 0)
    out[rows, codes[rows] - 1] = 1.0
    return out


def _two_way(
    panel: Panel,
    regressors: FloatArray,
    names: list[str],
    data: pd.DataFrame,
    covariates: Sequence[str],
    categories: Mapping[str, Sequence[str]] | None,
    effects: FixedEffects,
    small_sample: SmallSample,
) -> _Fit:
    """OLS of the outcome on fixed effects, covariates and ``regressors`` (last); CR1 of the regressors."""
    n, r = regressors.shape
    blocks = [_dummies(panel.period, panel.n_periods)]
    if effects == "cohort":
        _, cohort_codes = np.unique(panel.cohort, return_inverse=True)
        blocks = [
            np.ones((n, 1)),
            _dummies(cohort_codes.astype(np.int64), int(cohort_codes.max()) + 1),
            *blocks,
        ]
    if covariates:
        blocks.append(
            encode_covariates(data, list(covariates), categories=categories, intercept=False).values
        )
    raw = np.hstack([*blocks, regressors])
    X, y = raw, panel.outcome
    absorbed = 0
    if effects == "unit":
        X, y = _within(raw, panel.unit, panel.n_units), _within(y[:, None], panel.unit, panel.n_units)[:, 0]
        absorbed = panel.n_units
    scale = 1.0 / np.maximum(np.linalg.norm(raw, axis=0), 1e-300)
    cross = gram(np.hstack([X, y[:, None]]))  # X'X and X'y in one block-wise pass
    scaled = cross[:-1, :-1] * np.outer(scale, scale)
    collinear = _first_collinear(scaled)
    if collinear is not None:
        first = X.shape[1] - r
        label = names[collinear - first] if collinear >= first else "a fixed effect or covariate"
        raise ValueError(
            f"{label} is collinear with the fixed effects and the other regressors (the design is "
            "singular): with no never-treated units leave out one more event time, or drop covariates"
        )
    bread = np.linalg.inv(scaled) * np.outer(scale, scale)  # (X'X)^{-1}
    coefficients = bread @ cross[:-1, -1]
    residuals = y - times(X, coefficients)
    rows = times(X, np.ascontiguousarray(bread[:, -r:]))  # (n, r): the rows of (X'X)^{-1} X'
    sums = _group_sums(rows * residuals[:, None], panel.unit, panel.n_units)
    k = X.shape[1] + (absorbed if small_sample == "dummies" else 0)
    if n <= k:
        raise ValueError(f"{n} rows cannot fit {k} parameters")
    groups = panel.n_units
    factor = groups / (groups - 1) * (n - 1) / (n - k)
    return _Fit(coefficients[-r:].copy(), factor * (sums.T @ sums), groups, k)


def _first_collinear(scaled: FloatArray) -> int | None:
    """The first column whose residual on the earlier ones keeps under ``_RANK_TOLERANCE`` of its norm.

    ``scaled`` is ``X'X`` with columns scaled to unit raw norm; the Cholesky diagonal ``L_jj`` is
    the norm of column ``j`` left after the earlier columns, relative to its raw norm (QR's ``R_jj``).
    """
    size = scaled.shape[0]
    lower = np.zeros_like(scaled)
    for j in range(size):
        left = scaled[j, j] - lower[j, :j] @ lower[j, :j]
        if left <= _RANK_TOLERANCE**2:
            return j
        lower[j, j] = np.sqrt(left)
        lower[j + 1 :, j] = (scaled[j + 1 :, j] - lower[j + 1 :, :j] @ lower[j, :j]) / lower[j, j]
    return None


def _group_sums(values: FloatArray, codes: NDArray[np.int64], groups: int) -> FloatArray:
    """Row ``g``: the sum of the rows of ``values`` in group ``g``."""
    return np.column_stack([np.bincount(codes, weights=column, minlength=groups) for column in values.T])


def _within(values: FloatArray, codes: NDArray[np.int64], groups: int) -> FloatArray:
    """Each column minus its mean within the group of the row."""
    counts = np.bincount(codes, minlength=groups).astype(np.float64)
    return values - (_group_sums(values, codes, groups) / counts[:, None])[codes]
