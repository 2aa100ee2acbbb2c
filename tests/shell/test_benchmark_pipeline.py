"""The pipeline benchmark runs at smoke size and its rows are well formed (no timing assert)."""

from __future__ import annotations

import math

import pytest

from benchmarks.pipeline import pipeline_rows

FIELDS = {
    "benchmark",
    "tool",
    "size",
    "median_s",
    "min_s",
    "max_s",
    "ratio_to_reference",
    "peak_mib",
    "agreement",
    "floor_passes",
}


def _as_dict(item: object) -> dict[str, object]:
    return item if isinstance(item, dict) else dict(vars(item))


@pytest.mark.slow
def test_pipeline_benchmark_smoke_rows_are_well_formed_and_agree() -> None:
    rows = [_as_dict(item) for item in pipeline_rows(smoke=True)]
    assert rows
    for item in rows:
        assert set(item) >= FIELDS, item
        assert isinstance(item["benchmark"], str) and isinstance(item["tool"], str)
        assert isinstance(item["size"], int) and item["size"] > 0
        low, middle, high = item["min_s"], item["median_s"], item["max_s"]
        assert isinstance(middle, float) and 0 < low <= middle <= high, item
        assert math.isfinite(float(item["ratio_to_reference"])) and float(item["ratio_to_reference"]) > 0
        assert not str(item["agreement"]).startswith("NO"), item
    benchmarks = {str(item["benchmark"]) for item in rows}
    assert {"landed batch -> posterior", "backfill 6 batches"} <= benchmarks
    checked = [item for item in rows if str(item["agreement"]).startswith("yes")]
    assert len(checked) >= 4  # two instances for the landed batch, two in-process backfill paths
    references = [item for item in rows if item["agreement"] == "reference"]
    assert all(item["ratio_to_reference"] == 1.0 for item in references)
