"""Nuisance models: logistic regression and the propensity model built on it.

Propensity: ``P(d = 1 | x) = 1 / (1 + exp(-x'beta))`` fitted by Newton's method (IRLS) on numpy
arrays. Scores outside the bounds are clipped or the units trimmed, and the report says how many,
never silently. The arm-wise outcome regressions are in :mod:`assimilate.estimators.outcome`.

A fit ends in one of three ways. The maximum-likelihood estimate exists: it is returned, however
extreme its probabilities (an overlap problem, for the overlap gate to judge with numbers). The
data are separated, completely or quasi-completely: no estimate exists, and
:class:`SeparationError` names the column, or the combination of columns, that separates them.
The design is singular: :class:`SingularDesignError` names the collinear columns.

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
>>> try:
...     fit_propensity(encode_covariates(frame, ["x"]), frame["x"] > 0.3)
... except SeparationError as error:
...     print(error.kind, error.columns)
complete ('x',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from assimilate._validation import check_choice
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.passes import logistic_pass, logistic_score
from assimilate.estimators.separation import Separation, detect_separation

FloatArray = NDArray[np.float64]
PropensityPolicy = Literal["clip", "trim", "none"]
MAX_NEWTON_STEPS = 50
WARM_START_ROWS = 25_000
# Column-scaled X'X with its smallest eigenvalue below this fraction of the largest: collinear
# (the tolerance of assimilate.estimators.outcome.singular_columns).
SINGULAR_TOLERANCE = 1e-12
# The same ratio for the information X'WX at a converged fit: a direction the data hardly
# inform, as when the fit has run off along a separating direction. Only then the LP test runs.
WEAK_DIRECTION = 1e-10


class SingularDesignError(ValueError):
    """The design's columns are collinear (or one is constant or zero): no coefficient is identified.

    Parameters
    ----------
    columns : tuple of str
        The columns spanning the null direction of ``X'X``.
    """

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        super().__init__(
            f"singular design: column(s) {list(columns)} are constant or collinear, "
            "so the data do not identify their coefficients"
        )


class SeparationError(ValueError):
    """The 0/1 response is separated by the covariates: the maximum-likelihood estimate does not exist.

    Parameters
    ----------
    separation : Separation
        Which covariate (or combination) separates which units; its fields are also attributes
        of the error (``kind``, ``columns``, ``direction``, ``n_separated``).
    """

    def __init__(self, separation: Separation) -> None:
        self.separation = separation
        self.kind, self.columns = separation.kind, separation.columns
        self.direction, self.n_separated = separation.direction, separation.n_separated
        super().__init__(
            f"{separation.description}. The maximum-likelihood estimate does not exist (its coefficients diverge)"
        )


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
    X: FloatArray,
    y: FloatArray,
    *,
    ridge: float = 0.0,
    names: tuple[str, ...] = (),
    response: str = "y",
    weights: FloatArray | None = None,
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
        Column names, for the error messages.
    response : str
        Name of the response, for the error messages.
    weights : ndarray, shape (n,), optional
        Positive row weights (sampling weights): maximizes ``sum_i w_i l_i(beta)``, the
        pseudo-likelihood of the population the sample represents. Positive weights do not change
        whether the data are separated or the design singular.

    Returns
    -------
    LogisticFit
        Coefficients, probabilities and information at the last Newton iterate. The estimate is
        returned however close to 0 or 1 its probabilities are, as long as it exists.

    Raises
    ------
    SingularDesignError
        When ``X'X`` is singular, naming the collinear columns.
    SeparationError
        (Unpenalized fit only.) When the data are completely or quasi-completely separated, so
        that no maximum-likelihood estimate exists, naming the separating column or direction.
    ValueError
        When Newton's method breaks down on data that are neither separated nor collinear.

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

    The maximum-likelihood estimate fails to exist exactly when the data are separated
    (:mod:`~assimilate.estimators.separation`). Newton's iterates then run off along the
    separating direction: they stop converging, break down (weights of exactly 0) or stop where
    the information ``X'WX`` is numerically singular in some direction (scaled eigenvalue ratio
    below ``WEAK_DIRECTION``). Only then does :func:`~assimilate.estimators.separation.detect_separation`
    run (a linear program). A converged fit whose information is regular is the unique maximum
    of a concave likelihood and is returned without it, however extreme its probabilities.
    """
    n, p = X.shape
    labels = names if len(names) == p else tuple(f"column {j}" for j in range(p))
    penalty = np.full(p, float(ridge))
    if names and names[0] == "intercept":
        penalty[0] = 0.0
    zeros = np.zeros(p)
    fit: LogisticFit | None = None
    broke = False
    if n >= 2 * WARM_START_ROWS:
        stride = n // WARM_START_ROWS
        rows = np.ascontiguousarray(X[::stride])
        sub_weights = None if weights is None else np.ascontiguousarray(weights[::stride])
        # The subsample's share of the (weighted) information, to rescale its Hessian to all rows.
        scale = len(rows) / n if weights is None else float(weights[::stride].sum() / weights.sum())
        try:
            warm, broke = _newton(
                rows, np.ascontiguousarray(y[::stride]), zeros, penalty * scale, labels, weights=sub_weights
            )
            if warm.converged and not broke:
                start = warm.coefficients
                full, broke = _newton(
                    X, y, start, penalty, labels, first_hessian=warm.hessian / scale, weights=weights
                )
                fit = full if full.converged and not broke else None
        except ValueError:
            pass  # singular in the subsample, or a poor start: the plain start decides
    if fit is None:
        fit, broke = _newton(X, y, zeros, penalty, labels, weights=weights)
    diverging = broke or not fit.converged or _weak_direction(fit.hessian)
    if diverging and not penalty.any():  # a penalized likelihood always has its maximum
        try:
            separation = detect_separation(
                X, y, names=labels, response=response, probabilities=fit.probabilities
            )
        except ValueError as error:  # the linear program failed: a converged fit stands
            if fit.converged and not broke:
                return fit
            raise ValueError(f"the logistic fit diverges and the separation test failed: {error}") from error
        if separation is not None:
            raise SeparationError(separation)
    if broke:
        raise ValueError(
            f"Newton's method broke down after {fit.n_iter} steps (fitted probabilities of exactly 0 "
            "or 1) although the data are neither separated nor collinear"
        )
    return fit


def _newton(
    X: FloatArray,
    y: FloatArray,
    start: FloatArray,
    penalty: FloatArray,
    names: tuple[str, ...],
    *,
    first_hessian: FloatArray | None = None,
    weights: FloatArray | None = None,
) -> tuple[LogisticFit, bool]:
    """Newton iterates to convergence; True beside the fit when a step could not be solved."""
    beta = start
    probabilities = np.empty(X.shape[0])
    done = 0
    if first_hessian is not None:
        # A chord step: the warm start's (rescaled) information stands in for the full-data one,
        # so the first pass needs the score alone.
        score = logistic_score(X, y, beta, probabilities, weights)
        beta = beta + linalg.solve(first_hessian, score - penalty * beta, assume_a="pos")
        done = 1
    converged, iteration = False, done
    for iteration in range(done + 1, MAX_NEWTON_STEPS + 1):
        score, information = logistic_pass(X, y, beta, probabilities, weights)
        gradient = score - penalty * beta
        hessian = information + np.diag(penalty)
        if iteration == 1 and not start.any():  # at zero, information = X'X / 4: is X of full rank?
            columns = _collinear_columns(hessian, names)
            if columns:
                raise SingularDesignError(columns)
        try:
            # Cholesky without the condition estimate: a diverging fit is ill-conditioned by design
            delta = linalg.cho_solve(linalg.cho_factor(hessian), gradient)
        except (linalg.LinAlgError, ValueError):
            return LogisticFit(beta, probabilities, hessian, False, iteration), True
        if np.max(np.abs(delta)) < 1e-10 * (1.0 + np.max(np.abs(beta + delta))):
            converged = True
            break
        beta = beta + delta
    else:  # no convergence: report the model at the last iterate, as a converged fit would be
        hessian = logistic_pass(X, y, beta, probabilities, weights)[1] + np.diag(penalty)
    return LogisticFit(beta, probabilities, hessian, converged, iteration), False


def _scaled(matrix: FloatArray) -> FloatArray | None:
    """``D^-1 M D^-1`` with ``D`` the root of the diagonal; None when a diagonal entry is zero."""
    norms = np.sqrt(np.maximum(np.diag(matrix), 0.0))
    if not (norms > 0.0).all():
        return None
    return np.asarray(matrix / np.outer(norms, norms), dtype=np.float64)


def _collinear_columns(gram: FloatArray, names: tuple[str, ...]) -> tuple[str, ...]:
    """Columns of zero norm, else those loading on the null direction of the scaled ``X'X``."""
    scaled = _scaled(gram)
    if scaled is None:
        return tuple(name for name, value in zip(names, np.diag(gram), strict=True) if not value > 0.0)
    values, vectors = linalg.eigh(scaled)
    if values[0] > SINGULAR_TOLERANCE * values[-1]:
        return ()
    loading = np.abs(vectors[:, 0])
    return tuple(name for name, w in zip(names, loading, strict=True) if w >= 0.1 * loading.max())


def _weak_direction(information: FloatArray) -> bool:
    """True when the data hardly inform some direction (scaled eigenvalue ratio below WEAK_DIRECTION)."""
    scaled = _scaled(information)
    if scaled is None:
        return True
    values = linalg.eigvalsh(scaled)
    return bool(values[0] <= WEAK_DIRECTION * values[-1])


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
    # The sampling weights the model was fitted with (normalized to mean 1), None when unweighted:
    # its information is then X' diag(w e (1 - e)) X, which IPW's standard error reads.
    weights: FloatArray | None = None

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
    weights: FloatArray | None = None,
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
    weights : ndarray, optional
        Sampling weights, positive and normalized to mean 1
        (:func:`~assimilate.estimators._inputs.sampling_weights`): the survey-weighted logistic
        regression, so the scores balance the covariates in the population the sample stands for
        (Ridgeway, Kovalchik, Griffin & Kabeto 2015; DuGoff, Schuler & Stuart 2014).

    Returns
    -------
    PropensityModel
        Its ``scores`` lie strictly inside (0, 1): a fitted probability that rounds to 0 or 1 in
        double precision (``|x'beta|`` beyond about 37 or 745) is the nearest number inside.

    Raises
    ------
    SeparationError, SingularDesignError
        As :func:`fit_logistic` (both are ``ValueError``): there is no estimate.
    """
    check_choice("policy", policy, ("clip", "trim", "none"))
    low, high = _check_bounds(bounds)
    d = as_binary("treatment", treatment).astype(np.float64)
    fit = fit_logistic(
        design.values, d, ridge=ridge, names=design.columns, response="treatment", weights=weights
    )
    scores = np.clip(fit.probabilities, np.finfo(np.float64).tiny, np.nextafter(1.0, 0.0))
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
        weights=weights,
    )
