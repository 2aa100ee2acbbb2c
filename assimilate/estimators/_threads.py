"""Run BLAS on one thread while a block-wise pass over the rows runs.

The passes call BLAS on blocks of a few thousand rows. OpenBLAS splits such calls across its
threads, which costs a wake-up per call and gains nothing at this size; on a machine whose cores
are busy (a pipeline running several steps at once) the waiting threads make a pass two to three
times slower. The limit is process-wide while any pass runs (a counter, so nested and concurrent
passes restore the original setting only when the last one ends) and is skipped when
threadpoolctl is not installed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_LOCK = threading.Lock()
_active: list[Any] = []  # the limiter of the outermost running pass, if any
_depth = 0


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:  # optional: without it BLAS keeps its own thread count
        return None
    return ThreadpoolController()


def _enter() -> None:
    global _depth
    with _LOCK:
        if _depth == 0:
            controller = _controller()
            if controller is not None:
                _active.append(controller.limit(limits=1, user_api="blas"))
        _depth += 1


def _exit() -> None:
    global _depth
    with _LOCK:
        _depth -= 1
        if _depth == 0 and _active:
            _active.pop().restore_original_limits()


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
