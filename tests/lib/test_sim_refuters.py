"""The refuter study, fast version: every row with a target passes, and the targets can fail."""

from __future__ import annotations

import pytest

from simulations import refuters
from simulations.table import COLUMNS


@pytest.mark.slow
def test_fast_refuter_study_keeps_every_stated_rate_and_power() -> None:
    table = refuters.run(fast=True)
    assert list(table.columns) == COLUMNS
    judged = table[table["target"] != ""]
    failed = judged[~judged["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    rates = judged[judged["quantity"] == "false-alarm rate"]
    for name in refuters.REFUTERS:  # every refuter's rate is measured on a correct design
        assert rates["scenario"].str.startswith(name).sum() >= 2, name
    assert (judged["quantity"] == "power").sum() == 2

    def value(prefix: str) -> float:
        rows = table[table["scenario"].str.startswith(prefix) & (table["quantity"] == "power")]
        return float(rows["value"].iloc[0])

    # The promises can fail: the flaws are seen, and the placebo's blind spot is real.
    assert value("negative_control_outcome, flaw: unmeasured") > 0.8
    assert value("placebo_treatment, flaw: confounder x3 left out") > 0.8
    assert value("placebo_treatment, flaw: unmeasured") < 0.2
    assert value("data_subsets, flaw: 3% segment") > 0.5
