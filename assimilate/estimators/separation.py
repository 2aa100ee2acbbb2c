"""Separation in binary regression: when the logistic likelihood has no maximum, and why.

The maximum-likelihood estimate of ``P(y = 1 | x) = 1 / (1 + exp(-x'beta))`` fails to exist
exactly when some direction ``v != 0`` has ``(2 y_i - 1) x_i'v >= 0`` for every unit (Albert and
Anderson 1984): along ``v`` the likelihood rises for ever. The separation is complete when the
inequality is strict for every unit, quasi-complete when for some. :func:`detect_separation`
decides, and names the covariate that separates alone or, when none does, the smallest set of
covariates whose combination does.

Example
-------
>>> import numpy as np
>>> x = np.array([-2.0, -1.0, 0.5, 1.0, 3.0])
>>> X = np.column_stack([np.ones(5), x])
>>> found = detect_separation(X, np.array([0, 0, 1, 1, 1]), names=("intercept", "x"), response="d")
>>> found.kind, found.columns, found.n_separated
('complete', ('x',), 5)
>>> detect_separation(X, np.array([0, 1, 0, 1, 1])) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from assimilate._frozen import FrozenDict

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
SeparationKind = Literal["complete", "quasi-complete"]
Program = Literal["sparse", "widest", "konis"]
LP_ROWS = 2_000  # rows of the linear program's first working set, and the most added per round
LP_ROUNDS = 20  # rounds of added rows before the program takes every row
LP_TOLERANCE = 1e-9  # HiGHS primal and dual feasibility tolerances
VIOLATION = 1e-8  # a margin below -VIOLATION * (largest margin) violates the direction
NEGLIGIBLE = 1e-6  # a scaled coefficient below this fraction of the largest is rounding


@dataclass(frozen=True)
class Separation:
    """A separating direction of a binary response, in words and numbers.

    Parameters
    ----------
    kind : {"complete", "quasi-complete"}
        Complete: every unit is predicted perfectly along ``direction``; quasi-complete: some are.
    columns : tuple of str
        The covariates of the direction: one when a single covariate separates, else a set from
        which no covariate can be dropped. Empty when all units have the same response.
    direction : mapping of str to float
        ``v`` (intercept included) with ``(2 y - 1) x'v >= 0`` for every unit, in the design's units.
    n_separated : int
        Units with ``(2 y - 1) x'v > 0``: their fitted probabilities run off to 0 or 1.
    n : int
        Units.
    description : str
        What separates which units, e.g. ``"complete separation: column 'x' alone predicts d
        perfectly for 5 of 5 units: every unit with x > -1 has d = 1 (3 units) and ..."``.
    """

    kind: SeparationKind
    columns: tuple[str, ...]
    direction: Mapping[str, float] = field(default_factory=dict)
    n_separated: int = 0
    n: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", FrozenDict(self.direction))


def detect_separation(
    X: ArrayLike,
    y: ArrayLike,
    *,
    names: tuple[str, ...] = (),
    response: str = "y",
    probabilities: ArrayLike | None = None,
) -> Separation | None:
    """The separating direction of a logistic regression's data, or None when its MLE exists.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Design of full column rank (a column of ones, if any, is the intercept).
    y : array_like, shape (n,)
        0/1 response.
    names : tuple of str
        Column names, for the description.
    response : str
        Name of the response, for the description.
    probabilities : array_like, shape (n,), optional
        Fitted probabilities of a (diverging) fit: the units they predict worst start the linear
        program's working set, since they are the ones that block a separating direction.

    Returns
    -------
    Separation or None

    Notes
    -----
    First each covariate alone: with an intercept, it separates when the largest value of one
    arm is at most the smallest of the other. Then the linear program of Konis (2007) in its
    feasibility form, over covariates scaled to [-1, 1]: minimize ``sum_j |v_j|`` (intercept
    free) subject to ``(2 y_i - 1) x_i'v >= 0`` for every unit and ``sum_i (2 y_i - 1) x_i'v >=
    n``; it is feasible exactly when the data are separated. It runs on a working set of rows;
    rows its solution violates are added (at most ``LP_ROWS`` per round) until the solution holds
    on every row, or the working set admits none (then neither do all rows); after ``LP_ROUNDS``
    rounds it takes every row. Then covariates are dropped, least important first, while the
    rest still separate, so the combination named has no covariate it does not need. Within it,
    the direction reported is the one with the widest gap (the largest smallest margin, ``|v_j|
    <= 1``) or, when there is no gap (quasi-complete), the one of Konis's program: the largest
    total margin.

    References
    ----------
    Albert, A. and Anderson, J. A. (1984). On the existence of maximum likelihood estimates in
    logistic regression models. *Biometrika* 71(1), 1-10.
    Konis, K. (2007). *Linear programming algorithms for detecting separated data in binary
    logistic regression models*. DPhil thesis, University of Oxford.
    """
    design = np.asarray(X, dtype=np.float64)
    response_values = np.asarray(y, dtype=np.float64)
    n, p = design.shape
    labels = names if len(names) == p else tuple(f"column {j}" for j in range(p))
    treated = response_values == 1
    if treated.all() or not treated.any():
        words = f"every unit has {response} = {int(treated[0])}, so no model can be fitted"
        return Separation("complete", (), {}, n, n, f"complete separation: {words}")
    intercept = _intercept_column(design)
    alone = _separating_columns(design, treated, intercept)
    if alone:
        j = alone[0]
        also = f" (as does each of {[labels[k] for k in alone[1:]]})" if len(alone) > 1 else ""
        text, n_separated, sign, threshold = _described(design[:, j], treated, labels[j], response, 0.0)
        direction = np.zeros(p)
        direction[j] = sign
        if intercept is not None:
            direction[intercept] = -sign * threshold
        subject, columns = f"column {labels[j]!r} alone{also}", tuple(labels[j : j + 1])
    else:
        scaled = _Scaled.of(design, treated, intercept)
        fitted = None if probabilities is None else np.asarray(probabilities, dtype=np.float64)
        seeds = _seed_rows(treated, fitted)
        allowed = np.ones(p, dtype=bool)
        sparse = _direction(scaled, allowed, seeds, "sparse")
        if sparse is None:
            return None
        for j in np.argsort(np.abs(sparse[0])):  # drop covariates the separation does not need
            if j != intercept:
                trial = allowed & (np.arange(p) != j)
                if _direction(scaled, trial, seeds, "sparse") is not None:
                    allowed = trial
        # Within the covariates kept, the direction with the widest gap; with none (quasi-complete),
        # the one with the largest total margin.
        chosen = _direction(scaled, allowed, seeds, "widest")
        if chosen is None or chosen[1] <= VIOLATION:  # no gap: quasi-complete
            chosen = _direction(scaled, allowed, seeds, "konis")
        if chosen is None:
            raise AssertionError("unreachable: b = 0 is feasible")
        is_intercept = np.arange(p) == (-1 if intercept is None else intercept)
        size = np.where(is_intercept, 0.0, np.abs(chosen[0]))
        kept = [int(j) for j in np.flatnonzero(size > NEGLIGIBLE * size.max())]
        direction = scaled.unscaled(chosen[0])
        lead = max(kept, key=lambda j: size[j])
        shown = np.where(is_intercept, 0.0, direction / direction[lead])
        expression = _linear_text(shown[kept], [labels[j] for j in kept])
        values = design @ shown
        tolerance = VIOLATION * float(np.max(np.abs(values)))
        text, n_separated, _, _ = _described(values, treated, expression, response, tolerance)
        subject, columns = f"the combination {expression} (no single column)", tuple(labels[j] for j in kept)
    kind: SeparationKind = "complete" if n_separated == n else "quasi-complete"
    return Separation(
        kind=kind,
        columns=columns,
        direction={name: float(v) + 0.0 for name, v in zip(labels, direction, strict=True)},
        n_separated=n_separated,
        n=n,
        description=f"{kind} separation: {subject} predicts {response} perfectly for {n_separated} "
        f"of {n} units: {text}",
    )


def _intercept_column(X: FloatArray) -> int | None:
    """Index of a column of ones, if any."""
    for j in np.flatnonzero(X[0] == 1.0):
        if np.all(X[:, j] == 1.0):
            return int(j)
    return None


def _separating_columns(X: FloatArray, treated: BoolArray, intercept: int | None) -> list[int]:
    """Covariates that separate alone (with a threshold when there is an intercept), most units first."""
    low1, high1, low0, high0 = (
        reduce(X, axis=0, where=arm[:, None], initial=start)
        for arm in (treated, ~treated)
        for reduce, start in ((np.min, np.inf), (np.max, -np.inf))
    )
    if intercept is None:  # the threshold is 0
        alone = ((high0 <= 0) & (low1 >= 0)) | ((high1 <= 0) & (low0 >= 0))
    else:
        alone = (high0 <= low1) | (high1 <= low0)
        alone[intercept] = False
    alone &= np.any(X != 0.0, axis=0)
    candidates = [int(j) for j in np.flatnonzero(alone)]
    return sorted(candidates, key=lambda j: -_described(X[:, j], treated, "", "", 0.0)[1])


def _described(
    values: FloatArray, treated: BoolArray, expression: str, response: str, tolerance: float
) -> tuple[str, int, float, float]:
    """Words for a separating score, the units it predicts perfectly, its orientation and threshold."""
    low1, high1 = float(np.min(values[treated])), float(np.max(values[treated]))
    low0, high0 = float(np.min(values[~treated])), float(np.max(values[~treated]))
    if low1 - high0 >= low0 - high1:  # treated above, controls below
        parts = [(">", high0, 1, values > high0 + tolerance), ("<", low1, 0, values < low1 - tolerance)]
        sign, threshold = 1.0, (low1 + high0) / 2
    else:
        parts = [("<", low0, 1, values < low0 - tolerance), (">", high1, 0, values > high1 + tolerance)]
        sign, threshold = -1.0, (low0 + high1) / 2
    counts = [int(np.count_nonzero(mask)) for *_, mask in parts]
    text = " and ".join(
        f"every unit with {expression} {op} {bound:.4g} has {response} = {value} ({count} units)"
        for (op, bound, value, _), count in zip(parts, counts, strict=True)
        if count
    )
    return text, sum(counts), sign, threshold


def _linear_text(coefficients: FloatArray, names: list[str]) -> str:
    """``x1 + 0.5*x2 - 2*x3``."""
    terms = []
    for k, (c, name) in enumerate(zip(coefficients, names, strict=True)):
        size = name if abs(abs(c) - 1.0) < 5e-5 else f"{abs(c):.4g}*{name}"
        terms.append(("-" + size if c < 0 else size) if k == 0 else f"{'-' if c < 0 else '+'} {size}")
    return " ".join(terms)


@dataclass(frozen=True)
class _Scaled:
    """Rows ``(2 y_i - 1) x_i`` with covariates centred and scaled to [-1, 1] (intercept kept)."""

    Z: FloatArray
    center: FloatArray
    half: FloatArray
    intercept: int | None

    @classmethod
    def of(cls, X: FloatArray, treated: BoolArray, intercept: int | None) -> _Scaled:
        low, high = X.min(axis=0), X.max(axis=0)
        if intercept is None:
            center, half = np.zeros(X.shape[1]), np.maximum(np.abs(low), np.abs(high))
        else:
            center, half = (high + low) / 2, (high - low) / 2
            center[intercept], half[intercept] = 0.0, 1.0
        half = np.where(half > 0, half, 1.0)
        Z = X - center
        Z *= np.where(treated, 1.0, -1.0)[:, None] / half
        return cls(Z, center, half, intercept)

    def unscaled(self, b: FloatArray) -> FloatArray:
        """Coefficients ``v`` in the design's units: ``X v`` equals the scaled rows times ``b``."""
        v = b / self.half
        if self.intercept is not None:
            v[self.intercept] -= self.center @ v
        return v


def _seed_rows(treated: BoolArray, probabilities: FloatArray | None) -> NDArray[np.intp]:
    """A strided sample of rows and, given a fit, the rows it predicts worst."""
    n = len(treated)
    rows = np.arange(0, n, max(1, n // LP_ROWS))
    if probabilities is None:
        return rows
    own = np.where(treated, probabilities, 1.0 - probabilities)
    first = min(n, LP_ROWS)
    return np.union1d(rows, np.argpartition(own, first - 1)[:first])


def _direction(
    scaled: _Scaled, allowed: BoolArray, seeds: NDArray[np.intp], program: Program
) -> tuple[FloatArray, float] | None:
    """:func:`_solve` on every row by row generation: ``b`` and its margin floor; None if infeasible."""
    Z = scaled.Z
    rows = seeds
    for round_ in range(LP_ROUNDS + 1):
        if round_ == LP_ROUNDS:
            rows = np.arange(Z.shape[0])
        found = _solve(Z[rows], Z.mean(axis=0), allowed, scaled.intercept, program)
        if found is None:
            return None
        margins = Z @ found[0]
        slack = VIOLATION * max(float(np.max(np.abs(margins))), 1.0)
        violated = np.setdiff1d(np.flatnonzero(margins < found[1] - slack), rows)
        if violated.size == 0:
            return found
        rows = np.union1d(rows, violated[np.argsort(margins[violated])[:LP_ROWS]])
    raise AssertionError("unreachable: the last round takes every row")


def _solve(
    Z: FloatArray, total: FloatArray, allowed: BoolArray, intercept: int | None, program: Program
) -> tuple[FloatArray, float] | None:
    """One linear program over the rows ``Z`` (margins ``Z b``) and the allowed columns of ``b``.

    ``"sparse"``: min ``sum |b_j|`` (intercept free) s.t. ``Z b >= 0``, ``mean(Z b) >= 1``; None
    when infeasible. ``"widest"``: max ``t`` s.t. ``Z b >= t``, ``|b_j| <= 1`` (the largest
    smallest margin). ``"konis"``: max ``mean(Z b)`` s.t. ``Z b >= 0``, ``|b_j| <= 1`` (Konis
    2007). Returns ``b`` (zero off the allowed columns) and the floor of its margins.
    """
    m = Z.shape[0]
    columns = np.flatnonzero(allowed)
    k = len(columns)
    is_intercept = columns == (-1 if intercept is None else intercept)
    box: list[tuple[float | None, float | None]] = [
        (-float(k), float(k)) if free else (-1.0, 1.0) for free in is_intercept
    ]
    if program == "sparse":
        penalized = np.eye(k)[~is_intercept]
        q = len(penalized)
        A = np.block(
            [
                [-Z[:, columns], np.zeros((m, q))],
                [-total[None, columns], np.zeros((1, q))],
                [penalized, -np.eye(q)],
                [-penalized, -np.eye(q)],
            ]
        )
        upper = np.concatenate([np.zeros(m), [-1.0], np.zeros(2 * q)])
        cost = np.concatenate([np.zeros(k), np.ones(q)])
        bounds: list[tuple[float | None, float | None]] = [(None, None)] * k + [(0.0, None)] * q
    elif program == "widest":
        A = np.hstack([-Z[:, columns], np.ones((m, 1))])
        upper, cost = np.zeros(m), np.concatenate([np.zeros(k), [-1.0]])
        bounds = [*box, (0.0, None)]
    else:
        A, upper, cost, bounds = -Z[:, columns], np.zeros(m), -total[columns], box
    result = optimize.linprog(
        cost,
        A_ub=A,
        b_ub=upper,
        bounds=bounds,
        method="highs",
        options={"primal_feasibility_tolerance": LP_TOLERANCE, "dual_feasibility_tolerance": LP_TOLERANCE},
    )
    if result.status == 2:  # infeasible: no separating direction on these rows and columns
        return None
    if result.status != 0 or result.x is None:
        raise ValueError(f"the separation linear program failed: {result.message}")
    b = np.zeros(Z.shape[1])
    b[columns] = result.x[:k]
    return b, float(result.x[k]) if program == "widest" else 0.0
