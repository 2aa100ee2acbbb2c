"""The calibration audit over the pipeline's shortest history (6 batches), fast version: every row with a
target passes, and the halved standard error is caught."""

from __future__ import annotations

import pytest

from simulations import calibration_audit_short
from simulations.table import COLUMNS


@pytest.mark.slow
def test_fast_short_audit_keeps_its_rate_and_catches_a_halved_standard_error() -> None:
    table = calibration_audit_short.run(fast=True)
    assert list(table.columns) == COLUMNS
    judged = table[table["target"] != ""]
    failed = judged[~judged["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    power = table[(table["quantity"] == "power")].set_index("scenario")["value"]
    assert power["SE x 0.5"] >= 0.9 and power["SE x 0.5"] >= power["SE x 0.7"] >= power["SE x 0.85"]
    coverage = table[table["quantity"] == "mean placebo coverage"].set_index("scenario")["value"]
    assert coverage["randomized RA"] == pytest.approx(0.95, abs=0.03)
    assert coverage["SE x 0.5"] == pytest.approx(0.67, abs=0.05)  # P(|Z| < 1.96 / 2)
