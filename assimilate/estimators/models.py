"""Nuisance models: the logistic propensity model and arm-wise outcome regressions.

Propensity: ``P(d = 1 | x) = 1 / (1 + exp(-x'beta))`` fitted by Newton's method (IRLS) on numpy
arrays. Scores outside the bounds are clipped or the units trimmed, and the report says how many,
never silently. Outcome: ``E[y | x, d = a]`` per arm, linear (OLS) or logistic for a 0/1 outcome.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.estimators.design_matrix import encode_covariates
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({"x": rng.standard_normal(500)})
>>> d = rng.binomial(1, 1 / (1 + np.exp(-frame["x"])))
>>> fit = fit_propensity(encode_covariates(frame, ["x"]), d)
>>> fit.converged
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, special

from assimilate._validation import check_choice
from assimilate.estimators.design_matrix import DesignMatrix

FloatArray = NDArray[np.float64]
PropensityPolicy = Literal["clip", "trim", "none"]
OutcomeKind = Literal["auto", "linear", "logistic"]
MAX_NEWTON_STEPS = 50
SEPARATION_BOUND = 30.0  # |x'beta| beyond this means probabilities of 1e-13: separation


@dataclass(frozen=True)
class LogisticFit:
    """Coefficients of a logistic regression and its fitted probabilities."""

    coefficients: FloatArray
    probabilities: FloatArray
    hessian: FloatArray  # X' W X at the solution (the information matrix)
    converged: bool
    n_iter: int


def fit_logistic(
    X: FloatArray, y: FloatArray, *, ridge: float = 0.0, names: tuple[str, ...] = ()
) -> LogisticFit:
    """Newton-Raphson for the logistic log-likelihood (with an optional ridge on non-intercept terms).

    Raises ``ValueError`` naming the covariate when the data are perfectly separated.
    """
    p = X.shape[1]
    beta = np.zeros(p)
    penalty = np.full(p, ridge)
    if names and names[0] == "intercept":
        penalty[0] = 0.0
    converged, iteration = False, 0
    for iteration in range(1, MAX_NEWTON_STEPS + 1):  # noqa: B007 - n_iter is reported
        eta = X @ beta
        mu = special.expit(eta)
        w = mu * (1.0 - mu)
        gradient = X.T @ (y - mu) - penalty * beta
        hessian = X.T @ (w[:, None] * X) + np.diag(penalty)
        try:
            delta = linalg.solve(hessian, gradient, assume_a="pos")
        except (linalg.LinAlgError, ValueError) as error:
            if np.max(np.abs(eta)) > 10.0:  # the weights vanished because the fit runs off to infinity
                _raise_separation(beta, names)
            raise ValueError(
                f"logistic model is singular (collinear or constant covariates): {error}"
            ) from error
        beta = beta + delta
        if np.max(np.abs(delta)) < 1e-10 * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    eta = X @ beta
    if np.max(np.abs(eta)) > SEPARATION_BOUND:
        _raise_separation(beta, names)
    mu = special.expit(eta)
    w = mu * (1.0 - mu)
    return LogisticFit(beta, mu, X.T @ (w[:, None] * X) + np.diag(penalty), converged, iteration)


def _raise_separation(beta: FloatArray, names: tuple[str, ...]) -> None:
    worst = int(np.argmax(np.abs(beta[1:]))) + 1 if len(beta) > 1 else 0
    name = names[worst] if names else f"column {worst}"
    raise ValueError(
        f"perfect separation: the 0/1 variable is (almost) determined by the covariates (largest coefficient: {name!r})"
    )


@dataclass(frozen=True)
class PropensityModel:
    """A fitted propensity model with the scores it gives and how they were bounded."""

    coefficients: pd.Series
    scores: FloatArray
    used_scores: FloatArray
    keep: NDArray[np.bool_]
    policy: PropensityPolicy
    bounds: tuple[float, float]
    n_clipped: int
    n_trimmed: int
    converged: bool
    n_iter: int
    information: FloatArray

    def report(self) -> dict[str, Any]:
        """JSON-serialisable facts: policy, bounds, counts, convergence."""
        return {
            "propensity_policy": self.policy,
            "propensity_bounds": list(self.bounds),
            "n_clipped": self.n_clipped,
            "n_trimmed": self.n_trimmed,
            "propensity_converged": self.converged,
            "propensity_iterations": self.n_iter,
        }


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = float(bounds[0]), float(bounds[1])
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"bounds must satisfy 0 <= low < high <= 1, got {bounds}")
    return low, high


def as_binary(name: str, values: ArrayLike) -> NDArray[np.int64]:
    """A 0/1 vector or a ValueError naming the column and the offending values."""
    array = np.asarray(values)
    if array.dtype == bool:
        return array.astype(np.int64)
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be 0 or 1 (binary), got non-numeric values: {error}") from error
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        shown = sorted({str(v) for v in array[bad][:5]})
        raise ValueError(f"{name} must be 0 or 1 (binary); {int(bad.sum())} value(s) are not, e.g. {shown}")
    return numeric.astype(np.int64)


def fit_propensity(
    design: DesignMatrix,
    treatment: ArrayLike,
    *,
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    ridge: float = 0.0,
) -> PropensityModel:
    """Fit the logistic propensity model and bound its scores.

    Parameters
    ----------
    design : DesignMatrix
        Covariates (with intercept).
    treatment : array_like
        0/1 treatment.
    policy : {"clip", "trim", "none"}
        ``"clip"`` moves scores into ``bounds``; ``"trim"`` drops units outside them (changing the
        estimand to the trimmed population); ``"none"`` uses the raw scores.
    bounds : (float, float)
        Lower and upper bound of the scores.
    ridge : float
        L2 penalty on non-intercept coefficients (0: plain maximum likelihood).

    Returns
    -------
    PropensityModel
    """
    check_choice("policy", policy, ("clip", "trim", "none"))
    low, high = _check_bounds(bounds)
    d = as_binary("treatment", treatment).astype(np.float64)
    fit = fit_logistic(design.values, d, ridge=ridge, names=design.columns)
    scores = fit.probabilities
    outside = (scores < low) | (scores > high)
    keep = np.ones(len(scores), dtype=bool)
    used = scores.copy()
    n_clipped = n_trimmed = 0
    if policy == "clip":
        used = np.clip(scores, low, high)
        n_clipped = int(outside.sum())
    elif policy == "trim":
        keep = ~outside
        used = np.where(keep, scores, np.nan)
        n_trimmed = int(outside.sum())
    return PropensityModel(
        coefficients=pd.Series(fit.coefficients, index=list(design.columns), name="coefficient"),
        scores=scores,
        used_scores=used,
        keep=keep,
        policy=policy,
        bounds=(low, high),
        n_clipped=n_clipped,
        n_trimmed=n_trimmed,
        converged=fit.converged,
        n_iter=fit.n_iter,
        information=fit.hessian,
    )


@dataclass(frozen=True)
class OutcomeModel:
    """Arm-wise outcome regressions and each unit's predicted outcome under both arms."""

    kind: Literal["linear", "logistic"]
    coefficients_control: pd.Series
    coefficients_treated: pd.Series
    mu0: FloatArray
    mu1: FloatArray


def least_squares(X: FloatArray, y: FloatArray) -> FloatArray:
    """OLS coefficients through the normal equations with a Cholesky solve (lstsq if singular)."""
    gram = X.T @ X
    try:
        return np.asarray(linalg.solve(gram, X.T @ y, assume_a="pos"), dtype=np.float64)
    except (linalg.LinAlgError, ValueError):
        return np.asarray(linalg.lstsq(X, y)[0], dtype=np.float64)


def predict_outcome(kind: Literal["linear", "logistic"], linear_predictor: FloatArray) -> FloatArray:
    """Predicted outcome from the linear predictor: identity or inverse logit."""
    if kind == "logistic":
        return np.asarray(special.expit(linear_predictor), dtype=np.float64)
    return np.asarray(linear_predictor, dtype=np.float64)


def fit_outcome_model(
    design: DesignMatrix, treatment: ArrayLike, outcome: ArrayLike, *, kind: OutcomeKind = "auto"
) -> OutcomeModel:
    """Fit ``E[y | x]`` separately in each arm and predict both potential outcomes for every unit.

    Parameters
    ----------
    design : DesignMatrix
        Covariates (with intercept).
    treatment : array_like
        0/1 treatment.
    outcome : array_like
        Outcome.
    kind : {"auto", "linear", "logistic"}
        ``"auto"`` is logistic for a 0/1 outcome, linear otherwise.

    Returns
    -------
    OutcomeModel
    """
    check_choice("kind", kind, ("auto", "linear", "logistic"))
    d = as_binary("treatment", treatment).astype(bool)
    y = np.asarray(outcome, dtype=np.float64)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    chosen: Literal["linear", "logistic"] = ("logistic" if binary else "linear") if kind == "auto" else kind
    if chosen == "logistic" and not binary:
        raise ValueError("outcome must be 0/1 for a logistic outcome model")
    X = design.values
    coefficients = []
    for arm in (~d, d):
        if chosen == "logistic":
            # A small ridge keeps an arm whose outcome is separable (all 0 in a region) finite.
            try:
                beta = fit_logistic(X[arm], y[arm], names=design.columns).coefficients
            except ValueError:
                beta = fit_logistic(X[arm], y[arm], ridge=1e-3, names=()).coefficients
        else:
            beta = least_squares(X[arm], y[arm])
        coefficients.append(beta)
    mu0 = predict_outcome(chosen, X @ coefficients[0])
    mu1 = predict_outcome(chosen, X @ coefficients[1])
    index = list(design.columns)
    return OutcomeModel(
        kind=chosen,
        coefficients_control=pd.Series(coefficients[0], index=index, name="coefficient"),
        coefficients_treated=pd.Series(coefficients[1], index=index, name="coefficient"),
        mu0=mu0,
        mu1=mu1,
    )
