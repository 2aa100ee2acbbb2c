"""Arm-wise outcome regressions ``E[y | x, d = a]``: linear (OLS) or logistic for a 0/1 outcome.

Each arm's model is fitted on that arm's rows and predicts both potential outcomes for every
unit. When an arm's design is singular (a covariate constant or collinear within the arm, so the
arm's data do not identify its coefficient) or, for a logistic model, separated, the arm falls
back to a minimum-norm least-squares or a ridge fit, and ``OutcomeModel.fallbacks`` says which
arm, which fit and why: never silently.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.estimators.design_matrix import encode_covariates
>>> rng = np.random.default_rng(0)
>>> d = rng.binomial(1, 0.5, 400)
>>> frame = pd.DataFrame({"x": rng.standard_normal(400), "z": np.where(d == 1, 1.0, rng.integers(0, 3, 400))})
>>> fit = fit_outcome_model(encode_covariates(frame, ["x", "z"]), d, frame["x"] + d)
>>> [(fallback.arm, fallback.fit) for fallback in fit.fallbacks]
[('treated', 'minimum_norm')]
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
from assimilate.estimators.models import as_binary, fit_logistic
from assimilate.estimators.passes import armwise_gram, gram, gram_of_blocks, times

FloatArray = NDArray[np.float64]
OutcomeKind = Literal["auto", "linear", "logistic"]
Arm = Literal["control", "treated"]
ARMS: tuple[Arm, Arm] = ("control", "treated")
OUTCOME_RIDGE = 1e-3  # the logistic fallback's L2 penalty (on every coefficient)
# The smallest eigenvalue of the column-scaled Gram matrix below this fraction of the largest:
# singular. Exact collinearity leaves rounding noise of a few 1e-16 (1e-14 for the larger arm's
# Gram, a difference of sums over up to a million rows); 1e-12 is a column-scaled condition
# number of 1e6 for X, beyond which the normal equations keep fewer than four digits.
SINGULAR_TOLERANCE = 1e-12


@dataclass(frozen=True)
class OutcomeFallback:
    """An arm whose outcome regression could not be fitted as specified, and what was fitted instead.

    Parameters
    ----------
    arm : {"control", "treated"}
        The arm.
    fit : {"minimum_norm", "ridge"}
        ``"minimum_norm"``: the least-squares solution of smallest norm (linear model);
        ``"ridge"``: logistic regression with an L2 penalty ``ridge`` on every coefficient.
    ridge : float
        The penalty (0 for the minimum-norm solution, the ridge's limit as the penalty vanishes).
    reason : str
        Why: the singular columns, or the error of the plain fit (e.g. perfect separation).

    Notes
    -----
    The arm's fitted values on its own rows are those of the reduced model (exactly for the
    minimum-norm fit), but its predictions for the other arm's units extrapolate along the
    unidentified direction, which the fallback fixes by convention, not from the data.
    """

    arm: Arm
    fit: Literal["minimum_norm", "ridge"]
    ridge: float
    reason: str

    def as_dict(self, fold: int | None = None) -> dict[str, Any]:
        """JSON-serialisable record, with the cross-fitting fold (None when fitted in-sample)."""
        return {"arm": self.arm, "fold": fold, "fit": self.fit, "ridge": self.ridge, "reason": self.reason}


@dataclass(frozen=True)
class OutcomeModel:
    """Arm-wise outcome regressions, each unit's predicted outcome under both arms, and any fallback."""

    kind: Literal["linear", "logistic"]
    coefficients_control: pd.Series
    coefficients_treated: pd.Series
    mu0: FloatArray
    mu1: FloatArray
    fallbacks: tuple[OutcomeFallback, ...] = ()

    def report(self) -> dict[str, Any]:
        """JSON-serialisable facts: the outcome model and its fallbacks (an empty list if none)."""
        return {"outcome_model": self.kind, "outcome_fallbacks": [f.as_dict() for f in self.fallbacks]}


def singular_columns(
    gram_matrix: FloatArray, names: tuple[str, ...] = (), *, scale: FloatArray | None = None
) -> tuple[str, ...]:
    """Columns spanning the numerical null space of a Gram matrix ``X' W X``; empty when it is regular.

    Parameters
    ----------
    gram_matrix : ndarray, shape (p, p)
        Symmetric positive semi-definite.
    names : tuple of str
        Column names (``"column j"`` when not given).
    scale : ndarray, shape (p,), optional
        Column norms to judge against (default: the square root of the diagonal). Pass the norms
        over all rows when ``gram_matrix`` is one arm's Gram computed as a difference of sums: a
        column that is zero within the arm then shows as rounding noise, not as a unit diagonal.

    Returns
    -------
    tuple of str
        A column of zero scale alone, else the columns loading on the null direction.

    Notes
    -----
    With ``D = diag(scale)``, the matrix is singular when the smallest eigenvalue of
    ``D^-1 G D^-1`` is at most ``SINGULAR_TOLERANCE`` times the largest. The columns named are
    those whose loading in that eigenvalue's eigenvector is at least a tenth of the largest.
    """
    p = gram_matrix.shape[0]
    labels = names if len(names) == p else tuple(f"column {j}" for j in range(p))
    norms = np.sqrt(np.maximum(np.diag(gram_matrix), 0.0)) if scale is None else scale
    zero = ~(norms > 0.0)
    if zero.any():
        return tuple(label for label, is_zero in zip(labels, zero, strict=True) if is_zero)
    values, vectors = linalg.eigh(gram_matrix / np.outer(norms, norms))
    if values[0] > SINGULAR_TOLERANCE * values[-1]:
        return ()
    loading = np.abs(vectors[:, 0])
    return tuple(label for label, w in zip(labels, loading, strict=True) if w >= 0.1 * loading.max())


def _singular_message(columns: tuple[str, ...]) -> str:
    return (
        f"singular design within the arm: column(s) {list(columns)} are constant or collinear there, "
        "so the arm's data do not identify their coefficients"
    )


@one_blas_thread
def least_squares(X: FloatArray, y: FloatArray, *, names: tuple[str, ...] = ()) -> FloatArray:
    """OLS coefficients through the normal equations with a Cholesky solve.

    Raises
    ------
    ValueError
        Naming the columns when ``X'X`` is singular (see :func:`singular_columns`).
    """
    p = X.shape[1]

    def write(rows: slice, out: FloatArray) -> None:
        np.copyto(out[:p], X[rows].T)
        out[p] = y[rows]

    return solve_normal_equations(gram_of_blocks(write, len(y), p + 1), names=names)


def solve_normal_equations(
    augmented: FloatArray, *, names: tuple[str, ...] = (), scale: FloatArray | None = None
) -> FloatArray:
    """OLS coefficients from the Gram matrix of ``[X, y]``.

    Parameters
    ----------
    augmented : ndarray, shape (p + 1, p + 1)
        ``[[X'X, X'y], [y'X, y'y]]``.
    names : tuple of str
        Column names of ``X``, for the error message.
    scale : ndarray, shape (p,), optional
        Column norms against which singularity is judged (see :func:`singular_columns`).

    Returns
    -------
    ndarray, shape (p,)

    Raises
    ------
    ValueError
        Naming the columns when ``X'X`` is singular.
    """
    p = augmented.shape[0] - 1
    columns = singular_columns(augmented[:p, :p], names, scale=scale)
    if columns:
        raise ValueError(_singular_message(columns))
    try:
        return np.asarray(linalg.solve(augmented[:p, :p], augmented[:p, p], assume_a="pos"), dtype=np.float64)
    except (linalg.LinAlgError, ValueError) as error:
        raise ValueError(f"the normal equations are singular: {error}") from error


def minimum_norm_least_squares(X: FloatArray, y: FloatArray, scale: FloatArray) -> FloatArray:
    """Least-squares coefficients of smallest norm in column-scaled units (the singular fallback).

    Parameters
    ----------
    X : ndarray, shape (n, p)
        The arm's design.
    y : ndarray, shape (n,)
        The arm's outcome.
    scale : ndarray, shape (p,)
        Column norms (as in :func:`singular_columns`); a zero-norm column gets coefficient 0.

    Returns
    -------
    ndarray, shape (p,)

    Notes
    -----
    Solves ``min |b|`` over the minimizers of ``|y - X D^-1 b|`` by SVD and returns ``D^-1 b``,
    so the answer does not depend on the covariates' units. Singular values below
    ``sqrt(SINGULAR_TOLERANCE)`` times the largest count as zero, the cut-off at which
    :func:`singular_columns` calls the design singular (LAPACK's default, machine epsilon, keeps
    rounding noise and returns coefficients of order 1e12 along the null direction).
    """
    safe = np.where(scale > 0.0, scale, 1.0)
    solution = linalg.lstsq(X / safe, y, cond=float(np.sqrt(SINGULAR_TOLERANCE)))[0]
    return np.asarray(solution / safe, dtype=np.float64)


def predict_outcome(kind: Literal["linear", "logistic"], linear_predictor: FloatArray) -> FloatArray:
    """Predicted outcome from the linear predictor: identity or inverse logit."""
    if kind == "logistic":
        return np.asarray(special.expit(linear_predictor), dtype=np.float64)
    return np.asarray(linear_predictor, dtype=np.float64)


def _logistic_arm(
    X: FloatArray, y: FloatArray, arm: Arm, names: tuple[str, ...], weights: FloatArray | None = None
) -> tuple[FloatArray, OutcomeFallback | None]:
    """One arm's logistic regression, or its ridge fallback when singular or separated."""
    try:
        fit = fit_logistic(X, y, names=names, weights=weights)
        columns = singular_columns(fit.hessian, names)  # Newton may "converge" along a null direction
        if columns:
            raise ValueError(_singular_message(columns))
        return fit.coefficients, None
    except ValueError as error:
        columns = singular_columns(gram(X), names)
        reason = _singular_message(columns) if columns else str(error)
    # A small ridge keeps an arm whose outcome is separable (all 0 in a region) finite.
    ridge = fit_logistic(X, y, ridge=OUTCOME_RIDGE, weights=weights).coefficients
    return ridge, OutcomeFallback(arm, "ridge", OUTCOME_RIDGE, reason)


@one_blas_thread
def fit_outcome_model(
    design: DesignMatrix,
    treatment: ArrayLike,
    outcome: ArrayLike,
    *,
    kind: OutcomeKind = "auto",
    weights: FloatArray | None = None,
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
    weights : ndarray, optional
        Sampling weights (positive, mean 1): weighted least squares or the weighted logistic
        pseudo-likelihood in each arm, the population's regression (Ridgeway et al. 2015).

    Returns
    -------
    OutcomeModel
        With one :class:`OutcomeFallback` per arm whose design is singular within the arm (a
        minimum-norm or ridge fit) or, for a logistic model, separated (a ridge fit).
    """
    check_choice("kind", kind, ("auto", "linear", "logistic"))
    d = as_binary("treatment", treatment).astype(bool)
    y = np.asarray(outcome, dtype=np.float64)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    chosen: Literal["linear", "logistic"] = ("logistic" if binary else "linear") if kind == "auto" else kind
    if chosen == "logistic" and not binary:
        raise ValueError("outcome must be 0/1 for a logistic outcome model")
    X = design.values
    p = X.shape[1]
    coefficients: list[FloatArray] = []
    fallbacks: list[OutcomeFallback] = []
    if chosen == "linear":
        grams = armwise_gram(X, y, d, weights)
        # Judged against the columns' norms over all rows: the larger arm's Gram is a difference
        # of sums, in which a column that is zero within the arm is rounding noise.
        scale = np.sqrt(np.diag(grams[0])[:p] + np.diag(grams[1])[:p])
        for label, rows, augmented in zip(ARMS, (~d, d), grams, strict=True):
            try:
                beta = solve_normal_equations(augmented, names=design.columns, scale=scale)
            except ValueError as error:
                root = 1.0 if weights is None else np.sqrt(weights[rows])[:, None]
                beta = minimum_norm_least_squares(X[rows] * root, y[rows] * np.ravel(root), scale)
                fallbacks.append(OutcomeFallback(label, "minimum_norm", 0.0, str(error)))
            coefficients.append(beta)
    else:
        for label, rows in zip(ARMS, (~d, d), strict=True):
            arm_weights = None if weights is None else weights[rows]
            beta, fallback = _logistic_arm(X[rows], y[rows], label, design.columns, arm_weights)
            coefficients.append(beta)
            if fallback is not None:
                fallbacks.append(fallback)
    linear = times(X, np.column_stack(coefficients))  # both arms' predictors in one pass over X
    index = list(design.columns)
    return OutcomeModel(
        kind=chosen,
        coefficients_control=pd.Series(coefficients[0], index=index, name="coefficient"),
        coefficients_treated=pd.Series(coefficients[1], index=index, name="coefficient"),
        mu0=predict_outcome(chosen, linear[:, 0]),
        mu1=predict_outcome(chosen, linear[:, 1]),
        fallbacks=tuple(fallbacks),
    )
