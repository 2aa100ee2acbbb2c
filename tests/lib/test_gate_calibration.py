"""Calibrated gates against known answers: Šidák and Bonferroni levels, Welch's standard error,
exact binomial tails, the logistic MLE's overfitting excess, and rejection rates in simulation."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import special, stats

from assimilate.diagnostics import (
    GateVerdict,
    Verdict,
    balance_table,
    looks_per_year,
    overlap_report,
    per_look_alpha,
    sample_ratio_mismatch,
    weighted_balance,
)
from assimilate.diagnostics.calibration import bonferroni_critical
from assimilate.estimators.models import fit_logistic

MC_SIGMAS = 4.0  # tolerance of simulated rates, in Monte Carlo standard errors


def _mc(rate: float, reps: int) -> float:
    return math.sqrt(rate * (1 - rate) / reps)


# ------------------------------------------------------------------------------------- helpers
def test_per_look_alpha_splits_a_yearly_rate_exactly_over_independent_looks() -> None:
    level = per_look_alpha(0.01, looks=365)
    assert 1 - (1 - level) ** 365 == pytest.approx(0.01, rel=1e-12)
    assert level == pytest.approx(2.7535e-5, rel=1e-4)
    assert per_look_alpha(0.05, looks=1) == pytest.approx(0.05, rel=1e-14)
    assert [looks_per_year(c) for c in ("daily", "weekly", "monthly")] == [365, 52, 12]
    with pytest.raises(ValueError, match="looks"):
        per_look_alpha(0.01, looks=0)
    with pytest.raises(ValueError, match="cadence"):
        looks_per_year("hourly")  # type: ignore[arg-type]


def test_bonferroni_critical_is_the_normal_quantile_at_alpha_over_2k() -> None:
    assert bonferroni_critical(0.05, tests=1) == pytest.approx(1.959964, abs=1e-6)
    assert bonferroni_critical(0.01, tests=4) == pytest.approx(stats.norm.isf(0.01 / 8), rel=1e-12)


def test_gate_verdict_carries_its_rate_through_replace_and_json() -> None:
    report = sample_ratio_mismatch(5000, 5050, rule="calibrated", looks=12, family_alpha=0.01)
    verdict = report.verdict
    assert isinstance(verdict, GateVerdict) and isinstance(verdict, Verdict)
    assert verdict.false_alarm_rate == pytest.approx(per_look_alpha(0.01, looks=12))
    renamed = dataclasses.replace(verdict, reason="batch 2025-01-01: " + verdict.reason)
    assert isinstance(renamed, GateVerdict) and renamed.false_alarm_rate == verdict.false_alarm_rate
    assert json.loads(json.dumps(verdict.to_dict()))["false_alarm_rate"] == verdict.false_alarm_rate
    assert "false-alarm rate" in str(verdict)


# ------------------------------------------------------------------------------------- balance
def test_unweighted_standard_error_is_welchs() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(0, 1, 300), rng.exponential(2.0, 300)])
    d = rng.random(300) < 0.4
    x[d, 0] += 0.3
    table = balance_table(x, d.astype(int), names=["a", "b"], rule="calibrated").table
    for j, name in enumerate(["a", "b"]):
        welch = stats.ttest_ind(x[d, j], x[~d, j], equal_var=False)
        scale = math.sqrt((np.var(x[d, j], ddof=1) + np.var(x[~d, j], ddof=1)) / 2)
        difference = x[d, j].mean() - x[~d, j].mean()
        row = table.set_index("covariate").loc[name]
        assert difference / (row["smd_std_error"] * scale) == pytest.approx(welch.statistic, rel=1e-10)
        assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(welch.statistic)), rel=1e-10)


def test_calibrated_balance_threshold_is_the_larger_of_the_practical_and_the_noise_bound() -> None:
    rng = np.random.default_rng(2)
    for n, noise_binds in ((200, True), (100_000, False)):
        x = rng.standard_normal((n, 3))
        d = rng.random(n) < 0.5
        report = balance_table(x, d.astype(int), threshold=0.1, rule="calibrated", alpha=0.01)
        table = report.table
        bounds = np.maximum(0.1, bonferroni_critical(0.01, tests=3) * table["smd_std_error"])
        j = int(np.argmax(table["smd"].abs() / bounds))
        assert report.verdict.threshold == pytest.approx(bounds[j], rel=1e-12)
        assert report.verdict.value == pytest.approx(abs(table["smd"][j]), rel=1e-12)
        assert (report.verdict.threshold > 0.1) == noise_binds
        assert report.verdict.false_alarm_rate == 0.01 and report.alpha == 0.01  # type: ignore[attr-defined]


def test_calibrated_balance_rejects_at_its_level_when_the_noise_bound_binds() -> None:
    # Randomized 50/50, known propensity, two independent covariates, a negligible practical bound:
    # the gate is the Bonferroni pair of z-tests, whose family-wise level is 1 - (1 - alpha/2)^2.
    rng = np.random.default_rng(3)
    alpha, reps, n = 0.05, 1500, 400
    fails = [
        balance_table(
            rng.standard_normal((n, 2)),
            (rng.random(n) < 0.5).astype(int),
            threshold=1e-9,
            rule="calibrated",
            alpha=alpha,
        ).verdict.failed
        for _ in range(reps)
    ]
    expected = 1 - (1 - alpha / 2) ** 2
    assert np.mean(fails) == pytest.approx(expected, abs=MC_SIGMAS * _mc(expected, reps))


def test_calibrated_balance_passes_sampling_noise_the_fixed_rule_fails_and_fails_a_real_shift() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 4))
    d = rng.random(300) < 0.5
    fixed = [balance_table(x[:, [j]], d.astype(int)).verdict.failed for j in range(4)]
    calibrated = balance_table(x, d.astype(int), rule="calibrated").verdict
    assert any(fixed) and calibrated.passed and "within sampling noise" in calibrated.reason
    big = rng.standard_normal((20_000, 2))
    arm = rng.random(20_000) < 0.5
    big[arm, 1] += 0.2
    failed = balance_table(big, arm.astype(int), names=["a", "b"], rule="calibrated").verdict
    assert failed.failed and "b" in failed.reason and "beyond sampling noise" in failed.reason


def test_fixed_rule_is_unchanged_and_weighted_balance_passes_the_rule_on() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 2))
    e = special.expit(0.5 * x[:, 0])
    d = (rng.random(500) < e).astype(int)
    old = weighted_balance(x, d, propensity=e)
    assert type(old.verdict) is Verdict and old.after.rule == "fixed" and old.after.alpha is None
    assert old.verdict.passed == (old.after.max_abs_smd <= 0.1)
    new = weighted_balance(x, d, propensity=e, rule="calibrated", alpha=0.001)
    assert isinstance(new.verdict, GateVerdict) and new.before.rule == new.after.rule == "calibrated"
    assert new.after.to_frame()["smd"].tolist() == old.after.to_frame()["smd"].tolist()
    json.dumps(new.to_dict())
    with pytest.raises(ValueError, match="rule"):
        balance_table(x, d, rule="adaptive")  # type: ignore[arg-type]


def test_calibrated_balance_one_arm_is_undefined_and_states_its_rate() -> None:
    report = balance_table(np.ones((5, 1)), [1, 1, 1, 1, 1], rule="calibrated")
    assert report.verdict.status == "undefined" and report.verdict.false_alarm_rate == 0.01  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------- SRM
def test_calibrated_srm_uses_the_exact_binomial_test_at_the_per_look_level() -> None:
    report = sample_ratio_mismatch(5000, 5400, rule="calibrated", looks=365, family_alpha=0.01)
    assert report.p_value == pytest.approx(stats.binomtest(5000, 10_400, 0.5).pvalue, rel=1e-12)
    assert report.chi2 == pytest.approx(stats.chisquare([5000, 5400]).statistic)
    assert report.alpha == pytest.approx(per_look_alpha(0.01, looks=365))
    assert report.verdict.passed  # p = 9e-5: a failure at 0.001, noise over 365 looks a year
    assert sample_ratio_mismatch(5000, 5400).verdict.failed
    assert sample_ratio_mismatch(5000, 5800, rule="calibrated", looks=365).verdict.failed
    payload = json.loads(json.dumps(report.to_dict()))
    assert (payload["rule"], payload["looks"], payload["family_alpha"]) == ("calibrated", 365, 0.01)
    small = sample_ratio_mismatch(30, 20, rule="calibrated", looks=12)
    assert small.verdict.status == "undefined" and small.verdict.false_alarm_rate == small.alpha  # type: ignore[attr-defined]


def test_exact_srm_holds_its_level_where_the_chi_square_does_not() -> None:
    # 200 units, a 10/90 design, the daily level: sum the binomial probabilities of failing counts.
    n, share = 200, 0.1
    level = per_look_alpha(0.01, looks=365)
    counts = np.arange(n + 1)
    pmf = stats.binom.pmf(counts, n, share)

    def rate(**options: object) -> float:
        fails = [
            sample_ratio_mismatch(int(k), n - int(k), expected_treated_share=share, **options).verdict.failed  # type: ignore[arg-type]
            for k in counts
        ]
        return float(pmf @ np.array(fails, dtype=float))

    assert rate(rule="calibrated", looks=365, family_alpha=0.01) <= level
    assert rate(alpha=level) > 2 * level


# ------------------------------------------------------------------------------------- overlap
def test_calibrated_overlap_with_known_scores_uses_the_binomial_quantile() -> None:
    rng = np.random.default_rng(6)
    n = 500
    e = np.clip(rng.uniform(0.0, 1.0, n), 0.001, 0.999)
    d = (rng.random(n) < e).astype(int)
    report = overlap_report(e, d, max_share_outside=0.1, rule="calibrated", alpha=0.01)
    largest = stats.binom.isf(0.01, n, 0.1)
    assert report.verdict.threshold == pytest.approx(largest / n)
    assert stats.binom.sf(largest, n, 0.1) <= 0.01 < stats.binom.sf(largest - 1, n, 0.1)
    count = int(((e < 0.05) | (e > 0.95)).sum())
    assert report.p_value == pytest.approx(stats.binom.sf(count - 1, n, 0.1))
    assert report.verdict.failed == (count > largest) and report.verdict.false_alarm_rate == 0.01  # type: ignore[attr-defined]


def _bound_design(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10% of the population outside [0.05, 0.95]: logit e = b x1 + 0.3 x2."""
    sd = special.logit(0.95) / stats.norm.isf(0.05)
    x = np.column_stack([np.ones(n), rng.standard_normal(n), rng.standard_normal(n)])
    d = rng.random(n) < special.expit(math.sqrt(sd**2 - 0.09) * x[:, 1] + 0.3 * x[:, 2])
    return x, d.astype(int), fit_logistic(x, d.astype(float)).probabilities


def test_expected_excess_matches_the_overfitting_of_a_small_logistic_fit() -> None:
    # Known truth: the population share outside is 0.10; fitted scores at n = 200 overshoot it.
    rng = np.random.default_rng(7)
    reps, n = 500, 200
    shares, excess = [], []
    for _ in range(reps):
        x, d, e = _bound_design(rng, n)
        report = overlap_report(e, d, rule="calibrated", design=x)
        shares.append(report.share_outside)
        excess.append(report.expected_excess)
    error = float(np.std(shares)) / math.sqrt(reps)
    assert np.mean(shares) - 0.10 > 3 * error  # the overshoot is real at this size
    assert np.mean(shares) - np.mean(excess) == pytest.approx(0.10, abs=MC_SIGMAS * error)


def test_calibrated_overlap_at_the_bound_fails_at_about_alpha_where_the_fixed_rule_fails_half() -> None:
    rng = np.random.default_rng(8)
    reps, n, alpha = 400, 1000, 0.05
    new, old = [], []
    for _ in range(reps):
        x, d, e = _bound_design(rng, n)
        report = overlap_report(e, d, rule="calibrated", alpha=alpha, design=x)
        new.append(report.verdict.failed)
        old.append(report.share_outside > 0.1)
    assert np.mean(new) <= alpha + MC_SIGMAS * _mc(alpha, reps)
    assert np.mean(new) >= 0.2 * alpha  # not trivially conservative
    assert np.mean(old) == pytest.approx(0.5, abs=0.1)


def test_overlap_design_must_belong_to_the_scores() -> None:
    rng = np.random.default_rng(9)
    x, d, e = _bound_design(rng, 300)
    with pytest.raises(ValueError, match="not the maximum-likelihood"):
        overlap_report(np.clip(e, 0.05, 0.95), d, rule="calibrated", design=x)
    with pytest.raises(ValueError, match="design"):
        overlap_report(e, d, rule="calibrated", design=x[:10])
    fixed = overlap_report(e, d, design=x)  # the fixed rule ignores the design
    assert type(fixed.verdict) is Verdict and fixed.rule == "fixed" and fixed.p_value is None
    json.dumps(overlap_report(e, d, rule="calibrated", design=x).to_dict())
