"""The warehouse's errors and its patience: open a connection, waiting with backoff while it may.

Both backends wait the same way: DuckDB while another process holds the file's lock, PostgreSQL
while the server refuses connections for a moment (starting, or out of connection slots). A wait
that outlasts ``lock_timeout_s`` ends in ``WarehouseLockedError``; any other error is raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WarehouseError(RuntimeError):
    """The warehouse cannot be used right now."""


class WarehouseLockedError(WarehouseError, TimeoutError):
    """Another process kept the warehouse locked (or the server busy) for longer than the timeout."""


class Backoff:
    """How long to wait for a connection, and how often to try (doubling waits, with jitter).

    Parameters
    ----------
    lock_timeout_s : float
        How long to keep trying before ``WarehouseLockedError``.
    initial_backoff_s, max_backoff_s : float
        The wait between attempts doubles from the first to the second (with jitter).
    """

    def __init__(self, lock_timeout_s: float, initial_backoff_s: float, max_backoff_s: float) -> None:
        if not lock_timeout_s >= 0:
            raise ValueError(f"lock_timeout_s must be >= 0, got {lock_timeout_s!r}")
        if not 0 < initial_backoff_s <= max_backoff_s:
            raise ValueError("initial_backoff_s must be > 0 and <= max_backoff_s")
        self.lock_timeout_s = float(lock_timeout_s)
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._jitter = random.Random()

    def attempt(
        self,
        open_: Callable[[], T],
        retryable: Callable[[Exception], bool],
        timed_out: Callable[[int, Exception], str],
    ) -> T:
        """``open_()``, tried again while it raises a ``retryable`` error and time remains.

        ``timed_out(attempts, last_error)`` is the message of the ``WarehouseLockedError``.
        """
        deadline = time.monotonic() + self.lock_timeout_s
        delay, attempts = self.initial_backoff_s, 0
        while True:
            attempts += 1
            try:
                return open_()
            except Exception as error:
                if not retryable(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(timed_out(attempts, error)) from error
                time.sleep(min(remaining, delay * (0.5 + 0.5 * self._jitter.random())))
                delay = min(2 * delay, self.max_backoff_s)
