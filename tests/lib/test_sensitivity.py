"""Sensitivity to unmeasured confounding: published values, the exact omitted-variable identity, statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from assimilate.diagnostics.sensitivity import (
    bias_bound,
    e_value,
    partial_r2,
    risk_ratio_from_difference,
    robustness_value,
    sensitivity_analysis,
)

pytestmark = pytest.mark.library


def test_published_darfur_statistics() -> None:
    # Cinelli & Hazlett (2020), Table 1: directlyharmed, t = 4.18, dof = 783.
    assert partial_r2(4.18445, 783) == pytest.approx(0.021873, abs=5e-6)
    assert robustness_value(4.18445, 783) == pytest.approx(0.1388, abs=5e-4)
    assert robustness_value(4.18445, 783, alpha=0.05) == pytest.approx(0.0763, abs=5e-4)
    assert robustness_value(4.18445, 783, q=0.5) < robustness_value(4.18445, 783)
    assert robustness_value(1.0, 783, alpha=0.05) == 0.0  # not significant to begin with


def test_published_e_value() -> None:
    # VanderWeele & Ding (2017): RR 3.9 -> E-value 7.26; protective effects by symmetry.
    assert e_value(3.9) == pytest.approx(7.26, abs=5e-3)
    assert e_value(1 / 3.9) == pytest.approx(e_value(3.9))
    assert e_value(1.0) == 1.0
    assert risk_ratio_from_difference(0.2, -0.05) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        risk_ratio_from_difference(0.2, 0.9)


def _confounded(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], size=n)
    z = rng.normal(size=n)
    d = (0.5 * x + 0.7 * z + (group == "b") + rng.normal(size=n) > 0).astype(float)
    y = 1.0 * d + 0.8 * x + 0.6 * z + 0.5 * (group == "c") + rng.normal(size=n)
    return pd.DataFrame({"d": d, "y": y, "x": x, "z": z, "group": group})


def test_estimate_and_se_equal_statsmodels() -> None:
    data = _confounded(800, 1)
    report = sensitivity_analysis(data, treatment="d", outcome="y", covariates=["x", "group"])
    exog = sm.add_constant(pd.get_dummies(data[["d", "x", "group"]], drop_first=True, dtype=float))
    fit = sm.OLS(data["y"], exog).fit()
    assert report.estimate == pytest.approx(fit.params["d"], abs=1e-10)
    assert report.standard_error == pytest.approx(fit.bse["d"], rel=1e-10)
    assert report.dof == int(fit.df_resid)
    assert report.partial_r2 == pytest.approx(fit.tvalues["d"] ** 2 / (fit.tvalues["d"] ** 2 + fit.df_resid))


def test_bias_formula_is_the_exact_omitted_variable_identity() -> None:
    data = _confounded(1000, 2)
    short = sensitivity_analysis(data, treatment="d", outcome="y", covariates=["x", "group"])
    long = sensitivity_analysis(data, treatment="d", outcome="y", covariates=["x", "group", "z"])
    exog = sm.add_constant(pd.get_dummies(data[["x", "group"]], drop_first=True, dtype=float))
    exog_d = exog.assign(d=data["d"])

    def residual(target: str, on: pd.DataFrame) -> np.ndarray:
        return np.asarray(sm.OLS(data[target], on).fit().resid)

    # Partial R² = squared correlation of the residuals (Frisch-Waugh-Lovell).
    r2_dz = np.corrcoef(residual("d", exog), residual("z", exog))[0, 1] ** 2
    r2_yz = np.corrcoef(residual("y", exog_d), residual("z", exog_d))[0, 1] ** 2
    bias = bias_bound(short.standard_error, short.dof, r2_dz, r2_yz)
    assert bias == pytest.approx(abs(short.estimate - long.estimate), rel=1e-8)
    assert bias > 0.1  # the confounder matters here, so the identity is not trivially 0 = 0


def test_a_confounder_at_the_robustness_value_brings_the_estimate_to_zero() -> None:
    data = _confounded(500, 3)
    report = sensitivity_analysis(data, treatment="d", outcome="y", covariates=["x"])
    rv = report.robustness_value
    assert bias_bound(report.standard_error, report.dof, rv, rv) == pytest.approx(
        abs(report.estimate), rel=1e-10
    )
    rva = report.robustness_value_alpha
    assert 0 < rva < rv
    t_crit = __import__("scipy").stats.t.ppf(0.975, report.dof - 1)
    bias = bias_bound(report.standard_error, report.dof, rva, rva)
    adjusted_se = report.standard_error * math.sqrt(report.dof / (report.dof - 1))  # (1-r2)/(1-r2) = 1
    assert abs(report.estimate) - bias == pytest.approx(t_crit * adjusted_se, rel=1e-8)


def test_benchmarks_use_the_covariates_partial_r2() -> None:
    data = _confounded(1500, 4)
    report = sensitivity_analysis(
        data,
        treatment="d",
        outcome="y",
        covariates=["x", "group"],
        benchmark_covariates=["x"],
        multiples=(1, 2),
    )
    exog = sm.add_constant(pd.get_dummies(data[["x", "group"]], drop_first=True, dtype=float))
    t_dx = sm.OLS(data["d"], exog).fit().tvalues["x"]
    r2_dx = t_dx**2 / (t_dx**2 + len(data) - exog.shape[1])
    first = report.benchmarks[0]
    assert first.covariate == "x" and first.k_treatment == 1
    assert first.r2_dz_x == pytest.approx(r2_dx / (1 - r2_dx), rel=1e-8)
    assert report.benchmarks[1].r2_dz_x > first.r2_dz_x
    assert report.benchmarks[1].adjusted_estimate < first.adjusted_estimate < report.estimate
    sentence = report.sentence()
    assert "as strong as x" in sentence and "% of the residual variance" in sentence


def test_categorical_benchmark_takes_all_levels_and_unknown_is_an_error() -> None:
    data = _confounded(600, 5)
    report = sensitivity_analysis(
        data,
        treatment="d",
        outcome="y",
        covariates=["x", "group"],
        benchmark_covariates=["group"],
        multiples=(1,),
    )
    assert report.benchmarks[0].covariate == "group" and report.benchmarks[0].r2_dz_x > 0
    with pytest.raises(ValueError, match="'age' is not among the covariates"):
        sensitivity_analysis(data, treatment="d", outcome="y", covariates=["x"], benchmark_covariates=["age"])


def test_a_benchmark_stronger_than_the_estimate_carries_it_past_zero() -> None:
    # A benchmark whose bias exceeds the estimate moves the adjusted estimate to the other side of zero
    # (Cinelli & Hazlett 2020, eq. 4.8: the bound is |estimate| - bias, signed as the estimate).
    rng = np.random.default_rng(7)
    n = 400
    x = rng.standard_normal(n)
    d = (0.5 * x + rng.standard_normal(n) > 0).astype(float)
    y = 0.05 * d + 3.0 * x + rng.standard_normal(n)
    report = sensitivity_analysis(
        pd.DataFrame({"d": d, "x": x, "y": y}),
        treatment="d",
        outcome="y",
        covariates=["x"],
        benchmark_covariates=["x"],
    )
    assert report.benchmarks, "x must give at least one feasible benchmark"
    strongest = report.benchmarks[-1]
    bias = abs(report.estimate) - strongest.adjusted_estimate * np.sign(report.estimate)
    assert bias > abs(report.estimate)  # the case the sign matters
    assert np.sign(strongest.adjusted_estimate) == -np.sign(report.estimate)
