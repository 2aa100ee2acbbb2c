"""N-of-1 estimator: the washout rule, agreement with statsmodels, Kenward-Roger, inputs; the simulator."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.tsa.statespace.sarimax import SARIMAX

from assimilate.estimators import (
    ESTIMATORS,
    estimate_effect,
    n_of_1,
    n_of_1_from_arrays,
    washout_mask,
)
from assimilate.estimators._ar1_gls import _df_and_scale, fit_ar1_regression
from assimilate.estimators.n_of_1 import newey_west_lags
from assimilate.simulate import n_of_1_series, simulate_n_of_1_stream

EXACT = 1e-10


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """84 days of one subject (rho = 0.6), with the washout days to drop."""
    d, y = n_of_1_series(np.random.default_rng(5), n_streams=1, n_days=84, rho=0.6)
    return d[0], y[0], np.arange(84.0)


# --- the washout rule ------------------------------------------------------------------------------


def test_washout_drops_the_first_days_of_every_block() -> None:
    d = [0, 0, 0, 1, 1, 1, 1, 0, 0]
    t = np.arange(9.0)
    assert washout_mask(d, t, washout=2).tolist() == [0, 0, 1, 0, 0, 1, 1, 0, 0]
    assert washout_mask(d, t, washout=2, washout_at_start=False).tolist() == [1, 1, 1, 0, 0, 1, 1, 0, 0]
    assert washout_mask(d, t, washout=0).all()


def test_washout_counts_days_not_rows_when_days_are_missing() -> None:
    # The switch is seen on day 5 (days 3 and 4 unrecorded): days 5 and 6 are carry-over.
    d = [0, 0, 0, 1, 1, 1]
    t = [0.0, 1.0, 2.0, 5.0, 6.0, 7.0]
    assert washout_mask(d, t, washout=2, washout_at_start=False).tolist() == [1, 1, 1, 0, 0, 1]


# --- against statsmodels where it computes the same quantity ---------------------------------------


def test_ml_fit_equals_statsmodels_sarimax_with_the_washout_days_missing(
    series: tuple[np.ndarray, ...],
) -> None:
    d, y, t = series
    keep = washout_mask(d, t, washout=2)
    X = np.column_stack([np.ones(keep.sum()), d[keep]])
    ours = fit_ar1_regression(y[keep], X, t[keep], method="ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SARIMAX(np.where(keep, y, np.nan), exog=d.astype(float), trend="c", order=(1, 0, 0)).fit(
            disp=False
        )
    intercept, slope, rho, innovation_var = theirs.params
    assert ours.coefficients[1] == pytest.approx(slope, abs=1e-3)
    assert ours.coefficients[0] == pytest.approx(intercept / (1 - rho), abs=1e-3)
    assert ours.rho == pytest.approx(rho, abs=1e-3)
    assert ours.sigma2 * (1 - ours.rho**2) == pytest.approx(innovation_var, rel=1e-3)
    assert ours.log_likelihood == pytest.approx(theirs.llf, abs=1e-5)
    assert ours.log_likelihood >= theirs.llf - 1e-9  # our maximum is at least as high


def test_gls_at_the_fitted_rho_equals_statsmodels_gls(series: tuple[np.ndarray, ...]) -> None:
    d, y, t = series
    keep = washout_mask(d, t, washout=2)
    X = np.column_stack([np.ones(keep.sum()), d[keep], t[keep]])
    fit = fit_ar1_regression(y[keep], X, t[keep], method="reml")
    correlation = fit.rho ** np.abs(t[keep][:, None] - t[keep][None, :])
    theirs = sm.GLS(y[keep], X, sigma=correlation).fit()
    np.testing.assert_allclose(fit.coefficients, theirs.params, rtol=EXACT, atol=EXACT)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.covariance)), theirs.bse, rtol=1e-9)


@pytest.mark.parametrize("se_method", ["iid", "hac"])
def test_ols_standard_errors_equal_statsmodels(series: tuple[np.ndarray, ...], se_method: str) -> None:
    d, y, t = series
    keep = washout_mask(d, t, washout=2)
    X = np.column_stack([np.ones(keep.sum()), d[keep]])
    model = sm.OLS(y[keep], X)
    lags = newey_west_lags(int(keep.sum()))
    theirs = model.fit() if se_method == "iid" else model.fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    ours = n_of_1_from_arrays(y, d, t, washout=2, se_method=se_method)  # type: ignore[arg-type]
    assert ours.estimate == pytest.approx(theirs.params[1], abs=EXACT)
    assert ours.std_error == pytest.approx(theirs.bse[1], rel=1e-9)
    assert lags == 3  # floor(4 (68 / 100)^(2/9))


# --- Kenward-Roger ---------------------------------------------------------------------------------


@pytest.mark.parametrize("residual_df", [5, 12, 40, 300])
def test_kenward_roger_moments_give_the_t_test_when_only_the_scale_is_estimated(residual_df: int) -> None:
    # Sigma = sigma^2 I: W = 2 sigma^4 / m, and A1 = A2 = 2 / m; the exact answer is t with m df.
    df, scale = _df_and_scale(2.0 / residual_df, 2.0 / residual_df)
    assert df == pytest.approx(residual_df, rel=1e-12)
    assert scale == pytest.approx(1.0, rel=1e-12)


def test_reported_interval_is_the_kenward_roger_t_interval(series: tuple[np.ndarray, ...]) -> None:
    d, y, t = series
    fit = n_of_1_from_arrays(y, d, t, washout=2, alpha=0.1)
    info = fit.diagnostics
    half = (
        stats.t.ppf(0.95, info["kenward_roger_df"])
        * info["adjusted_std_error"]
        / math.sqrt(info["kenward_roger_scale"])
    )
    low, high = fit.conf_int(alpha=0.1)
    assert (high - low) / 2 == pytest.approx(half, rel=1e-12)
    assert info["adjusted_std_error"] > info["model_std_error"]  # rho was estimated: the adjustment inflates
    assert 3 < info["kenward_roger_df"] < 68


def test_with_a_long_series_kenward_roger_tends_to_the_model_standard_error() -> None:
    d, y = n_of_1_series(np.random.default_rng(1), n_streams=1, n_days=1400, rho=0.5)
    fit = n_of_1_from_arrays(y[0], d[0], np.arange(1400.0), washout=2)
    assert fit.diagnostics["kenward_roger_df"] > 200
    assert fit.std_error == pytest.approx(fit.diagnostics["model_std_error"], rel=0.02)
    assert fit.diagnostics["rho"] == pytest.approx(0.5, abs=0.05)


# --- inputs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return simulate_n_of_1_stream(rng=np.random.default_rng(2), n_batches=1, rho=0.4).batches[0]


def test_dates_strings_day_numbers_and_row_order_give_the_same_estimate(batch: pd.DataFrame) -> None:
    by_date = n_of_1(batch, treatment="treatment", outcome="outcome", time="date", washout=2)
    as_text = batch.assign(date=batch["date"].dt.strftime("%Y-%m-%d"))
    shuffled = batch.sample(frac=1.0, random_state=0)
    for other in (
        n_of_1(as_text, treatment="treatment", outcome="outcome", time="date", washout=2),
        n_of_1(batch, treatment="treatment", outcome="outcome", time="day", washout=2),
        n_of_1(shuffled, treatment="treatment", outcome="outcome", time="date", washout=2),
    ):
        assert other.estimate == pytest.approx(by_date.estimate, abs=EXACT)
        assert other.std_error == pytest.approx(by_date.std_error, rel=1e-9)
    assert by_date.diagnostics["n_washout_dropped"] == 2 * (by_date.diagnostics["n_switches"] + 1)


def test_missing_days_are_gaps_not_errors(batch: pd.DataFrame) -> None:
    gappy = batch.drop(index=[10, 11, 30])
    fit = n_of_1(gappy, treatment="treatment", outcome="outcome", time="date", washout=2)
    assert fit.diagnostics["n_days"] == 53 and math.isfinite(fit.std_error)


def test_estimate_effect_runs_n_of_1_by_name(batch: pd.DataFrame) -> None:
    direct = n_of_1(batch, treatment="treatment", outcome="outcome", time="date", washout=2, trend=True)
    by_name = estimate_effect(
        batch, method="n_of_1", treatment="treatment", outcome="outcome", time="date", washout=2, trend=True
    )
    assert by_name == direct
    assert "n_of_1" not in ESTIMATORS  # the per-unit estimators (estimate_all) are unchanged


def test_a_weekday_covariate_enters_the_regression(batch: pd.DataFrame) -> None:
    weekday = batch.assign(weekend=batch["date"].dt.dayofweek >= 5)
    weekday = weekday.assign(outcome=weekday["outcome"] + 3.0 * weekday["weekend"])
    with_covariate = n_of_1(
        weekday, treatment="treatment", outcome="outcome", time="date", washout=2, covariates=["weekend"]
    )
    without = n_of_1(weekday, treatment="treatment", outcome="outcome", time="date", washout=2)
    assert with_covariate.std_error < without.std_error


def test_trend_recovers_the_drift_and_the_effect() -> None:
    d, y = n_of_1_series(np.random.default_rng(4), n_streams=1, n_days=56, rho=0.3, sd=0.01, slope=0.05)
    fit = n_of_1_from_arrays(y[0], d[0], np.arange(56.0), washout=2, trend=True)
    assert fit.estimate == pytest.approx(0.5, abs=0.01)
    assert fit.diagnostics["trend_per_day"] == pytest.approx(0.05, abs=0.001)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.assign(outcome=b["outcome"].where(b.index != 3)), "missing or non-finite.*gaps in time"),
        (lambda b: b.assign(day=b["day"].where(b.index != 3, 2)), "share a day"),
        (lambda b: b.assign(treatment=1), "at least 2 treated and 2 control"),
        (lambda b: b.head(9), r"treatment \(days kept after the washout\): needs at least 2 treated"),
        (lambda b: b.assign(treatment=b["treatment"].astype(float) * 2), "0 or 1"),
        (lambda b: b.assign(constant=1.0), "collinear"),
    ],
)
def test_bad_batches_are_named(batch: pd.DataFrame, change: object, message: str) -> None:
    changed = change(batch)  # type: ignore[operator]
    covariates = ["constant"] if "constant" in changed.columns else []
    with pytest.raises(ValueError, match=message):
        n_of_1(
            changed, treatment="treatment", outcome="outcome", time="day", washout=2, covariates=covariates
        )


def test_too_few_days_for_the_coefficients_is_named() -> None:
    with pytest.raises(ValueError, match="4 days kept after the washout for 2 coefficients"):
        n_of_1_from_arrays([1.0, 2.0, 3.0, 5.0], [0, 0, 1, 1], [0.0, 1.0, 2.0, 3.0])


def test_options_are_checked(batch: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="se_method"):
        n_of_1(batch, treatment="treatment", outcome="outcome", time="day", se_method="newey")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="washout"):
        n_of_1(batch, treatment="treatment", outcome="outcome", time="day", washout=-1)
    with pytest.raises(ValueError, match="time column 'when'"):
        n_of_1(batch, treatment="treatment", outcome="outcome", time="when")


# --- the simulator ---------------------------------------------------------------------------------


def test_simulated_trial_has_randomized_pairs_and_the_stated_carry_over() -> None:
    d, y = n_of_1_series(
        np.random.default_rng(0), n_streams=400, n_days=56, sd=1e-9, carryover_days=2, effect=1.0
    )
    blocks = d[:, ::7]
    assert np.all(blocks[:, ::2] + blocks[:, 1::2] == 1)  # each pair of weeks: one treated, one control
    assert abs(blocks[:, 0].mean() - 0.5) < 0.1  # the order is random
    exposure = y - 5.0
    switch = np.flatnonzero(np.diff(d[0]) != 0)[0] + 1
    old, new = d[0, switch - 1], d[0, switch]
    ramp = [old + (new - old) * k / 3 for k in (1, 2)] + [new]
    np.testing.assert_allclose(exposure[0, switch : switch + 3], ramp, atol=1e-6)


def test_simulated_errors_are_stationary_ar1() -> None:
    _, y = n_of_1_series(
        np.random.default_rng(1), n_streams=4000, n_days=28, rho=0.7, effect=0.0, baseline=0.0
    )
    assert np.var(y[:, 0]) == pytest.approx(1.0, abs=0.07)
    assert np.var(y[:, -1]) == pytest.approx(1.0, abs=0.07)
    lag_one = np.mean(y[:, 1:] * y[:, :-1]) / np.mean(y[:, :-1] ** 2)
    assert lag_one == pytest.approx(0.7, abs=0.02)


def test_simulated_stream_batches_and_arguments() -> None:
    stream = simulate_n_of_1_stream(rng=np.random.default_rng(3), n_batches=3, days_per_batch=28)
    assert [len(b) for b in stream.batches] == [28, 28, 28]
    assert stream.batches[1]["day"].iloc[0] == 28 and stream.labels[1] == "2025-02-03"
    assert stream.true_effects.tolist() == [0.5, 0.5, 0.5] and stream.time == "date"
    with pytest.raises(ValueError, match="multiple of 2"):
        simulate_n_of_1_stream(rng=np.random.default_rng(0), days_per_batch=30)
    with pytest.raises(ValueError, match="rho"):
        simulate_n_of_1_stream(rng=np.random.default_rng(0), rho=1.0)
