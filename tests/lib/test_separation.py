"""Separation done right (issue 14): no estimate only when the MLE does not exist, and why.

Three outcomes of a logistic fit, each against a known answer:
- separated data (complete, quasi-complete, by one column or by a combination): SeparationError
  naming the column or the direction, and the direction is a certificate ((2y - 1) x'v >= 0);
- strongly selected data whose MLE exists (probabilities down to 1e-12 and below): the MLE,
  equal to statsmodels' Logit, and an overlap verdict that fails with numbers;
- a singular design: SingularDesignError naming the collinear columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special

import assimilate.estimators.models as models
from assimilate.diagnostics import overlap_report
from assimilate.estimators import aipw, encode_covariates, ipw
from assimilate.estimators.models import SeparationError, SingularDesignError, fit_logistic, fit_propensity
from assimilate.estimators.separation import detect_separation

COEFFICIENTS = 1e-6  # the tolerance against statsmodels
NAMES = ("intercept", "x1", "x2", "x3", "w")


def covariates(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.standard_normal((3, n))
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "w": rng.binomial(1, 0.2, n).astype(float)})


def design(frame: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(frame)), frame[["x1", "x2", "x3", "w"]].to_numpy()])


def separated(error: SeparationError, X: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The margins (2d - 1) x'v of the error's direction: a certificate when none is negative."""
    v = np.array([error.direction[name] for name in NAMES])
    margins = (2 * d - 1) * (X @ v)
    assert margins.min() >= -1e-9 * np.abs(margins).max()
    return margins


def no_column_separates_alone(X: np.ndarray, d: np.ndarray) -> bool:
    treated = d == 1
    return all(
        X[~treated, j].max() > X[treated, j].min() and X[treated, j].max() > X[~treated, j].min()
        for j in range(1, X.shape[1])
    )


# ---------------------------------------------------------------- (a) separation: no estimate


def test_complete_separation_by_one_column_among_several_names_it() -> None:
    frame = covariates(1000, 1)
    d = (frame["x2"] > 0.3).to_numpy(float)
    X = design(frame)
    with pytest.raises(SeparationError) as caught:
        fit_logistic(X, d, names=NAMES, response="treatment")
    error = caught.value
    assert (error.kind, error.columns, error.n_separated) == ("complete", ("x2",), 1000)
    assert "column 'x2' alone" in str(error) and "treatment = 1" in str(error)
    assert separated(error, X, d).min() > 0  # complete: every unit strictly on its side


def test_quasi_complete_separation_by_a_dummy_names_it_and_counts_the_units() -> None:
    frame = covariates(1000, 2)
    rng = np.random.default_rng(3)
    d = rng.binomial(1, special.expit(frame["x1"].to_numpy())).astype(float)
    d[frame["w"] == 1] = 1.0  # every unit with w = 1 is treated; w = 0 has both arms
    X = design(frame)
    with pytest.raises(SeparationError) as caught:
        fit_logistic(X, d, names=NAMES)
    error = caught.value
    assert (error.kind, error.columns) == ("quasi-complete", ("w",))
    assert error.n_separated == int((frame["w"] == 1).sum())
    margins = separated(error, X, d)
    assert np.count_nonzero(margins > 0) == error.n_separated


def test_separation_by_a_combination_names_the_direction_when_no_single_column_separates() -> None:
    frame = covariates(1000, 4)
    d = (frame["x1"] + 2 * frame["x2"] > 0.5).to_numpy(float)
    X = design(frame)
    assert no_column_separates_alone(X, d)
    with pytest.raises(SeparationError) as caught:
        fit_logistic(X, d, names=NAMES)
    error = caught.value
    assert (error.kind, error.columns) == ("complete", ("x1", "x2"))  # x3 and w are not needed
    assert "the combination" in str(error) and "no single column" in str(error)
    assert error.direction["x2"] / error.direction["x1"] == pytest.approx(2.0, abs=0.1)
    assert separated(error, X, d).min() > 0


def test_quasi_complete_separation_by_a_combination() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    a, b = rng.binomial(1, 0.5, (2, n)).astype(float)
    x = rng.standard_normal(n)
    # a - b = 1: treated, a - b = -1: control, a = b: either (by x); neither a nor b separates alone
    d = np.where(a > b, 1.0, np.where(a < b, 0.0, rng.binomial(1, special.expit(x))))
    X = np.column_stack([np.ones(n), x, a, b])
    assert no_column_separates_alone(X, d)
    with pytest.raises(SeparationError) as caught:
        fit_logistic(X, d, names=("intercept", "x", "a", "b"))
    error = caught.value
    assert (error.kind, error.columns) == ("quasi-complete", ("a", "b"))
    assert error.n_separated == int(np.sum(a != b))
    assert error.direction["b"] / error.direction["a"] == pytest.approx(-1.0)
    assert "a - b > 0 has y = 1" in str(error)


def test_separation_is_found_at_warm_start_size() -> None:
    frame = covariates(60_000, 7)  # the warm-started path, and the LP's row generation
    d = (frame["x1"] - frame["x2"] > 0).to_numpy(float)
    with pytest.raises(SeparationError) as caught:
        fit_logistic(design(frame), d, names=NAMES)
    assert caught.value.columns == ("x1", "x2")


def test_row_generation_adds_the_rows_that_block_a_separation_of_the_sample() -> None:
    frame = covariates(20_000, 8)
    X = design(frame)
    score = (frame["x1"] + frame["x2"]).to_numpy()
    d = (score > 0).astype(float)
    assert detect_separation(X, d, names=NAMES) is not None
    wrong = [int(np.argmax(score)), int(np.argmin(score))]  # flip the two most extreme units
    assert all(i % 10 for i in wrong)  # neither is in the strided first working set
    d[wrong] = 1.0 - d[wrong]
    assert detect_separation(X, d, names=NAMES) is None


def test_one_arm_only_is_complete_separation() -> None:
    X = design(covariates(50, 9))
    with pytest.raises(SeparationError, match="every unit has y = 1"):
        fit_logistic(X, np.ones(50), names=NAMES)


def test_the_estimators_report_separation_as_a_value_error_naming_the_column() -> None:
    frame = covariates(500, 10).assign(y=lambda f: f["x3"] + 1.0)
    frame["d"] = (frame["x1"] > 0).astype(int)
    for estimator in (ipw, aipw):
        with pytest.raises(ValueError, match=r"separation: column 'x1' alone predicts treatment"):
            estimator(frame, treatment="d", outcome="y", covariates=["x1", "x2", "x3", "w"])


# ---------------------------------------------------------------- (b) extreme but existing MLE


def strongly_selected(slope: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Selection on x so strong that most units have e(x) near 0 or 1, yet both arms overlap near 0."""
    rng = np.random.default_rng(seed)
    n = 2000
    frame = pd.DataFrame({"x": rng.uniform(-1.4, 1.4, n), "z": rng.standard_normal(n)})
    d = rng.binomial(1, special.expit(slope * frame["x"] + 0.5 * frame["z"]))
    return frame.assign(y=frame["z"] + d + rng.standard_normal(n), d=d), d.astype(float)


@pytest.mark.parametrize(("slope", "seed"), [(20.0, 11), (30.0, 12)])
def test_strong_selection_returns_the_mle_equal_to_statsmodels(slope: float, seed: int) -> None:
    frame, d = strongly_selected(slope, seed)
    covariate_design = encode_covariates(frame, ["x", "z"])
    fit = fit_propensity(covariate_design, d, policy="none")
    reference = sm.Logit(d, covariate_design.values).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    np.testing.assert_allclose(fit.coefficients.to_numpy(), reference.params, rtol=0, atol=COEFFICIENTS)
    e = fit.scores
    assert fit.converged and min(e.min(), 1 - e.max()) < 1e-12  # beyond the old |x'beta| > 30 alarm
    assert np.mean((e < 0.1) | (e > 0.9)) > 0.9
    assert e.min() > 0 and e.max() < 1  # strictly inside (0, 1), even where expit rounds to 1
    assert detect_separation(covariate_design.values, d, probabilities=e) is None


def test_strong_selection_fails_the_overlap_gate_with_numbers_not_separation() -> None:
    frame, d = strongly_selected(20.0, 11)
    covariate_design = encode_covariates(frame, ["x", "z"])
    fit = fit_propensity(covariate_design, d)
    for rule, options in (("fixed", {}), ("calibrated", {"design": covariate_design.values})):
        report = overlap_report(fit.scores, d, eps=0.1, max_share_outside=0.1, rule=rule, **options)
        assert report.verdict.status == "fail"
        assert report.share_outside > 0.9 and report.verdict.value == report.share_outside
        assert "units outside" in report.verdict.reason and "separation" not in report.verdict.reason
        assert report.quantiles.loc["control", "q0"] < 1e-12  # min e in the report's numbers


def test_strong_selection_gives_ipw_and_aipw_estimates() -> None:
    frame, _ = strongly_selected(20.0, 11)
    for estimator in (ipw, aipw):
        estimate = estimator(frame, treatment="d", outcome="y", covariates=["x", "z"])
        assert np.isfinite(estimate.estimate) and estimate.std_error > 0


def test_the_lp_runs_only_when_newton_diverges(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the separation LP ran on a fit whose MLE exists")

    monkeypatch.setattr(models, "detect_separation", forbidden)
    for slope, seed in ((20.0, 11), (30.0, 12), (1.0, 13)):
        frame, d = strongly_selected(slope, seed)
        assert fit_propensity(encode_covariates(frame, ["x", "z"]), d).converged
    frame = covariates(60_000, 14)
    d = np.random.default_rng(15).binomial(1, special.expit(frame["x1"].to_numpy())).astype(float)
    assert fit_logistic(design(frame), d, names=NAMES).converged


# ---------------------------------------------------------------- (c) singular design


def test_a_collinear_design_is_a_singular_design_error_naming_the_columns() -> None:
    frame = covariates(500, 16)
    X = np.column_stack([design(frame), frame["x1"] - 2 * frame["x3"]])
    d = np.random.default_rng(17).binomial(1, 0.4, 500).astype(float)
    with pytest.raises(SingularDesignError) as caught:
        fit_logistic(X, d, names=(*NAMES, "x1_minus_2x3"))
    assert set(caught.value.columns) == {"x1", "x3", "x1_minus_2x3"}
    assert "singular design" in str(caught.value) and not isinstance(caught.value, SeparationError)


def test_a_constant_covariate_is_named_by_the_singular_design_error() -> None:
    frame = covariates(500, 18).assign(w=3.0)
    d = np.random.default_rng(19).binomial(1, 0.4, 500).astype(float)
    with pytest.raises(SingularDesignError, match=r"singular design: column\(s\) \['intercept', 'w'\]"):
        fit_propensity(encode_covariates(frame, ["x1", "x2", "x3", "w"]), d)
