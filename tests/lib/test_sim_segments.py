"""The segment study, fast version: every row with a target passes, and the targets can fail."""

from __future__ import annotations

import pytest

from simulations import segments
from simulations.table import COLUMNS


@pytest.mark.slow
def test_fast_segment_study_keeps_coverage_shrinkage_false_discovery_rate_and_power() -> None:
    table = segments.run(fast=True)
    assert list(table.columns) == COLUMNS
    judged = table[table["target"] != ""]
    failed = judged[~judged["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    quantities = set(judged["quantity"])
    assert "coverage, all segments" in quantities
    assert "share of adjacent sizes where the smaller segment borrows more" in quantities
    assert sum(q.startswith("false-discovery rate") for q in quantities) == 3
    assert "power, fused posterior (last batch), Holm" in quantities

    def value(quantity: str) -> float:
        return float(table.loc[table["quantity"] == quantity, "value"].iloc[0])

    # The promises can fail: a plug-in tau^2 under-covers, and the smallest segment borrows the most.
    assert value("coverage, tau^2 by REML plug-in (reported)") < 0.93
    assert value("borrowed share, segment e (7%)") > 2 * value("borrowed share, segment a (40%)")
    assert value("power, per batch, Holm") < value("power, fused posterior (last batch), Holm")
