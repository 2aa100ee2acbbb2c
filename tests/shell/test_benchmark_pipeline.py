"""The pipeline benchmark runs at smoke size, its rows are well formed (no timing assert), and it
counts the work per landed batch (model fits per batch, filter passes per posterior update) and
where a landed batch's time goes."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from assimilate import estimators
from assimilate.estimators import models
from assimilate.estimators.design_matrix import encode_covariates
from benchmarks.call_counts import (
    COUNTED_CALLS,
    THE_REST,
    TIMED_PARTS,
    CallCounter,
    counting_calls,
    part_rows,
    resolve,
    work_rows,
)
from benchmarks.cli import cli_rows, slowest_imports
from benchmarks.memory import _peak_within, measure_child, memory_rows, write_outreach_file
from benchmarks.notebook import checked_rows, library_path
from benchmarks.pipeline import pipeline_rows, retention_study
from resources.duckdb_warehouse import Warehouse

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
PROPENSITY = {"propensity fit": COUNTED_CALLS["propensity fit"]}


def _as_dict(item: object) -> dict[str, object]:
    return item if isinstance(item, dict) else dict(vars(item))


Smoke = tuple[list[dict[str, object]], list[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def smoke() -> Smoke:
    """One smoke run of the benchmark for the tests below: its rows, work rows and parts of time."""
    work: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    rows = [_as_dict(item) for item in pipeline_rows(smoke=True, work=work, parts=parts)]
    return rows, work, parts


@pytest.mark.slow
def test_pipeline_benchmark_smoke_rows_are_well_formed_and_agree(smoke: Smoke) -> None:
    rows, _, _ = smoke
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
    # each instance's run, whole and to the posterior's materialization (before the memo's step)
    landed = {str(item["tool"]): item for item in rows if item["benchmark"] == "landed batch -> posterior"}
    for instance in ("ephemeral", "sqlite"):
        whole = landed[f"dagster + duckdb, {instance} instance"]
        stored = landed[f"dagster + duckdb, {instance} instance: posterior stored"]
        assert 0 < float(stored["median_s"]) < float(whole["median_s"])


@pytest.mark.slow
def test_the_benchmark_counts_the_work_of_every_in_process_path(smoke: Smoke) -> None:
    _, work, _ = smoke
    paths = {row["path"] for row in work}
    # the landed batch (ephemeral), the 6-batch history run per batch and as a backfill, the daily backfill
    assert len(paths) == 4 and len(work) == 4 * len(COUNTED_CALLS)
    for row in work:
        assert row["calls"] >= 1 and row["posterior_updates"] >= 1, row  # both studies fit both models
        units = row["batches"] if row["per"] == "batch" else row["posterior_updates"]
        assert row["calls_per_unit"] == row["calls"] / units
        assert 0 <= row["repeated_seconds_per_batch"] <= row["seconds_per_batch"] < row["batch_seconds"]
    landed = [row for row in work if row["path"].startswith("landed batch")]
    assert {row["posterior_updates"] for row in landed} == {row["batches"] for row in landed} == {3}


@pytest.mark.slow
def test_a_landed_batch_fits_each_model_once_and_filters_once_per_update(smoke: Smoke) -> None:
    """Issue 12's target: propensity fits 3 -> 1, outcome fits 2 -> 1, filter passes 2 -> 1."""
    _, work, _ = smoke
    counts = {(row["path"], row["kind"]): row["calls_per_unit"] for row in work}
    assert counts == dict.fromkeys(counts, 1.0)


@pytest.mark.slow
def test_the_parts_of_a_landed_batchs_time_are_each_seen_and_add_up_to_it(smoke: Smoke) -> None:
    _, _, parts = smoke
    assert [row["part"] for row in parts] == [*TIMED_PARTS, THE_REST]  # the ephemeral instance's batch
    for row in parts:
        assert row["seconds_per_batch"] > 0, row  # every part runs in a landed batch: none is misnamed
    assert sum(row["seconds_per_batch"] for row in parts) == pytest.approx(parts[0]["batch_seconds"])
    assert parts[0]["library_seconds"] > 0


def test_every_timed_part_names_a_function_that_is_there() -> None:
    for _, names in TIMED_PARTS.values():
        for name in names:
            assert callable(resolve(name)), name


def test_with_one_depth_a_call_inside_another_part_is_charged_to_the_outer_one() -> None:
    counter = CallCounter(one_depth=True)
    write = counter.wrap("writes", lambda: 1)
    figure = counter.wrap("figures", lambda: write() + 1)
    assert figure() == 2 and write() == 1
    assert counter.calls == {"writes": 1, "figures": 1}


def test_a_timed_method_is_timed_through_every_instance_and_put_back(tmp_path: Path) -> None:
    store = Warehouse(tmp_path / "warehouse.duckdb")
    store.replace_table("study", "table", pd.DataFrame({"x": [1, 2]}))
    original = Warehouse.__dict__["read_table"]
    reads = {"reads": ("batch", ("resources.duckdb_warehouse:Warehouse.read_table",))}
    with counting_calls(reads, one_depth=True) as counter:
        assert store.read_table("study", "table")["x"].tolist() == [1, 2]
    assert counter.calls == {"reads": 1} and counter.seconds["reads"] > 0
    assert Warehouse.__dict__["read_table"] is original
    store.read_table("study", "table")  # after the block: not timed
    assert counter.calls == {"reads": 1}


def test_part_rows_leave_the_rest_to_dagster_and_charge_each_part_per_batch() -> None:
    counter = CallCounter(seconds={"warehouse writes": 0.6, "figures (matplotlib, Graphviz)": 0.3})
    rows = {
        r["part"]: r
        for r in part_rows("p", 100, batches=3, counter=counter, batch_seconds=1.0, library_seconds=0.25)
    }
    assert rows["warehouse writes"]["seconds_per_batch"] == pytest.approx(0.2)
    assert rows[THE_REST]["seconds_per_batch"] == pytest.approx(0.7)
    assert rows[THE_REST]["share"] == pytest.approx(0.7)
    assert sum(r["seconds_per_batch"] for r in rows.values()) == pytest.approx(1.0)


def _propensity_inputs() -> tuple[estimators.DesignMatrix, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.standard_normal(200)})
    treated = rng.binomial(1, 1 / (1 + np.exp(-frame["x"].to_numpy())))
    return encode_covariates(frame, ["x"]), treated


def test_the_counter_sees_a_call_through_any_name_and_puts_every_name_back() -> None:
    design, treated = _propensity_inputs()
    original = models.fit_propensity
    with counting_calls(PROPENSITY) as counter:
        assert estimators.fit_propensity is models.fit_propensity is not original
        estimators.fit_propensity(design, treated)  # the package's re-export
        models.fit_propensity(design, treated)
    assert counter.calls == {"propensity fit": 2} and counter.seconds["propensity fit"] > 0
    assert estimators.fit_propensity is models.fit_propensity is original
    estimators.fit_propensity(design, treated)  # after the block: not counted
    assert counter.calls == {"propensity fit": 2}


def test_a_call_inside_a_call_of_the_same_kind_is_part_of_it() -> None:
    counter = CallCounter()
    inner = counter.wrap("filter pass", lambda: 1)
    outer = counter.wrap("filter pass", lambda: inner() + inner())
    fit = counter.wrap("outcome fit", lambda: outer())
    assert fit() == 2 and inner() == 1
    assert counter.calls == {"filter pass": 2, "outcome fit": 1}


def test_work_rows_charge_fits_per_batch_and_filter_passes_per_update() -> None:
    counter = CallCounter(
        calls={"propensity fit": 9, "outcome fit": 3, "filter pass": 6},
        seconds={"propensity fit": 0.9, "outcome fit": 0.3, "filter pass": 0.6},
    )
    rows = {
        r["kind"]: r for r in work_rows("p", 100, batches=3, updates=3, counter=counter, batch_seconds=2.0)
    }
    assert rows["propensity fit"]["calls_per_unit"] == 3.0
    assert rows["propensity fit"]["repeated_seconds_per_batch"] == pytest.approx(
        0.2
    )  # 6 of 9 calls, per batch
    assert rows["outcome fit"]["repeated_seconds_per_batch"] == 0.0
    assert rows["filter pass"]["calls_per_unit"] == 2.0


def test_a_counted_name_that_is_gone_is_an_error_not_a_zero() -> None:
    gone = {"propensity fit": ("batch", ("assimilate.estimators.models:fit_propensity_twice",))}
    with pytest.raises(LookupError, match="has no function 'fit_propensity_twice'"):
        counting_calls(gone).__enter__()


# Issue 17: peak memory of a subprocess, the CLI against the runner, the notebook reference.

CHILD_MIB = 256


def test_a_childs_peak_memory_is_measured_from_the_kernel() -> None:
    allocate = f"import numpy as np; a = np.ones({CHILD_MIB} * 2**17); print('{{\"ok\": 1}}')"
    run = measure_child([sys.executable, "-c", allocate])
    assert run.returncode == 0 and run.report == {"ok": 1} and not run.killed
    # the array's pages (all written) plus the interpreter and numpy, well under a GiB
    assert CHILD_MIB * 2**20 <= run.peak_bytes < (CHILD_MIB + 400) * 2**20
    assert run.peak_gib == run.peak_bytes / 2**30


def test_a_child_past_the_limit_is_killed() -> None:
    allocate = "import time, numpy as np; a = np.ones(600 * 2**17); time.sleep(60)"
    run = measure_child([sys.executable, "-c", allocate], kill_bytes=300 * 2**20)
    assert run.killed and run.returncode != 0 and run.seconds < 45


def test_slowest_imports_charges_each_package_once_from_outside() -> None:
    trace = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     numpy.core",
            "import time:       200 |        300 |   numpy",
            "import time:        50 |         50 |     project.sub",
            "import time:       150 |        500 |   project.inner",
            "import time:        10 |        510 | project",
            "import time:        40 |         40 | dagster",
        ]
    )
    assert slowest_imports(trace) == [("project", 510e-6), ("numpy", 300e-6), ("dagster", 40e-6)]


def test_the_outreach_file_is_written_in_chunks_with_unique_units(tmp_path: Path) -> None:
    path = write_outreach_file(tmp_path / "2025-01.parquet", 2_500, chunk_rows=1_000)
    frame = pd.read_parquet(path)
    assert len(frame) == 2_500 and frame["account_id"].is_unique
    assert set(frame["outreach"]) == {0, 1}
    estimate = library_path(path, retention_study())
    assert math.isfinite(estimate.estimate) and estimate.std_error > 0


def test_the_notebook_check_names_the_file_the_column_and_the_rule(tmp_path: Path) -> None:
    study = retention_study()
    frame = write_outreach_file(tmp_path / "2025-01.parquet", 500)
    rows = pd.read_parquet(frame)
    with pytest.raises(ValueError, match=r"2025-01\.parquet: columns \['health_score'\] are missing"):
        checked_rows(rows.drop(columns="health_score"), study, "2025-01.parquet")
    with pytest.raises(ValueError, match=r"2025-01\.parquet: column 'outreach' must be 0 or 1"):
        checked_rows(rows.assign(outreach=rows["outreach"] * 2), study, "2025-01.parquet")
    with pytest.raises(ValueError, match="column 'account_id' repeats a unit id"):
        checked_rows(pd.concat([rows, rows.head(1)]), study, "2025-01.parquet")
    assert (
        len(checked_rows(rows.assign(usage_score=np.where(rows.index < 10, np.nan, 0.0)), study, "f")) == 490
    )


def _well_formed(rows: list[dict[str, Any]]) -> None:
    for item in rows:
        assert set(item) >= FIELDS, item
        assert 0 < item["min_s"] <= item["median_s"] <= item["max_s"], item
        assert math.isfinite(float(item["ratio_to_reference"])) and float(item["ratio_to_reference"]) > 0
        assert not str(item["agreement"]).startswith("NO"), item


def test_a_step_shorter_than_the_sampling_interval_takes_the_samples_around_it() -> None:
    samples = ((0.0, 100), (0.2, 300), (0.4, 200), (0.6, 150))
    assert _peak_within(samples, 0.1, 0.5) == 300  # samples inside: their largest
    assert _peak_within(samples, 0.45, 0.55) == 200  # none inside: the larger of its neighbours
    assert _peak_within(samples, 0.7, 0.8) == 150  # after the last sample: the last
    assert _peak_within((), 0.0, 1.0) == 0


def test_memory_benchmark_smoke_measures_both_subprocesses_and_agrees() -> None:
    rows = memory_rows(20_000)
    _well_formed(rows)
    library, pipeline, target, *steps = rows
    assert library["agreement"] == "reference" and pipeline["agreement"].startswith("yes (estimate rel. diff")
    # both subprocesses import pandas and numpy at least: more than 50 MiB each
    assert library["peak_mib"] > 50 and pipeline["peak_mib"] > 50
    assert pipeline["ratio_to_reference"] == pytest.approx(pipeline["peak_mib"] / library["peak_mib"])
    assert target["ratio_to_reference"] == pytest.approx(pipeline["peak_mib"] / 1024 / 4.0)
    # each step's largest sampled RSS, within the run's peak
    names = [str(item["tool"]) for item in steps]
    assert {"intake", "estimation", "effect_posterior"} <= set(names)
    assert all(50 < item["peak_mib"] <= pipeline["peak_mib"] for item in steps), steps


@pytest.mark.slow
def test_cli_benchmark_smoke_runs_the_cli_and_the_runner_on_the_same_batch() -> None:
    rows = cli_rows(2_000, repeats=1, profile=False)
    _well_formed(rows)
    tools = [str(item["tool"]) for item in rows]
    assert tools[0].endswith("(reference)") and "dagster asset materialize (subprocess)" in tools
    checked = [item for item in rows if str(item["agreement"]).startswith("yes")]
    assert len(checked) == 3  # the runner with its load, dagster's CLI, assimilate run
