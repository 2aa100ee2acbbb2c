"""Known answers for one batch of a difference-in-differences study (assimilate.estimators.did_batch).

The reference is :func:`group_time_att` on the whole panel: every period's batch estimate (the
effect after adoption, the placebo before it), standard error and per-unit influence values equal
the whole panel's calendar aggregation of the same cells to 1e-10, for both control groups; the
stored-placebo pre-trend test equals :func:`pre_trend_test` on the whole panel's covariance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assimilate.estimators.did_batch import (
    PLACEBO_METHOD,
    period_effect,
    stored_pre_trend,
    unit_cohorts,
)
from assimilate.estimators.did_diagnostics import pre_trend_test
from assimilate.estimators.did_results import EventStudy
from assimilate.estimators.did_staggered import group_time_att

EXACT = 1e-10
MONTHS = [f"2025-{m:02d}-01" for m in range(1, 11)]
COHORTS = ("2025-04-01", "2025-06-01", "2025-08-01", "")


def _panel(seed: int = 7, units: int = 240, drift: float = 0.0) -> pd.DataFrame:
    """A staggered rollout over 10 months: cohorts April, June, August and never; effect 1 + 0.3 exposure.

    ``drift``: the treated cohorts' outcome moves by ``drift`` per month before adoption (a violated
    parallel trend).
    """
    rng = np.random.default_rng(seed)
    cohort = rng.choice(np.array(COHORTS, dtype=object), units)
    level = rng.normal(0, 1, units)
    rows = []
    for u in range(units):
        g = MONTHS.index(cohort[u]) if cohort[u] else None
        for t, month in enumerate(MONTHS):
            effect = 1.0 + 0.3 * (t - g) if g is not None and t >= g else 0.0
            trend = drift * (t - g) if g is not None and t < g else 0.0
            rows.append((f"r{u}", month, cohort[u], level[u] + 0.2 * t + effect + trend + rng.normal()))
    return pd.DataFrame(rows, columns=["region", "month", "launch", "sales"])


def _full(panel: pd.DataFrame, control: str):
    numeric = panel.assign(
        g=[MONTHS.index(c) if c else np.inf for c in panel["launch"]],
        t=[MONTHS.index(m) for m in panel["month"]],
    )
    return group_time_att(
        numeric, unit="region", period="t", outcome="sales", first_treated="g", control_group=control
    )


@pytest.mark.parametrize("control", ["not_yet_treated", "never_treated"])
def test_every_period_equals_the_whole_panel(control: str) -> None:
    panel = _panel()
    full = _full(panel, control)
    units = pd.factorize(panel["region"])[1].astype(str)
    for t, month in enumerate(MONTHS):
        fit = period_effect(
            panel,
            unit="region",
            period="month",
            outcome="sales",
            batch=month,
            first_treated="launch",
            control_group=control,
        )
        if t == 0:
            assert fit.kind == "first" and fit.estimate is None
            continue
        keep = np.flatnonzero((full.period == t) & ((full.period >= full.cohort) if t >= 3 else True))
        value, psi = full._aggregate(keep)
        assert fit.kind == ("post" if t >= 3 else "pre")
        assert fit.estimate.estimate == pytest.approx(value, abs=EXACT)
        by_unit = pd.Series(fit.influence, index=fit.unit_ids.astype(str)).reindex(units)
        np.testing.assert_allclose(by_unit.to_numpy(), psi, atol=EXACT)
        if fit.kind == "post":
            reference = full.calendar_effect(t)
            assert fit.estimate.method == "callaway_santanna" and fit.estimate.estimand == "ATT"
            assert fit.estimate.std_error == pytest.approx(reference.std_error, abs=EXACT)
            assert fit.estimate.estimate == pytest.approx(reference.estimate, abs=EXACT)
        else:
            assert fit.estimate.method == PLACEBO_METHOD
            se = np.sqrt(len(psi) / (len(psi) - 1) * psi @ psi) / len(psi)
            assert fit.estimate.std_error == pytest.approx(se, abs=EXACT)


def test_rows_after_the_batch_are_ignored() -> None:
    panel = _panel()
    short = panel[panel["month"] <= MONTHS[5]]
    a = period_effect(
        panel, unit="region", period="month", outcome="sales", batch=MONTHS[5], first_treated="launch"
    )
    b = period_effect(
        short, unit="region", period="month", outcome="sales", batch=MONTHS[5], first_treated="launch"
    )
    assert a.estimate.estimate == b.estimate.estimate and a.estimate.std_error == b.estimate.std_error


def _placebos(panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    leads, influence = [], []
    for month in MONTHS[1:3]:
        fit = period_effect(
            panel, unit="region", period="month", outcome="sales", batch=month, first_treated="launch"
        )
        assert fit.kind == "pre"
        leads.append({"partition_key": month, "estimate": fit.estimate.estimate})
        influence.append(fit.influence_frame().assign(partition_key=month))
    return pd.DataFrame(leads), pd.concat(influence)


@pytest.mark.parametrize("drift", [0.0, 0.4])
def test_stored_pre_trend_equals_the_whole_panel_test(drift: float) -> None:
    panel = _panel(seed=11, drift=drift)
    leads, influence = _placebos(panel)
    verdict, study = stored_pre_trend(leads, influence, periods=MONTHS[:5], first_adoption="2025-04-01")
    full = _full(panel, "not_yet_treated")
    parts = [full._aggregate(np.flatnonzero(full.period == t)) for t in (1, 2)]
    psi = np.column_stack([p for _, p in parts])
    n = psi.shape[0]
    reference = EventStudy(
        event_times=(-2, -1),
        estimate=np.array([v for v, _ in parts]),
        covariance=n / (n - 1) / n**2 * psi.T @ psi,
        df=n - 1,
        method="reference",
    )
    expected = pre_trend_test(reference)
    assert study is not None and study.event_times == (-2, -1)
    np.testing.assert_allclose(study.covariance, reference.covariance, atol=EXACT)
    assert verdict.statistic == pytest.approx(expected.statistic, rel=EXACT)
    assert verdict.value == pytest.approx(expected.value, abs=EXACT)
    # A drift of 0.4 a month before adoption (about 0.4 error SD) is found; none is passed here.
    assert verdict.status == ("pass" if drift == 0 else "fail")


def test_no_stored_lead_is_undefined() -> None:
    empty = pd.DataFrame(columns=["partition_key", "estimate"])
    verdict, study = stored_pre_trend(
        empty,
        pd.DataFrame(columns=["partition_key", "unit_id", "influence"]),
        periods=MONTHS,
        first_adoption="2025-04-01",
    )
    assert verdict.status == "undefined" and study is None and "no pre-period placebo" in verdict.reason


def test_single_adoption_with_a_group_column() -> None:
    panel = _panel()
    group = panel.assign(launched=(panel["launch"] == "2025-04-01").astype(int))
    group = group[group["launch"].isin(["2025-04-01", ""])]
    by_column = period_effect(
        group, unit="region", period="month", outcome="sales", batch=MONTHS[6], first_treated="launch"
    )
    by_group = period_effect(
        group,
        unit="region",
        period="month",
        outcome="sales",
        batch=MONTHS[6],
        first_treated="2025-04-01",
        group="launched",
    )
    assert by_group.estimate.estimate == pytest.approx(by_column.estimate.estimate, abs=EXACT)
    assert by_group.estimate.std_error == pytest.approx(by_column.estimate.std_error, abs=EXACT)


def test_bad_panels_name_the_column() -> None:
    panel = _panel(units=20)
    twice = panel.copy()
    twice.loc[twice.index[0], "launch"] = (
        "2025-09-01" if twice.loc[twice.index[0], "launch"] != "2025-09-01" else ""
    )
    with pytest.raises(ValueError, match=r"column 'launch'.*different first treated"):
        unit_cohorts(twice, unit="region", first_treated="launch")
    with pytest.raises(ValueError, match=r"'launched' \(design.group\) must be 0 or 1"):
        unit_cohorts(panel.assign(launched=2), unit="region", first_treated="2025-04-01", group="launched")
    early = panel.assign(launch="2025-01-01")
    with pytest.raises(
        ValueError, match=r"first_treated column 'launch'.*treated at or before the first period"
    ):
        period_effect(
            early, unit="region", period="month", outcome="sales", batch=MONTHS[3], first_treated="launch"
        )
    doubled = pd.concat([panel, panel.iloc[:1]])
    with pytest.raises(ValueError, match="more than once in one period"):
        period_effect(
            doubled, unit="region", period="month", outcome="sales", batch=MONTHS[3], first_treated="launch"
        )
