"""The first-stage sign check's simulation: quiet on a stable first stage, warns when it flips."""

from __future__ import annotations

import numpy as np
import pytest

from resources.study import load_study
from simulations.first_stage_sign import FLIP_AT, STUDY_FILE, run, study_year


def test_a_strong_first_stage_never_warns_and_its_flip_warns_at_the_first_flipped_batch() -> None:
    study = load_study(STUDY_FILE)
    rng = np.random.default_rng(7)
    for _ in range(3):
        assert not any(study_year(rng, study, 30.0, flip_at=None))
        warned = study_year(rng, study, 30.0, flip_at=FLIP_AT)
        assert len(warned) == 11  # batches 2 to 12
        assert not any(warned[: FLIP_AT - 2]) and warned[FLIP_AT - 2]


@pytest.mark.slow
def test_every_promise_of_the_fast_first_stage_sign_study_holds() -> None:
    table = run(fast=True)
    promised = table[table["passed"].notna()]
    # a warning in at most 1% of stable study-years at F = 10 and 30; power >= 0.95 at F = 30
    assert len(promised) == 3
    assert promised["passed"].astype(bool).all(), promised.to_string()
    first = table[table["quantity"].str.startswith("warned at the first flipped batch")]["value"].to_numpy()
    assert (np.diff(first) >= 0).all(), first  # power grows with the first stage's strength
