"""The fused posterior's robustness value and E-value against their closed forms (Cinelli & Hazlett
2020; VanderWeele & Ding 2017), and the memo's sensitivity section reusing the library's bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assimilate import causal_kalman
from assimilate.diagnostics.sensitivity import SensitivityReport, bias_bound
from assimilate.report.confounding import confounder_sensitivity, sensitivity_section
from assimilate.report.fused_sensitivity import fused_sensitivity, fused_sensitivity_of
from assimilate.report.memo_inputs import DesignSummary, MemoInputs


def report(se: float = 0.1, dof: int = 400) -> SensitivityReport:
    return SensitivityReport(
        estimate=0.3, standard_error=se, dof=dof, partial_r2=0.0, robustness_value=0.0,
        robustness_value_alpha=0.0, q=1.0, alpha=0.05, benchmarks=(),
    )  # fmt: skip


def rv_closed_form(t: float, dof: float, alpha: float | None = None) -> float:
    """C&H (2020) eq. 18 and 19 written out: f = |t|/sqrt(dof), RV = (sqrt(f^4 + 4 f^2) - f^2) / 2."""
    f = abs(t) / math.sqrt(dof)
    if alpha is not None:
        f_crit = abs(stats.t.ppf(alpha / 2, dof - 1)) / math.sqrt(dof - 1)
        f = f - f_crit
        if f <= 0:
            return 0.0
    return (math.sqrt(f**4 + 4 * f**2) - f**2) / 2


@pytest.mark.parametrize(("mean", "sd"), [(0.5, 0.05), (-0.12, 0.04), (0.05, 0.04)])
def test_the_fused_robustness_value_is_the_closed_form_at_the_pooled_dof(mean: float, sd: float) -> None:
    batch = report(se=0.1, dof=400)
    fused = fused_sensitivity(mean, sd, (mean - 1.96 * sd, mean + 1.96 * sd), batch=batch)
    dof = 400 * (0.1 / sd) ** 2
    assert fused.dof == pytest.approx(dof, rel=1e-12)
    assert fused.robustness_value == pytest.approx(rv_closed_form(mean / sd, dof), rel=1e-12)
    assert fused.robustness_value_alpha == pytest.approx(rv_closed_form(mean / sd, dof, 0.05), abs=1e-12)
    # What it means: a confounder of that strength (both partial R2s) moves the fused mean exactly to zero.
    rv = fused.robustness_value
    assert bias_bound(sd, dof, rv, rv) == pytest.approx(abs(mean), rel=1e-10)  # type: ignore[arg-type]
    # ... which is the same bias the latest batch's regression suffers from it (se sqrt(dof) is shared).
    assert bias_bound(0.1, 400, rv, rv) == pytest.approx(abs(mean), rel=1e-10)


def test_alike_batches_pool_their_degrees_of_freedom() -> None:
    """Four alike batches at zero process variance: s = se / 2, so dof = 4 dof_b."""
    estimates, se = [0.30, 0.28, 0.33, 0.29], 0.1
    result = causal_kalman(estimates, [se] * 4, labels=list("abcd"), diffuse=True, process_var=0.0)
    assert result.final_sd == pytest.approx(se / 2, rel=1e-9)
    fused = fused_sensitivity(result.final_mean, result.final_sd, result.final_ci, batch=report(se, 400))
    assert fused.dof == pytest.approx(1600, rel=1e-9)
    # The point: the bias is in outcome units, the same in every batch, so RV_1 is one batch's at the fused mean.
    assert fused.robustness_value == pytest.approx(rv_closed_form(np.mean(estimates) / se, 400), rel=1e-9)
    # The interval: four batches' evidence is narrower, so moving it to zero takes a stronger confounder.
    assert fused.robustness_value_alpha > rv_closed_form(np.mean(estimates) / se, 400, 0.05) + 0.03


def test_the_fused_e_values_are_the_closed_form_on_the_risk_ratio_scale() -> None:
    p0, mean, lower, upper = 0.20, 0.06, 0.02, 0.10
    fused = fused_sensitivity(mean, 0.02, (lower, upper), batch=report(0.03, 800), control_risk=p0)
    rr, rr_lower = (p0 + mean) / p0, (p0 + lower) / p0
    assert fused.e_value == pytest.approx(rr + math.sqrt(rr * (rr - 1)), rel=1e-12)
    assert fused.e_value_interval == pytest.approx(rr_lower + math.sqrt(rr_lower * (rr_lower - 1)), rel=1e-12)
    across = fused_sensitivity(-0.01, 0.02, (-0.05, 0.03), batch=report(0.03, 800), control_risk=p0)
    rr = (p0 - 0.01) / p0  # a protective risk ratio is inverted (RR < 1 -> 1/RR)
    assert across.e_value == pytest.approx(1 / rr + math.sqrt(1 / rr * (1 / rr - 1)), rel=1e-12)
    assert across.e_value_interval == 1.0  # the interval includes no effect
    assert fused_sensitivity(mean, 0.02, (lower, upper), batch=report()).e_value is None  # continuous


def test_a_posterior_without_a_positive_sd_is_refused() -> None:
    with pytest.raises(ValueError, match="positive SD"):
        fused_sensitivity(0.1, 0.0, (0.1, 0.1), batch=report())


def observational_inputs(seed: int = 0) -> MemoInputs:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=500)
    d = (x + rng.normal(size=500) > 0).astype(float)
    rows = pd.DataFrame({"x": x, "d": d, "y": 0.5 * d + x + rng.normal(size=500)})
    found = confounder_sensitivity(rows, treatment="d", outcome="y", covariates=["x"], batch="m3")
    result = causal_kalman([0.48, 0.55, 0.50], [0.1, 0.1, 0.1], labels=["m1", "m2", "m3"], diffuse=True)
    return MemoInputs(
        study="obs", result=result, design=DesignSummary(kind="observational", adjustment_set=("x",)),
        latest_estimates=(), primary_estimator="aipw", sensitivity=found,
    )  # fmt: skip


def test_the_memo_states_the_fused_robustness_value_beside_the_batch() -> None:
    inputs = observational_inputs()
    fused = fused_sensitivity_of(inputs)
    assert fused is not None and inputs.sensitivity is not None and inputs.sensitivity.analysis is not None
    analysis = inputs.sensitivity.analysis
    assert fused.dof == pytest.approx(analysis.dof * (analysis.standard_error / inputs.result.final_sd) ** 2)
    text = " ".join(getattr(block, "text", "") for block in sensitivity_section(inputs).blocks)
    assert "Fused over the 3 admitted batches" in text
    assert f"{fused.robustness_value:.1%}" in text and "Cinelli & Hazlett 2020" in text


def test_the_benchmark_bounds_are_the_librarys() -> None:
    found = observational_inputs(1).sensitivity
    assert found is not None and found.analysis is not None and found.analysis.benchmarks
    for benchmark in found.analysis.benchmarks:
        assert found.bounds(benchmark) == (
            benchmark.adjusted_estimate,
            benchmark.adjusted_lower,
            benchmark.adjusted_upper,
        )
