"""One step over a range of batches, each batch recorded and checked as its own run would record it.

Every asset of a study has ``BackfillPolicy.single_run()``, so a backfill (or ``dagster asset
materialize --partition-range``) runs each asset once over the range instead of once per batch.
The asset bodies stay per batch: ``@each_batch`` under ``@dg.asset`` (or ``@dg.multi_asset``) calls
the body once for every batch of the step, in order, with a context whose ``partition_key`` is that
batch, and reports what it yields the way Dagster 1.13 allows in a range step:

* one output per asset of the step, from which Dagster writes one materialization per partition,
  each with the metadata its batch's body gave for that asset
  (``context.add_asset_metadata(asset_key=..., partition_key=...)``);
* per batch, its check results as ``AssetCheckEvaluation`` events of that partition, after the
  materializations so each targets its own batch's (an ``AssetCheckResult`` carries no partition:
  Dagster gives it one only in a one-partition step).

The batches' partition writes are held and written together, each table once for the range
(``resources/deferred_writes.py``: a read of a held table writes it first), and all are written
before the step reports its first materialization; a batch that raises leaves the batches before
it written, as a run per batch would.

What a range step cannot record as a run per batch does: a data version per partition (Dagster
tags every partition of a step's output with one), and Dagster's record of the batches done
before a batch that raises (the warehouse keeps their rows; a re-run replaces them).
"""

from __future__ import annotations

import functools
import graphlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

# Not exported by dagster 1.13; the pointer Dagster itself gives a partitioned check evaluation.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from resources.deferred_writes import deferring_writes
from resources.warehouse import warehouse_of
from resources.warehouse_lease import lease_connection

SINGLE_RUN = dg.BackfillPolicy.single_run()
FIGURE_NOT_DRAWN = (
    "not drawn: a step over a range of batches draws the figures of its last batch only; "
    "materialize this batch alone to draw them"
)
RANGE_END_TAG = "dagster/asset_partition_range_end"

BatchEvent = dg.MaterializeResult | dg.AssetCheckResult
StepEvent = BatchEvent | dg.AssetCheckEvaluation | dg.Output[None]


class BatchContext:
    """The step's context as one batch's body may use it: its batch, the log, the run, the instance.

    Anything else (output metadata above all) would belong to the whole range, not to the batch, so
    it is refused here rather than silently shared.
    """

    def __init__(self, context: dg.AssetExecutionContext, batch: str, *, last: bool = True) -> None:
        self._context, self.partition_key = context, batch
        # A figure costs ~0.1 s to draw, more than a small batch's statistics: a step over a range
        # draws its batches' figures for the last batch only (the one a backfill ends on).
        self.draws_figures = last

    @property
    def log(self) -> Any:
        return self._context.log

    @property
    def run(self) -> dg.DagsterRun:
        return self._context.run

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._context.instance

    @property
    def selected_asset_keys(self) -> frozenset[dg.AssetKey]:
        """The assets the step materializes (a multi-asset's subset), the same for every batch."""
        return frozenset(self._context.selected_asset_keys)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"context.{name} is not available to a batch's body (assets/partition_range.py): in a step over "
            "a range of batches it would belong to every batch of the range"
        )


def each_batch(body: Callable[..., Any]) -> Callable[..., Iterator[StepEvent]]:
    """Under ``@dg.asset``: run ``body`` for the step's batch, or for each batch of its range in order."""

    @functools.wraps(body)
    def step(context: dg.AssetExecutionContext, **resources: Any) -> Iterator[StepEvent]:
        if context.has_partition_key:
            yield from _events(body(BatchContext(context, context.partition_key), **resources))
            return
        batches = context.partition_keys
        checks: list[tuple[str, dg.AssetCheckResult]] = []
        # The batches' table writes are held and written together, before any materialization is
        # reported (resources/deferred_writes.py); a batch that fails leaves the ones before it written.
        with deferring_writes(warehouse_of(resources.get("warehouse"))):
            for batch in batches:
                batch_context = BatchContext(context, batch, last=batch == batches[-1])
                for event in _events(body(batch_context, **resources)):
                    if isinstance(event, dg.AssetCheckResult):
                        checks.append((batch, event))
                    elif event.metadata:
                        context.add_asset_metadata(
                            dict(event.metadata), asset_key=event.asset_key, partition_key=batch
                        )
        for asset_key in _dependency_order(context):
            yield dg.MaterializeResult(asset_key=asset_key)  # one output per asset of a multi-asset
        yield from _check_events(context, checks)

    return holding_the_warehouse(step)


def holding_the_warehouse(step: Callable[..., Any]) -> Callable[..., Any]:
    """The step with one leased warehouse connection (DuckDB) for all it reads and writes, let go
    when idle (resources/warehouse_lease.py): a step that opened the file per read paid ~20 ms each."""
    if inspect.isgeneratorfunction(step):

        @functools.wraps(step)
        def leased_events(*args: Any, **resources: Any) -> Iterator[Any]:
            with lease_connection(warehouse_of(resources.get("warehouse"))):
                yield from step(*args, **resources)

        return leased_events

    @functools.wraps(step)
    def leased(*args: Any, **resources: Any) -> Any:
        with lease_connection(warehouse_of(resources.get("warehouse"))):
            return step(*args, **resources)

    return leased


def _dependency_order(context: dg.AssetExecutionContext) -> list[dg.AssetKey]:
    """The step's assets, each after the assets of the step it depends on (Dagster's rule for outputs)."""
    selected = set(context.selected_asset_keys)
    deps = context.assets_def.asset_deps
    graph = {k: sorted(set(deps.get(k, ())) & selected, key=str) for k in sorted(selected, key=str)}
    return list(graphlib.TopologicalSorter(graph).static_order())


def _events(returned: BatchEvent | Iterator[BatchEvent]) -> Iterator[BatchEvent]:
    if isinstance(returned, dg.MaterializeResult | dg.AssetCheckResult):
        yield returned
    else:
        yield from returned


def _check_events(
    context: dg.AssetExecutionContext, checks: list[tuple[str, dg.AssetCheckResult]]
) -> Iterator[dg.Output[None] | dg.AssetCheckEvaluation]:
    """Each check's output once (what Dagster yields for an ``AssetCheckResult``), then its evaluations."""
    outputs = {spec.name: name for name, spec in context.assets_def.check_specs_by_output_name.items()}
    targets = _materializations(context, checks)
    for batch, result in checks:
        name = outputs.pop(str(result.check_name), None)
        if name is not None:
            yield dg.Output(None, output_name=name)
        asset_key = result.asset_key or context.asset_key
        yield _evaluation(context, batch, result, targets.get((asset_key, batch)))


def _materializations(
    context: dg.AssetExecutionContext, checks: list[tuple[str, dg.AssetCheckResult]]
) -> dict[tuple[dg.AssetKey, str], dg.EventLogRecord]:
    """The step's materialization of each checked (asset, batch): one query per asset, not per check.

    The step has just written one materialization per batch of each of its assets, so an asset's
    newest records over the step's batches are those.
    """
    batches: dict[dg.AssetKey, set[str]] = {}
    for batch, result in checks:
        batches.setdefault(result.asset_key or context.asset_key, set()).add(batch)
    found: dict[tuple[dg.AssetKey, str], dg.EventLogRecord] = {}
    for asset_key, keys in batches.items():
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(keys)), limit=len(keys)
        ).records
        for record in records:  # newest first
            found.setdefault((asset_key, str(record.partition_key)), record)
    return found


def _evaluation(
    context: dg.AssetExecutionContext,
    batch: str,
    result: dg.AssetCheckResult,
    record: dg.EventLogRecord | None,
) -> dg.AssetCheckEvaluation:
    asset_key = result.asset_key or context.asset_key
    spec = next(s for s in context.assets_def.check_specs if s.key.name == result.check_name)
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
        )
        if record is not None
        else None
    )
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=spec.name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=target,
        severity=result.severity,
        description=result.description,
        blocking=spec.blocking,
        partition=batch if spec.partitions_def is not None else None,
    )


def last_batch(context: dg.AssetExecutionContext) -> str | None:
    """The run's batch, or the last batch of its range (what a run per batch would end on)."""
    tags = context.run.tags
    return tags.get("dagster/partition") or tags.get(RANGE_END_TAG)
