"""The peeking study: the memo read after every batch keeps its error rate; the study can fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import assimilate.sequential
from simulations import peeking
from simulations.table import COLUMNS


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return peeking.run(fast=True)


def test_every_row_with_a_target_passes(table: pd.DataFrame) -> None:
    assert list(table.columns) == COLUMNS
    targeted = table[table["target"] != ""]
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    # 4 null rows and 2 x 3 power rows per horizon
    assert len(table) == len(peeking.HORIZONS) * (4 + 3 * len(peeking.EFFECT_SIZES))


def test_the_null_rows_cover_every_horizon_and_show_what_peeking_costs(table: pd.DataFrame) -> None:
    for n_looks in peeking.HORIZONS:
        rows = table[table["scenario"].str.startswith(f"null effect, {n_looks} looks")].set_index("quantity")
        always_valid = rows.at["always-valid interval ever excludes 0", "value"]
        fixed = rows.at["fixed-horizon 95% interval ever excludes 0", "value"]
        assert always_valid <= 0.05 < fixed
        assert rows.at["memo says act (desired increase) at some look", "value"] <= always_valid


def test_the_study_fails_when_the_interval_is_not_always_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    # Swap the mixture boundary for the fixed-horizon one, 1.96 sqrt(V): library and memo both peek.
    def fixed_boundary(information: object, *, rho: float, alpha: float = 0.05) -> np.ndarray:
        return 1.959964 * np.sqrt(np.asarray(information, dtype=np.float64))

    monkeypatch.setattr(assimilate.sequential, "normal_mixture_boundary", fixed_boundary)
    rows = pd.DataFrame(peeking._null(np.random.default_rng(1), 12, 300)).set_index("quantity")
    assert not rows.at["always-valid interval ever excludes 0", "passed"]
    assert not rows.at["memo says act (desired increase) at some look", "passed"]


def test_same_seed_same_numbers() -> None:
    first = pd.DataFrame(peeking._null(np.random.default_rng([5, 0, 0]), 12, 100))
    second = pd.DataFrame(peeking._null(np.random.default_rng([5, 0, 0]), 12, 100))
    pd.testing.assert_frame_equal(first, second)
