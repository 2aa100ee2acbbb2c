"""The N-of-1 study, fast version: every row with a target passes."""

from __future__ import annotations

import pytest

from simulations.n_of_1 import run


@pytest.mark.slow
def test_n_of_1_intervals_cover_per_batch_and_fused_with_ar1_errors_up_to_rho_0_7() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    per_batch = set(targeted[targeted["quantity"] == "coverage_per_batch"]["scenario"])
    fused = set(targeted[targeted["quantity"] == "coverage_fused"]["scenario"])
    sixteen_weeks = {"16wk_rho_0.0", "16wk_rho_0.3", "16wk_rho_0.5", "16wk_rho_0.7", "16wk_trend_rho_0.5"}
    assert per_batch == sixteen_weeks | {"8wk_rho_0.7", "4wk_rho_0.7"}
    # The shipped example (studies/n_of_1_sleep.yaml): monthly batches, fused with the correction.
    monthly = {"monthly_rho_0.0", "monthly_rho_0.3", "monthly_rho_0.5", "monthly_rho_0.7"}
    assert fused == sixteen_weeks | monthly
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()

    def value(scenario: str, quantity: str) -> float:
        rows = table[(table["scenario"] == scenario) & (table["quantity"] == quantity)]
        return float(rows["value"].iloc[0])

    # Beside it, the ordinary OLS standard error undercovers badly once days are autocorrelated.
    assert value("16wk_rho_0.7", "iid_coverage_per_batch") < 0.8
    # Monthly batches without the fusion correction undercover; one month alone is conservative with it.
    for scenario in monthly:
        assert value(scenario, "uncorrected_coverage_fused") < 0.92
        assert value(scenario, "coverage_per_batch") > 0.96
    # Without the washout the carry-over biases the effect towards zero.
    assert value("16wk_no_washout_rho_0.5", "bias") < -0.1
