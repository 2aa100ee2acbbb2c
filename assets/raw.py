"""raw_batch: the landed file, exactly as delivered, with its content hash and the quality suite."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import pandas as pd

from assets.batch_validation import BatchFileError, read_batch_file
from assets.common import (
    batch_asset_options,
    checked_asset,
    described,
    is_withdrawn,
    key,
    verdict_table,
    withdraw,
    withdrawn_results,
)
from assets.partition_range import each_batch
from assets.raw_records import raw_rows_table
from assets.typed_batch import type_batch
from assimilate.diagnostics import Verdict
from checks.quality import run_quality_suite
from checks.results import ERROR, check_result, check_spec, naming_batch, verdict_rows
from resources.cadence import expected_name
from resources.landing import LandingResource
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource


def build_raw_batch(study: StudyConfig, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    asset_key = key(study, "raw_batch")

    @checked_asset(  # a withdrawn batch's check is skipped, not passed; a failed one tags the run
        key=asset_key,
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        description=described(
            study, f"{study.name}: the landed batch file, row by row as text, with its SHA-256."
        ),
        check_specs=[
            check_spec(asset_key, "data_quality", "Great Expectations suite on the landed rows", partitions)
        ],
    )
    @each_batch
    def raw_batch(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        batch = context.partition_key
        path = landing.find_file(study, batch)
        if path is None:
            if not _withdrawal(context.run, warehouse, study, batch):
                raise dg.Failure(description=missing_file(study, batch), allow_retries=False)
            withdraw(warehouse.get(), study, batch, ["raw_files", "raw_rows", verdict_table("raw_batch")])
            yield from withdrawn_results(asset_key, ["data_quality"])
            return
        content = path.read_bytes()
        sha256 = hashlib.sha256(content).hexdigest()
        try:
            raw = read_batch_file(path, batch=batch, content=content)
            verdict, expectations = _quality(raw, study, batch)
        except BatchFileError as error:
            # An unreadable file is a failed quality check, not a crash: it is recorded, alerted on,
            # and the posterior takes a predict-only step for this batch.
            raw = pd.DataFrame()
            verdict, expectations = _unreadable(str(error)), pd.DataFrame()
        twins = _same_content_elsewhere(warehouse, study, batch, sha256)
        if twins and not verdict.failed:
            verdict = _delivered_twice(batch, sha256, twins)
        verdict = naming_batch(verdict, batch)
        file_row = pd.DataFrame(
            [
                {
                    "file_name": path.name,
                    "sha256": sha256,
                    "size_bytes": len(content),
                    "n_rows": len(raw),
                    "columns_json": json.dumps(list(raw.columns), ensure_ascii=False),
                }
            ]
        )
        warehouse.get().replace_partition_tables(
            study.name,
            batch,
            {
                "raw_files": file_row,
                "raw_rows": raw_rows_table(raw),
                verdict_table("raw_batch"): verdict_rows("raw_batch", {"data_quality": (verdict, ERROR)}),
            },
        )
        yield dg.MaterializeResult(
            metadata={
                "file": path.name,
                "sha256": sha256,
                "rows": len(raw),
                "columns": len(raw.columns),
                "dagster/row_count": len(raw),
            },
            data_version=dg.DataVersion(sha256),
        )
        yield check_result(
            asset_key,
            "data_quality",
            verdict,
            severity=ERROR,
            metadata={"expectations": dg.MetadataValue.md(expectations.to_markdown(index=False) or "none")},
        )

    return raw_batch


def _withdrawal(run: dg.DagsterRun, warehouse: WarehouseResource, study: StudyConfig, batch: str) -> bool:
    """Whether a partition without a file is a withdrawal: a file was read for it before."""
    if run.tags.get("assimilate/withdrawn") == "true":  # the landing sensor saw it materialized
        return True
    return not is_withdrawn(warehouse.get(), study, batch)  # the warehouse still holds its batch


def missing_file(study: StudyConfig, batch: str) -> str:
    # DECISIONS 6: a partition is materialized from its file; one that never had a file is an error.
    name = expected_name(batch, study.cadence)
    return (
        f"study {study.name}, batch {batch}: no file landed for this partition, so there is nothing to "
        f"materialize; expected {name} (or .parquet) in the landing folder {study.landing_folder}/ "
        "(the landing sensor runs the batch once it lands)"
    )


def _quality(raw: pd.DataFrame, study: StudyConfig, batch: str) -> tuple[Verdict, pd.DataFrame]:
    if raw.empty:
        return _unreadable(f"batch {batch}: the file has no data rows"), pd.DataFrame()
    # The suite reads the batch as the covariate table does (one reader types each column); it judges
    # the values of these columns only (the others: whether they exist).
    judged = [study.unit_id, study.treatment, study.outcome]
    typed = type_batch(raw, study, columns=judged)
    result = run_quality_suite(typed.frame, study, batch=batch)
    if typed.missing_reason:  # the suite says "expect_column_to_exist": name the study key and closest column
        return replace(result.verdict, reason=f"batch {batch}: {typed.missing_reason}"), result.expectations
    return result.verdict, result.expectations


def _same_content_elsewhere(
    warehouse: WarehouseResource, study: StudyConfig, batch: str, sha256: str
) -> list[str]:
    files = warehouse.get().read_table(study.name, "raw_files")
    if files.empty:
        return []
    same = files[(files["sha256"] == sha256) & (files["partition_key"] != batch)]
    return sorted(same["partition_key"].astype(str))


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
