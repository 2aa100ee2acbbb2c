"""Known answers for 2SLS (assimilate.estimators.iv): linearmodels IV2SLS / IVGMM on real and simulated data.

References: linearmodels 7.1 (``IV2SLS`` point and covariance, ``first_stage.kleibergen_paap_f`` and
``first_stage.diagnostics["f.stat"]``, ``IVGMM(...).fit().j_stat``), computed here at test time. Real data:
Mroz (1987) women's wages (two instruments: father's and mother's education; Wooldridge's Example 15.x)
and Card (1995) college proximity (one instrument, clustered on the 1966 region), both shipped in
``linearmodels.datasets``. The Anderson-Rubin set is checked against a direct grid inversion whose
robust Wald statistics are computed from scratch, at every grid point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from linearmodels.datasets import card, mroz
from linearmodels.iv import IV2SLS, IVGMM
from scipy import stats

from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import EffectEstimate, estimate_effect, supported_estimands
from assimilate.estimators.iv import two_stage_least_squares, two_stage_least_squares_with_influence
from assimilate.estimators.iv_diagnostics import (
    AndersonRubinSet,
    ReducedForm,
    anderson_rubin_set_of,
    weak_instrument_verdict,
)
from assimilate.estimators.variance import cluster_robust_standard_error, t_conf_int

POINT = 1e-8
"""Relative tolerance where both sides compute the same quantity."""


def _close(ours: float, reference: float, tolerance: float = POINT) -> None:
    assert abs(ours - reference) <= tolerance * max(1.0, abs(reference)), (ours, reference)


def _simulated(seed: int = 3, n: int = 800, strength: float = 0.6, n_clusters: int = 40) -> pd.DataFrame:
    """Binary treatment, three instruments, a numeric and a categorical covariate, heteroskedastic, clustered."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n)
    x = rng.standard_normal(n)
    region = rng.choice(["north", "south", "west"], n)
    z1 = rng.binomial(1, 0.5, n)
    z2, z3 = rng.standard_normal(n), rng.standard_normal(n)
    confounder = rng.standard_normal(n) + 0.5 * rng.standard_normal(n_clusters)[cluster]
    latent = strength * (z1 + 0.5 * z2 - 0.3 * z3) + 0.4 * x + confounder + rng.standard_normal(n)
    d = (latent > 0.3).astype(int)
    noise = (1.0 + 0.5 * np.abs(x)) * rng.standard_normal(n)
    y = 0.7 * d + 0.5 * x + (region == "west") + 0.8 * confounder + noise
    return pd.DataFrame(
        {"y": y, "d": d, "x": x, "region": region, "z1": z1, "z2": z2, "z3": z3, "cluster": cluster}
    )


@pytest.fixture(scope="module")
def mroz_data() -> pd.DataFrame:
    frame = mroz.load().dropna(subset=["lwage"]).reset_index(drop=True)
    return frame.assign(const=1.0)


@pytest.fixture(scope="module")
def card_data() -> pd.DataFrame:
    frame = card.load()
    region = frame[[f"reg66{i}" for i in range(1, 10)]].to_numpy().argmax(axis=1)
    return frame.assign(const=1.0, region=region)


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    frame = _simulated()
    dummies = pd.get_dummies(frame["region"], drop_first=True, dtype=float)
    return pd.concat([frame.assign(const=1.0), dummies], axis=1)


CASES: dict[str, dict[str, Any]] = {
    "mroz": {
        "data": "mroz_data",
        "outcome": "lwage",
        "treatment": "educ",
        "instruments": ["fatheduc", "motheduc"],
        "covariates": ["exper", "expersq"],
        "exog": ["const", "exper", "expersq"],
        "cluster": "age",
    },
    "card": {
        "data": "card_data",
        "outcome": "lwage",
        "treatment": "educ",
        "instruments": ["nearc4"],
        "covariates": ["exper", "expersq", "black", "smsa", "south"],
        "exog": ["const", "exper", "expersq", "black", "smsa", "south"],
        "cluster": "region",
    },
    "simulated": {
        "data": "simulated",
        "outcome": "y",
        "treatment": "d",
        "instruments": ["z1", "z2", "z3"],
        "covariates": ["x", "region"],
        "exog": ["const", "x", "south", "west"],
        "cluster": "cluster",
    },
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> dict[str, Any]:
    spec = dict(CASES[request.param])
    spec["frame"] = request.getfixturevalue(spec["data"])
    return spec


def _ours(spec: dict[str, Any], **options: Any) -> EffectEstimate:
    return two_stage_least_squares(
        spec["frame"],
        treatment=spec["treatment"],
        outcome=spec["outcome"],
        instruments=spec["instruments"],
        covariates=spec["covariates"],
        **options,
    )


def _model(spec: dict[str, Any], kind: type = IV2SLS, **options: Any) -> Any:
    frame = spec["frame"]
    return kind(
        frame[spec["outcome"]],
        frame[spec["exog"]],
        frame[spec["treatment"]],
        frame[spec["instruments"]],
        **options,
    )


def _reference(spec: dict[str, Any], se_type: str) -> Any:
    if se_type == "CR1":
        clusters = spec["frame"][spec["cluster"]].to_numpy()
        return _model(spec).fit(cov_type="clustered", clusters=clusters, debiased=True)
    return _model(spec).fit(cov_type="robust", debiased=se_type == "HC1")


@pytest.mark.parametrize("se_type", ["HC0", "HC1", "CR1"])
def test_point_and_standard_error_equal_linearmodels(case: dict[str, Any], se_type: str) -> None:
    cluster = case["frame"][case["cluster"]] if se_type == "CR1" else None
    ours = _ours(case, se_type=se_type, clusters=cluster)
    reference = _reference(case, se_type)
    _close(ours.estimate, reference.params[case["treatment"]])
    _close(ours.std_error, reference.std_errors[case["treatment"]])
    assert ours.se_method == se_type.lower() and ours.estimand == "LATE"


@pytest.mark.parametrize("se_type", ["HC0", "HC1", "CR1"])
def test_first_stage_f_equals_linearmodels(case: dict[str, Any], se_type: str) -> None:
    cluster = case["frame"][case["cluster"]] if se_type == "CR1" else None
    first = _ours(case, se_type=se_type, clusters=cluster).diagnostics["first_stage"]
    reference = _reference(case, se_type).first_stage
    k = len(case["instruments"])
    # f.stat is the robust Wald statistic of the excluded instruments with the fit's covariance
    _close(first["robust_f"], float(reference.diagnostics["f.stat"].iloc[0]) / k)
    if se_type != "HC0":  # ivreg2's Kleibergen-Paap rk Wald F carries the HC1 / CR1 factors
        _close(first["robust_f"], reference.kleibergen_paap_f)
    coefficients = reference.individual[case["treatment"]].params[case["instruments"]]
    for name in case["instruments"]:
        _close(first["coefficients"][name], coefficients[name])
        assert first["signs"][name] == int(np.sign(coefficients[name]))


def _partialled(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    frame = spec["frame"]
    exog = frame[spec["exog"]].to_numpy()
    z = frame[spec["instruments"]].to_numpy(dtype=float)
    z_t = z - exog @ np.linalg.lstsq(exog, z, rcond=None)[0]
    return z_t, exog


def test_effective_f_is_its_formula(case: dict[str, Any]) -> None:
    """F_eff = pi' Z~'Z~ pi / tr(V_pi Z~'Z~) (Montiel Olea & Pflueger 2013, eq. 15), V_pi from linearmodels."""
    first = _ours(case).diagnostics["first_stage"]
    individual = _reference(case, "HC1").first_stage.individual[case["treatment"]]
    pi = individual.params[case["instruments"]].to_numpy()
    cov = individual.cov.loc[case["instruments"], case["instruments"]].to_numpy()
    z_t, _ = _partialled(case)
    gram = z_t.T @ z_t
    _close(first["effective_f"], float(pi @ gram @ pi) / float(np.trace(cov @ gram)))
    if len(case["instruments"]) == 1:
        _close(first["effective_f"], first["robust_f"])
    else:
        assert first["effective_f"] != pytest.approx(first["robust_f"], rel=1e-3)


def test_hansen_j_equals_ivgmm(case: dict[str, Any]) -> None:
    ours = _ours(case).diagnostics["hansen_j"]
    if len(case["instruments"]) == 1:
        assert ours["statistic"] is None and "just identified" in ours["reason"]
        return
    reference = _model(case, IVGMM).fit().j_stat
    _close(ours["statistic"], reference.stat)
    _close(ours["p_value"], reference.pval)
    assert ours["df"] == reference.df == len(case["instruments"]) - 1
    clusters = case["frame"][case["cluster"]].to_numpy()
    clustered = _ours(case, clusters=clusters).diagnostics["hansen_j"]
    reference = _model(case, IVGMM, weight_type="clustered", clusters=clusters).fit().j_stat
    _close(clustered["statistic"], reference.stat)


def test_anderson_rubin_statistic_at_zero_equals_a_linearmodels_wald_test(case: dict[str, Any]) -> None:
    """AR(b) is the HC1 Wald test of the instruments in the OLS of y - b d on covariates and instruments."""
    ar = _ours(case).diagnostics["anderson_rubin"]
    frame = case["frame"]
    regressors = frame[case["exog"] + case["instruments"]]
    for value in (0.0, *[end for piece in ar["intervals"] for end in piece if isinstance(end, float)]):
        shifted = frame[case["outcome"]] - value * frame[case["treatment"]]
        fit = IV2SLS(shifted, regressors, None, None).fit(cov_type="robust", debiased=True)
        restriction = np.zeros((len(case["instruments"]), regressors.shape[1]))
        restriction[:, len(case["exog"]) :] = np.eye(len(case["instruments"]))
        statistic = fit.wald_test(restriction).stat
        if value == 0.0:
            _close(ar["statistic_at_zero"], statistic)
        else:  # the ends of the set: AR equals the critical value
            _close(statistic, ar["critical_value"])


def _grid_statistics(frame: pd.DataFrame, spec: dict[str, Any], grid: np.ndarray) -> np.ndarray:
    """AR at every grid value from scratch: OLS of y - b d on [W, Z], HC1 sandwich, Wald of Z."""
    q = frame[spec["exog"] + spec["instruments"]].to_numpy(dtype=float)
    y, d = frame[spec["outcome"]].to_numpy(float), frame[spec["treatment"]].to_numpy(float)
    n, p = q.shape
    k = len(spec["instruments"])
    bread = np.linalg.inv(q.T @ q)
    out = np.empty(len(grid))
    for i, value in enumerate(grid):
        target = y - value * d
        coef = bread @ q.T @ target
        resid = target - q @ coef
        meat = (q * resid[:, None]).T @ (q * resid[:, None])
        cov = n / (n - p) * bread @ meat @ bread
        block = coef[-k:]
        out[i] = block @ np.linalg.solve(cov[-k:, -k:], block)
    return out


def _weak(seed: int, n: int, k: int, strength: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k))
    u = rng.standard_normal(n)
    d = z @ np.full(k, strength) + 0.8 * u + 0.6 * rng.standard_normal(n)
    y = 1.0 * d + u * (1.0 + 0.5 * np.abs(z[:, 0]))
    frame = pd.DataFrame({"y": y, "d": d, "const": 1.0} | {f"z{j}": z[:, j] for j in range(k)})
    spec = {"outcome": "y", "treatment": "d", "instruments": [f"z{j}" for j in range(k)], "exog": ["const"]}
    return frame, spec


@pytest.mark.parametrize(
    ("seed", "k", "strength", "kinds"),
    [
        (1, 1, 0.3, {"interval"}),
        (2, 1, 0.04, {"two_rays", "whole_line"}),
        (5, 1, 0.0, {"two_rays", "whole_line"}),
        (3, 3, 0.3, {"interval"}),
        (4, 3, 0.03, {"two_rays", "whole_line", "union", "empty"}),
    ],
)
def test_anderson_rubin_set_equals_a_grid_inversion(
    seed: int, k: int, strength: float, kinds: set[str]
) -> None:
    frame, spec = _weak(seed, 300, k, strength)
    fit = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=spec["instruments"])
    found = anderson_rubin_set_of(fit)
    assert found.kind in kinds, str(found)
    finite = [end for piece in found.intervals for end in piece if math.isfinite(end)]
    centre = fit.estimate if not finite else float(np.mean(finite))
    reach = 10.0 * (max(finite) - min(finite) if len(finite) > 1 else 1.0) + 10.0 * fit.std_error
    grid = np.linspace(centre - reach, centre + reach, 2001)
    grid = np.concatenate([grid, np.asarray(finite)])
    statistics = _grid_statistics(frame, spec, grid)
    inside = statistics <= found.critical_value
    near_end = np.array([any(abs(g - e) <= 1e-9 * max(1.0, abs(e)) for e in finite) for g in grid])
    claimed = np.array([found.contains(g) for g in grid])
    assert np.array_equal(inside[~near_end], claimed[~near_end])
    np.testing.assert_allclose(statistics[near_end], found.critical_value, rtol=1e-8)
    far = _grid_statistics(frame, spec, np.array([1e7, -1e7]))  # beyond every end: the limit k F
    assert found.contains(1e7) == found.contains(-1e7) == bool(far.max() <= found.critical_value)


def test_one_instrument_set_is_the_quadratic_inequality() -> None:
    """k = 1: (gamma - b pi)^2 <= c (V_yy - 2 b V_yd + b^2 V_dd), solved in closed form."""
    cases = [
        ((1.0, 0.5), 0.005, "interval"),
        ((1.0, 0.15), 0.005, "two_rays"),
        ((0.1, 0.05), 0.005, "whole_line"),
    ]
    for (gamma, pi), cross, kind in cases:
        cov = np.array([[0.04, cross], [cross, 0.01]])
        form = ReducedForm(np.array([gamma]), np.array([pi]), cov, np.array([[50.0]]))
        found = form.anderson_rubin_set(alpha=0.05)
        c = stats.chi2.ppf(0.95, 1)
        a, b, q = pi * pi - c * cov[1, 1], -2 * gamma * pi + 2 * c * cross, gamma * gamma - c * cov[0, 0]
        assert found.kind == kind
        if b * b - 4 * a * q > 0:
            roots = sorted(np.roots([a, b, q]).real)
            ends = [e for piece in found.intervals for e in piece if math.isfinite(e)]
            np.testing.assert_allclose(ends, roots, rtol=1e-10)
        assert (found.kind in ("two_rays", "whole_line")) == (form.k * form.robust_f < c)


def test_just_identified_binary_instrument_is_the_wald_ratio() -> None:
    rng = np.random.default_rng(7)
    n = 500
    z = rng.binomial(1, 0.5, n)
    d = ((0.9 * z + rng.standard_normal(n)) > 0.4).astype(int)
    y = 2.0 * d + rng.standard_normal(n)
    frame = pd.DataFrame({"z": z, "d": d, "y": y})
    fit = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=["z"])
    wald = (y[z == 1].mean() - y[z == 0].mean()) / (d[z == 1].mean() - d[z == 0].mean())
    _close(fit.estimate, wald, 1e-12)
    assert fit.diagnostics["treatment_kind"] == "binary" and fit.n_treated == int(d.sum())
    assert fit.diagnostics["first_stage"]["signs"] == {"z": 1}


def test_influence_values_give_the_standard_errors(simulated: pd.DataFrame) -> None:
    options = {
        "treatment": "d",
        "outcome": "y",
        "instruments": ["z1", "z2", "z3"],
        "covariates": ["x", "region"],
    }
    unclustered = two_stage_least_squares_with_influence(simulated, **options)
    assert unclustered.estimate == two_stage_least_squares(simulated, **options)
    _close(unclustered.variance, unclustered.estimate.std_error**2, 1e-12)
    assert abs(unclustered.values.mean()) < 1e-10 * np.abs(unclustered.values).max()
    labels = simulated["cluster"].to_numpy()
    clustered = two_stage_least_squares_with_influence(simulated, clusters=labels, **options)
    n, p = len(simulated), 4 + 1
    se = cluster_robust_standard_error(clustered.values, labels, correction=(n - 1) / (n - p))
    _close(se, clustered.estimate.std_error, 1e-12)


def test_clustered_interval_uses_t_with_g_minus_1_df(simulated: pd.DataFrame) -> None:
    fit = two_stage_least_squares(
        simulated, treatment="d", outcome="y", instruments=["z1"], covariates=["x"], clusters="cluster"
    )
    entry = fit.diagnostics["standard_error"]
    assert (entry["se_type"], entry["cluster"], entry["n_clusters"], entry["df"]) == (
        "CR1",
        "cluster",
        40,
        39,
    )
    lower, _ = t_conf_int(fit)
    _close(fit.estimate - lower, stats.t.ppf(0.975, 39) * fit.std_error, 1e-12)
    assert fit.diagnostics["first_stage"]["f_df"] == [1, 39]
    ar = anderson_rubin_set_of(fit)
    _close(ar.critical_value, stats.f.ppf(0.95, 1, 39), 1e-12)


def test_weak_instrument_gate_fails_below_the_threshold_and_reports_the_ar_set() -> None:
    frame, spec = _weak(2, 300, 1, 0.04)
    weak = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=spec["instruments"])
    verdict = weak_instrument_verdict(weak)
    assert verdict.failed and verdict.threshold == 10.0
    assert verdict.value == weak.diagnostics["first_stage"]["effective_f"] < 10
    assert "Anderson-Rubin 95% set" in verdict.reason and str(anderson_rubin_set_of(weak)) in verdict.reason
    frame, spec = _weak(1, 300, 1, 0.3)
    strong = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=spec["instruments"])
    assert weak_instrument_verdict(strong).passed
    value = strong.diagnostics["first_stage"]["effective_f"]
    assert weak_instrument_verdict(strong, threshold=value * 1.01).failed  # the study's threshold rules
    with pytest.raises(ValueError, match="threshold"):
        weak_instrument_verdict(strong, threshold=0.0)


def test_gate_is_undefined_when_the_first_stage_covariance_is_singular() -> None:
    frame, spec = _weak(3, 200, 3, 0.3)
    frame["cluster"] = np.arange(200) % 3  # 3 clusters: the summed scores sum to 0, rank <= 2 < k
    fit = two_stage_least_squares(
        frame, treatment="d", outcome="y", instruments=spec["instruments"], clusters="cluster"
    )
    verdict = weak_instrument_verdict(fit)
    assert isinstance(verdict, Verdict) and verdict.status == "undefined" and "singular" in verdict.reason
    assert (
        fit.diagnostics["hansen_j"]["statistic"] is None
        and "singular" in fit.diagnostics["hansen_j"]["reason"]
    )
    with pytest.raises(ValueError, match="undefined: the first-stage covariance is singular"):
        anderson_rubin_set_of(fit)
    assert math.isfinite(fit.std_error)  # the CR1 SE of the point itself is still defined


def test_estimate_round_trips_and_the_set_reads_back() -> None:
    frame, spec = _weak(2, 300, 1, 0.04)
    fit = two_stage_least_squares(frame, treatment="d", outcome="y", instruments=spec["instruments"])
    assert EffectEstimate.from_dict(fit.to_dict()) == fit
    found = anderson_rubin_set_of(fit)
    assert AndersonRubinSet.from_dict(found.to_dict()) == found
    assert found.kind in ("two_rays", "whole_line") and not found.bounded


def test_late_is_stated_only_by_iv() -> None:
    assert "LATE" not in supported_estimands("aipw")
    frame = pd.DataFrame({"d": [0, 1] * 10, "y": np.arange(20.0)})
    with pytest.raises(ValueError, match="estimand"):
        estimate_effect(frame, method="difference_in_means", treatment="d", outcome="y", estimand="LATE")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instruments": ["x"]}, "more than one role"),
        ({"instruments": []}, "non-empty"),
        ({"instruments": ["w"]}, "collinear"),
        ({"instruments": ["flat"]}, "constant"),
        ({"instruments": ["nowhere"]}, "not in the data"),
        ({"se_type": "HC1", "clusters": "cluster"}, "refuses cluster"),
        ({"se_type": "CR1"}, "needs cluster"),
        ({"se_type": "HC3"}, "se_type"),
        ({"clusters": "nowhere"}, "not in the data"),
        ({"outcome": "gap"}, "non-finite"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_inputs_are_named(change: dict[str, Any], message: str) -> None:
    frame = _simulated(n=100)
    frame = frame.assign(w=2.0 * frame["x"] + 1.0, flat=1.0, gap=np.where(frame["x"] > 1, np.nan, frame["y"]))
    options: dict[str, Any] = {"treatment": "d", "outcome": "y", "instruments": ["z1"], "covariates": ["x"]}
    with pytest.raises(ValueError, match=message):
        two_stage_least_squares(frame, **(options | change))
