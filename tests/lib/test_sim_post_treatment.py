"""The fast post-treatment screening study: every row with a target keeps its promise, and can fail."""

from __future__ import annotations

import pytest

from simulations import post_treatment
from simulations.table import COLUMNS


@pytest.mark.slow
def test_fast_post_treatment_study_keeps_every_promise() -> None:
    pytest.importorskip("statsmodels")  # the real-data rows read statsmodels' randhie
    table = post_treatment.run(fast=True)
    assert list(table.columns) == COLUMNS
    judged = table[table["target"] != ""]
    failed = judged[~judged["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    scenarios = table["scenario"]
    # False alarms measured for every design, outcome and fast size; power for every planted kind.
    for design in post_treatment.DESIGNS:
        for kind in post_treatment.OUTCOMES:
            for n in post_treatment.FAST_SIZES:
                assert (scenarios == f"genuine covariates, {design}, {kind} outcome, n={n}").any()
    for plant in post_treatment.PLANTS:
        power = judged[
            judged["scenario"].str.startswith(f"planted: {plant},") & (judged["quantity"] == "power (ERROR)")
        ]
        assert len(power) >= 6 and (power["value"] == 1.0).all()
    real = judged[judged["scenario"].str.startswith("real data")]
    assert len(real) == 7 and real["passed"].astype(bool).all()
    # The promise can fail: the screen does not see a part whose rest is not a model column in an
    # observational design, and the arm test on the clustered real
    # rows flags genuine columns (why the real data runs as an observational design).
    part = table[
        scenarios.str.startswith("planted: one part (the rest not a model column), observational")
        & (table["quantity"] == "power (WARN or ERROR)")
    ]
    assert (part["value"] < 0.5).all()
    arms = table[scenarios.str.startswith("real data (RAND HIE), run as randomized")]
    assert float(arms["value"].iloc[0]) >= 1
