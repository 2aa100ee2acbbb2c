"""Always-valid confidence sequences for the running effect: intervals that hold at every look.

A confidence sequence is a sequence of intervals, one per look, that *all* contain the target
with probability at least ``1 - alpha`` however many looks are taken and whenever one stops.
:func:`confidence_sequence` builds it from per-batch estimates and standard errors (or a full
covariance of the batch estimates) with the two-sided normal-mixture boundary;
:func:`asymptotic_confidence_sequence` builds it from unit-level influence values.

Model, in one line: ``y_i ~ N(theta_i, se_i^2)`` independent, ``S_t = sum_i (y_i - theta_i) / se_i^2``,
``V_t = sum_i 1 / se_i^2``, and ``P(exists t: |S_t| >= sqrt((V_t + rho) log((V_t + rho) / (rho alpha^2)))) <= alpha``.

Example
-------
>>> cs = confidence_sequence([0.30, 0.25, 0.28], [0.1, 0.1, 0.1], planned_looks=3)
>>> round(cs.final_estimate, 4), [round(x, 3) for x in cs.conf_int()]
(0.2767, [0.101, 0.452])
>>> bool(cs.lower[0] < cs.lower[2])
True

Notes
-----
Under the model, ``M_t = sqrt(rho / (V_t + rho)) exp(S_t^2 / (2 (V_t + rho)))`` is the normal
mixture (``lambda ~ N(0, 1/rho)``) of the martingales ``exp(lambda S_t - lambda^2 V_t / 2)``, and
Ville's inequality gives ``P(exists t: M_t >= 1/alpha) <= alpha`` (Robbins, 1970; Howard, Ramdas,
McAuliffe & Sekhon, 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 49(2), the two-sided normal mixture boundary). Solving ``M_t < 1/alpha`` for the
effect gives the interval ``S_t / V_t``-centred of half-width ``u(V_t) / V_t`` with
``u(v) = sqrt((v + rho) log((v + rho) / (rho alpha^2)))``. The target at look ``t`` is the
precision-weighted average ``sum theta_i / se_i^2 / V_t`` of the batches used so far: the effect
itself when it is constant.

``rho`` must be fixed before the data. :func:`optimal_rho` minimises the half-width at a planned
information ``m`` (the ``V`` expected at the horizon that matters) in closed form,
``rho = m / (y - 1)`` with ``y = -W_{-1}(-exp(-1 - 2 log(1/alpha)))`` (Lambert W, lower branch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, special

from assimilate._frozen import ReadOnlyArrays
from assimilate._validation import as_float_vector, check_alpha, check_positive

FloatArray = NDArray[np.float64]
Method = Literal["normal_mixture", "asymptotic_normal_mixture"]


def optimal_rho(planned_information: float, *, alpha: float = 0.05) -> float:
    """The mixing precision that makes the interval narrowest at ``planned_information``.

    Parameters
    ----------
    planned_information : float
        The intrinsic time ``V`` (sum of ``1 / se^2``, or a sample size for influence values) at
        the look where the interval should be tightest.
    alpha : float
        Error level of the whole sequence.

    Returns
    -------
    float
        ``rho = m / (y - 1)`` with ``y = -W_{-1}(-exp(-1 - 2 log(1/alpha)))``: the stationary point
        of ``(m + rho) log((m + rho) / (rho alpha^2))`` in ``rho``.
    """
    m = check_positive("planned_information", planned_information)
    level = 2.0 * math.log(1.0 / check_alpha(alpha))
    y = -float(special.lambertw(-math.exp(-1.0 - level), -1).real)
    return m / (y - 1.0)


def normal_mixture_boundary(information: ArrayLike, *, rho: float, alpha: float = 0.05) -> FloatArray:
    """The two-sided normal-mixture boundary ``u(V) = sqrt((V + rho) log((V + rho) / (rho alpha^2)))``.

    Parameters
    ----------
    information : array_like
        Intrinsic time ``V >= 0`` (any shape).
    rho : float
        Mixing precision (> 0), fixed before the data.
    alpha : float
        Error level of the whole sequence.

    Returns
    -------
    ndarray
        ``u(V)``, the bound on ``|S_t|``; the interval's half-width on the effect scale is ``u(V) / V``.
    """
    r = check_positive("rho", rho)
    a = check_alpha(alpha)
    v = np.asarray(information, dtype=np.float64)
    if np.any(~np.isfinite(v)) or np.any(v < 0):
        raise ValueError("information must be finite and non-negative")
    return np.asarray(np.sqrt((v + r) * np.log((v + r) / (r * a * a))), dtype=np.float64)


@dataclass(frozen=True)
class ConfidenceSequence(ReadOnlyArrays):
    """An always-valid interval per look, with the running estimate it is centred on.

    Parameters
    ----------
    method : {"normal_mixture", "asymptotic_normal_mixture"}
        The boundary used (exact under normal batch estimates, or asymptotic on influence values).
    alpha : float
        Every interval of the sequence holds simultaneously with probability at least ``1 - alpha``.
    labels : tuple of str
        One label per look.
    estimate : ndarray
        Running estimate at each look (NaN before the first used batch).
    lower, upper : ndarray
        The interval at each look (``-inf``/``inf`` before the first used batch).
    information : ndarray
        Intrinsic time ``V_t`` (precision of the running estimate) at each look.
    used : ndarray of bool
        Whether each look's batch entered the running estimate (excluded or missing: False).
    rho : float
        Mixing precision of the boundary (NaN when no batch was used and none was given).
    planned_information : float
        The information ``rho`` was tuned for (NaN when ``rho`` was given directly).
    correlated : bool
        Whether a full covariance of the batch estimates was used (GLS running estimate).
    """

    method: Method
    alpha: float
    labels: tuple[str, ...]
    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray
    information: FloatArray
    used: NDArray[np.bool_]
    rho: float
    planned_information: float
    correlated: bool = False

    def __post_init__(self) -> None:
        for name in ("estimate", "lower", "upper", "information", "used"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if any(len(getattr(self, k)) != len(self.labels) for k in ("estimate", "lower", "upper", "used")):
            raise ValueError("ConfidenceSequence arrays must all have one entry per label")

    @property
    def level(self) -> float:
        """Simultaneous coverage ``1 - alpha``."""
        return 1.0 - self.alpha

    @property
    def n_used(self) -> int:
        """Looks whose batch entered the running estimate."""
        return int(np.sum(self.used))

    @property
    def half_width(self) -> FloatArray:
        """Half-width of the interval at each look (inf before the first used batch)."""
        return np.asarray((self.upper - self.lower) / 2.0, dtype=np.float64)

    @property
    def final_estimate(self) -> float:
        """Running estimate at the last look."""
        return float(self.estimate[-1])

    def conf_int(self) -> tuple[float, float]:
        """The interval at the last look, ``(lower, upper)``."""
        return float(self.lower[-1]), float(self.upper[-1])

    def excludes(self, value: float = 0.0) -> NDArray[np.bool_]:
        """Per look, whether the interval excludes ``value``."""
        return np.asarray((self.lower > value) | (self.upper < value), dtype=np.bool_)

    @property
    def target(self) -> str:
        """What the intervals cover, in words."""
        if self.method == "asymptotic_normal_mixture":
            return "the average effect over the units seen so far"
        weights = "GLS-weighted" if self.correlated else "precision-weighted"
        return (
            f"the {weights} average effect of the batches used so far (the effect itself when it is constant)"
        )

    @property
    def promise(self) -> str:
        """What the sequence promises, as one sentence."""
        level = f"{100 * self.level:g}%"
        if self.method == "asymptotic_normal_mixture":
            condition = "in large samples, for influence values with finite variance computed without using the unit's own outcome"
        elif self.correlated:
            condition = "when the batch estimates are jointly normal, unbiased and have the stated covariance"
        else:
            condition = "when each batch estimate is unbiased, normal and independent of the others with its stated standard error"
        return (
            f"With probability at least {level}, every one of these intervals, at every look however many "
            f"and whenever one stops, contains {self.target}, {condition}."
        )

    def to_frame(self) -> pd.DataFrame:
        """Tidy table, one row per look."""
        return pd.DataFrame(
            {
                "batch": list(self.labels),
                "used": self.used,
                "information": self.information,
                "estimate": self.estimate,
                "cs_lower": self.lower,
                "cs_upper": self.upper,
            }
        )

    def summary(self) -> str:
        """Human-readable report: the last interval and the promise."""
        lower, upper = self.conf_int()
        return (
            f"Always-valid {100 * self.level:g}% confidence sequence ({self.method}, rho {self.rho:.4g}, "
            f"{self.n_used} of {len(self.labels)} looks used)\n"
            f"  running estimate {self.final_estimate:.6g}, interval [{lower:.6g}, {upper:.6g}]\n"
            f"  {self.promise}"
        )

    def __str__(self) -> str:
        return self.summary()


def _whitened(
    y: FloatArray, se: FloatArray | None, covariance: ArrayLike | None, used: NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray]:
    """``w = L^-1 1`` and ``z = L^-1 y`` on the used batches (zeros elsewhere), ``L L' = Cov``."""
    n = len(y)
    w, z = np.zeros(n), np.zeros(n)
    if covariance is None:
        assert se is not None
        w[used], z[used] = 1.0 / se[used], y[used] / se[used]
        return w, z
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (n, n):
        raise ValueError(f"covariance must have shape ({n}, {n}), got {cov.shape}")
    block = cov[np.ix_(used, used)]
    if not np.all(np.isfinite(block)) or not np.allclose(block, block.T, rtol=1e-10, atol=0.0):
        raise ValueError("covariance of the used batches must be finite and symmetric")
    if se is not None and not np.allclose(np.sqrt(np.diag(block)), se[used], rtol=1e-6, atol=0.0):
        raise ValueError("standard_errors disagree with the square root of the covariance's diagonal")
    try:
        factor = linalg.cholesky(block, lower=True)
    except linalg.LinAlgError as error:
        raise ValueError(f"covariance of the used batches is not positive definite: {error}") from error
    w[used] = linalg.solve_triangular(factor, np.ones(int(used.sum())), lower=True)
    z[used] = linalg.solve_triangular(factor, y[used], lower=True)
    return w, z


def _resolve_rho(
    rho: float | None,
    planned_information: float | None,
    planned_looks: int,
    first_precision: float,
    alpha: float,
) -> tuple[float, float]:
    if rho is not None and planned_information is not None:
        raise ValueError("give rho or planned_information, not both")
    if rho is not None:
        return check_positive("rho", rho), math.nan
    if planned_information is None:
        if int(planned_looks) != planned_looks or planned_looks < 1:
            raise ValueError(f"planned_looks must be a positive integer, got {planned_looks!r}")
        if not math.isfinite(first_precision):
            return math.nan, math.nan  # no batch used: nothing to plan from, every interval is unbounded
        planned_information = planned_looks * first_precision
    return optimal_rho(planned_information, alpha=alpha), float(planned_information)


def _bounds(
    information: FloatArray, total: FloatArray, scale: FloatArray, rho: float, alpha: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Running estimate and interval; ``-inf``/``inf`` (estimate NaN) while no information is in."""
    seen = information > 0
    estimate, half = np.full(len(information), np.nan), np.full(len(information), np.inf)
    if seen.any():
        estimate[seen] = total[seen] / information[seen]
        boundary = normal_mixture_boundary(information[seen], rho=rho, alpha=alpha)
        half[seen] = scale[seen] * boundary / information[seen]
    return estimate, np.where(seen, estimate - half, -np.inf), np.where(seen, estimate + half, np.inf)


def confidence_sequence(
    estimates: ArrayLike,
    standard_errors: ArrayLike | None = None,
    *,
    covariance: ArrayLike | None = None,
    excluded: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.05,
    rho: float | None = None,
    planned_information: float | None = None,
    planned_looks: int = 12,
) -> ConfidenceSequence:
    """Always-valid intervals for the running effect from per-batch estimates (normal mixture).

    Parameters
    ----------
    estimates : array_like
        One estimate per batch, in time order (NaN: no estimate, skipped like an excluded batch).
    standard_errors : array_like, optional
        Their standard errors; required unless ``covariance`` is given (then checked against it).
    covariance : array_like, optional
        Full covariance of the batch estimates (batches sharing units are correlated). The running
        estimate is then the GLS estimate of a common effect on the used batches so far, with
        ``V_t = 1' Cov_t^-1 1``. Proven: because ``V_t (GLS_t - theta)`` has independent normal
        increments of variance ``V_t - V_{t-1}`` (the GLS estimate is efficient, so it is
        uncorrelated with its revisions), the sequence is exact when the estimates are jointly
        normal with this covariance; for a drifting effect it covers the GLS-weighted average, whose
        weights sum to 1 but may be negative. Not proven: validity with an *estimated* covariance
        (a plug-in, valid only as the estimate converges), or with correlation the matrix omits.
    excluded : array_like of bool, optional
        Batches to skip (a failed check): the interval is carried over unchanged.
    labels : sequence of str, optional
        Batch labels (default ``batch_1`` ...).
    alpha : float
        All intervals hold together with probability at least ``1 - alpha``.
    rho, planned_information, planned_looks
        How the mixing precision is fixed, in order of precedence: ``rho`` itself; else tuned by
        :func:`optimal_rho` for ``planned_information`` (the ``sum 1/se^2`` expected at the horizon
        that matters); else for ``planned_looks`` batches as precise as the first used one. Never
        derive them from the estimates.

    Returns
    -------
    ConfidenceSequence
        Per-look running estimate and interval, the ``rho`` used and the promise as a sentence.
    """
    y = as_float_vector("estimates", estimates)
    n = len(y)
    se = None if standard_errors is None else as_float_vector("standard_errors", standard_errors)
    if se is None and covariance is None:
        raise ValueError("give standard_errors or covariance")
    if se is not None and len(se) != n:
        raise ValueError(f"standard_errors has {len(se)} entries for {n} estimates")
    skip = np.zeros(n, dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
    if skip.shape != (n,):
        raise ValueError(f"excluded must have one flag per estimate ({n}), got shape {skip.shape}")
    names = tuple(f"batch_{i + 1}" for i in range(n)) if labels is None else tuple(str(x) for x in labels)
    if len(names) != n:
        raise ValueError(f"labels has {len(names)} entries for {n} estimates")
    a = check_alpha(alpha)
    used = ~skip & np.isfinite(y)
    if se is not None and np.any(~(np.isfinite(se[used]) & (se[used] > 0))):
        raise ValueError("every used batch needs a positive, finite standard error")
    w, z = _whitened(y, se, covariance, used)
    first = float(w[used][0] ** 2) if used.any() else math.nan
    r, planned = _resolve_rho(rho, planned_information, planned_looks, first, a)
    information, total = np.cumsum(w * w), np.cumsum(w * z)
    estimate, lower, upper = _bounds(information, total, np.ones(n), r, a)
    correlated = covariance is not None
    return ConfidenceSequence(
        "normal_mixture", a, names, estimate, lower, upper, information, used, r, planned, correlated
    )


def asymptotic_confidence_sequence(
    influence: ArrayLike,
    *,
    look_ends: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.05,
    planned_n: int,
) -> ConfidenceSequence:
    """Asymptotic confidence sequence for a mean from unit-level influence values, in arrival order.

    Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024), "Time-uniform central limit theory and
    asymptotic confidence sequences", Ann. Statist. 52(6), the Gaussian-mixture AsympCS:
    ``mean_n +/- sd_n sqrt(2 (n r^2 + 1) / (n^2 r^2) log(sqrt(n r^2 + 1) / alpha))``, which is the
    normal-mixture boundary above with ``V = n`` and ``rho = 1 / r^2``, scaled by the running SD.
    For an average effect, pass AIPW pseudo-outcomes whose nuisance models were not fit on the
    unit itself (cross-fitting, or models from earlier batches).

    Parameters
    ----------
    influence : array_like
        One influence value (pseudo-outcome) per unit, in the order the units arrived.
    look_ends : array_like of int, optional
        Number of units seen at each look (increasing, last = all units); default: every unit.
    labels : sequence of str, optional
        One label per look.
    alpha : float
        Simultaneous error level, asymptotically.
    planned_n : int
        Number of units at the horizon where the interval should be tightest (tunes ``rho``).

    Returns
    -------
    ConfidenceSequence
        Running mean and interval at each look; ``information`` is ``n / sd_n^2``.
    """
    phi = as_float_vector("influence", influence)
    if phi.size < 2 or not np.all(np.isfinite(phi)):
        raise ValueError("influence needs at least two finite values")
    ends = np.arange(1, phi.size + 1) if look_ends is None else np.asarray(look_ends, dtype=np.int64)
    if ends.ndim != 1 or ends.size == 0 or np.any(np.diff(ends) <= 0) or ends[0] < 1 or ends[-1] != phi.size:
        raise ValueError("look_ends must increase strictly from >= 1 to the number of units")
    names = (
        tuple(f"look_{i + 1}" for i in range(ends.size)) if labels is None else tuple(str(x) for x in labels)
    )
    if len(names) != ends.size:
        raise ValueError(f"labels has {len(names)} entries for {ends.size} looks")
    a = check_alpha(alpha)
    r = optimal_rho(float(planned_n), alpha=a)
    count = ends.astype(np.float64)
    total = np.cumsum(phi)[ends - 1]
    shifted = phi - phi[0]  # centring on one value keeps the running variance free of cancellation
    centred_mean = np.cumsum(shifted)[ends - 1] / count
    squares = np.cumsum(shifted * shifted)[ends - 1] - count * centred_mean * centred_mean
    sd = np.full(ends.size, np.inf)  # one unit: no spread yet, an unbounded interval
    many = count > 1
    sd[many] = np.sqrt(np.maximum(squares[many], 0.0) / (count[many] - 1.0))
    information = np.divide(count, sd * sd, out=np.zeros_like(count), where=sd > 0)
    estimate, lower, upper = _bounds(count, total, sd, r, a)
    used = np.ones(ends.size, dtype=bool)
    method: Method = "asymptotic_normal_mixture"
    return ConfidenceSequence(
        method, a, names, estimate, lower, upper, information, used, r, float(planned_n)
    )
