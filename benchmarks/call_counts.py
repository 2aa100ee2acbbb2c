"""Work per landed batch: how often the pipeline fits each nuisance model and runs the filter, and
where a landed batch's time goes.

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

``TIMED_PARTS`` names the parts of a batch's time that are not Dagster's (the file read, the checks
of its rows, ``fit_batch``, the warehouse's reads and writes, the figures); ``counting_calls(
TIMED_PARTS)`` times them with one depth for all, so a part called inside another is charged to the
outer one and the parts never add up to more than the wall time. ``part_rows`` adds the rest.
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

# Part of a landed batch's time -> the functions ("module:function", or "module:Class.method")
# doing it. What is left is Dagster's (steps, events, check results), the filter and the files.
TIMED_PARTS: dict[str, tuple[Per, tuple[str, ...]]] = {
    "read and hash the landed file": ("batch", ("resources.batch_sources:read_batch",)),
    "type and check its rows (schema, post-treatment, SRM)": ("batch", ("checks.covariates:validate_batch",)),
    "fit_batch (the library's estimate)": ("batch", ("assimilate.estimators.batch:fit_batch",)),
    "checks against the earlier batches": (
        "batch",
        ("assets.estimation:_read_history", "assets.estimation:batch_verdicts"),
    ),
    "warehouse writes": ("batch", ("resources.duckdb_warehouse:Warehouse.replace_partitions",)),
    "warehouse reads (the others)": (
        "batch",
        (
            "resources.duckdb_warehouse:Warehouse.read_table",
            "resources.duckdb_warehouse:Warehouse.execute_read",
            "resources.duckdb_warehouse:Warehouse.read_query_on",
        ),
    ),
    "figures (matplotlib, Graphviz)": (
        "batch",
        (
            "assimilate.report.plots:fan_chart",
            "assimilate.report.plots:love_plot",
            "assimilate.report.plots:overlap_plot",
            "assimilate.report.plots:figure_to_png",
            "assimilate.report.confounding:sensitivity_contour",
            "resources.graphviz:render_png",
        ),
    ),
    "the memo's statistics (sensitivity to a confounder)": (
        "batch",
        ("assimilate.report.from_tables:memo_inputs",),
    ),
}
THE_REST = "the rest: Dagster's steps and events, the filter, writing the memo"


@dataclass
class CallCounter:
    """Outermost calls and the seconds spent in them, per kind of work.

    ``one_depth``: a call inside a call of any counted kind is part of the outer one (parts of a
    batch's time), not only inside one of its own kind (work counted per kind).
    """

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    one_depth: bool = False
    _depth: dict[str, int] = field(default_factory=dict)

    def wrap(self, kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
        self.calls.setdefault(kind, 0)
        self.seconds.setdefault(kind, 0.0)
        depth = "" if self.one_depth else kind
        self._depth.setdefault(depth, 0)

        @functools.wraps(function)
        def counted(*args: Any, **kwargs: Any) -> Any:
            outermost = self._depth[depth] == 0
            self._depth[depth] += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[depth] -= 1
                if outermost:
                    self.calls[kind] += 1
                    self.seconds[kind] += time.perf_counter() - start

        return counted


def resolve(name: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``:Class.method``) -> the function; a clear error when it
    is not there."""
    owner, attribute = _owner(name)
    function = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
    if not callable(function):
        raise LookupError(
            f"benchmarks/call_counts.py: {name.partition(':')[0]} has no function "
            f"{name.partition(':')[2]!r}; update the list to the library's current name"
        )
    return function


def _owner(name: str) -> tuple[Any, str]:
    """The module (or class) holding ``name``'s function, and the function's name in it."""
    module_name, _, path = name.partition(":")
    owner: Any = importlib.import_module(module_name)
    *classes, attribute = path.split(".")
    for part in classes:
        owner = getattr(owner, part, None)
    return owner, attribute


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


def _set_methods(functions: dict[str, Callable[..., Any]]) -> None:
    """Set each ``"module:Class.method"`` of ``functions`` on its class (a method has no module name)."""
    for name, function in functions.items():
        owner, attribute = _owner(name)
        if isinstance(owner, type):
            setattr(owner, attribute, function)


@contextmanager
def counting_calls(
    counted: dict[str, tuple[Per, tuple[str, ...]]] = COUNTED_CALLS, *, one_depth: bool = False
) -> Iterator[CallCounter]:
    """Count the calls of ``counted``'s functions made inside the block, in this process
    (``one_depth``: see :class:`CallCounter`)."""
    counter = CallCounter(one_depth=one_depth)
    originals = {name: resolve(name) for _, names in counted.values() for name in names}
    wrappers = {}
    for kind, (_, names) in counted.items():
        for name in names:
            wrappers[name] = counter.wrap(kind, originals[name])
    _rebind({id(originals[name]): wrappers[name] for name in originals})
    _set_methods(wrappers)
    try:
        yield counter
    finally:
        _rebind({id(wrappers[name]): originals[name] for name in originals})
        _set_methods(originals)


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


def _by_path(rows: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Each path's rows in their order, and its first row."""
    for path in dict.fromkeys(r["path"] for r in rows):
        group = [r for r in rows if r["path"] == path]
        yield path, group, group[0]


def print_work(rows: list[dict[str, Any]]) -> None:
    """The work tables, one per path: calls per batch or update, and the seconds repeats cost."""
    for path, group, first in _by_path(rows):
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


def part_rows(
    path: str,
    n_rows: int,
    *,
    batches: int,
    counter: CallCounter,
    batch_seconds: float,
    library_seconds: float,
) -> list[dict[str, Any]]:
    """Seconds per batch of each of ``TIMED_PARTS`` (timed with ``one_depth``), and the rest."""
    seconds = {kind: counter.seconds.get(kind, 0.0) / batches for kind in TIMED_PARTS}
    seconds[THE_REST] = batch_seconds - sum(seconds.values())
    return [
        {
            "path": path,
            "size": n_rows,
            "batches": batches,
            "part": part,
            "seconds_per_batch": value,
            "share": value / batch_seconds,
            "batch_seconds": batch_seconds,
            "library_seconds": library_seconds,
        }
        for part, value in seconds.items()
    ]


def print_parts(rows: list[dict[str, Any]]) -> None:
    """Where a landed batch's time goes, one table per path, beside the library path's time."""
    for path, group, first in _by_path(rows):
        print(
            f"\nwhere a landed batch's time goes: {path}; {first['batch_seconds']:.3f} s per batch, "
            f"the library path {first['library_seconds']:.3f} s"
        )
        print(f"  {'part':<68} {'s per batch':>12} {'share':>6} {'x library':>10}")
        for r in group:
            print(
                f"  {r['part']:<68} {r['seconds_per_batch']:>12.3f} {r['share']:>6.0%} "
                f"{r['seconds_per_batch'] / r['library_seconds']:>10.2f}",
                flush=True,
            )
