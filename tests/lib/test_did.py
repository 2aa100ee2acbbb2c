"""Known answers for difference in differences (assimilate.estimators.did, did_staggered, did_diagnostics).

References: statsmodels OLS with ``cov_type="cluster"`` (unit clusters; its CR1 factor
``G/(G-1) (n-1)/(n-k)``) for the 2x2, the multi-period and the event-study regressions, computed
here at test time; the hand 2x2 difference of four means for every ``ATT(g, t)``; and the
aggregations of csdid 0.4.3 (the Python port of R ``did``), stored below because csdid is not a
dependency. They were made on ``_staggered()`` (numpy 2.4) by::

    df = _staggered(); df["gname"] = df.first_treated.replace(np.inf, 0).astype(int)
    m = csdid.att_gt.ATTgt(yname="y", tname="period", idname="unit", gname="gname", data=df,
                           control_group=CG).fit(est_method="reg", base_period=BP, bstrap=False)
    m.aggte(typec="simple", bstrap=False); m.aggte(typec="dynamic", bstrap=False)  # m.atte
    m.aggte(typec="calendar", bstrap=False)  # CG="notyettreated", BP="varying"

csdid's analytic SE has no ``G/(G-1)`` factor; ours has (as every clustered SE of the library).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import EffectEstimate
from assimilate.estimators.did import difference_in_differences, event_study
from assimilate.estimators.did_diagnostics import PreTrendVerdict, pre_trend_test
from assimilate.estimators.did_results import EventStudy
from assimilate.estimators.did_staggered import group_time_att
from assimilate.estimators.variance import t_conf_int

POINT = 1e-8
COLUMNS = {"unit": "unit", "period": "period", "outcome": "y"}
CSDID = {  # (control group, base period) -> simple (ATT, SE), event times, estimates, SEs
    ("not_yet_treated", "varying"): (
        (2.530708039223773, 0.24347967873243848),
        [-3, -2, -1, 0, 1, 2, 3],
        [
            0.0721434195469901,
            0.13693637115333285,
            -0.3581221219645161,
            1.9411856381268242,
            2.1436208166626223,
            3.2369989248599005,
            3.9820430663206547,
        ],
        [
            0.3067848518381634,
            0.333539658020558,
            0.2344066274795459,
            0.2345506737864594,
            0.23909710781688429,
            0.43767779625555747,
            0.45447492057770067,
        ],
    ),
    ("never_treated", "universal"): (
        (2.5260914155593746, 0.24866406323508852),
        [-4, -3, -2, 0, 1, 2, 3],  # csdid also lists the reference -1 (0, SE NaN)
        [
            0.3216350399784049,
            0.19791049014125772,
            0.3853378714417284,
            1.9713075983726536,
            2.1000863497707525,
            3.2369989248599005,
            3.9820430663206547,
        ],
        [
            0.2765610829171771,
            0.3160369688339052,
            0.24467854307660125,
            0.24324112487405314,
            0.2335120634312502,
            0.43767779625555747,
            0.45447492057770067,
        ],
    ),
}


def _close(ours: Any, reference: Any, tolerance: float = POINT) -> None:
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.maximum(1.0, np.abs(reference))
    assert np.all(np.abs(ours - reference) <= tolerance * scale), (ours, reference)


def _staggered(
    seed: int = 0, n_units: int = 150, n_periods: int = 6, cohorts: tuple[float, ...] = (3.0, 5.0, np.inf)
) -> pd.DataFrame:
    """Periods 1..T; first treated periods (inf: never); ``tau(g, t) = 1 + 0.5 (t - g) + 0.5 [g = 3]``."""
    rng = np.random.default_rng(seed)
    first = rng.choice(np.array(cohorts), n_units)
    unit = np.repeat(np.arange(1, n_units + 1), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    g = first[unit - 1]
    level = rng.standard_normal(n_units)[unit - 1] + 0.5 * np.isfinite(g)
    x = rng.standard_normal(unit.size) + 0.1 * period
    after = np.isfinite(g) & (period >= g)
    tau = np.where(after, 1.0 + 0.5 * (period - np.where(after, g, 0.0)) + 0.5 * (g == 3.0), 0.0)
    scale = 1.0 + 0.5 * (g == 3.0)
    y = level + 0.3 * period + 0.5 * x + tau + scale * rng.standard_normal(unit.size)
    return pd.DataFrame({"unit": unit, "period": period, "first_treated": g, "x": x, "y": y})


def _two_by_two(seed: int = 1, n_units: int = 80) -> pd.DataFrame:
    """Two periods, half the units treated in the second; a covariate and a categorical one."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), 2)
    period = np.tile([2020, 2021], n_units)
    treated = (unit < n_units // 2).astype(int)
    x = rng.standard_normal(2 * n_units)
    region = rng.choice(["a", "b", "c"], 2 * n_units)
    y = (
        rng.standard_normal(n_units)[unit]
        + 0.4 * period
        + 0.5 * x
        + (region == "c")
        + rng.standard_normal(2 * n_units)
    )
    y += 1.5 * treated * (period == 2021) + 0.3 * treated
    frame = pd.DataFrame(
        {"unit": unit, "period": period, "treated": treated, "x": x, "region": region, "y": y}
    )
    return frame.assign(post=(period == 2021).astype(int))


def _clustered(formula: str, frame: pd.DataFrame, *, use_t: bool = False) -> Any:
    return smf.ols(formula, frame).fit(cov_type="cluster", cov_kwds={"groups": frame["unit"]}, use_t=use_t)


# --- 2x2 and multi-period DiD against statsmodels ----------------------------------------------------


@pytest.mark.parametrize("covariates", [(), ("x", "region")])
def test_two_by_two_point_and_cr1_se_equal_statsmodels_clustered_ols(covariates: tuple[str, ...]) -> None:
    frame = _two_by_two()
    extra = "".join(f" + {c}" for c in covariates)
    reference = _clustered("y ~ treated + post + treated:post" + extra, frame, use_t=True)
    fit = difference_in_differences(
        frame, **COLUMNS, first_treated=2021, group="treated", covariates=covariates, fixed_effects="cohort"
    )
    _close(fit.estimate, reference.params["treated:post"])
    _close(fit.std_error, reference.bse["treated:post"])
    _close(t_conf_int(fit), reference.conf_int().loc["treated:post"].to_numpy())  # t with G - 1 df
    assert (fit.estimand, fit.method, fit.se_method) == ("ATT", "difference_in_differences", "cr1")
    assert (fit.n_treated, fit.n_control, fit.diagnostics["standard_error"]["df"]) == (40, 40, 79)


def test_two_by_two_on_a_repeated_cross_section_equals_statsmodels() -> None:
    frame = _two_by_two().assign(unit=np.arange(160))  # every row its own unit: clusters of one
    reference = _clustered("y ~ treated + post + treated:post", frame)
    fit = difference_in_differences(
        frame, **COLUMNS, first_treated=2021, group="treated", sampling="repeated_cross_section"
    )
    _close(fit.estimate, reference.params["treated:post"])
    _close(fit.std_error, reference.bse["treated:post"])
    assert fit.diagnostics["fixed_effects"] == "cohort"


def test_multi_period_twfe_equals_statsmodels_with_unit_and_period_dummies() -> None:
    frame = _staggered(n_units=60).sample(frac=0.9, random_state=3)  # an unbalanced panel
    frame["D"] = (frame["period"] >= frame["first_treated"]).astype(float)
    reference = _clustered("y ~ D + x + C(unit) + C(period)", frame)
    fit = difference_in_differences(
        frame, **COLUMNS, first_treated="first_treated", covariates=["x"], small_sample="dummies"
    )
    _close(fit.estimate, reference.params["D"])
    _close(fit.std_error, reference.bse["D"])
    nested = difference_in_differences(frame, **COLUMNS, first_treated="first_treated", covariates=["x"])
    n, k_dummies, k_nested = len(frame), int(reference.df_model) + 1, 5 + 1 + 1  # period dummies, x, D
    assert nested.estimate == fit.estimate
    _close(nested.std_error**2 / fit.std_error**2, (n - k_dummies) / (n - k_nested))


def test_unit_and_cohort_effects_agree_on_a_balanced_panel_but_for_k() -> None:
    frame = _staggered()
    unit = difference_in_differences(frame, **COLUMNS, first_treated="first_treated")
    cohort = difference_in_differences(
        frame, **COLUMNS, first_treated="first_treated", fixed_effects="cohort"
    )
    _close(unit.estimate, cohort.estimate)
    n, k_unit, k_cohort = len(frame), 5 + 1, 1 + 2 + 5 + 1
    _close(unit.std_error**2 / cohort.std_error**2, (n - k_cohort) / (n - k_unit))


# --- the event study against statsmodels -------------------------------------------------------------


def _event_dummies(frame: pd.DataFrame, reference: int = -1) -> tuple[pd.DataFrame, list[str], list[int]]:
    g = frame["first_treated"]
    relative = (frame["period"] - g.where(np.isfinite(g), 0)).where(np.isfinite(g))
    times = sorted(int(k) for k in relative.dropna().unique() if k != reference)
    names = [f"e_{'m' if k < 0 else 'p'}{abs(k)}" for k in times]
    frame = frame.assign(
        **{name: (relative == k).astype(float) for name, k in zip(names, times, strict=True)}
    )
    return frame, names, times


def test_event_study_equals_statsmodels_with_unit_and_period_dummies() -> None:
    frame, names, times = _event_dummies(_staggered(n_units=60))
    reference = _clustered("y ~ " + " + ".join(names) + " + C(unit) + C(period)", frame)
    study = event_study(frame, **COLUMNS, first_treated="first_treated", small_sample="dummies")
    assert study.event_times == tuple(times) == (-4, -3, -2, 0, 1, 2, 3)
    assert (study.leads, study.lags, study.reference, study.df) == ((-4, -3, -2), (0, 1, 2, 3), -1, 59)
    _close(study.estimate, reference.params[names].to_numpy())
    _close(study.covariance, reference.cov_params().loc[names, names].to_numpy())
    # the joint pre-trend Wald statistic is statsmodels' chi-square Wald test of the leads
    restriction = np.zeros((3, len(reference.params)))
    for row, name in enumerate(names[:3]):
        restriction[row, list(reference.params.index).index(name)] = 1.0
    wald = reference.wald_test(restriction, use_f=False, scalar=True)
    verdict = pre_trend_test(study)
    _close(verdict.statistic, float(wald.statistic))
    _close(verdict.value, float(wald.pvalue))


def test_event_study_with_covariates_and_a_later_reference() -> None:
    frame, names, _ = _event_dummies(_staggered(n_units=60), reference=-2)
    reference = _clustered("y ~ x + " + " + ".join(names) + " + C(unit) + C(period)", frame)
    study = event_study(
        frame,
        **COLUMNS,
        first_treated="first_treated",
        covariates=["x"],
        reference=-2,
        small_sample="dummies",
    )
    _close(study.estimate, reference.params[names].to_numpy())
    _close(study.std_error, reference.bse[names].to_numpy())


def test_a_fully_dynamic_event_study_without_never_treated_units_is_refused() -> None:
    frame = _staggered(cohorts=(3.0, 5.0))
    with pytest.raises(ValueError, match=r"event_time\[.*collinear"):
        event_study(frame, **COLUMNS, first_treated="first_treated")
    with pytest.raises(ValueError, match="reference event time -9 is not observed"):
        event_study(_staggered(), **COLUMNS, first_treated="first_treated", reference=-9)


# --- Callaway & Sant'Anna -----------------------------------------------------------------------------


def _hand_two_by_two(
    frame: pd.DataFrame, g: float, t: int, b: int, comparison: pd.Series, *, panel: bool
) -> float:
    seen = frame.groupby("unit")["period"].transform(lambda p: {t, b} <= set(p)) if panel else True

    def mean(members: pd.Series, when: int) -> float:
        return float(frame.loc[members & (frame["period"] == when) & seen, "y"].mean())

    cohort = frame["first_treated"] == g
    return mean(cohort, t) - mean(cohort, b) - (mean(comparison, t) - mean(comparison, b))


@pytest.mark.parametrize("sampling", ["panel", "unbalanced_panel", "repeated_cross_section"])
@pytest.mark.parametrize(
    ("control_group", "base_period"), [("not_yet_treated", "varying"), ("never_treated", "universal")]
)
def test_every_group_time_att_is_the_hand_difference_of_four_means(
    sampling: str, control_group: str, base_period: str
) -> None:
    frame = _staggered()
    if sampling != "panel":  # an unbalanced panel: a cell uses the units seen in both its periods
        frame = frame.sample(frac=0.5 if sampling == "repeated_cross_section" else 0.85, random_state=2)
    if sampling == "repeated_cross_section":
        frame = frame.assign(unit=np.arange(len(frame)))
    att = group_time_att(
        frame,
        **COLUMNS,
        first_treated="first_treated",
        control_group=control_group,  # type: ignore[arg-type]
        base_period=base_period,  # type: ignore[arg-type]
        sampling="repeated_cross_section" if sampling == "repeated_cross_section" else "panel",
    )
    cells = att.to_frame()
    assert len(cells) == 2 * 5 and not att.skipped  # two cohorts, five periods besides each base
    g_all = frame["first_treated"]
    for cell in cells.itertuples():
        g, t, b = float(cell.cohort), int(cell.period), int(cell.base_period)
        assert b == (g - 1 if (t >= g or base_period == "universal") else t - 1)
        never = ~np.isfinite(g_all)
        comparison = (
            never if control_group == "never_treated" else never | ((g_all > max(t, b)) & (g_all != g))
        )
        hand = _hand_two_by_two(frame, g, t, b, comparison, panel=sampling != "repeated_cross_section")
        _close(cell.estimate, hand)


def test_a_panel_cell_se_is_the_hc0_se_of_its_two_by_two_regression_times_the_cluster_factor() -> None:
    frame = _staggered()
    att = group_time_att(frame, **COLUMNS, first_treated="first_treated")
    wide = frame.pivot(index="unit", columns="period", values="y")
    cohort = frame.groupby("unit")["first_treated"].first()
    for cell in att.to_frame().itertuples():
        g, t, b = float(cell.cohort), int(cell.period), int(cell.base_period)
        keep = (cohort == g) | ~np.isfinite(cohort) | ((cohort > max(t, b)) & (cohort != g))
        cell_frame = pd.DataFrame({"dy": (wide[t] - wide[b])[keep], "d": (cohort[keep] == g).astype(float)})
        reference = smf.ols("dy ~ d", cell_frame).fit(cov_type="HC0")
        _close(cell.estimate, reference.params["d"])
        _close(cell.std_error, reference.bse["d"] * np.sqrt(150 / 149))


@pytest.mark.parametrize(("control_group", "base_period"), list(CSDID))
def test_aggregations_equal_csdid(control_group: str, base_period: str) -> None:
    (simple, simple_se), times, estimates, errors = CSDID[(control_group, base_period)]
    att = group_time_att(
        _staggered(),
        **COLUMNS,
        first_treated="first_treated",
        control_group=control_group,  # type: ignore[arg-type]
        base_period=base_period,  # type: ignore[arg-type]
    )
    no_factor = np.sqrt(149 / 150)  # csdid: sum psi^2 / N^2 without G / (G - 1)
    overall = att.simple()
    _close([overall.estimate, overall.std_error * no_factor], [simple, simple_se])
    dynamic = att.event_time()
    assert list(dynamic.event_times) == times
    _close(dynamic.estimate, estimates)
    _close(dynamic.std_error * no_factor, errors)
    assert dynamic.reference == (-1 if base_period == "universal" else None)


def test_calendar_effects_equal_csdid() -> None:
    att = group_time_att(_staggered(), **COLUMNS, first_treated="first_treated")
    estimates = [2.390461331274981, 2.57116767158003, 2.3243552857494723, 2.782227574282063]
    errors = [0.3521252400356297, 0.39991757330750677, 0.28868635846083757, 0.2969783144623686]
    for period, estimate, error in zip((3, 4, 5, 6), estimates, errors, strict=True):
        effect = att.calendar_effect(period)
        _close([effect.estimate, effect.std_error * np.sqrt(149 / 150)], [estimate, error])
        assert effect.diagnostics["aggregation"] == "calendar" and effect.diagnostics["period"] == period
    _close(
        att.calendar_effect(3).estimate,
        att.to_frame().query("cohort == 3 and period == 3")["estimate"].iloc[0],
    )
    with pytest.raises(ValueError, match="no cohort is treated by period 2"):
        att.calendar_effect(2)


def _dynamic_rollout(seed: int, n_units: int = 1000, n_periods: int = 8) -> tuple[pd.DataFrame, float]:
    """Cohorts at 3, 5, 7 (30% each) and 10% never treated; the effect grows with exposure, ``e + 1``."""
    rng = np.random.default_rng(seed)
    first = rng.choice(np.array([3.0, 5.0, 7.0, np.inf]), n_units, p=[0.3, 0.3, 0.3, 0.1])
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    g = first[unit]
    after = np.isfinite(g) & (period >= g)
    tau = np.where(after, period - np.where(after, g, 0.0) + 1.0, 0.0)
    y = rng.standard_normal(n_units)[unit] + 0.2 * period + tau + rng.standard_normal(unit.size)
    shares = {c: float(np.mean(first == c)) for c in (3.0, 5.0, 7.0)}
    cells = [(shares[c], t - c + 1.0) for c in shares for t in range(int(c), n_periods + 1)]
    truth = sum(w * v for w, v in cells) / sum(w for w, _ in cells)
    return pd.DataFrame({"unit": unit, "period": period, "first_treated": g, "y": y}), truth


def test_callaway_santanna_recovers_a_dynamic_effect_that_twfe_gets_badly_wrong() -> None:
    frame, truth = _dynamic_rollout(seed=5)
    twfe = difference_in_differences(frame, **COLUMNS, first_treated="first_treated")
    att = group_time_att(frame, **COLUMNS, first_treated="first_treated")
    simple = att.simple()
    assert abs(simple.estimate - truth) < 3 * simple.std_error, (simple.estimate, truth)
    assert truth - twfe.estimate > 20 * twfe.std_error, (twfe.estimate, truth)  # TWFE: about 1.0 vs 2.8
    dynamic = att.event_time()
    lower, upper = dynamic.conf_int(alpha=0.001)
    expected = np.where(np.array(dynamic.event_times) >= 0, np.array(dynamic.event_times) + 1.0, 0.0)
    assert np.all((lower <= expected) & (expected <= upper)), dynamic.to_frame()


def test_cells_without_comparison_units_are_skipped_and_named() -> None:
    frame = _staggered(
        cohorts=(3.0, 5.0)
    )  # no never-treated: nothing untreated from period 5, cohort 3 treated from 3
    att = group_time_att(frame, **COLUMNS, first_treated="first_treated")
    assert {(int(g), int(t)) for g, t, _ in att.skipped} == {(3, 5), (3, 6), (5, 3), (5, 4), (5, 5), (5, 6)}
    assert all("empty comparison group" in reason for _, _, reason in att.skipped)
    assert att.simple().diagnostics["cells_skipped"]
    with pytest.raises(ValueError, match="no unit is never treated"):
        group_time_att(frame, **COLUMNS, first_treated="first_treated", control_group="never_treated")


# --- the pre-trend test -----------------------------------------------------------------------------


def _pre_trend_panel(
    rng: np.random.Generator, slope: float, n_units: int = 100, n_periods: int = 6
) -> pd.DataFrame:
    """Half the units treated from period 5 (effect 1); before it their trend differs by ``slope`` a period."""
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    treated = unit < n_units // 2
    y = rng.standard_normal(n_units)[unit] + 0.2 * period + rng.standard_normal(unit.size)
    y += treated * (slope * np.minimum(period, 5) + 1.0 * (period >= 5))
    return pd.DataFrame(
        {"unit": unit, "period": period, "first_treated": np.where(treated, 5.0, np.inf), "y": y}
    )


@pytest.mark.parametrize("estimator", ["twfe", "callaway_santanna"])
def test_pre_trend_test_holds_its_level_and_detects_a_linear_pre_trend(estimator: str) -> None:
    rng = np.random.default_rng(11)

    def fails(slope: float) -> bool:
        frame = _pre_trend_panel(rng, slope)
        if estimator == "twfe":
            study = event_study(frame, **COLUMNS, first_treated="first_treated")
        else:
            study = group_time_att(frame, **COLUMNS, first_treated="first_treated").event_time()
        return pre_trend_test(study).failed

    reps = 200
    level = np.mean([fails(0.0) for _ in range(reps)])
    power = np.mean([fails(0.4) for _ in range(reps)])
    assert level <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / reps), level  # 5% test, Monte Carlo slack
    assert power >= 0.8, power


def test_pre_trend_verdict_is_a_verdict_with_its_numbers() -> None:
    study = EventStudy(
        event_times=(-3, -2, 0),
        estimate=np.array([0.5, 0.4, 1.0]),
        covariance=np.array([[0.04, 0.01, 0.0], [0.01, 0.04, 0.0], [0.0, 0.0, 0.02]]),
        df=30,
        method="example",
        reference=-1,
    )
    verdict = pre_trend_test(study)
    expected = float(np.array([0.5, 0.4]) @ np.linalg.solve([[0.04, 0.01], [0.01, 0.04]], [0.5, 0.4]))
    assert isinstance(verdict, Verdict) and isinstance(verdict, PreTrendVerdict)
    _close(verdict.statistic, expected)
    assert verdict.failed and verdict.df == 2 and verdict.leads == (-3, -2) and verdict.threshold == 0.05
    f_test = pre_trend_test(study, distribution="f")
    assert f_test.value > verdict.value and f_test.denominator_df == 30  # F(2, 30) is more conservative
    only = pre_trend_test(study, leads=[-2], alpha=0.01)
    assert only.leads == (-2,) and only.df == 1 and only.passed
    data = verdict.to_dict()
    assert data["status"] == "fail" and data["leads"] == [-3, -2] and data["lead_estimates"] == [0.5, 0.4]
    with pytest.raises(ValueError, match="before adoption"):
        pre_trend_test(study, leads=[0])
    with pytest.raises(ValueError, match="distribution must be one of"):
        pre_trend_test(study, distribution="normal")  # type: ignore[arg-type]


def test_pre_trend_verdict_is_undefined_without_leads_or_with_a_singular_covariance() -> None:
    no_leads = EventStudy(event_times=(0, 1), estimate=np.ones(2), covariance=np.eye(2), df=9, method="m")
    verdict = pre_trend_test(no_leads)
    assert verdict.status == "undefined" and "no lead" in verdict.reason and verdict.value is None
    singular = EventStudy(
        event_times=(-3, -2), estimate=np.ones(2), covariance=np.ones((2, 2)), df=9, method="m"
    )
    assert pre_trend_test(singular).status == "undefined"


# --- results ------------------------------------------------------------------------------------------


def test_event_study_results_are_frozen_and_round_trip() -> None:
    study = event_study(_staggered(), **COLUMNS, first_treated="first_treated")
    with pytest.raises(ValueError, match="read-only"):
        study.estimate[0] = 1.0
    assert EventStudy.from_dict(study.to_dict()).to_frame().equals(study.to_frame())
    frame = study.to_frame(alpha=0.1)
    assert list(frame["kind"]) == ["lead"] * 3 + ["lag"] * 4
    effect = study.effect(2)
    assert isinstance(effect, EffectEstimate) and effect.estimand == "ATT"
    _close(
        t_conf_int(effect, alpha=0.1),
        frame.loc[frame["event_time"] == 2, ["ci_lower", "ci_upper"]].to_numpy()[0],
    )
    with pytest.raises(ValueError, match="not estimated"):
        study.effect(-1)


def test_simple_att_is_an_effect_estimate_with_a_t_interval() -> None:
    simple = group_time_att(_staggered(), **COLUMNS, first_treated="first_treated").simple()
    assert EffectEstimate.from_dict(simple.to_dict()) == simple
    lower, upper = t_conf_int(simple)
    assert (lower, upper) == simple.conf_int()  # the estimate's own interval reads its df
    z = stats.norm.ppf(0.975)
    assert upper - lower > 2 * z * simple.std_error  # t(149) is wider than normal


def test_a_first_treated_period_between_periods_or_after_the_last_one() -> None:
    frame = _staggered()
    shifted = frame.assign(first_treated=frame["first_treated"].replace({3.0: 2.5, np.inf: 99.0}))
    reference = group_time_att(frame, **COLUMNS, first_treated="first_treated").simple()
    moved = group_time_att(shifted, **COLUMNS, first_treated="first_treated").simple()
    assert moved.estimate == reference.estimate and moved.n_control == reference.n_control


def test_an_event_study_needs_matching_shapes_and_increasing_event_times() -> None:
    with pytest.raises(ValueError, match="need estimate"):
        EventStudy(event_times=(0, 1), estimate=np.ones(3), covariance=np.eye(2), df=9, method="m")
    with pytest.raises(ValueError, match="must increase and leave out the reference"):
        EventStudy(event_times=(1, 0), estimate=np.ones(2), covariance=np.eye(2), df=9, method="m")


def test_dates_as_periods_and_a_common_adoption_date() -> None:
    frame = _two_by_two()
    dated = frame.assign(period=pd.to_datetime(frame["period"].astype(str) + "-01-01"))
    fit = difference_in_differences(dated, **COLUMNS, first_treated="2021-01-01", group="treated")
    plain = difference_in_differences(frame, **COLUMNS, first_treated=2021, group="treated")
    _close([fit.estimate, fit.std_error], [plain.estimate, plain.std_error])


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        (lambda f: f.drop(columns="y"), {}, r"column\(s\) \['y'\] not in the data"),
        (lambda f: pd.concat([f, f.head(1)]), {}, "appear more than once in one period"),
        (lambda f: f.assign(y=f["y"].where(f.index != 3)), {}, "outcome column 'y': 1 missing"),
        (
            lambda f: f.assign(first_treated=np.where(f["unit"] == 1, f["period"] + 2.0, f["first_treated"])),
            {},
            "different first treated periods",
        ),
        (
            lambda f: f.assign(first_treated=f["first_treated"].replace(np.inf, 0.0)),
            {},
            "before the first period",
        ),
        (lambda f: f, {"first_treated": "g"}, "needs group="),
        (lambda f: f, {"group": "unit"}, "group= is for a common adoption period"),
        (lambda f: f, {"sampling": "repeated_cross_section", "fixed_effects": "unit"}, "needs a panel"),
        (lambda f: f[f["period"] == f["unit"] % 6 + 1], {}, "not a panel"),
        (lambda f: f, {"fixed_effects": "region"}, "fixed_effects must be one of"),
    ],
)
def test_bad_input_is_refused_with_the_column_and_the_rule(
    change: Any, options: dict[str, Any], message: str
) -> None:
    frame = change(_staggered())
    arguments: dict[str, Any] = {"first_treated": "first_treated"} | options
    with pytest.raises(ValueError, match=message):
        difference_in_differences(frame, **COLUMNS, **arguments)


def test_a_group_column_must_be_zero_or_one() -> None:
    frame = _two_by_two().assign(treated=lambda f: f["treated"] * 2)
    with pytest.raises(ValueError, match="group column 'treated' must be 0/1"):
        group_time_att(frame, **COLUMNS, first_treated=2021, group="treated")
