"""Threads for the block-wise passes over the rows, and BLAS on one thread while a pass runs.

A pass splits its rows into chunks whose boundaries depend on the design's shape only (see
:mod:`~assimilate.estimators.passes`); :func:`map_chunks` runs a function on every chunk on up to
``pass_threads()`` threads (numpy releases the GIL in its array operations) and returns the results
in chunk order, so that a pass that adds them up in that order gives the same bits on any number
of threads: ``sum_c f(chunk_c)``, ``c = 1, ..., C``, with ``C`` fixed by ``(n, p)``.

Example
-------
>>> with parallel_passes(3):
...     map_chunks(lambda rows: rows.stop - rows.start, [slice(0, 4), slice(4, 9)])
[4, 5]

The thread count is, in order: the innermost :func:`parallel_passes` of the calling thread, else
the number of threads BLAS uses outside passes (OpenBLAS: the cores the process may run on, or
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` when set: the one environment setting, read by BLAS
itself when it loads), at most ``DEFAULT_CAP``. A pass with a single chunk runs inline. Helper
threads are started for the pass and end with it (a forked process starts its own); the calling
thread works through the chunks too, so a pass never waits for a helper to start, and a helper
that other work keeps off a core delays it by one chunk at most, never by a spin-wait.

Inside a pass BLAS runs on one thread: every call is one block of at most 32k rows, which
OpenBLAS would split across its own threads for nothing (a wake-up per call, and two to three times
slower on a busy machine). The limit is process-wide while any pass runs (a counter, so nested and
concurrent passes restore the original setting only when the last one ends) and is skipped when
threadpoolctl is not installed (the passes then run on one thread unless told otherwise).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

MAX_THREADS = 64  # the most threads a pass may be given (the calling thread is one of them)
DEFAULT_CAP = 16  # the default never exceeds this: a pass is bound by memory bandwidth beyond it

_LOCK = threading.Lock()
_active: list[Any] = []  # the limiter of the outermost running pass, if any
_depth = 0
_blas_threads_outside = 1  # BLAS's thread count when the outermost running pass started
_requested: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "assimilate_pass_threads", default=None
)


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:  # optional: without it BLAS keeps its own thread count
        return None
    return ThreadpoolController()


def _blas_threads() -> int:
    """The largest thread count of the loaded BLAS libraries now (1 without threadpoolctl)."""
    controller = _controller()
    if controller is None:
        return 1
    counts = [int(lib.num_threads) for lib in controller.lib_controllers if lib.user_api == "blas"]
    return max(counts, default=1)


def _release_control() -> None:
    """Let any thread set OpenBLAS's thread count (threadpoolctl >= 3.7 lets only the first one).

    threadpoolctl hands a process-wide OpenBLAS pool to the first thread that limits it, until that
    thread leaves a ``with`` block; our limit is set and restored under ``_LOCK`` by whichever
    thread starts the first or ends the last pass, so it gives control back each time. Without
    this, a pass started from another thread than the first would silently keep BLAS's threads.
    """
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _enter() -> None:
    global _depth, _blas_threads_outside
    with _LOCK:
        if _depth == 0:
            controller = _controller()
            if controller is not None:
                _blas_threads_outside = _blas_threads()
                _release_control()
                _active.append(controller.limit(limits=1, user_api="blas"))
                _release_control()
        _depth += 1


def _exit() -> None:
    global _depth
    with _LOCK:
        _depth -= 1
        if _depth == 0 and _active:
            _release_control()
            _active.pop().restore_original_limits()
            _release_control()


def one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Decorate a pass so that BLAS runs on one thread while it runs."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _enter()
        try:
            return function(*args, **kwargs)
        finally:
            _exit()

    return wrapper


def pass_threads() -> int:
    """The number of threads a pass started now by this thread may use (see the module docstring)."""
    requested = _requested.get()
    if requested is not None:
        return requested
    with _LOCK:
        outside = _blas_threads_outside if _depth > 0 else _blas_threads()
    return max(1, min(outside, DEFAULT_CAP))


@contextlib.contextmanager
def parallel_passes(threads: int) -> Iterator[None]:
    """Run the passes started by this thread inside the block on ``threads`` threads.

    Parameters
    ----------
    threads : int
        From 1 (serial) to ``MAX_THREADS``. Results do not depend on it (module docstring).

    Examples
    --------
    >>> with parallel_passes(1):
    ...     pass_threads()
    1
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    token = _requested.set(threads)
    try:
        yield
    finally:
        _requested.reset(token)


class _Chunks:
    """Which chunks are taken and finished, the first error, and a condition to wait on."""

    def __init__(self, count: int) -> None:
        self.count, self.next, self.taken, self.finished = count, 0, 0, 0
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def take(self) -> int | None:
        """The next chunk's index; None when none is left or a chunk failed."""
        with self.changed:
            if self.next == self.count or self.error is not None:
                return None
            self.next += 1
            self.taken += 1
            return self.next - 1

    def finish(self, error: BaseException | None) -> None:
        with self.changed:
            self.finished += 1
            if error is not None and self.error is None:
                self.error = error
            self.changed.notify_all()

    def wait(self) -> None:
        """Until every chunk taken so far is finished (none is taken after the caller's last)."""
        with self.changed:
            self.changed.wait_for(lambda: self.finished == self.taken)


def map_chunks(work: Callable[[slice], T], chunks: Sequence[slice]) -> list[T]:
    """``[work(chunk) for chunk in chunks]`` on up to :func:`pass_threads` threads, in chunk order.

    ``work`` must only read shared arrays and write to its own chunk's rows. Each thread takes the
    next chunk not yet taken; the calling thread takes part and, when none is left, waits only for
    the chunks others are still working on (a helper that starts late finds none and ends). The
    helpers are daemon threads started for the call: nothing outlives it, and a forked process
    starts its own. The first error raised by ``work`` is raised and stops the taking of chunks.
    """
    threads = min(pass_threads(), len(chunks))
    if threads <= 1:
        return [work(chunk) for chunk in chunks]
    results: list[Any] = [None] * len(chunks)
    state = _Chunks(len(chunks))

    def drain() -> None:
        while (index := state.take()) is not None:
            try:
                results[index] = work(chunks[index])
            except BaseException as error:
                state.finish(error)
            else:
                state.finish(None)

    for _ in range(threads - 1):
        try:
            threading.Thread(target=drain, name="assimilate-pass", daemon=True).start()
        except RuntimeError:  # no thread can be started (a resource limit): fewer helpers, same answer
            break
    drain()
    state.wait()
    if state.error is not None:
        raise state.error
    return results
