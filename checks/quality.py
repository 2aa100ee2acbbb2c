"""Data quality of a landed file: the rules of the file as a whole, with a Great Expectations (1.x) suite.

The suite holds the file-level rules only (docs/DECISIONS.md, item 31): the file is a readable,
non-empty table (``resources/raw_records.py`` says why not), every column the study requires is
present, both arms are present (the treatment reads 0 in some row and 1 in another), and the file
is not the file of another batch. A file that breaks one cannot be judged row by row, so it is
excluded at once. Row rules (a treatment not 0 or 1, a missing or out-of-range value, a duplicated
unit id ...) are the covariate validator's (``checks/covariates.py``): a bad row is quarantined and
only a quarantined share above the study's bound excludes the batch, once, in the ``schema`` check.

The suite reads the treatment as the one reader types it (``checks/typed_batch.py``), so ``TRUE``,
``1e0`` and a Parquet boolean are arms like ``1``. GX is imported inside the functions: it costs
several seconds, and a definitions load must not pay it; its context is made once per process.

Example
-------
>>> result = judge_landed_file(read_landed_file(path, batch="2025-01-01"), study, twins=[])  # doctest: +SKIP
>>> result.verdict.rule  # doctest: +SKIP
'every expectation of the quality suite holds (required columns present, both arms present)'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from assimilate.diagnostics import Verdict
from checks.results import naming_batch
from checks.typed_batch import missing_columns_reason, required_columns, type_batch
from resources.raw_records import LandedFile
from resources.study import StudyConfig

RULE = "every expectation of the quality suite holds (required columns present, both arms present)"
ARMS = [0, 1]


@dataclass(frozen=True)
class QualityResult:
    """One verdict over the whole suite plus a row per expectation."""

    verdict: Verdict
    expectations: pd.DataFrame

    @property
    def metadata(self) -> dict[str, Any]:
        """The check result's extra entries: the table of expectations."""
        return {"expectations": dg.MetadataValue.md(self.expectations.to_markdown(index=False) or "none")}


def judge_landed_file(
    landed: LandedFile, study: StudyConfig, *, batch: str, twins: list[str]
) -> QualityResult:
    """The file-level verdict of one landed file; ``twins``: other batches stored with the same sha256."""
    if landed.error or landed.raw.empty:
        reason = landed.error or f"batch {batch}: the file has no data rows"
        result = QualityResult(_unreadable(reason), pd.DataFrame())
    else:
        typed = type_batch(landed.raw, study, columns=[study.treatment])  # the suite reads the arms only
        result = run_quality_suite(typed.frame, study, batch=batch)
    if twins and not result.verdict.failed:
        result = QualityResult(_delivered_twice(batch, landed.sha256, twins), result.expectations)
    return QualityResult(naming_batch(result.verdict, batch), result.expectations)


def _suite(study: StudyConfig, columns: set[str]) -> Any:
    """The study's suite for a file with these columns (arms are checked when the treatment is there).

    A did study's batch is one period of a rollout: before the first adoption no unit is treated.
    """
    checks_arms = study.treatment in columns and study.design.kind != "did"
    return _expectation_suite(study.name, tuple(required_columns(study)), study.treatment, checks_arms)


@functools.lru_cache(maxsize=64)
def _expectation_suite(name: str, required: tuple[str, ...], treatment: str, checks_arms: bool) -> Any:
    """Built once per process and study: building a suite costs more than validating a small file."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"{name}_quality")
    for column in required:
        suite.add_expectation(gx.expectations.ExpectColumnToExist(column=column))
    if checks_arms:
        suite.add_expectation(
            gx.expectations.ExpectColumnDistinctValuesToContainSet(column=treatment, value_set=ARMS)
        )
    return suite


@functools.cache
def _batch_definition() -> Any:
    """One ephemeral GX context per process: creating one per batch costs ~0.1 s."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every batch by hashing all its values, twice per validation (~0.1 s per 1e5
    # rows); the fingerprint is never read here, and this threshold is GX's switch for it.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("landed")
    return source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("all")


def _release_batches(definition: Any) -> None:
    """Drop the GX engine's references to the validated frame: the engine keeps its last batch,
    which would hold a 1e7-row batch's gigabytes through the run's later steps."""
    manager = definition.data_asset.datasource.get_execution_engine().batch_manager
    manager.reset_batch_cache()
    manager.batch_data_cache.clear()


def run_quality_suite(typed: pd.DataFrame, study: StudyConfig, *, batch: str) -> QualityResult:
    """Validate a batch, as ``type_batch`` typed it, against the study's file-level suite."""
    definition = _batch_definition()  # first: a suite needs an active context
    suite = _suite(study, set(typed.columns))
    try:
        result = definition.get_batch(batch_parameters={"dataframe": typed}).validate(suite)
    finally:
        _release_batches(definition)
    rows = []
    for item in result.results:
        rows.append(
            {
                "expectation": item.expectation_config.type,
                "column": str(item.expectation_config.kwargs.get("column", "")),
                "success": bool(item.success),
                "missing_values": ", ".join(str(v) for v in item.result.get("partial_missing_list") or []),
            }
        )
    table = pd.DataFrame(rows)
    n_failed = int((~table["success"]).sum())
    return QualityResult(
        Verdict.evaluate(
            "data_quality",
            value=float(n_failed),
            threshold=0.0,
            rule=RULE,
            passed=n_failed == 0,
            reason=_reason(study, typed, table, batch) if n_failed else f"{len(table)} expectations hold",
        ),
        table,
    )


def _reason(study: StudyConfig, typed: pd.DataFrame, table: pd.DataFrame, batch: str) -> str:
    """Each broken rule in words: the missing columns with the closest ones, the missing arms."""
    clauses = []
    missing = [c for c in required_columns(study) if c not in typed.columns]
    if missing:
        where = missing_columns_reason(study, missing, [str(c) for c in typed.columns])
        clauses.append(f"missing required columns {missing}: {where}")
    arms = table[(table["expectation"] == "expect_column_distinct_values_to_contain_set") & ~table["success"]]
    for row in arms.itertuples():
        clauses.append(
            f"{row.column}: no row reads {row.missing_values} (both arms, 0 and 1, must be present)"
        )
    return f"batch {batch}: " + "; ".join(clauses)


def _delivered_twice(batch: str, sha256: str, twins: list[str]) -> Verdict:
    # The same units counted as two periods would shrink the posterior as if the evidence doubled.
    return Verdict.evaluate(
        "data_quality",
        value=float(len(twins)),
        threshold=0.0,
        rule="a batch's file is not the file of another batch",
        passed=False,
        reason=(
            f"batch {batch}: the same file (sha256 {sha256[:12]}) was landed for batch {', '.join(twins)}: "
            "one delivery would be counted twice; replace the wrong one"
        ),
    )


def _unreadable(reason: str) -> Verdict:
    return Verdict.evaluate(
        "data_quality",
        value=1.0,
        threshold=0.0,
        rule="the file is a readable, non-empty table",
        passed=False,
        reason=reason,
    )
