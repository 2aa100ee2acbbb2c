"""The instrumental-variables study, fast version: every promise holds, and 2SLS fails where AR does not."""

from __future__ import annotations

import pytest

from simulations.iv import run


@pytest.mark.slow
def test_iv_intervals_and_the_weak_instrument_gate_keep_their_promises() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    # strong and clustered: 2SLS and AR coverage (4); weak: 2SLS undercoverage and AR coverage (2 x 2);
    # the gate at F = 5 and F = 30 (2); Hansen J's size (1)
    assert len(targeted) == 4 + 4 + 2 + 1
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    weak = table[table["scenario"].str.startswith("weak:")]
    two_stage = weak[weak["quantity"].str.startswith("2SLS")]["value"].to_numpy()
    anderson_rubin = weak[weak["quantity"].str.startswith("Anderson-Rubin")]["value"].to_numpy()
    assert (anderson_rubin - two_stage > 0.04).all(), weak.to_string()
    ignoring = table[table["quantity"].str.contains("ignoring clusters")]
    assert len(ignoring) == 1 and ignoring["value"].iloc[0] < 0.90, ignoring.to_string()
