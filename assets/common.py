"""Names, keys and small helpers shared by the per-study asset factories."""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

import assimilate
from assets.partition_range import SINGLE_RUN
from assimilate.diagnostics import Verdict
from checks.results import ERROR, gate_failures, mark_excluded, not_assessed
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import Warehouse

VERDICT_TABLES = ("raw_batch", "covariate_table", "propensity_model", "batch_effect")
WRITE_POOL = "duckdb_write"
RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


def key(study: StudyConfig, name: str) -> dg.AssetKey:
    """Asset keys are prefixed by the study name: ``<study>/<asset>``."""
    return dg.AssetKey([study.name, name])


def batch_asset_options(study: StudyConfig, partitions: dg.PartitionsDefinition) -> dict[str, Any]:
    """What every partitioned asset of a study shares: group, partitions, write pool, retries, version.

    A backfill of a range runs each asset once over the range (assets/partition_range.py).
    """
    return {
        "partitions_def": partitions,
        "group_name": study.name,
        "pool": WRITE_POOL,
        "retry_policy": RETRY,
        "backfill_policy": SINGLE_RUN,
        "code_version": code_version(study),
    }


WITHDRAWN = "batch withdrawn: its file was removed from the landing folder"


def is_withdrawn(store: Warehouse, study: StudyConfig, batch: str) -> bool:
    """A partition whose raw batch holds no file (never landed, or withdrawn)."""
    return store.read_table(study.name, "raw_files", partition_key=batch).empty


def withdraw(store: Warehouse, study: StudyConfig, batch: str, tables: list[str]) -> None:
    """Remove one partition's rows from ``tables`` in one transaction."""
    store.replace_partition_tables(study.name, batch, {table: pd.DataFrame() for table in tables})


def withdrawn_results(asset_key: dg.AssetKey, properties: list[str]) -> Iterator[dg.MaterializeResult]:
    """A withdrawn batch's materialization: its checks are not assessed (left unreported), with the reason."""
    verdicts = {
        prop: (
            Verdict.undefined(prop, threshold=None, rule="applies to a landed batch", reason=WITHDRAWN),
            ERROR,
        )
        for prop in properties
    }
    yield dg.MaterializeResult(
        asset_key=asset_key,
        metadata={"withdrawn": True, "reason": WITHDRAWN, **not_assessed(asset_key.path[-1], verdicts)},
    )


OP_OPTIONS = ("pool", "retry_policy", "backfill_policy", "op_tags")  # the rest describe the asset


def checked_asset(
    *, key: dg.AssetKey, check_specs: list[dg.AssetCheckSpec], **options: Any
) -> Callable[[Callable[..., Iterator[Any]]], dg.AssetsDefinition]:
    """``@dg.asset`` for an asset with checks (same keyword arguments), as a one-asset multi-asset.

    Two things a plain ``@asset`` cannot do. A check that was not assessed is left unreported and
    Dagster records it as skipped, never as passed: only a subsettable multi-asset may leave a
    declared check out (a plain asset fails the step). And a run in which an ERROR check fails is
    tagged ``assimilate/excluded`` with the check's name, since the run itself stays green.
    """
    op_options = {name: options.pop(name) for name in OP_OPTIONS if name in options}
    spec = dg.AssetSpec(key, **options)

    def decorate(body: Callable[..., Iterator[Any]]) -> dg.AssetsDefinition:
        if not inspect.isgeneratorfunction(body):
            raise TypeError(f"{body.__name__}: a checked asset yields its results")
        return dg.multi_asset(
            name=key.to_python_identifier(),  # the op name (and step key) @asset gives
            specs=[spec],
            check_specs=check_specs,
            can_subset=True,
            **op_options,
        )(marking_exclusions(body))

    return decorate


def marking_exclusions(body: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """A step body that tags its run with the ERROR checks that failed in it (the run stays green)."""

    @functools.wraps(body)
    def step(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events = []
        for event in body(*args, **kwargs):
            events.append(event)
            yield event
        mark_excluded(dg.AssetExecutionContext.get(), gate_failures(events))

    return step


def plot_metadata(reports: ReportsResource, study: StudyConfig, name: str, png: bytes) -> dict[str, Any]:
    """Write a plot under the study's reports and return metadata that shows it in the UI."""
    path = reports.write_bytes(study.name, name, png)
    label = Path(name).stem
    return {
        label: dg.MetadataValue.md(f"![{label}](data:image/png;base64,{base64.b64encode(png).decode()})"),
        f"{label}_path": dg.MetadataValue.path(str(path)),
    }


def described(study: StudyConfig, what: str) -> str:
    """An asset's description followed by the study's estimand card, so the UI states the question."""
    card = study.estimand_card
    if card is None:
        return f"{what}\n\nNo estimand card: the study's question and estimand are not stated."
    return (
        f"{what}\n\n**Question.** {card.business_question}\n\n"
        f"**Causal question.** {card.causal_question} ({card.estimand}; unit: {card.unit}; "
        f"population: {card.target_population}; window: {card.time_window})\n\n"
        f"**Treatment** {card.treatment} vs **control** {card.control_condition}; **outcome** {card.outcome}."
    )


def verdict_table(asset: str) -> str:
    """Each batch asset stores its verdicts in its own table, replaced per partition."""
    return f"verdicts_{asset}"


def read_verdicts(store: Warehouse, study: StudyConfig) -> pd.DataFrame:
    """Every stored verdict of every batch asset of the study, in one frame."""
    frames = [store.read_table(study.name, verdict_table(asset)) for asset in VERDICT_TABLES]
    stored = [frame for frame in frames if not frame.empty]  # an empty table has no column types to agree on
    if not stored:
        return frames[0]
    # An all-missing column (e.g. every verdict of one asset undefined, so no value) takes the type
    # the other tables give it, as pandas does today; its announced change would make it object.
    columns = set().union(*(frame.columns for frame in stored))
    typed = {c: next((f[c].dtype for f in stored if c in f and f[c].notna().any()), None) for c in columns}
    typed = {c: t for c, t in typed.items() if t is not None and t.kind in "fO"}  # NaN-holding types only
    aligned = [
        frame.astype({c: t for c, t in typed.items() if c in frame and frame[c].isna().all()})
        for frame in stored
    ]
    return pd.concat(aligned, ignore_index=True)


def code_version(study: StudyConfig) -> str:
    """Library version plus the study config hash: a config change marks assets stale."""
    return f"{assimilate.__version__}+{study.config_hash[:12]}"


def batch_rng(study: StudyConfig, partition_key: str) -> np.random.Generator:
    """Seeded per study and partition, so a re-run draws the same numbers."""
    digest = hashlib.sha256(f"{study.seed}:{partition_key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def frame_to_records_md(frame: pd.DataFrame, *, float_digits: int = 4) -> dg.MetadataValue:
    """A small data frame as a markdown table for the UI."""
    return dg.MetadataValue.md(frame.round(float_digits).to_markdown(index=False))


def as_json(value: Any) -> str:
    """Canonical JSON text (sorted keys) for diagnostics columns."""
    return json.dumps(value, sort_keys=True, default=str)
