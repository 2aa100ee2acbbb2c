"""Instrumental variables: two-stage least squares of one endogenous treatment, per batch.

Model: ``y = x'a + beta d + u``, ``d = x'b + z'pi + v`` with ``E[z u | x] = 0`` and ``pi != 0``;
``beta_2sls = (d_hat' y~) / (d_hat' d~)``, ``d_hat = P_{z~} d~`` (``~``: covariates ``x`` partialled
out). With a binary instrument and treatment and monotone compliance, ``beta`` is the local average
treatment effect on the compliers (LATE; Imbens & Angrist 1994; Angrist, Imbens & Rubin 1996).

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> z = rng.binomial(1, 0.5, 2000); u = rng.standard_normal(2000)
>>> d = (0.8 * z + u + rng.standard_normal(2000) > 0.5).astype(int)
>>> frame = pd.DataFrame({"z": z, "d": d, "y": 1.0 * d + u + rng.standard_normal(2000)})
>>> fit = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=["z"])
>>> fit.estimand, fit.se_method, bool(abs(fit.estimate - 1.0) < 3 * fit.std_error)
('LATE', 'hc1', True)
>>> from assimilate.estimators.iv_diagnostics import weak_instrument_verdict
>>> weak_instrument_verdict(fit).status
'pass'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, stats

from assimilate._frozen import to_jsonable
from assimilate._validation import check_alpha, check_choice
from assimilate.estimators.design_matrix import DesignMatrix, encode_covariates
from assimilate.estimators.influence import InfluenceContributions
from assimilate.estimators.iv_diagnostics import IV_METHOD as METHOD
from assimilate.estimators.iv_diagnostics import ReducedForm, cluster_sums, hansen_j
from assimilate.estimators.result import EffectEstimate
from assimilate.estimators.variance import cluster_codes, cluster_robust_standard_error

FloatArray = NDArray[np.float64]
IVSEType = Literal["HC0", "HC1", "CR1"]
IV_SE_TYPES: tuple[IVSEType, ...] = ("HC0", "HC1", "CR1")
"""HC0, HC1 (``n/(n-p)``, the default unclustered) and CR1 (``G/(G-1) (n-1)/(n-p)``, with clusters)."""
_RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class _Fit:
    estimate: EffectEstimate
    influence: FloatArray


def two_stage_least_squares(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    instruments: Sequence[str],
    covariates: Sequence[str] = (),
    clusters: str | ArrayLike | None = None,
    se_type: IVSEType | None = None,
    alpha: float = 0.05,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> EffectEstimate:
    """2SLS effect of one endogenous treatment with robust SEs and weak-instrument diagnostics.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment : str
        The endogenous treatment: 0/1, or any numeric dose.
    outcome : str
        The outcome column.
    instruments : sequence of str
        The excluded instruments (at least one; categoricals one-hot encoded).
    covariates : sequence of str
        Exogenous covariates, entering both stages (:func:`encode_covariates`, with an intercept).
    clusters : str or array_like, optional
        A column of ``data`` or one label per row: the SE, the first-stage F, the AR set and
        Hansen's J are then cluster-robust (CR1; tests with ``G - 1`` denominator degrees of freedom).
    se_type : {"HC0", "HC1", "CR1"}, optional
        Default ``"HC1"`` (linearmodels' ``cov_type="robust", debiased=True``; Stata's
        ``ivregress ..., vce(robust) small``), ``"CR1"`` with ``clusters``.
    alpha : float
        Level of the Anderson-Rubin set kept in the diagnostics.
    categories : mapping, optional
        Allowed levels of categorical covariates or instruments.

    Returns
    -------
    EffectEstimate
        ``estimand="LATE"``, ``method="two_stage_least_squares"``, ``se_method`` the lower-cased
        SE type; ``diagnostics`` hold ``first_stage`` (coefficients, SEs, signs, ``robust_f``,
        ``effective_f``), ``anderson_rubin`` (:meth:`AndersonRubinSet.to_dict` with
        ``statistic_at_zero`` and ``p_value_at_zero``), ``hansen_j`` (statistic, df, p-value; a
        ``reason`` instead when just identified) and ``standard_error`` (``df = G - 1`` when
        clustered, read by :func:`assimilate.estimators.variance.t_conf_int`). For a continuous
        treatment ``n_treated`` counts the units with a non-zero treatment.

    Notes
    -----
    With ``a_i = d_hat_i / (d_hat' d_hat)`` and structural residuals ``e = y~ - beta d~``:
    HC0 ``V = sum a_i^2 e_i^2``; HC1 ``n/(n-p) V`` with ``p`` the covariates (with intercept) plus
    one; CR1 ``G/(G-1) (n-1)/(n-p) sum_g (sum_{i in g} a_i e_i)^2`` (White 1982; linearmodels
    ``IV2SLS``). The first-stage F and the AR statistics are robust Wald statistics of the excluded
    instruments with the same scaling (``p``: covariates plus instruments); with HC1 or CR1 the F
    is the Kleibergen-Paap rk Wald F. The effective F (Montiel Olea & Pflueger 2013), the AR set
    and Hansen's J (HC0 or clustered moment covariance, as is standard) are in
    :mod:`assimilate.estimators.iv_diagnostics`.
    """
    return _fit_frame(
        data,
        treatment=treatment,
        outcome=outcome,
        instruments=instruments,
        covariates=covariates,
        clusters=clusters,
        se_type=se_type,
        alpha=alpha,
        categories=categories,
    ).estimate


def two_stage_least_squares_with_influence(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    instruments: Sequence[str],
    covariates: Sequence[str] = (),
    clusters: str | ArrayLike | None = None,
    se_type: IVSEType | None = None,
    alpha: float = 0.05,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> InfluenceContributions:
    """:func:`two_stage_least_squares` with each row's influence value ``psi_i = n c a_i e_i``.

    Unclustered, ``c^2`` is the SE type's factor (1 for HC0, ``n/(n-p)`` for HC1), so
    ``sum psi^2 / n^2 = std_error^2`` and ``mean(psi) = 0`` exactly (the 2SLS normal equations).
    With clusters ``c = 1`` and the CR1 SE is
    ``cluster_robust_standard_error(psi, clusters, correction=(n-1)/(n-p))``, as for the other
    estimators (:func:`assimilate.estimators.variance.with_standard_error`).
    """
    fit = _fit_frame(
        data,
        treatment=treatment,
        outcome=outcome,
        instruments=instruments,
        covariates=covariates,
        clusters=clusters,
        se_type=se_type,
        alpha=alpha,
        categories=categories,
    )
    return InfluenceContributions(fit.estimate, fit.influence)


def two_stage_least_squares_from_arrays(
    exogenous: DesignMatrix,
    instruments: DesignMatrix,
    treatment: ArrayLike,
    outcome: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    se_type: IVSEType | None = None,
    alpha: float = 0.05,
) -> EffectEstimate:
    """:func:`two_stage_least_squares` on arrays: covariates with intercept, instruments without."""
    return _fit_arrays(
        exogenous,
        instruments,
        np.asarray(treatment, dtype=np.float64),
        np.asarray(outcome, dtype=np.float64),
        clusters=clusters,
        se_type=se_type,
        alpha=alpha,
    ).estimate


def _fit_frame(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    instruments: Sequence[str],
    covariates: Sequence[str],
    clusters: str | ArrayLike | None,
    se_type: IVSEType | None,
    alpha: float,
    categories: Mapping[str, Sequence[str]] | None,
) -> _Fit:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.empty:
        raise ValueError("data is empty: the batch has no rows")
    if isinstance(instruments, str) or not list(instruments):
        raise ValueError(f"instruments must be a non-empty list of column names, got {instruments!r}")
    roles = {"treatment": [treatment], "outcome": [outcome], "instrument": list(instruments)}
    named = [treatment, outcome, *instruments, *covariates]
    repeated = sorted({c for c in named if named.count(c) > 1})
    missing = [c for c in named if c not in data.columns]
    if repeated or missing:
        problem = f"named in more than one role: {repeated}" if repeated else f"not in the data: {missing}"
        raise ValueError(f"column(s) {problem} (columns: {list(data.columns)})")
    for role, columns in roles.items():
        constant = [c for c in columns if data[c].nunique(dropna=False) < 2]
        if constant:
            raise ValueError(
                f"{role} column(s) {constant} constant in this batch: no effect can be estimated"
            )
    if isinstance(clusters, str) and clusters not in data.columns:
        raise ValueError(f"cluster column {clusters!r} not in the data (columns: {list(data.columns)})")
    labels = data[clusters] if isinstance(clusters, str) else clusters
    return _fit_arrays(
        encode_covariates(data, list(covariates), categories=categories),
        encode_covariates(data, list(instruments), categories=categories, intercept=False),
        _numeric(data, treatment, "treatment"),
        _numeric(data, outcome, "outcome"),
        clusters=labels,
        se_type=se_type,
        alpha=alpha,
        cluster_name=clusters if isinstance(clusters, str) else None,
    )


def _numeric(data: pd.DataFrame, column: str, role: str) -> FloatArray:
    try:
        values = data[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{role} column {column!r} must be numeric: {error}") from error
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{role} column {column!r}: {int(bad.sum())} missing or non-finite value(s)")
    return values


def _orthonormal(matrix: FloatArray, raw: FloatArray, what: str) -> tuple[FloatArray, FloatArray]:
    """Thin QR of ``matrix``; a column left with a tiny share of the norm it had in ``raw`` is collinear."""
    q, r = np.linalg.qr(matrix)
    if np.any(np.abs(np.diag(r)) <= _RANK_TOLERANCE * np.linalg.norm(raw, axis=0)):
        raise ValueError(f"{what} are collinear: the design is singular")
    return q, r


def _fit_arrays(
    exogenous: DesignMatrix,
    instruments: DesignMatrix,
    d: FloatArray,
    y: FloatArray,
    *,
    clusters: ArrayLike | None,
    se_type: IVSEType | None,
    alpha: float,
    cluster_name: str | None = None,
) -> _Fit:
    check_alpha(alpha)
    chosen = check_choice("se_type", se_type or ("CR1" if clusters is not None else "HC1"), IV_SE_TYPES)
    if (chosen == "CR1") != (clusters is not None):
        raise ValueError(f"se_type={chosen!r} {'needs' if chosen == 'CR1' else 'refuses'} cluster labels")
    w, z = exogenous.values, instruments.values
    n, c, k = len(y), w.shape[1], z.shape[1]
    if w.shape[0] != n or z.shape[0] != n or d.shape != (n,) or k == 0:
        raise ValueError(
            f"shapes disagree: {n} outcomes, covariates {w.shape}, instruments {z.shape}, {d.shape}"
        )
    if not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError("the treatment and the outcome must be finite")
    if n <= c + k + 1:
        raise ValueError(f"{n} rows cannot fit {c} covariate terms and {k} instrument(s)")
    codes = None if clusters is None else cluster_codes(clusters, n=n)
    qw = _orthonormal(w, w, "the covariates")[0] if c else np.zeros((n, 0))
    z_t, d_t, y_t = (a - qw @ (qw.T @ a) for a in (z, d, y))
    qz, rz = _orthonormal(z_t, z, "the instruments (given the covariates)")
    fitted = qz @ (qz.T @ d_t)  # d_hat = P_z~ d~
    strength = float(fitted @ fitted)
    if strength <= 1e-24 * float(d_t @ d_t):  # rounding noise: a weak first stage is not refused
        raise ValueError("the instruments do not move the treatment at all (first stage exactly zero)")
    beta = float(fitted @ y_t) / strength
    residuals = y_t - beta * d_t
    score = fitted * residuals / strength  # a_i e_i
    p = c + 1
    hc_factor = n / (n - p) if chosen == "HC1" else 1.0
    if codes is None:
        std_error = math.sqrt(hc_factor * float(score @ score))
        influence = n * math.sqrt(hc_factor) * score
    else:
        influence = n * score
        std_error = cluster_robust_standard_error(influence, codes, correction=(n - 1) / (n - p))
    form = _reduced_form(z_t, d_t, y_t, qz, rz, codes, chosen, n_regressors=c + k)
    binary = bool(np.isin(d, (0.0, 1.0)).all())
    n_treated = int(np.count_nonzero(d))
    groups = None if codes is None else int(codes.max()) + 1
    diagnostics = {
        "instruments": list(instruments.columns),
        "treatment_kind": "binary" if binary else "continuous",
        "first_stage": _first_stage(form, instruments.columns),
        "anderson_rubin": _anderson_rubin(form, alpha),
        "hansen_j": _hansen(w, z, d, y, residuals, codes, k),
        "standard_error": {
            "se_type": chosen,
            "cluster": cluster_name or ("labels" if codes is not None else None),
            "n_clusters": groups,
            "df": None if groups is None else groups - 1,
        },
    }
    estimate = EffectEstimate(
        estimate=beta,
        std_error=std_error,
        n_treated=n_treated,
        n_control=n - n_treated,
        method=METHOD,
        se_method=chosen.lower(),
        estimand="LATE",
        diagnostics=to_jsonable(diagnostics),
    )
    return _Fit(estimate, influence)


def _reduced_form(
    z_t: FloatArray,
    d_t: FloatArray,
    y_t: FloatArray,
    qz: FloatArray,
    rz: FloatArray,
    codes: NDArray[np.int64] | None,
    se_type: IVSEType,
    *,
    n_regressors: int,
) -> ReducedForm:
    """``(gamma, pi)`` of ``y~, d~`` on ``z~`` with their joint sandwich covariance (scaled as ``se_type``)."""
    n = len(y_t)
    r_inverse = np.linalg.inv(rz)  # k x k, triangular and well conditioned (rank checked)
    gamma, pi = r_inverse @ (qz.T @ y_t), r_inverse @ (qz.T @ d_t)
    rows = qz @ r_inverse.T  # row i: (Z~'Z~)^{-1} z~_i
    scores = np.hstack([rows * (y_t - z_t @ gamma)[:, None], rows * (d_t - z_t @ pi)[:, None]])
    factor = {"HC0": 1.0, "HC1": n / (n - n_regressors)}.get(se_type)
    if codes is not None:
        scores = cluster_sums(scores, codes)
        groups = scores.shape[0]
        factor = groups / (groups - 1) * (n - 1) / (n - n_regressors)
    assert factor is not None
    return ReducedForm(
        outcome_coefficients=gamma,
        treatment_coefficients=pi,
        covariance=factor * (scores.T @ scores),
        instrument_gram=z_t.T @ z_t,
        df=None if codes is None else scores.shape[0] - 1,
    )


def _singular(form: ReducedForm) -> str | None:
    """Why the robust tests are undefined (a rank-deficient first-stage covariance), or None."""
    if np.linalg.matrix_rank(form.first_stage_covariance) < form.k:
        return f"the first-stage covariance is singular ({form.k} instruments; too few clusters or units)"
    return None


def _first_stage(form: ReducedForm, names: Sequence[str]) -> dict[str, Any]:
    pi = form.treatment_coefficients
    errors = np.sqrt(np.diag(form.first_stage_covariance))
    entry: dict[str, Any] = {
        "coefficients": dict(zip(names, pi.tolist(), strict=True)),
        "std_errors": dict(zip(names, errors.tolist(), strict=True)),
        "signs": dict(zip(names, np.sign(pi).astype(int).tolist(), strict=True)),
        "f_df": [form.k, form.df],
    }
    reason = _singular(form)
    if reason is not None:
        return {**entry, "robust_f": None, "effective_f": None, "reason": reason}
    return {**entry, "robust_f": form.robust_f, "effective_f": form.effective_f}


def _anderson_rubin(form: ReducedForm, alpha: float) -> dict[str, Any]:
    reason = _singular(form)
    if reason is not None:
        return {"kind": None, "intervals": None, "alpha": alpha, "reason": reason}
    at_zero = form.anderson_rubin(0.0)
    found = form.anderson_rubin_set(alpha=alpha)
    return {**found.to_dict(), "statistic_at_zero": at_zero, "p_value_at_zero": form.p_value(at_zero)}


def _hansen(
    w: FloatArray,
    z: FloatArray,
    d: FloatArray,
    y: FloatArray,
    residuals: FloatArray,
    codes: NDArray[np.int64] | None,
    k: int,
) -> dict[str, Any]:
    if k == 1:
        return {"statistic": None, "df": 0, "p_value": None, "reason": "just identified: one instrument"}
    try:
        statistic, df = hansen_j(w, z, d, y, residuals=residuals, clusters=codes)
    except linalg.LinAlgError:
        reason = "the moment covariance is singular (fewer clusters than moment conditions)"
        return {"statistic": None, "df": k - 1, "p_value": None, "reason": reason}
    return {"statistic": statistic, "df": df, "p_value": float(stats.chi2.sf(statistic, df))}
