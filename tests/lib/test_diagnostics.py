"""Balance, overlap and sample-ratio mismatch against hand computations and simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assimilate.diagnostics import (
    balance_table,
    kish_ess,
    overlap_report,
    sample_ratio_mismatch,
    weighted_balance,
)
from assimilate.diagnostics.balance import covariate_columns


def test_smd_and_variance_ratio_match_hand_computation() -> None:
    x = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 6.0])
    d = np.array([0, 0, 0, 1, 1, 1])
    report = balance_table(x, d, names=["x"])
    s0, s1 = np.var([1, 2, 3], ddof=1), np.var([2, 4, 6], ddof=1)
    assert report.table.loc[0, "smd"] == pytest.approx((4 - 2) / math.sqrt((s0 + s1) / 2))
    assert report.table.loc[0, "variance_ratio"] == pytest.approx(np.var([2, 4, 6]) / np.var([1, 2, 3]))
    treated = balance_table(x, d, names=["x"], denominator="treated")
    assert treated.table.loc[0, "smd"] == pytest.approx(2 / math.sqrt(s1))
    assert report.verdict.failed and report.max_abs_smd > 0.1


def test_weighted_means_use_the_weights() -> None:
    x = np.array([0.0, 2.0, 1.0, 3.0])
    d = np.array([0, 0, 1, 1])
    report = balance_table(x, d, weights=[3.0, 1.0, 1.0, 1.0], names=["x"])
    assert report.table.loc[0, "mean_control"] == pytest.approx(0.5)
    assert report.table.loc[0, "mean_treated"] == pytest.approx(2.0)


def test_categorical_covariates_get_one_row_per_level() -> None:
    frame = pd.DataFrame({"region": ["a", "b", "a", "b", "a", "a"], "x": [1.0, 2, 3, 4, 5, 6]})
    report = balance_table(frame, [0, 0, 0, 1, 1, 1])
    assert report.table["covariate"].tolist() == ["region[a]", "region[b]", "x"]


def test_weighting_by_the_true_propensity_removes_imbalance() -> None:
    rng = np.random.default_rng(40)
    x = rng.standard_normal((20_000, 2))
    e = 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    d = rng.binomial(1, e)
    comparison = weighted_balance(x, d, propensity=e, names=["a", "b"])
    assert comparison.before.max_abs_smd > 0.2
    assert comparison.after.max_abs_smd < 0.05
    assert comparison.before.verdict.failed and comparison.verdict.passed
    assert list(comparison.to_frame().columns) == [
        "covariate",
        "smd_before",
        "smd_after",
        "variance_ratio_before",
        "variance_ratio_after",
    ]
    json.dumps(comparison.to_dict())


def test_one_arm_only_is_undefined_not_a_pass() -> None:
    report = balance_table(np.array([1.0, 2.0, 3.0]), [1, 1, 1], names=["x"])
    assert report.verdict.status == "undefined" and "each arm" in report.verdict.reason
    overlap = overlap_report([0.4, 0.5, 0.6], [1, 1, 1])
    assert overlap.verdict.status == "undefined"
    json.dumps(report.to_dict())


def test_overlap_numbers_match_hand_computation() -> None:
    e = np.array([0.02, 0.3, 0.5, 0.7, 0.97, 0.6])
    d = np.array([0, 0, 1, 1, 1, 0])
    report = overlap_report(e, d, eps=0.05, max_share_outside=0.1, trimmed=2)
    assert report.share_outside == pytest.approx(2 / 6)
    assert report.share_outside_treated == pytest.approx(1 / 3)
    w = np.where(d == 1, 1 / e, 1 / (1 - e))
    assert report.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert report.quantiles.loc["treated", "q0"] == 0.5 and report.quantiles.loc["control", "q100"] == 0.6
    assert report.verdict.failed and report.trimmed == 2
    json.dumps(report.to_dict())


def test_kish_ess_of_equal_weights_is_n() -> None:
    assert kish_ess(np.full(37, 2.5)) == pytest.approx(37)
    with pytest.raises(ValueError, match="weights"):
        kish_ess([0.0, 0.0])


def test_propensities_piled_at_zero_and_one_fail_overlap() -> None:
    rng = np.random.default_rng(41)
    e = np.clip(rng.beta(0.2, 0.2, 1000), 1e-6, 1 - 1e-6)
    d = rng.binomial(1, e)
    assert overlap_report(e, d).verdict.failed


def test_srm_matches_scipy_chisquare_and_flags_a_broken_split() -> None:
    report = sample_ratio_mismatch(5000, 5400)
    reference = stats.chisquare([5000, 5400], [5200, 5200])
    assert report.chi2 == pytest.approx(reference.statistic)
    assert report.p_value == pytest.approx(reference.pvalue)
    assert report.verdict.failed
    assert sample_ratio_mismatch(5000, 5050).verdict.passed
    uneven = sample_ratio_mismatch(300, 700, expected_treated_share=0.3)
    assert uneven.p_value == pytest.approx(stats.chisquare([300, 700], [300, 700]).pvalue)


def test_srm_rejects_at_about_its_level_under_the_null() -> None:
    rng = np.random.default_rng(42)
    n_treated = rng.binomial(2000, 0.5, size=4000)
    rejections = [sample_ratio_mismatch(int(k), 2000 - int(k), alpha=0.05).verdict.failed for k in n_treated]
    assert np.mean(rejections) == pytest.approx(0.05, abs=0.012)


def test_srm_is_undefined_below_the_minimum_sample() -> None:
    report = sample_ratio_mismatch(30, 20, min_units=100)
    assert report.verdict.status == "undefined" and "fewer than the 100" in report.verdict.reason
    assert json.loads(json.dumps(report.to_dict()))["p_value"] is None
    with pytest.raises(ValueError, match="expected_treated_share"):
        sample_ratio_mismatch(10, 10, expected_treated_share=1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: balance_table(np.ones(3), [0, 1], names=["x"]), "treatment has 2 entries"),
        (lambda: balance_table(np.ones(2), [0, 2], names=["x"]), "0 or 1"),
        (lambda: balance_table(np.ones(2), [0, 1], weights=[-1, 1], names=["x"]), "weights"),
        (lambda: overlap_report([0.5, np.nan], [0, 1]), "propensity"),
        (lambda: overlap_report([0.5, 0.5], [0, 1], eps=0.6), "eps"),
        (lambda: weighted_balance(np.ones(2), [0, 1], propensity=[0.0, 0.5]), "propensity"),
    ],
)
def test_invalid_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_categorical_covariate_levels_are_the_texts_of_its_values() -> None:
    """A text column's levels are its values; mixed values are levels by their text, as str() writes
    them (1 and True, None and NaN would each be one value to a hash table)."""
    frame = pd.DataFrame(
        {
            "r": ["b", "a", None, 1, "1", np.nan, "a", True, "True"],
            "t": ["y", "x", "y", "y", "x", "x", "y", "x", "y"],
        }
    )
    split = covariate_columns(frame, None)
    assert split.labels == [f"r[{v}]" for v in ["1", "None", "True", "a", "b", "nan"]] + ["t[x]", "t[y]"]
    texts = frame["r"].astype(str)
    for label, column in zip(split.labels, split.columns, strict=True):
        source, level = label[0], label[2:-1]
        expected = texts == level if source == "r" else frame["t"] == level
        np.testing.assert_array_equal(column, expected.to_numpy())
