"""Post-treatment screening from the data: known answers, planted leaks, real data, the pipeline's check.

The library's partial R² are checked against statsmodels OLS fits of the same models, its arm tests
against scipy's; the WARN test keeps its level at the bound (simulation with a known ``P``); the
three planted post-treatment columns fail on simulated and on real data (the RAND Health Insurance
Experiment shipped with statsmodels) while the genuine covariates pass; and a study whose covariates
hold the outcome in other units has its batch kept out by ``check_covariate_table_post_treatment_exclusion``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assimilate.diagnostics import GateVerdict, post_treatment_screen
from checks.post_treatment import post_treatment_verdict
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

TOLERANCE = 1e-8


def _batch(seed: int, n: int = 1000, *, randomized: bool = True) -> pd.DataFrame:
    """Strong genuine covariates (R² about 0.75 with the outcome), spend with 30% zeros."""
    rng = np.random.default_rng(seed)
    age, member = rng.standard_normal(n), (rng.random(n) < 0.3).astype(float)
    region = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2])
    logit = 0.0 if randomized else 1.2 * age + 0.8 * member
    d = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    lin = 1.5 * age + member + (region == "east") + 0.5 * d
    spend = np.where(rng.random(n) < 1 / (1 + np.exp(-(0.8 + lin))), np.exp(1 + 0.4 * lin), 0.0)
    return pd.DataFrame({"age": age, "member": member, "region": region, "d": d, "y": spend})


def _screen(frame: pd.DataFrame, covariates: list[str], **options: object) -> pd.DataFrame:
    screen = post_treatment_screen(
        frame, outcome="y", treatment="d", covariates=covariates, categorical=["region"], **options
    )
    return screen.to_frame().set_index("column")


def test_the_treatment_partial_r2_is_the_adjusted_one_of_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    frame = _batch(1, randomized=False)
    table = _screen(frame, ["age", "member"])
    dummies = pd.get_dummies(frame["region"], drop_first=False, dtype=float).drop(columns="north")
    for column, other in (("age", "member"), ("member", "age")):
        controls = sm.add_constant(pd.concat([frame[[other]], dummies], axis=1))
        reduced = sm.OLS(frame[column], controls).fit()
        full = sm.OLS(frame[column], pd.concat([controls, frame["d"]], axis=1)).fit()
        expected = 1 - (full.ssr / full.df_resid) / (reduced.ssr / reduced.df_resid)
        assert table.loc[column, "treatment_partial_r2"] == pytest.approx(expected, abs=TOLERANCE)


def test_for_a_binary_outcome_the_alone_r2_is_the_adjusted_r2_on_the_outcome() -> None:
    sm = pytest.importorskip("statsmodels.api")
    frame = _batch(2).assign(y=lambda f: (f["y"] > 0).astype(float))
    table = _screen(frame, ["age", "member"])
    for column in ("age", "member"):
        fit = sm.OLS(frame[column], sm.add_constant(frame[["y"]])).fit()
        assert table.loc[column, "outcome_alone_r2"] == pytest.approx(fit.rsquared_adj, abs=TOLERANCE)


def test_the_arm_tests_are_scipy_s_with_bonferroni_over_the_batch_s_tests() -> None:
    frame = _batch(3)
    screen = post_treatment_screen(
        frame, outcome="y", treatment="d", covariates=["age", "member"], randomized=True
    )
    rows = screen.to_frame().set_index("column")
    treated, control = frame[frame["d"] == 1], frame[frame["d"] == 0]
    assert screen.tests == 8  # 2 columns x (outcome given the rest, outcome alone, treatment, arms)
    ks = stats.ks_2samp(treated["age"], control["age"])
    assert rows.loc["age", "arm_statistic"] == pytest.approx(ks.statistic, abs=TOLERANCE)
    assert rows.loc["age", "arm_p_adjusted"] == pytest.approx(min(1.0, 8 * ks.pvalue), abs=TOLERANCE)
    table = [[treated["member"].sum(), len(treated) - treated["member"].sum()],
             [control["member"].sum(), len(control) - control["member"].sum()]]  # fmt: skip
    assert rows.loc["member", "arm_p_adjusted"] == pytest.approx(
        min(1.0, 8 * stats.fisher_exact(table)[1]), abs=TOLERANCE
    )


def test_the_warn_test_keeps_its_level_at_the_bound_and_has_power_above_it() -> None:
    rng = np.random.default_rng(4)
    n, reps, alpha = 2000, 200, 0.6  # 2 columns x 3 tests: raw level 0.1 per test

    def rejection_rate(partial: float) -> float:
        noise = np.sqrt((1 - partial) / partial)  # c = y + x / 2 + noise: P = partial given x exactly
        flags = []
        for _ in range(reps):
            y, x, d = rng.standard_normal(n), rng.standard_normal(n), (rng.random(n) < 0.5).astype(float)
            frame = pd.DataFrame({"y": y, "x": x, "d": d, "c": y + x / 2 + noise * rng.standard_normal(n)})
            screen = post_treatment_screen(
                frame, outcome="y", treatment="d", covariates=["c", "x"], warn_alpha=alpha
            )
            flags.append(screen.rows[0].status != "pass")
        return float(np.mean(flags))

    at_bound = rejection_rate(0.97)
    assert abs(at_bound - alpha / 6) < 3 * np.sqrt(0.1 * 0.9 / reps), at_bound
    assert rejection_rate(0.985) > 0.9


@pytest.mark.parametrize("randomized", [True, False])
def test_the_three_planted_columns_fail_naming_the_column_and_the_statistic(randomized: bool) -> None:
    frame = _batch(5, randomized=randomized)
    rng = np.random.default_rng(5)
    share = rng.uniform(0.3, 0.7, len(frame))
    planted = {
        "no_purchase": (frame["y"] == 0).astype(float),
        "spend_eur": np.round(0.92 * frame["y"], 2),
        "online_spend": share * frame["y"],
        "store_spend": (1 - share) * frame["y"],
    }
    for columns in (["no_purchase"], ["spend_eur"], ["online_spend", "store_spend"]):
        table = _screen(
            frame.assign(**{c: planted[c] for c in columns}),
            ["age", "member", *columns],
            randomized=randomized,
        )
        for column in columns:
            assert table.loc[column, "status"] == "error", table.loc[column, "reason"]
            reason = table.loc[column, "reason"]
            assert reason.startswith(f"'{column}' is determined by the outcome") and "R²" in reason
        assert set(table.drop(index=columns)["status"]) == {"pass"}, table["reason"].to_dict()
    alone = _screen(frame.assign(spend_eur=planted["spend_eur"]), ["age", "spend_eur"])
    assert "outcome alone (R² 1.0000 >= 0.99)" in alone.loc["spend_eur", "reason"]


def test_strong_genuine_predictors_pass_and_a_copy_of_the_treatment_fails() -> None:
    rng = np.random.default_rng(6)
    n = 5000
    x, b = rng.standard_normal(n), (rng.random(n) < 0.5).astype(float)
    d = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(float)
    frame = pd.DataFrame({"x": x, "b": b, "d": d, "y": 2 * x + 4 * b + 0.5 * d + rng.standard_normal(n)})
    screen = post_treatment_screen(frame, outcome="y", treatment="d", covariates=["x", "b"])
    rows = screen.to_frame().set_index("column")
    assert screen.error.passed and screen.warn.passed, rows["reason"].to_dict()
    assert 0.5 < rows.loc["x", "outcome_partial_r2"] < 0.9  # strongly associated, not determined
    treated = post_treatment_screen(
        frame.assign(offered=d), outcome="y", treatment="d", covariates=["x", "offered"]
    )
    assert "'offered' is determined by the treatment" in treated.errors()["offered"]


def test_a_treatment_that_moves_a_column_in_a_randomized_design_fails_the_arm_test() -> None:
    frame = _batch(7, n=2000)
    moved = frame.assign(visits=np.random.default_rng(7).poisson(2 + 0.6 * frame["d"]))
    screen = post_treatment_screen(
        moved, outcome="y", treatment="d", covariates=["age", "visits"], randomized=True
    )
    assert "'visits' differs between the randomized arms (Kolmogorov-Smirnov D" in screen.errors()["visits"]
    assert isinstance(screen.error, GateVerdict) and screen.error.false_alarm_rate == pytest.approx(2.75e-05)
    observational = post_treatment_screen(moved, outcome="y", treatment="d", covariates=["age", "visits"])
    assert observational.error.passed  # no arm test without randomization


def test_a_screen_that_does_not_apply_says_why() -> None:
    frame = _batch(8, n=40)
    assert (
        "40 complete rows (< 50)"
        in post_treatment_screen(frame, outcome="y", treatment="d", covariates=["age"]).error.reason
    )
    one_arm = _batch(8).assign(d=1.0)
    assert (
        post_treatment_screen(one_arm, outcome="y", treatment="d", covariates=["age"]).error.reason
        == "one arm only"
    )
    rare = _batch(8).assign(flag=0.0)
    rare.loc[:4, "flag"] = 1.0
    row = post_treatment_screen(rare, outcome="y", treatment="d", covariates=["age", "flag"]).rows[1]
    assert row.status == "undefined" and "fewer than 10 units" in row.reason
    with pytest.raises(ValueError, match="warn_bound < error_bound"):
        post_treatment_screen(frame, outcome="y", treatment="d", covariates=["age"], warn_bound=0.995)
    with pytest.raises(ValueError, match="lacks the columns"):
        post_treatment_screen(frame, outcome="y", treatment="d", covariates=["nope"])


def test_on_real_data_the_planted_columns_fail_and_the_genuine_covariates_pass() -> None:
    pytest.importorskip("statsmodels")
    from simulations.post_treatment import RANDHIE, randhie_batch

    data, genuine, categorical = randhie_batch(np.random.default_rng(0))
    assert len(data) == 20190 and (data["mdvis"] == 0).mean() == pytest.approx(0.312, abs=0.001)
    planted = ["no_visit", "visit_hours", "gp_visits", "specialist_visits"]
    for columns in (planted[:1], planted[1:2], planted[2:]):
        screen = post_treatment_screen(
            data, covariates=[*genuine, *columns], categorical=categorical, **RANDHIE
        )
        assert set(screen.errors()) == set(columns), screen.to_frame()[["column", "reason"]]
        assert not screen.warnings()


def test_the_check_fails_a_batch_whose_covariates_hold_the_outcome_in_cents() -> None:
    study = example_study("ab_checkout", covariates=("x", "outcome_cents"))
    frame = ab_batch(0).assign(outcome_cents=lambda f: (100 * f["outcome"]).round())
    verdict = post_treatment_verdict(study, frame, batch="2025-01")
    assert verdict.failed and verdict.value == 1.0
    assert verdict.reason.startswith("batch 2025-01: 'outcome_cents' is determined by the outcome alone (R²")
    assert isinstance(verdict, GateVerdict) and verdict.false_alarm_rate is not None
    clean = post_treatment_verdict(example_study("ab_checkout"), ab_batch(0), batch="2025-01")
    assert clean.passed and clean.reason == "no post-treatment column reaches a model"


def test_a_weaker_finding_is_a_warning_in_the_reason_and_a_stronger_one_fails() -> None:
    study = example_study("ab_checkout", covariates=("x", "opened_emails"))
    noise = np.random.default_rng(2).normal(0, 1, 1000)

    def verdict(shift: float) -> GateVerdict:
        frame = ab_batch(0, n=1000).assign(opened_emails=lambda f: noise + shift * f["treatment"])
        result = post_treatment_verdict(study, frame, batch="2025-01")
        assert isinstance(result, GateVerdict)
        return result

    weak, strong = verdict(0.2), verdict(0.4)
    assert (
        weak.passed
        and "warning (alone it does not fail the check): 'opened_emails' differs between" in weak.reason
    )
    assert weak.false_alarm_rate == pytest.approx(1 - 0.99 ** (1 / 12))  # monthly looks, 1% a year
    assert (
        strong.failed
        and "'opened_emails' differs between the randomized arms (Kolmogorov-Smirnov" in strong.reason
    )


def test_the_pipeline_keeps_out_the_batch_with_the_outcome_in_other_units(tmp_path: Path) -> None:
    study = example_study("ab_checkout", covariates=("x", "outcome_cents"))
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    folder = project.landing("ab_checkout")
    clean = ab_batch(0).assign(outcome_cents=np.random.default_rng(0).normal(0, 1, 300))
    write_batch(folder, "2025-01", clean)
    write_batch(folder, "2025-02", ab_batch(1).assign(outcome_cents=lambda f: (100 * f["outcome"]).round()))
    assert all(run.success for run in project.tick())
    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_covariate_table")
    check = verdicts[verdicts["check_name"] == "check_covariate_table_post_treatment_exclusion"]
    status = dict(zip(check["partition_key"], check["status"], strict=True))
    assert status == {"2025-01-01": "pass", "2025-02-01": "fail"}
    reason = check.loc[check["partition_key"] == "2025-02-01", "reason"].iloc[0]
    assert "'outcome_cents' is determined by the outcome alone (R²" in reason
    steps = project.steps("ab_checkout").set_index("batch")
    assert bool(steps.loc["2025-02-01", "excluded"]) and not bool(steps.loc["2025-01-01", "excluded"])
