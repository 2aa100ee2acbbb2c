"""The post-treatment screen's arm test when whole clusters are randomized: one value per cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assimilate.diagnostics import post_treatment_screen
from assimilate.diagnostics._arm_tests import arm_test, randomized_clusters


def cluster_randomized(
    rng: np.random.Generator, *, clusters: int = 40, size: int = 25, icc: float = 0.5
) -> pd.DataFrame:
    """Whole clusters randomized; a pre-treatment covariate with intra-cluster correlation ``icc``."""
    cluster = np.repeat(np.arange(clusters), size)
    arm = rng.permutation(np.arange(clusters) % 2)[cluster]
    x = np.sqrt(icc) * rng.standard_normal(clusters)[cluster] + np.sqrt(1 - icc) * rng.standard_normal(
        len(cluster)
    )
    member = (rng.random(clusters)[cluster] + 0.5 * rng.random(len(cluster)) > 0.9).astype(float)
    y = 0.3 * arm + x + rng.standard_normal(len(cluster))
    return pd.DataFrame({"school": cluster, "d": arm, "x": x, "member": member, "y": y})


def test_the_cluster_statistic_is_scipy_s_ks_on_cluster_means() -> None:
    frame = cluster_randomized(np.random.default_rng(0))
    codes = randomized_clusters(frame, "school", frame["d"].to_numpy(float))
    assert codes is not None and codes.max() == 39
    name, statistic, p_value = arm_test(frame["x"].to_numpy(float), frame["d"].to_numpy(float), True, codes)
    means = frame.groupby("school")[["x", "d"]].mean()
    expected = stats.ks_2samp(means.loc[means["d"] == 1, "x"], means.loc[means["d"] == 0, "x"])
    assert name == "Kolmogorov-Smirnov D of cluster means"
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-12)


def test_units_randomized_within_clusters_keep_the_row_level_test() -> None:
    rng = np.random.default_rng(1)
    frame = cluster_randomized(rng).assign(d=lambda f: rng.integers(0, 2, len(f)).astype(float))
    assert randomized_clusters(frame, "school", frame["d"].to_numpy(float)) is None
    assert randomized_clusters(frame, None, frame["d"].to_numpy(float)) is None


def test_the_cluster_level_arm_test_holds_its_level_where_the_row_level_one_does_not() -> None:
    """300 cluster-randomized batches (40 schools of 25, ICC 0.5): nominal 5% per test."""
    rng = np.random.default_rng(2)
    rows, clustered = [], []
    for _ in range(300):
        frame = cluster_randomized(rng)
        d, x = frame["d"].to_numpy(float), frame["x"].to_numpy(float)
        rows.append(arm_test(x, d, True)[2] < 0.05)
        clustered.append(arm_test(x, d, True, randomized_clusters(frame, "school", d))[2] < 0.05)
    assert np.mean(rows) > 0.4  # 1,000 correlated rows counted as independent
    assert np.mean(clustered) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)


def test_the_screen_passes_a_cluster_randomized_batch_and_still_catches_a_moved_column() -> None:
    rng = np.random.default_rng(3)
    warned_rows = warned_clusters = 0
    for _ in range(40):
        frame = cluster_randomized(rng)
        args = {"outcome": "y", "treatment": "d", "covariates": ["x", "member"], "randomized": True}
        warned_rows += bool(post_treatment_screen(frame, **args).warnings())
        warned_clusters += bool(post_treatment_screen(frame, cluster="school", **args).warnings())
    assert warned_rows >= 8 and warned_clusters <= 2  # a 1% family-wise level: 0.4 expected
    moved = cluster_randomized(np.random.default_rng(4), clusters=80)
    moved["x"] += 2.0 * moved["d"]  # a column the randomized treatment moved: not pre-treatment
    screen = post_treatment_screen(
        moved, outcome="y", treatment="d", covariates=["x"], randomized=True, cluster="school"
    )
    row = screen.to_frame().set_index("column").loc["x"]
    assert row["arm_test"] == "Kolmogorov-Smirnov D of cluster means" and row["status"] in ("warn", "error")
