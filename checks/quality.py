"""Data quality of a raw batch, with a Great Expectations (1.x) suite run on the delivered rows.

The suite reads the frame of the one reader (``assets/typed_batch.py``), as the covariate table
does. Batch rules: the required columns are present and both arms are there. Row rules (treatment
present and 0 or 1, outcome present and within the study's range, unit id present and unique) hold
for all but the share of rows the study quarantines (``mostly``): a row that breaks one is
quarantined by the covariate table, and only more than that share excludes the batch. GX is
imported inside the function: it costs several seconds, and a definitions load must not pay it;
its context is made once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pandas as pd

from assimilate.diagnostics import Verdict
from resources.study import StudyConfig


@dataclass(frozen=True)
class QualityResult:
    """One verdict over the whole suite plus a row per expectation."""

    verdict: Verdict
    expectations: pd.DataFrame


def _suite(study: StudyConfig, columns: set[str]) -> list[Any]:
    import great_expectations as gx

    required = [study.unit_id, study.treatment, study.outcome, *study.model_columns]
    required += [study.cluster] if study.cluster is not None else []
    expectations: list[Any] = [gx.expectations.ExpectColumnToExist(column=c) for c in required]
    # The share of rows the covariate table may quarantine before the batch is excluded.
    mostly = 1.0 - study.thresholds.max_quarantine_share
    if study.treatment in columns:
        expectations += [
            gx.expectations.ExpectColumnValuesToNotBeNull(column=study.treatment, mostly=mostly),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column=study.treatment, value_set=[0, 1], mostly=mostly
            ),
            gx.expectations.ExpectColumnDistinctValuesToContainSet(column=study.treatment, value_set=[0, 1]),
        ]
    if study.outcome in columns:
        expectations.append(
            gx.expectations.ExpectColumnValuesToNotBeNull(column=study.outcome, mostly=mostly)
        )
        low, high = study.outcome_range
        if low is not None or high is not None:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=study.outcome, min_value=low, max_value=high, mostly=mostly
                )
            )
    if study.unit_id in columns:
        expectations.append(
            gx.expectations.ExpectColumnValuesToNotBeNull(column=study.unit_id, mostly=mostly)
        )
        if study.duplicate_units == "reject":
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeUnique(column=study.unit_id, mostly=mostly)
            )
    return expectations


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


def run_quality_suite(typed: pd.DataFrame, study: StudyConfig, *, batch: str) -> QualityResult:
    """Validate a batch, as ``type_batch`` typed it, against the study's quality suite."""
    import great_expectations as gx

    definition = _batch_definition()  # first: a suite needs an active context
    suite = gx.ExpectationSuite(name=f"{study.name}_quality")
    for expectation in _suite(study, set(typed.columns)):
        suite.add_expectation(expectation)
    result = definition.get_batch(batch_parameters={"dataframe": typed}).validate(suite)
    rows = []
    for item in result.results:
        kwargs = item.expectation_config.kwargs
        rows.append(
            {
                "expectation": item.expectation_config.type,
                "column": str(kwargs.get("column", "")),
                "success": bool(item.success),
                "unexpected_count": item.result.get("unexpected_count"),
                "element_count": item.result.get("element_count"),
            }
        )
    table = pd.DataFrame(rows)
    failed = table[~table["success"]]
    n_failed = len(failed)
    reason = "; ".join(f"{r.column}: {r.expectation}" for r in failed.itertuples()) if n_failed else ""
    verdict = Verdict.evaluate(
        "data_quality",
        value=float(n_failed),
        threshold=0.0,
        rule="every expectation of the quality suite holds",
        passed=n_failed == 0,
        reason=f"batch {batch}: {reason}" if reason else f"{len(table)} expectations hold",
    )
    return QualityResult(verdict, table)
