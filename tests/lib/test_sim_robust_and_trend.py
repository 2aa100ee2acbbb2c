"""The robust-MLE and trend study: every promise holds in the fast run, and the study can fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from simulations import robust_and_trend as study
from simulations.table import COLUMNS


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return study.run(fast=True)


def test_every_row_with_a_target_passes(table: pd.DataFrame) -> None:
    assert list(table.columns) == COLUMNS
    targeted = table[table["target"] != ""]
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    assert len(targeted) == 8


def test_the_table_shows_the_defects_it_guards_against(table: pd.DataFrame) -> None:
    values = table.set_index("quantity")["value"]
    assert values["median width ratio, q by Gaussian MLE (before)"] > 3.0
    assert values["rejection rate of a test that ignores the walk (q = 0)"] > 0.3


def test_the_width_row_fails_when_q_is_fitted_with_the_gaussian_likelihood(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = study._final_width

    def gaussian_mle(y: np.ndarray, q: Any, seed: int) -> tuple[float, float]:
        return original(y, study._gaussian_q(y) if q == "mle" else q, seed)

    monkeypatch.setattr(study, "_final_width", gaussian_mle)
    rows = pd.DataFrame(study._robust_mle(np.random.default_rng(1), 3)).set_index("quantity")
    assert not rows.at["median width ratio (outlier / clean), q by Student-t MLE", "passed"]


def test_the_level_row_fails_when_the_test_ignores_the_random_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    original = study.trend_test

    def blind(y: Any, se: Any, *, process_var: float) -> Any:
        return original(y, se, process_var=0.0)

    monkeypatch.setattr(study, "trend_test", blind)
    rows = pd.DataFrame(study._trend(np.random.default_rng(2), 300))
    level = rows[rows["quantity"] == "rejection rate (test told q)"].iloc[0]
    assert not level["passed"]


def test_same_seed_same_numbers() -> None:
    first = pd.DataFrame(study._robust_mle(np.random.default_rng([7, 0]), 2))
    second = pd.DataFrame(study._robust_mle(np.random.default_rng([7, 0]), 2))
    pd.testing.assert_frame_equal(first, second)
