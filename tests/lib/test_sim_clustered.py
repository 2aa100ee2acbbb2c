"""The clustered-data study, fast version: every row with a target passes, unit-level SEs undercover."""

from __future__ import annotations

import pytest

from simulations.clustered import run


@pytest.mark.slow
def test_cluster_robust_intervals_cover_where_unit_level_ones_do_not() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    assert (
        len(targeted) == 2 * 6 + 3 * 3
    )  # CR1/CR2 coverage at two G; ratios and coverage per duplicate estimator
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    unit_level = table[table["quantity"].str.contains("unit-level SE \\(normal\\) coverage")]
    assert len(unit_level) == 8 and (unit_level["value"] < 0.75).all(), unit_level.to_string()
    unclustered = table[table["quantity"].str.contains("unclustered coverage")]
    assert len(unclustered) == 3 and (unclustered["value"] < 0.93).all(), unclustered.to_string()
