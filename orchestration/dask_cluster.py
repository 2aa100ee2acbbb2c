"""A Dagster executor that runs each step of a run on a ``dask.distributed`` cluster.

Why not ``dagster_dask.dask_executor``: in Dagster 1.13 a run carries records (its op-concurrency
summary among them) that refuse iteration, and both Dask's task specification and its tokenizer
iterate over every named tuple they are handed, so that executor fails before the first step. Here
a step crosses to the worker as text: the same ``ExecuteStepArgs`` that ``dagster api execute_step``
takes, serialized by Dagster; the worker loads the run from the instance, executes the step as that
command would (its events are written to the instance's event log by the worker) and returns the
events, serialized, for the run's coordinator. Steps are submitted level by level with their
upstream steps' futures as dependencies, so Dask starts a step only after the steps it reads.

Every worker needs the project and its study files at the same path as the run's code location,
the ``DAGSTER_HOME`` of the instance (its storage must be reachable from each machine: PostgreSQL
in a team deployment) and the warehouse (``ASSIMILATE_WAREHOUSE_URL``). Steps do not take pool
slots: concurrent writers of the warehouse wait for its lock (resources/warehouse.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._cli.api import _execute_step_command_body  # the body of `dagster api execute_step`
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import deserialize_value, serialize_value


def run_step_on_worker(dependencies: list[Any], payload: str) -> list[str]:
    """On a Dask worker: execute one step of a run; its events, serialized.

    ``dependencies`` are the upstream steps' results, only so that Dask orders the tasks.
    """
    del dependencies
    args = deserialize_value(payload, ExecuteStepArgs)
    if args.instance_ref is None:
        raise ValueError(f"step {args.step_keys_to_execute} of run {args.run_id}: no instance to run it in")
    with dg.DagsterInstance.from_ref(args.instance_ref) as instance:
        run = instance.get_run_by_id(args.run_id)
        if run is None:
            raise ValueError(f"run {args.run_id} is not in the instance the step was sent with")
        return [serialize_value(event) for event in _execute_step_command_body(args, instance, run)]


class DaskClusterExecutor(Executor):
    """Submits each step of a run to the Dask scheduler at ``address``."""

    def __init__(self, address: str) -> None:
        self.address = address

    @property
    def retries(self) -> RetryMode:
        return RetryMode.DISABLED

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        import dask.distributed  # only a distributed deployment needs it installed

        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError(
                "a Dask cluster's workers need a persistent Dagster instance (DAGSTER_HOME)"
            )
        run = plan_context.dagster_run
        origin = plan_context.reconstructable_job.get_python_origin()
        instance_ref = plan_context.instance.get_ref()
        with dask.distributed.Client(self.address) as client:
            futures: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    upstream = [futures[key] for put in step.step_inputs for key in put.dependency_keys]
                    args = ExecuteStepArgs(
                        job_origin=origin,
                        run_id=run.run_id,
                        step_keys_to_execute=[step.key],
                        instance_ref=instance_ref,
                        retry_mode=RetryMode.DISABLED,
                        known_state=execution_plan.known_state,
                    )
                    futures[step.key] = client.submit(
                        run_step_on_worker,
                        upstream,
                        serialize_value(args),
                        key=f"{run.run_id}.{step.key}",
                        pure=False,
                    )
            finished = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _future, events in finished:
                for text in events:
                    yield deserialize_value(text, DagsterEvent)


@dg.executor(
    name="dask_cluster",
    config_schema={"address": dg.Field(str, description="The scheduler, e.g. tcp://10.0.0.5:8786")},
    requirements=dg.multiple_process_executor_requirements(),
)
def dask_cluster_executor(init_context: dg.InitExecutorContext) -> Executor:
    """Each step of a run on the Dask cluster whose scheduler is at ``address``."""
    return DaskClusterExecutor(init_context.executor_config["address"])
