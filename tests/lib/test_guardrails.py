"""Guardrails in the library: the Bonferroni rule, the verdict on harm, and the memo's section.

Known answers: the per-guardrail level and its normal quantile in closed form; the verdict at
every side of the margin for both directions; and, by simulation with a known truth, that the k
intervals fail together no more often than alpha (independent guardrails: exactly
1 - (1 - alpha/k)^k) and that "harm excluded" is declared on a guardrail at the harm boundary
at rate alpha / (2k).
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from assimilate import causal_kalman
from assimilate.report import decision_memo_html, decision_memo_markdown
from assimilate.report.guardrails import (
    GuardrailPosterior,
    bonferroni_level,
    harm_verdict,
    multiplicity_rule,
    read_guardrails,
)
from assimilate.report.memo_inputs import DesignSummary, MemoInputs


def guardrail(mean: float | None, sd: float | None, **changes: object) -> GuardrailPosterior:
    values: dict[str, object] = {
        "study": "ab__refunded",
        "outcome": "refunded",
        "desired_direction": "decrease",
        "margin": 0.02,
        "mean": mean,
        "sd": sd,
        "n_used": 0 if mean is None else 3,
        "n_batches": 3,
        "outcome_type": "binary",
    }
    return GuardrailPosterior(**(values | changes))  # type: ignore[arg-type]


def test_bonferroni_level_and_its_quantile_in_closed_form() -> None:
    assert bonferroni_level(0.05, 1) == pytest.approx(0.95, abs=1e-15)
    assert bonferroni_level(0.05, 3) == pytest.approx(1 - 0.05 / 3, abs=1e-15)
    assert bonferroni_level(0.10, 4) == pytest.approx(0.975, abs=1e-15)
    # Phi^-1(1 - 0.05/6) = 2.3939798 (the two-sided 98.33% interval of three guardrails), by the
    # standard library's own normal quantile (an implementation independent of scipy's).
    z3, z1 = NormalDist().inv_cdf(1 - 0.05 / 6), NormalDist().inv_cdf(0.975)
    assert z3 == pytest.approx(2.3939798, abs=1e-7)
    readings = read_guardrails([guardrail(0.0, 1.0)] * 3, alpha=0.05)
    assert (readings[0].lower, readings[0].upper) == pytest.approx((-z3, z3), abs=1e-12)
    one = read_guardrails([guardrail(0.5, 2.0)], alpha=0.05)[0]
    assert (one.lower, one.upper) == pytest.approx((0.5 - 2 * z1, 0.5 + 2 * z1), abs=1e-12)
    for alpha, k in ((0.0, 2), (1.0, 2), (0.05, 0), (0.05, 1.5)):
        with pytest.raises(ValueError):
            bonferroni_level(alpha, k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lower", "upper", "direction", "margin", "expected"),
    [
        # desired increase: harm is below -margin
        (0.1, 0.5, "increase", 0.0, "harm excluded"),
        (-0.05, 0.5, "increase", 0.1, "harm excluded"),  # a small drop within the margin
        (-0.05, 0.5, "increase", 0.0, "harm not excluded"),
        (-0.5, -0.2, "increase", 0.1, "harm detected"),
        (-0.5, -0.05, "increase", 0.1, "harm not excluded"),  # worse than 0, not surely beyond the margin
        # desired decrease: harm is above +margin (a refund rate that rises)
        (-0.01, 0.015, "decrease", 0.02, "harm excluded"),
        (-0.01, 0.03, "decrease", 0.02, "harm not excluded"),
        (0.025, 0.04, "decrease", 0.02, "harm detected"),
        (0.001, 0.01, "decrease", 0.0, "harm detected"),
    ],
)
def test_harm_verdict_at_every_side_of_the_margin(
    lower: float, upper: float, direction: str, margin: float, expected: str
) -> None:
    assert harm_verdict(lower, upper, desired_direction=direction, margin=margin) == expected


def test_harm_verdict_refuses_what_is_no_interval() -> None:
    for lower, upper, direction, margin in (
        (1.0, 0.0, "increase", 0.0),
        (float("nan"), 0.0, "increase", 0.0),
        (0.0, 1.0, "up", 0.0),
        (0.0, 1.0, "increase", -0.1),
    ):
        with pytest.raises(ValueError):
            harm_verdict(lower, upper, desired_direction=direction, margin=margin)


def test_simultaneous_coverage_and_false_no_harm_rate_by_simulation() -> None:
    """k independent guardrails, posterior ~ N(truth, 1): the family fails at 1 - (1 - alpha/k)^k <= alpha."""
    rng = np.random.default_rng(20261205)
    alpha, k, n = 0.05, 3, 20_000
    truth = np.array(
        [-0.5, 0.0, 0.8]
    )  # guardrails wanting an increase, margin 0.5: the first at the boundary
    means = truth + rng.standard_normal((n, k))
    fails = np.zeros(n, dtype=bool)
    false_no_harm = np.zeros(n, dtype=bool)
    for row in range(n):
        posteriors = [
            guardrail(float(m), 1.0, desired_direction="increase", margin=0.5, outcome_type="continuous")
            for m in means[row]
        ]
        readings = read_guardrails(posteriors, alpha=alpha)
        fails[row] = any(not (r.lower <= t <= r.upper) for r, t in zip(readings, truth, strict=True))  # type: ignore[operator]
        false_no_harm[row] = readings[0].verdict == "harm excluded"
    expected_fail = 1 - (1 - alpha / k) ** k  # 0.04917
    se = np.sqrt(expected_fail * (1 - expected_fail) / n)
    assert abs(fails.mean() - expected_fail) < 4 * se
    assert fails.mean() <= alpha + 4 * se
    rate = alpha / (2 * k)  # "harm excluded" at the boundary: the lower end above -margin
    assert abs(false_no_harm.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)


def test_a_guardrail_without_evidence_counts_in_k_and_has_no_verdict() -> None:
    readings = read_guardrails([guardrail(None, None), guardrail(0.0, 0.005)], alpha=0.05)
    assert [r.verdict for r in readings] == ["no evidence", "harm excluded"]
    assert readings[1].level == pytest.approx(0.975)
    assert readings[1].upper == pytest.approx(0.005 * stats.norm.ppf(1 - 0.0125), abs=1e-12)


def test_multiplicity_rule_states_the_levels() -> None:
    assert "97.5%" in multiplicity_rule(2, 0.05) and "at most 5%" in multiplicity_rule(2, 0.05)
    assert "Bonferroni" in multiplicity_rule(3, 0.05)
    assert "95%" in multiplicity_rule(1, 0.05)


def test_the_memo_reports_each_guardrail_with_its_interval_and_verdict() -> None:
    result = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
    guards = (
        guardrail(0.03, 0.004),  # refunds up 3 points, margin 2: harm detected
        guardrail(
            -0.2,
            0.5,
            study="ab__latency",
            outcome="latency",
            desired_direction="decrease",
            margin=0.0,
            outcome_type="continuous",
            outcome_unit="ms",
        ),
    )
    inputs = MemoInputs(
        study="ab",
        result=result,
        design=DesignSummary(kind="randomized"),
        latest_estimates=(),
        primary_estimator="difference_in_means",
        guardrails=guards,
    )
    memo = decision_memo_markdown(inputs)
    section = memo.split("## Guardrails", 1)[1].split("\n## ", 1)[0]
    assert "Bonferroni across the 2 guardrails" in section and "97.5%" in section
    assert "| refunded (ab\\_\\_refunded)" in section or "| refunded (ab__refunded)" in section
    assert "harm detected" in section and "harm not excluded" in section
    assert "+3.00 percentage points" in section and "[2.10, 3.90] percentage points (97.5%)" in section
    assert "Guardrails:" in section and "harm detected on refunded" in section
    assert "<h2>Guardrails</h2>" in decision_memo_html(inputs)
    recommendation = memo.split("## Recommendation", 1)[1].split("\n## ", 1)[0]
    assert (
        "Before acting, weigh the guardrails" in recommendation
        and "harm detected on refunded" in recommendation
    )
    clear = replace(inputs, guardrails=(guardrail(0.0, 0.004),))  # harm excluded: no caveat
    assert "weigh the guardrails" not in decision_memo_markdown(clear)
    assert "harm is excluded on every guardrail" in decision_memo_markdown(clear)
    without = decision_memo_markdown(
        MemoInputs(
            study="ab",
            result=result,
            design=DesignSummary(kind="randomized"),
            latest_estimates=(),
            primary_estimator="difference_in_means",
        )
    )
    assert "Guardrails" not in without
