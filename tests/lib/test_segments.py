"""Effects by segment: per-segment estimates, the partially pooled filter, the difference check, the forest plot.

Known answers: the subgroup difference in means and statsmodels OLS (HC3) on the subgroup; the
normal-normal shrinkage of Gelman et al. (BDA3 sec. 5.4) for one batch; REML of the
random-effects model; the Kalman filter for tau^2 = 0; statsmodels' Holm and BH adjustments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from matplotlib.figure import Figure
from scipy import optimize, special, stats
from statsmodels.stats.multitest import multipletests

from assimilate.diagnostics.heterogeneity import (
    adjust_p_values,
    differences_from_rest,
    posterior_segment_differences,
    segment_differences,
)
from assimilate.estimators import EffectEstimate
from assimilate.estimators.segments import (
    SegmentEffect,
    SegmentEffects,
    quantile_edges,
    segment_effects,
    stack_segment_effects,
)
from assimilate.filters import causal_kalman
from assimilate.filters.segments import segment_filter
from assimilate.report.forest import forest_plot

EXACT = 1e-10


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    rng = np.random.default_rng(16)
    n = 900
    frame = pd.DataFrame(
        {
            "d": rng.binomial(1, 0.5, n),
            "region": rng.choice(["north", "south", "west"], n, p=[0.5, 0.4, 0.1]),
            "age": rng.uniform(18, 80, n),
            "x": rng.standard_normal(n),
        }
    )
    lift = frame["region"].map({"north": 1.0, "south": 0.2, "west": 0.5})
    frame["y"] = frame["d"] * lift + frame["x"] + rng.standard_normal(n)
    return frame


def _reml(y: np.ndarray, se: np.ndarray, tau2: float) -> float:
    """Restricted log-likelihood of the random-effects model (mean integrated out under a flat prior)."""
    w = 1.0 / (se**2 + tau2)
    mu = float((w * y).sum() / w.sum())
    return -0.5 * (
        (len(y) - 1) * math.log(2 * math.pi)
        - np.log(w).sum()
        + math.log(w.sum())
        + float((w * (y - mu) ** 2).sum())
    )


# --- per-segment estimates --------------------------------------------------------------------------


def test_segment_estimates_are_the_subgroup_difference_in_means(batch: pd.DataFrame) -> None:
    effects = segment_effects(batch, segment_by="region", treatment="d", outcome="y")
    assert effects.labels == ("north", "south", "west") and effects.kind == "categorical"
    for s in effects.segments:
        rows = batch[batch["region"] == s.segment]
        y1, y0 = rows.loc[rows["d"] == 1, "y"], rows.loc[rows["d"] == 0, "y"]
        assert s.estimate is not None
        assert s.estimate.estimate == pytest.approx(y1.mean() - y0.mean(), abs=EXACT)
        assert s.estimate.std_error == pytest.approx(
            math.sqrt(y1.var() / len(y1) + y0.var() / len(y0)), rel=EXACT
        )
        assert (s.n_treated, s.n_control) == (len(y1), len(y0))
    coded = batch.assign(code=batch["region"].map({"north": 10, "south": 2, "west": 10}))
    assert segment_effects(coded, segment_by="code", treatment="d", outcome="y").labels == ("2", "10")


def test_segment_regression_is_statsmodels_ols_hc3_on_the_subgroup(batch: pd.DataFrame) -> None:
    # The categorical segment column among the covariates is dropped (constant within a segment).
    effects = segment_effects(
        batch,
        segment_by="region",
        treatment="d",
        outcome="y",
        method="regression_adjustment",
        covariates=["x", "region"],
    )
    for s in effects.segments:
        rows = batch[batch["region"] == s.segment]
        fit = sm.OLS(rows["y"], sm.add_constant(rows[["d", "x"]].astype(float))).fit(cov_type="HC3")
        assert s.estimate is not None
        assert s.estimate.estimate == pytest.approx(fit.params["d"], rel=1e-8)
        assert s.estimate.std_error == pytest.approx(fit.bse["d"], rel=1e-8)


def test_a_small_or_empty_segment_is_not_assessed_with_its_reason_never_a_nan(batch: pd.DataFrame) -> None:
    effects = segment_effects(
        batch,
        segment_by="region",
        treatment="d",
        outcome="y",
        levels=["north", "south", "west", "east"],
        min_per_arm=60,
    )
    west, east = effects.segments[2], effects.segments[3]
    assert not west.assessed and "needs at least 60 per arm" in west.reason
    assert (east.n_treated, east.n_control) == (0, 0) and "0 treated and 0 control" in east.reason
    table = effects.to_frame()
    assert table["estimate"].dtype == "Float64"
    assert table["estimate"].isna().tolist() == [False, False, True, True]
    assert not np.isnan(table["estimate"].dropna().to_numpy(dtype=float)).any()
    assert table.loc[~table["assessed"], "reason"].str.len().gt(0).all()
    with pytest.raises(ValueError, match="either an estimate or the reason"):
        SegmentEffect("x", 10, 10)


def test_a_segment_the_estimator_refuses_is_not_assessed_with_the_estimators_message(
    batch: pd.DataFrame,
) -> None:
    data = batch.assign(flag=np.where(batch["region"] == "west", 1.0, batch["x"] > 0))
    effects = segment_effects(
        data,
        segment_by="region",
        treatment="d",
        outcome="y",
        method="regression_adjustment",
        covariates=["flag"],
    )
    west = effects.segments[2]
    assert not west.assessed and "refused" in west.reason and "flag" in west.reason
    assert effects.segments[0].assessed


def test_bad_segment_values_are_errors_naming_the_batch_the_column_and_the_rule(batch: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"batch '2024-01': segment column 'region'.*not among the levels"):
        segment_effects(
            batch, segment_by="region", treatment="d", outcome="y", levels=["north"], batch="2024-01"
        )
    missing = batch.assign(region=batch["region"].where(batch.index > 0))
    with pytest.raises(ValueError, match="'region': 1 missing value"):
        segment_effects(missing, segment_by="region", treatment="d", outcome="y")
    with pytest.raises(ValueError, match="outside the bins"):
        segment_effects(batch, segment_by="age", treatment="d", outcome="y", bins=[20, 50, 90])
    with pytest.raises(ValueError, match="batch 'b7': treatment column 'nope'"):
        segment_effects(batch, segment_by="region", treatment="nope", outcome="y", batch="b7")


def test_binned_segments_use_the_given_edges_or_quantiles_that_later_batches_reuse(
    batch: pd.DataFrame,
) -> None:
    effects = segment_effects(batch, segment_by="age", treatment="d", outcome="y", bins=[18, 40, 60, 80])
    assert effects.labels == ("[18, 40)", "[40, 60)", "[60, 80]") and effects.kind == "binned"
    top = effects.segments[2]
    rows = batch["age"] >= 60
    assert top.n_treated + top.n_control == int(rows.sum())
    quantiles = segment_effects(batch, segment_by="age", treatment="d", outcome="y", bins=4)
    assert quantiles.edges[0] == -math.inf and quantiles.edges[-1] == math.inf and len(quantiles.labels) == 4
    sizes = [s.n_treated + s.n_control for s in quantiles.segments]
    assert max(sizes) - min(sizes) <= 1
    later = segment_effects(
        batch.iloc[:300], segment_by="age", treatment="d", outcome="y", bins=quantiles.edges
    )
    assert later.labels == quantiles.labels
    assert quantile_edges([1.0] * 9 + [2.0], 4) == (-math.inf, 1.0, math.inf)  # ties merge bins


def test_stacked_segments_put_nan_where_a_segment_was_not_assessed(batch: pd.DataFrame) -> None:
    first = segment_effects(batch, segment_by="region", treatment="d", outcome="y")
    second = segment_effects(batch, segment_by="region", treatment="d", outcome="y", min_per_arm=60)
    y, se, names = stack_segment_effects([first, second])
    assert names == ("north", "south", "west")
    assert np.isnan(y[1, 2]) and np.isnan(se[1, 2]) and np.isfinite(y[0]).all()
    assert y[0, 0] == first.segments[0].estimate.estimate  # type: ignore[union-attr]


# --- the partially pooled filter --------------------------------------------------------------------

Y = np.array([0.5, 0.2])
SE = np.array([0.1, 0.3])


def test_one_batch_is_the_textbook_normal_normal_shrinkage() -> None:
    tau2 = 0.04
    res = segment_filter([Y], [SE], segments=["big", "small"], between_var=tau2)
    w = 1.0 / (SE**2 + tau2)
    mu = (w * Y).sum() / w.sum()
    shrink = SE**2 / (SE**2 + tau2)
    np.testing.assert_allclose(res.mean[0], (1 - shrink) * Y + shrink * mu, rtol=EXACT)
    np.testing.assert_allclose(res.sd[0] ** 2, (1 - shrink) * SE**2 + shrink**2 / w.sum(), rtol=EXACT)
    assert res.common_mean[0] == pytest.approx(mu, rel=EXACT)
    assert res.common_sd[0] ** 2 == pytest.approx(1 / w.sum(), rel=EXACT)
    np.testing.assert_allclose(res.borrowed_share[0], shrink * (1 - w / w.sum()), rtol=EXACT)
    assert res.borrowed_share[0, 1] > res.borrowed_share[0, 0]  # the noisier segment borrows more
    assert res.log_likelihood == pytest.approx(_reml(Y, SE, tau2), rel=EXACT)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(res.upper[0], res.mean[0] + z * res.sd[0], rtol=EXACT)


def test_tau2_zero_pools_completely_and_a_huge_tau2_not_at_all() -> None:
    pooled = segment_filter([Y], [SE], between_var=0.0)
    w = 1.0 / SE**2
    np.testing.assert_allclose(pooled.mean[0], (w * Y).sum() / w.sum(), rtol=EXACT)
    np.testing.assert_allclose(pooled.sd[0] ** 2, 1 / w.sum(), rtol=EXACT)
    np.testing.assert_allclose(pooled.borrowed_share[0], 1 - w / w.sum(), rtol=EXACT)
    alone = segment_filter([Y], [SE], between_var=1e6)  # shrinkage se^2 / (se^2 + tau^2) < 1e-7
    np.testing.assert_allclose(alone.mean[0], Y, rtol=1e-6)
    np.testing.assert_allclose(alone.sd[0], SE, rtol=1e-6)
    np.testing.assert_allclose(alone.borrowed_share[0], 0.0, atol=1e-6)


def test_a_static_stream_is_one_batch_of_the_segments_pooled_estimates() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(0.3, 0.2, (6, 3))
    se = rng.uniform(0.1, 0.4, (6, 3))
    y[2, 1] = np.nan  # a segment without an estimate in one batch
    res = segment_filter(y, se, between_var=0.02)
    w = np.where(np.isnan(y), 0.0, 1 / se**2)
    pooled = (w * np.nan_to_num(y)).sum(axis=0) / w.sum(axis=0)
    once = segment_filter([pooled], [1 / np.sqrt(w.sum(axis=0))], between_var=0.02)
    np.testing.assert_allclose(res.mean[-1], once.mean[0], rtol=1e-9)
    np.testing.assert_allclose(res.covariance[-1], once.covariance[0], rtol=1e-9)


def test_with_tau2_zero_it_is_the_kalman_filter_of_the_batches_pooled_estimates() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(0.3, 0.2, (8, 3))
    se = rng.uniform(0.1, 0.4, (8, 3))
    y[4] = np.nan  # a batch with no estimate: predict only
    res = segment_filter(y, se, between_var=0.0, common_process_var=0.01)
    w = np.where(np.isnan(y), 0.0, 1 / se**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(w.sum(axis=1) > 0, (w * np.nan_to_num(y)).sum(axis=1) / w.sum(axis=1), np.nan)
        pooled_se = np.where(w.sum(axis=1) > 0, 1 / np.sqrt(w.sum(axis=1)), np.nan)
    kalman = causal_kalman(pooled, pooled_se, process_var=0.01, diffuse=True, smooth=False)
    np.testing.assert_allclose(res.mean[:, 0], kalman.posterior_mean, rtol=1e-9)
    np.testing.assert_allclose(res.sd[:, 1] ** 2, kalman.posterior_var, rtol=1e-9)
    assert res.mean[4, 2] == res.mean[3, 2] and res.sd[4, 0] > res.sd[3, 0]


def test_a_segment_never_seen_borrows_everything_and_a_flat_start_is_infinite_never_nan() -> None:
    y = np.array([[np.nan, np.nan, np.nan], [0.4, 0.6, np.nan]])
    se = np.array([[np.nan] * 3, [0.1, 0.1, np.nan]])
    res = segment_filter(y, se, between_var=0.09)
    assert res.mean[0].tolist() == [0.0, 0.0, 0.0] and np.isinf(res.sd[0]).all()
    assert res.lower[0].tolist() == [-math.inf] * 3 and res.upper[0].tolist() == [math.inf] * 3
    assert res.mean[1, 2] == pytest.approx(res.common_mean[1], rel=EXACT)
    assert res.sd[1, 2] ** 2 == pytest.approx(0.09 + res.common_sd[1] ** 2, rel=EXACT)
    assert res.borrowed_share[1, 2] == pytest.approx(1.0, abs=EXACT)
    assert not np.isnan(res.to_frame()[["mean", "sd", "lower", "upper", "borrowed_share"]].to_numpy()).any()
    flat = posterior_segment_differences(res, step=0)
    assert flat.verdict.status == "undefined" and "flat" in flat.not_assessed["segment_1"]


def test_a_proper_prior_on_the_common_mean_is_conjugate() -> None:
    res = segment_filter([Y], [SE], between_var=0.04, prior_mean=1.0, prior_var=0.5)
    w = 1.0 / (SE**2 + 0.04)
    precision = 1 / 0.5 + w.sum()
    assert res.common_mean[0] == pytest.approx((1.0 / 0.5 + (w * Y).sum()) / precision, rel=EXACT)
    assert res.common_sd[0] ** 2 == pytest.approx(1 / precision, rel=EXACT)
    marginal = stats.multivariate_normal(np.ones(2), np.diag(SE**2 + 0.04) + 0.5).logpdf(Y)
    assert res.log_likelihood == pytest.approx(marginal, rel=EXACT)


def test_reml_maximizes_the_restricted_likelihood_of_the_random_effects_model() -> None:
    y, se = np.array([0.5, 0.2, 0.9, 0.35]), np.array([0.1, 0.15, 0.2, 0.1])
    res = segment_filter([y], [se], between_var="reml")
    best = optimize.minimize_scalar(
        lambda t: -_reml(y, se, t), bounds=(0, 2), method="bounded", options={"xatol": 1e-12}
    )
    assert res.between_var[0] == pytest.approx(best.x, rel=1e-4)
    assert res.between_var_method == "reml"
    flat = segment_filter([[0.5, 0.5, 0.5]], [[0.1, 0.2, 0.3]], between_var="reml")
    assert flat.between_var[0] == 0.0  # no spread beyond the SEs: the boundary


def test_integrated_tau_is_the_mixture_over_a_uniform_prior_on_tau() -> None:
    y, se = np.array([0.5, 0.2, 0.9]), np.array([0.1, 0.1, 0.4])
    res = segment_filter([y], [se], between_sd_max=1.0)
    tau = np.linspace(0, 1, 41)
    prior = np.full(41, 1.0)
    prior[[0, -1]] = 0.5
    log_w = np.log(prior) + np.array([_reml(y, se, t * t) for t in tau])
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    fits = [segment_filter([y], [se], between_var=t * t) for t in tau]
    means = np.array([f.mean[0] for f in fits])
    sds = np.array([f.sd[0] for f in fits])
    np.testing.assert_allclose(res.mean[0], weights @ means, rtol=1e-9)
    np.testing.assert_allclose(
        res.sd[0] ** 2, weights @ (sds**2 + means**2) - (weights @ means) ** 2, rtol=1e-9
    )
    cdf = (weights[:, None] * special.ndtr((res.lower[0] - means) / sds)).sum(axis=0)
    np.testing.assert_allclose(cdf, 0.025, atol=1e-9)
    assert res.between_var[0] == pytest.approx(weights @ tau**2, rel=1e-9)


def test_bad_inputs_to_the_filter_are_named() -> None:
    with pytest.raises(ValueError, match="at least 2 segments"):
        segment_filter([[0.5]], [[0.1]])
    with pytest.raises(ValueError, match=r"batch 0, segment 1: an estimate needs a finite standard error"):
        segment_filter([[0.5, 0.4]], [[0.1, np.nan]])
    with pytest.raises(ValueError, match="between_var must be one of"):
        segment_filter([Y], [SE], between_var="mle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one shape"):
        segment_filter([Y], [[0.1, 0.2, 0.3]])
    res = segment_filter([Y], [SE], between_var=0.1)
    with pytest.raises(ValueError, match="read-only"):
        res.mean[0, 0] = 1.0


# --- the difference check ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [("holm", "holm"), ("benjamini_hochberg", "fdr_bh")])
def test_adjusted_p_values_match_statsmodels(ours: str, theirs: str) -> None:
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, 0.04])
    np.testing.assert_allclose(
        adjust_p_values(p, correction=ours), multipletests(p, method=theirs)[1], rtol=EXACT
    )  # type: ignore[arg-type]


def _effects(values: list[float], se: float = 0.1) -> SegmentEffects:
    fits = [
        SegmentEffect(name, 100, 100, EffectEstimate(v, se, 100, 100, "difference_in_means", "welch"))
        for name, v in zip("abcdefg", values, strict=False)
    ]
    return SegmentEffects("g", "categorical", "difference_in_means", "ATE", tuple(fits))


def test_each_segment_is_tested_against_the_precision_weighted_rest() -> None:
    y, se = np.array([0.5, 0.2, 0.9]), np.array([0.1, 0.2, 0.3])
    check = differences_from_rest(y, np.diag(se**2), ["a", "b", "c"])
    w = 1 / se[1:] ** 2
    rest = (w * y[1:]).sum() / w.sum()
    assert check.difference[0] == pytest.approx(y[0] - rest, rel=EXACT)
    assert check.std_error[0] == pytest.approx(math.sqrt(se[0] ** 2 + 1 / w.sum()), rel=EXACT)
    assert check.p_value[0] == pytest.approx(2 * stats.norm.sf(abs(check.z[0])), rel=EXACT)


def test_the_verdict_warns_with_the_numbers_when_a_segment_differs() -> None:
    check = segment_differences(_effects([0.5, 0.45, 0.55, 0.5, 1.2]))
    assert check.verdict.status == "fail" and check.flagged == ("e",)
    assert check.verdict.false_alarm_rate == 0.05 and "Holm" in check.verdict.rule
    assert "e (+0.7" in check.verdict.reason and "adjusted p" in check.verdict.reason
    assert check.verdict.value == pytest.approx(min(check.adjusted_p_value))
    same = segment_differences(_effects([0.5, 0.5, 0.5]))
    assert same.verdict.status == "pass" and same.flagged == ()
    table = check.to_frame()
    assert table.loc[table["segment"] == "e", "differs"].item() and table["differs"].sum() == 1


def test_benjamini_hochberg_flags_more_than_holm_when_several_differ() -> None:
    effects = _effects([0.0, 0.0, 0.0, 0.0, 0.23, -0.23, 0.0], se=0.1)
    assert len(segment_differences(effects, correction="benjamini_hochberg").flagged) > len(
        segment_differences(effects).flagged
    )


def test_with_one_segment_assessed_the_check_is_undefined_with_the_reasons() -> None:
    effects = SegmentEffects(
        "g",
        "categorical",
        "difference_in_means",
        "ATE",
        (_effects([0.5]).segments[0], SegmentEffect("tiny", 3, 2, reason="3 treated and 2 control rows")),
    )
    check = segment_differences(effects)
    assert check.verdict.status == "undefined"
    assert "tiny: 3 treated" in check.verdict.reason and check.not_assessed == {
        "tiny": "3 treated and 2 control rows"
    }


def test_the_posterior_check_without_pooling_is_the_batch_check_and_with_full_pooling_finds_nothing() -> None:
    effects = _effects([0.5, 0.45, 0.9, 0.5])
    y, se, names = stack_segment_effects([effects])
    alone = posterior_segment_differences(segment_filter(y, se, segments=names, between_var=1e6))
    batch = segment_differences(effects)
    np.testing.assert_allclose(alone.difference, batch.difference, rtol=1e-6)
    np.testing.assert_allclose(alone.std_error, batch.std_error, rtol=1e-6)
    assert alone.source == "posterior" and alone.flagged == batch.flagged == ("c",)
    pooled = posterior_segment_differences(segment_filter(y, se, segments=names, between_var=0.0))
    assert pooled.verdict.status == "pass" and set(pooled.p_value) == {1.0}


# --- the forest plot --------------------------------------------------------------------------------


def test_the_forest_plot_draws_segments_flags_and_the_not_assessed_reason() -> None:
    effects = SegmentEffects(
        "g",
        "categorical",
        "difference_in_means",
        "ATE",
        (*_effects([0.5, 0.45, 0.55, 0.5, 1.2]).segments, SegmentEffect("f", 2, 1, reason="too few rows")),
    )
    y, se, names = stack_segment_effects([effects])
    posterior = segment_filter(y, se, segments=names)
    check = segment_differences(effects)
    figure = forest_plot(batch=effects, posterior=posterior, differences=check)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    ticks = {t.get_text(): t.get_color() for t in ax.get_yticklabels()}
    assert ticks["e (n=100/100)"] == "tab:red" and ticks["a (n=100/100)"] != "tab:red"
    assert any("not assessed: too few rows" in t.get_text() for t in ax.texts)
    assert len(ax.lines) >= 2 * len(names)  # an interval and a marker per posterior segment
    with pytest.raises(ValueError, match="needs a batch"):
        forest_plot()
