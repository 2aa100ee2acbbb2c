"""Nuisance models: logistic regression and the propensity model built on it.

Propensity: ``P(d = 1 | x) = 1 / (1 + exp(-x'beta))`` fitted by Newton's method (IRLS) on numpy
arrays. Scores outside the bounds are clipped or the units trimmed, and the report says how many,
never silently. The arm-wise outcome regressions are in :mod:`assimilate.estimators.outcome`.

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
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.passes import logistic_pass, logistic_score

FloatArray = NDArray[np.float64]
PropensityPolicy = Literal["clip", "trim", "none"]
MAX_NEWTON_STEPS = 50
WARM_START_ROWS = 25_000
SEPARATION_BOUND = 30.0  # |x'beta| beyond this means probabilities of 1e-13: separation


@dataclass(frozen=True)
class LogisticFit:
    """Coefficients of a logistic regression and its fitted probabilities."""

    coefficients: FloatArray
    probabilities: FloatArray
    hessian: FloatArray  # X' W X at the solution (the information matrix)
    converged: bool
    n_iter: int  # passes over the full data (the warm start's subsample passes not counted)


@one_blas_thread
def fit_logistic(
    X: FloatArray, y: FloatArray, *, ridge: float = 0.0, names: tuple[str, ...] = ()
) -> LogisticFit:
    """Newton-Raphson for the logistic log-likelihood (with an optional ridge on non-intercept terms).

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Design.
    y : ndarray, shape (n,)
        0/1 response.
    ridge : float
        L2 penalty on the coefficients (not on a column named ``"intercept"`` first in ``names``).
    names : tuple of str
        Column names, for the error message.

    Returns
    -------
    LogisticFit
        Coefficients, probabilities and information at the last Newton iterate.

    Raises
    ------
    ValueError
        Naming the covariate when the data are perfectly separated, or when the design is singular.

    Notes
    -----
    Each step is one pass over the rows (:func:`~assimilate.estimators.passes.logistic_pass`). It
    stops when the Newton step ``delta`` satisfies ``max|delta| < 1e-10 (1 + max|beta + delta|)``
    and returns the iterate at which that step was computed, so coefficients, probabilities and
    information belong to the same point and differ from the exact maximum by less than the step.

    From ``2 * WARM_START_ROWS`` rows on, Newton starts from the fit on a strided (deterministic)
    subsample of about ``WARM_START_ROWS`` rows. Its distance to the full-data maximum is sampling
    error, of order ``1/sqrt(WARM_START_ROWS)``; the first full pass is a chord step with the
    subsample's information rescaled to ``n`` rows (the score alone, half a Newton pass), and
    quadratic convergence removes the rest in about three Newton passes instead of the six to
    eight a start from zero needs. Should that path fail or not converge, the fit is redone from
    zero, so the answer and the errors are those of plain Newton.
    """
    n, p = X.shape
    penalty = np.full(p, float(ridge))
    if names and names[0] == "intercept":
        penalty[0] = 0.0
    zeros = np.zeros(p)
    if n >= 2 * WARM_START_ROWS:
        stride = n // WARM_START_ROWS
        rows = np.ascontiguousarray(X[::stride])
        scale = len(rows) / n
        try:
            warm = _newton(rows, np.ascontiguousarray(y[::stride]), zeros, penalty * scale, names)
            if warm.converged:
                fit = _newton(X, y, warm.coefficients, penalty, names, first_hessian=warm.hessian / scale)
                if fit.converged:
                    return fit
        except ValueError:
            pass  # separated or singular in the subsample, or a poor start: the plain start decides
    return _newton(X, y, zeros, penalty, names)


def _newton(
    X: FloatArray,
    y: FloatArray,
    start: FloatArray,
    penalty: FloatArray,
    names: tuple[str, ...],
    *,
    first_hessian: FloatArray | None = None,
) -> LogisticFit:
    beta = start
    probabilities = np.empty(X.shape[0])
    done = 0
    if first_hessian is not None:
        # A chord step: the warm start's (rescaled) information stands in for the full-data one,
        # so the first pass needs the score alone.
        score = logistic_score(X, y, beta, probabilities)
        beta = beta + linalg.solve(first_hessian, score - penalty * beta, assume_a="pos")
        done = 1
    converged, iteration = False, done
    for iteration in range(done + 1, MAX_NEWTON_STEPS + 1):  # noqa: B007 - n_iter is reported
        score, information = logistic_pass(X, y, beta, probabilities)
        gradient = score - penalty * beta
        hessian = information + np.diag(penalty)
        try:
            delta = linalg.solve(hessian, gradient, assume_a="pos")
        except (linalg.LinAlgError, ValueError) as error:
            if _largest_linear_predictor(probabilities) > 10.0:  # weights vanish as the fit runs off
                _raise_separation(beta, names)
            raise ValueError(
                f"logistic model is singular (collinear or constant covariates): {error}"
            ) from error
        if np.max(np.abs(delta)) < 1e-10 * (1.0 + np.max(np.abs(beta + delta))):
            converged = True
            break
        beta = beta + delta
    else:  # no convergence: report the model at the last iterate, as a converged fit would be
        hessian = logistic_pass(X, y, beta, probabilities)[1] + np.diag(penalty)
    if _largest_linear_predictor(probabilities) > SEPARATION_BOUND:
        _raise_separation(beta, names)
    return LogisticFit(beta, probabilities, hessian, converged, iteration)


def _largest_linear_predictor(probabilities: FloatArray) -> float:
    """``max |x'beta|`` read back from the probabilities (expit is monotone): no pass over X."""
    if len(probabilities) == 0:
        return 0.0
    low, high = special.logit([np.min(probabilities), np.max(probabilities)])
    return float(max(high, -low))


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


@one_blas_thread
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
