"""The pipeline's did batches, fast version: the period intervals cover and the pre-trend gate keeps its size and power."""

from __future__ import annotations

import pytest

from simulations.did_gate import run


@pytest.mark.slow
def test_did_batch_intervals_and_the_pipeline_pre_trend_gate_keep_their_promises() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    # theta_C coverage at the first and last post period (2); the gate's false alarms and power (2)
    assert len(targeted) == 2 + 2
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
