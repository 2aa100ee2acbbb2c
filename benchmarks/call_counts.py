"""Work per landed batch: how often the pipeline fits each nuisance model and runs the filter.

``counting_calls()`` wraps the library functions named in ``COUNTED_CALLS`` for the duration of a
``with`` block, in this process, wherever they are bound (every loaded module's name for the
function object is swapped for a counting wrapper, and swapped back after). A call made while
another call of the same kind is running is part of it: a ``full_filter`` that runs
``particle_filter`` is one filter pass. Fits are charged per batch, filter passes per posterior
update; the target is one of each. Seconds are wall time inside the outermost calls, and the
repeated work is the share of it beyond one call per batch (or per update).

    with counting_calls() as counter:
        run_landed_batches(...)
    rows = work_rows("landed batch", 10_000, batches=3, updates=3, counter=counter, batch_seconds=1.8)
"""

from __future__ import annotations

import functools
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Per = Literal["batch", "update"]

# kind -> (what it is charged to, the library functions that do it as "module:function").
# The names of the functions that do each kind of work live here only: change them here when the
# library moves them. A name that does not resolve is an error, so a rename never counts zero.
COUNTED_CALLS: dict[str, tuple[Per, tuple[str, ...]]] = {
    "propensity fit": ("batch", ("assimilate.estimators.models:fit_propensity",)),
    "outcome fit": ("batch", ("assimilate.estimators.outcome:fit_outcome_model",)),
    "filter pass": (
        "update",
        (
            "assimilate.incremental:refilter_from_first_change",
            "assimilate.incremental:full_filter",
            "assimilate.filters.kalman:run_kalman",
            "assimilate.filters.kalman:causal_kalman",
            "assimilate.filters.particle:particle_filter",
            "assimilate.filters.grid:grid_filter",
            "assimilate.filters.correlated:correlated_kalman",
            "assimilate.filters.mle:fit_process_variance",
        ),
    ),
}


@dataclass
class CallCounter:
    """Outermost calls and the seconds spent in them, per kind of work."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    _depth: dict[str, int] = field(default_factory=dict)

    def wrap(self, kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
        for table in (self.calls, self._depth):
            table.setdefault(kind, 0)
        self.seconds.setdefault(kind, 0.0)

        @functools.wraps(function)
        def counted(*args: Any, **kwargs: Any) -> Any:
            outermost = self._depth[kind] == 0
            self._depth[kind] += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[kind] -= 1
                if outermost:
                    self.calls[kind] += 1
                    self.seconds[kind] += time.perf_counter() - start

        return counted


def resolve(name: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function; a clear error when it is not there."""
    module_name, _, attribute = name.partition(":")
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise LookupError(
            f"benchmarks/call_counts.py COUNTED_CALLS: {module_name} has no function {attribute!r}; "
            "update the list to the library's current name"
        )
    return function


def _rebind(replacements: dict[int, Any]) -> None:
    """Swap every module-level name bound to a replaced object (by identity) for its replacement."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            replacement = replacements.get(id(value))
            if replacement is not None and value is not replacement:
                namespace[name] = replacement


@contextmanager
def counting_calls(
    counted: dict[str, tuple[Per, tuple[str, ...]]] = COUNTED_CALLS,
) -> Iterator[CallCounter]:
    """Count the calls of ``counted``'s functions made inside the block, in this process."""
    counter = CallCounter()
    originals = {name: resolve(name) for _, names in counted.values() for name in names}
    wrappers = {}
    for kind, (_, names) in counted.items():
        for name in names:
            wrappers[name] = counter.wrap(kind, originals[name])
    _rebind({id(originals[name]): wrappers[name] for name in originals})
    try:
        yield counter
    finally:
        _rebind({id(wrappers[name]): originals[name] for name in originals})


def work_rows(
    path: str, n_rows: int, *, batches: int, updates: int, counter: CallCounter, batch_seconds: float
) -> list[dict[str, Any]]:
    """One row per kind of work: calls, calls per batch (or update), seconds per batch, repeats."""
    rows = []
    for kind, (per, _) in COUNTED_CALLS.items():
        calls, seconds = counter.calls.get(kind, 0), counter.seconds.get(kind, 0.0)
        units = batches if per == "batch" else updates
        repeated = seconds * max(calls - units, 0) / calls if calls else 0.0
        rows.append(
            {
                "path": path,
                "size": n_rows,
                "batches": batches,
                "posterior_updates": updates,
                "kind": kind,
                "per": per,
                "calls": calls,
                "calls_per_unit": calls / units if units else float("nan"),
                "seconds_per_batch": seconds / batches,
                "repeated_seconds_per_batch": repeated / batches,
                "batch_seconds": batch_seconds,
            }
        )
    return rows


def print_work(rows: list[dict[str, Any]]) -> None:
    """The work tables, one per path: calls per batch or update, and the seconds repeats cost."""
    for path in dict.fromkeys(r["path"] for r in rows):
        group = [r for r in rows if r["path"] == path]
        first = group[0]
        print(
            f"\nwork per landed batch: {path}; {first['batches']} batches of {first['size']} rows, "
            f"{first['posterior_updates']} posterior updates, {first['batch_seconds']:.3f} s per batch"
        )
        print(
            f"  {'work':<16} {'calls':>6} {'per batch/update':>17} {'s per batch':>12} {'of it repeated':>15}"
        )
        for r in group:
            print(
                f"  {r['kind']:<16} {r['calls']:>6} {r['calls_per_unit']:>8.2f} / {r['per']:<6} "
                f"{r['seconds_per_batch']:>12.3f} {r['repeated_seconds_per_batch']:>15.3f}"
            )
        repeated = sum(r["repeated_seconds_per_batch"] for r in group)
        share = repeated / first["batch_seconds"] if first["batch_seconds"] > 0 else float("nan")
        print(f"  repeated work: {repeated:.3f} s per batch ({share:.0%} of the batch's time)", flush=True)
