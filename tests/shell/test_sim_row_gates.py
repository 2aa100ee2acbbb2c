"""The row gates never fail a clean delivery and always fail one with 10% invalid treatments."""

from __future__ import annotations

import numpy as np
import pytest

from resources.study import load_study
from simulations.row_gates import STUDY_FILE, batch_csv, judge, run


@pytest.mark.slow
def test_every_promise_of_the_fast_row_gate_study_holds() -> None:
    table = run(fast=True)
    promised = table[table["passed"].notna()]
    assert len(promised) == 16
    assert promised["passed"].all(), promised[~promised["passed"].astype(bool)].to_string()


def test_the_study_can_fail_a_gate_that_trips_on_clean_rows() -> None:
    study = load_study(STUDY_FILE).model_copy(
        update={
            "thresholds": load_study(STUDY_FILE).thresholds.model_copy(update={"max_quarantine_share": 0.0})
        }
    )
    rng = np.random.default_rng(1)
    assert judge(study, batch_csv(rng, 200, missing_x=0.05))[1], "a 0 tolerance fails on one missing value"
