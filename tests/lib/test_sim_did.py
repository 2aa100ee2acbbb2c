"""The difference-in-differences study, fast version: every promise holds, and TWFE is biased where CS is not."""

from __future__ import annotations

import pytest

from simulations.did import run


@pytest.mark.slow
def test_did_intervals_and_the_pre_trend_gate_keep_their_promises() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    # CS simple ATT and event time 0 coverage (2); 2x2 and multi-period TWFE coverage (2);
    # the pre-trend gate's false-alarm and detection rates (2)
    assert len(targeted) == 2 + 2 + 2
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    values = table.set_index("quantity")["value"]
    cs_bias = values["Callaway-Sant'Anna mean estimate - simple ATT"]
    twfe_bias = values["TWFE mean estimate - simple ATT"]
    assert abs(twfe_bias) > 0.5 and abs(twfe_bias) > 10 * abs(cs_bias), table.to_string()
    twfe_coverage = table[table["quantity"].str.startswith("TWFE CR1 interval coverage of the simple ATT")]
    assert twfe_coverage["value"].iloc[0] < 0.5, twfe_coverage.to_string()
