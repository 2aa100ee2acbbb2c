"""The block-wise passes on several threads: the same answer on any thread count, errors kept.

A pass cuts the rows into chunks fixed by the design's shape and adds the chunks' sums in chunk
order, so 1, 2 and 3 threads give the same bits; the estimators built on the passes agree to
``SAME`` (relative) on every thread count, cross-fitting and influence values included. Most tests
shrink the blocks and chunks (``small_chunks``) so that a few thousand rows make dozens of chunks.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from assimilate.estimators import DesignMatrix, encode_covariates, passes
from assimilate.estimators import _threads as threads_module
from assimilate.estimators._pass_kernels import gram_chunk
from assimilate.estimators._threads import map_chunks, parallel_passes, pass_threads
from assimilate.estimators.aipw import aipw_with_influence
from assimilate.estimators.regression import ols_hc3, regression_with_influence
from assimilate.estimators.weighting import ipw_with_influence
from assimilate.simulate import OUTREACH_COVARIATES, simulate_outreach_batch

FloatArray = NDArray[np.float64]
SAME = 1e-12  # relative: results on different thread counts (the brief's bound; the passes give equal bits)
PASS = 1e-12  # relative: a pass against the full-matrix product it replaces
THREADS = (1, 2, 3)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 rows (the least) and chunks of one to three blocks: many chunks on small data."""
    monkeypatch.setattr(passes, "BLOCK_BYTES", 8)
    monkeypatch.setattr(passes, "CHUNK_BYTES", 8 * 64 * 20)  # 20 // p blocks of 64 rows (one at least)


class Batch:
    def __init__(self, n: int, seed: int) -> None:
        frame = simulate_outreach_batch(n, rng=np.random.default_rng(seed))
        self.design: DesignMatrix = encode_covariates(frame, OUTREACH_COVARIATES)
        self.d = frame["outreach"].to_numpy(np.int64)
        self.y = frame["churn"].to_numpy(np.float64) + frame["health_score"].to_numpy() / 100


def on_threads(function: Callable[[], Any]) -> dict[int, Any]:
    answers = {}
    for count in THREADS:
        with parallel_passes(count):
            answers[count] = function()
    return answers


def assert_same(answers: dict[int, tuple[Any, ...]]) -> None:
    """Every thread count's estimate, SE and influence values equal the first's to SAME."""
    (first, *_), others = answers[THREADS[0]], [answers[count] for count in THREADS[1:]]
    for result, *arrays in others:
        assert result.estimate == pytest.approx(first.estimate, rel=SAME, abs=SAME * first.std_error)
        assert result.std_error == pytest.approx(first.std_error, rel=SAME)
        for array, reference in zip(arrays, answers[THREADS[0]][1:], strict=True):
            np.testing.assert_allclose(array, reference, rtol=SAME, atol=SAME * np.abs(reference).max())


# ---------------------------------------------------------------- chunks


def test_chunks_are_whole_blocks_fixed_by_the_shape_and_cover_the_rows() -> None:
    for n, p in [(1, 3), (4095, 9), (100_000, 9), (1_000_003, 10), (50_000, 300)]:
        chunks = passes.row_chunks(n, p)
        assert chunks[0].start == 0 and chunks[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))
        assert all((c.stop - c.start) % passes.block_size(p) == 0 for c in chunks[:-1])
        blocks = [rows for chunk in chunks for rows in passes.blocks_of(chunk, p)]
        assert blocks == list(passes.row_blocks(n, p))
    assert len(passes.row_chunks(10_000, 9)) == 1  # a small design is one chunk: a serial pass
    assert len(passes.row_chunks(1_000_000, 9)) > 16


def test_a_one_chunk_pass_accumulates_exactly_as_one_kernel_call_over_all_rows() -> None:
    rng = np.random.default_rng(1)
    X, w = rng.standard_normal((5000, 6)), rng.random(5000)
    serial = gram_chunk(X, np.empty((0, 0)), np.empty(0, dtype=np.bool_), False, w, 0, 5000)[0]
    with parallel_passes(3):
        np.testing.assert_array_equal(passes.gram(X, w), passes.symmetric(serial))


# ---------------------------------------------------------------- passes


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("n", [1, 63, 200, 3001])
def test_each_pass_gives_the_same_bits_on_every_thread_count(n: int) -> None:
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 7))
    w, v, y = rng.random(n), rng.standard_normal(n), rng.binomial(1, 0.4, n).astype(float)
    arm = rng.random(n) < 0.3
    beta, B = 0.3 * rng.standard_normal(7), rng.standard_normal((7, 2))

    def every_pass() -> list[FloatArray]:
        probabilities = np.empty(n)
        score, information = passes.logistic_pass(X, y, beta, probabilities)
        return [
            passes.gram(X),
            passes.gram(X, w),
            *passes.armwise_gram(X, v, arm),
            passes.times(X, beta),
            passes.times(X, B),
            passes.transpose_times(X, v),
            passes.transpose_times(X, np.column_stack([v, w])),
            score,
            information,
            probabilities,
            passes.logistic_score(X, y, beta, np.empty(n)),
            *(ols_hc3(np.column_stack([np.ones(n), X]), v) if n > 20 else ()),
        ]

    answers = on_threads(every_pass)
    for count in THREADS[1:]:
        for got, first in zip(answers[count], answers[1], strict=True):
            np.testing.assert_array_equal(got, first)
    mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
    gram_w, information, probabilities = answers[3][1], answers[3][9], answers[3][10]
    np.testing.assert_allclose(gram_w, X.T @ (w[:, None] * X), rtol=PASS, atol=PASS * n)
    np.testing.assert_allclose(probabilities, mu, rtol=PASS)
    np.testing.assert_allclose(answers[3][7], X.T @ np.column_stack([v, w]), rtol=PASS, atol=PASS * n)
    np.testing.assert_allclose(information, X.T @ ((mu * (1 - mu))[:, None] * X), rtol=PASS, atol=PASS * n)
    Z = np.column_stack([X, v])
    np.testing.assert_allclose(answers[3][2], Z[~arm].T @ Z[~arm], rtol=1e-11, atol=1e-10 * n)
    np.testing.assert_allclose(answers[3][3], Z[arm].T @ Z[arm], rtol=1e-11, atol=1e-10 * n)


# ---------------------------------------------------------------- estimators


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATC"])
@pytest.mark.parametrize("n_folds", [None, 3])
def test_aipw_is_the_same_on_every_thread_count(estimand: str, n_folds: int | None) -> None:
    batch = Batch(3000, seed=11)
    answers = on_threads(
        lambda: aipw_with_influence(
            batch.design,
            batch.d,
            batch.y,
            n_folds=n_folds,
            rng=np.random.default_rng(5),
            outcome_kind="linear",
            estimand=estimand,  # type: ignore[arg-type]
        )
    )
    assert_same(answers)
    assert answers[1][0].diagnostics["cross_fitting_folds"] == (n_folds or 0)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATC"])
@pytest.mark.parametrize("policy", ["clip", "trim"])
def test_ipw_is_the_same_on_every_thread_count(estimand: str, policy: str) -> None:
    batch = Batch(3000, seed=12)
    answers = on_threads(
        lambda: ipw_with_influence(
            batch.design,
            batch.d,
            batch.y,
            policy=policy,  # type: ignore[arg-type]
            bounds=(0.1, 0.9),
            estimand=estimand,  # type: ignore[arg-type]
        )
    )
    assert_same(answers)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATC"])
@pytest.mark.parametrize("interacted", [False, True])
def test_regression_adjustment_is_the_same_on_every_thread_count(estimand: str, interacted: bool) -> None:
    batch = Batch(3000, seed=13)
    answers = on_threads(
        lambda: regression_with_influence(
            batch.design,
            batch.d,
            batch.y,
            interacted=interacted,
            estimand=estimand,  # type: ignore[arg-type]
        )
    )
    assert_same(answers)


def test_aipw_with_a_logistic_outcome_at_default_chunk_sizes_is_the_same_on_every_thread_count() -> None:
    batch = Batch(160_000, seed=14)  # warm-started Newton; several chunks at the real sizes
    churn = (batch.y > np.median(batch.y)).astype(np.float64)
    assert len(passes.row_chunks(160_000, batch.design.values.shape[1])) >= 3
    answers = on_threads(
        lambda: aipw_with_influence(
            batch.design, batch.d, churn, n_folds=2, rng=np.random.default_rng(6), outcome_kind="logistic"
        )
    )
    assert_same(answers)


def test_concurrent_callers_each_get_the_serial_answer() -> None:
    batches = [Batch(40_000, seed=20 + k) for k in range(3)]
    with parallel_passes(1):
        serial = [ipw_with_influence(b.design, b.d, b.y)[0].estimate for b in batches]
    found: dict[int, float] = {}

    def run(k: int) -> None:
        with parallel_passes(2):
            found[k] = ipw_with_influence(batches[k].design, batches[k].d, batches[k].y)[0].estimate

    callers = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert [found[k] for k in range(3)] == serial


# ---------------------------------------------------------------- threads, errors, BLAS and the option


def test_chunks_run_on_several_threads_at_once_and_come_back_in_order() -> None:
    meeting = threading.Barrier(2, timeout=30)  # broken unless two chunks run at the same time
    names: list[str] = []

    def work(rows: slice) -> int:
        if rows.start < 2:
            meeting.wait()
        names.append(threading.current_thread().name)
        return rows.start

    chunks = [slice(k, k + 1) for k in range(12)]
    with parallel_passes(2):
        assert map_chunks(work, chunks) == list(range(12))
    assert len(set(names)) == 2


def test_an_error_in_any_chunk_is_raised_and_the_other_threads_stop() -> None:
    done: list[int] = []

    def work(rows: slice) -> None:
        if rows.start == 5:
            raise ValueError("chunk 5 failed")
        time.sleep(0.001)  # the GIL is free: a thread that failed gets to say so before the rest is done
        done.append(rows.start)

    for count in THREADS:
        done.clear()
        with parallel_passes(count), pytest.raises(ValueError, match="chunk 5 failed"):
            map_chunks(work, [slice(k, k + 1) for k in range(400)])
        assert len(done) < 399


def test_a_singular_regression_fails_the_same_way_on_every_thread_count(small_chunks: None) -> None:
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(500), rng.standard_normal(500), np.zeros(500)])
    X[321, 2] = 1.0  # one unit alone determines the last coefficient: leverage 1
    for count in THREADS:
        with parallel_passes(count), pytest.raises(ValueError, match="leverage 1"):
            ols_hc3(X, rng.standard_normal(500))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_runs_parallel_passes_after_its_parent_did() -> None:
    X = np.random.default_rng(4).standard_normal((5 * passes.chunk_size(9), 9))
    with parallel_passes(2):
        expected = passes.gram(X)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        signal.alarm(60)  # a hang ends the child with SIGALRM instead of the test run
        with parallel_passes(2):
            same = np.array_equal(passes.gram(X), expected)
        os._exit(0 if same else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def blas_default() -> Any:
    return pytest.importorskip("threadpoolctl")


def test_a_pass_started_from_another_thread_also_holds_blas_at_one_thread(blas_default: Any) -> None:
    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in blas_default.threadpool_info() if lib["user_api"] == "blas"}

    @threads_module.one_blas_thread
    def inside() -> set[int]:
        return blas_threads()

    with blas_default.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        seen = [inside()]  # the main thread limits BLAS first ...
        caller = threading.Thread(target=lambda: seen.append(inside()))  # ... then another thread
        caller.start()
        caller.join()
        assert seen == [{1}, {1}]
        assert blas_threads() == before == {2}


def test_the_default_is_blas_thread_count_outside_passes_capped(blas_default: Any) -> None:
    def blas_threads() -> int:
        return max(lib["num_threads"] for lib in blas_default.threadpool_info() if lib["user_api"] == "blas")

    with blas_default.threadpool_limits(1, user_api="blas"):
        assert pass_threads() == 1
    with blas_default.threadpool_limits(2, user_api="blas"):
        assert pass_threads() == min(blas_threads(), threads_module.DEFAULT_CAP)
    assert pass_threads() == min(blas_threads(), threads_module.DEFAULT_CAP) >= 1


def test_parallel_passes_nests_and_restores_and_checks_its_argument() -> None:
    outside = pass_threads()
    with parallel_passes(3):
        assert pass_threads() == 3
        with parallel_passes(1):
            assert pass_threads() == 1
        assert pass_threads() == 3
    assert pass_threads() == outside
    for bad in (0, threads_module.MAX_THREADS + 1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer"), parallel_passes(bad):  # type: ignore[arg-type]
            pass
