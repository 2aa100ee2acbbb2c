"""Names, keys and small helpers shared by the per-study asset factories."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

import assimilate
from assimilate.diagnostics import Verdict
from checks.results import ERROR, check_result
from orchestration.study_config import StudyConfig
from resources.reports import ReportsResource
from resources.warehouse import Warehouse

VERDICT_TABLES = ("raw_batch", "covariate_table", "propensity_model", "batch_effect")
WRITE_POOL = "duckdb_write"
RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


def key(study: StudyConfig, name: str) -> dg.AssetKey:
    """Asset keys are prefixed by the study name: ``<study>/<asset>``."""
    return dg.AssetKey([study.name, name])


def batch_asset_options(study: StudyConfig, partitions: dg.PartitionsDefinition) -> dict[str, Any]:
    """What every partitioned asset of a study shares: group, partitions, write pool, retries, version."""
    return {
        "partitions_def": partitions,
        "group_name": study.name,
        "pool": WRITE_POOL,
        "retry_policy": RETRY,
        "code_version": code_version(study),
    }


WITHDRAWN = "batch withdrawn: its file was removed from the landing folder"


def is_withdrawn(store: Warehouse, study: StudyConfig, batch: str) -> bool:
    """A partition whose raw batch holds no file (never landed, or withdrawn)."""
    return store.read_table(study.name, "raw_files", partition_key=batch).empty


def withdraw(store: Warehouse, study: StudyConfig, batch: str, tables: list[str]) -> None:
    """Remove one partition's rows from ``tables`` in one transaction."""
    store.replace_partition_tables(study.name, batch, {table: pd.DataFrame() for table in tables})


def withdrawn_results(
    asset_key: dg.AssetKey, properties: list[str]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A withdrawn batch's materialization: its checks do not apply (undefined, with the reason)."""
    yield dg.MaterializeResult(metadata={"withdrawn": True, "reason": WITHDRAWN})
    for prop in properties:
        verdict = Verdict.undefined(prop, threshold=None, rule="applies to a landed batch", reason=WITHDRAWN)
        yield check_result(asset_key, prop, verdict, severity=ERROR)


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
    return pd.concat(frames, ignore_index=True)


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
