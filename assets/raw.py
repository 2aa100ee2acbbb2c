"""raw_batch: the landed file, exactly as delivered, with its content hash and the quality suite.

The file is read once (``resources/raw_records.py``: its bytes hashed and parsed), judged by the
file-level rules (``checks/quality.py``), and stored column by column for the covariate table
(``resources/raw_columns.py``).
"""

from collections.abc import Iterator

import dagster as dg

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
from checks.quality import judge_landed_file
from checks.results import ERROR, check_result, check_spec, verdict_rows
from resources.batch_sources import no_data, read_batch
from resources.cadence import expected_name
from resources.landing import LandingResource
from resources.raw_columns import raw_rows_table
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

TABLES = ["raw_files", "raw_rows", verdict_table("raw_batch")]


def build_raw_batch(study: StudyConfig, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    asset_key = key(study, "raw_batch")

    @checked_asset(  # a withdrawn batch's check is skipped, not passed; a failed one tags the run
        key=asset_key,
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        description=described(
            study, f"{study.name}: the landed batch file, cell for cell as delivered, with its SHA-256."
        ),
        check_specs=[
            check_spec(asset_key, "data_quality", "Great Expectations suite on the landed file", partitions)
        ],
    )
    @each_batch
    def raw_batch(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        batch = context.partition_key
        landed = read_batch(study, batch, landing, warehouse)  # unreadable: a failed check, not a crash
        if landed is None:
            if not _withdrawal(context.run, warehouse, study, batch):
                raise dg.Failure(description=missing_file(study, batch), allow_retries=False)
            withdraw(warehouse.get(), study, batch, TABLES)
            yield from withdrawn_results(asset_key, ["data_quality"])
            return
        twins = _same_content_elsewhere(warehouse, study, batch, landed.sha256)
        quality = judge_landed_file(landed, study, batch=batch, twins=twins)
        verdicts = verdict_rows("raw_batch", {"data_quality": (quality.verdict, ERROR)})
        stored = [landed.files_row(), raw_rows_table(landed.raw), verdicts]
        warehouse.get().replace_partition_tables(study.name, batch, dict(zip(TABLES, stored, strict=True)))
        yield dg.MaterializeResult(metadata=landed.metadata(), data_version=dg.DataVersion(landed.sha256))
        yield check_result(
            asset_key, "data_quality", quality.verdict, severity=ERROR, metadata=quality.metadata
        )

    return raw_batch


def _withdrawal(run: dg.DagsterRun, warehouse: WarehouseResource, study: StudyConfig, batch: str) -> bool:
    """Whether a partition without a file is a withdrawal: a file was read for it before."""
    if run.tags.get("assimilate/withdrawn") == "true":  # the landing sensor saw it materialized
        return True
    return not is_withdrawn(warehouse.get(), study, batch)  # the warehouse still holds its batch


def missing_file(study: StudyConfig, batch: str) -> str:
    # DECISIONS 6: a partition is materialized from its file; one that never had a file is an error.
    if study.source is not None:  # a Parquet dataset or a SQL query (resources/batch_sources.py)
        return no_data(study, batch)
    name = expected_name(batch, study.cadence)
    return (
        f"study {study.name}, batch {batch}: no file landed for this partition, so there is nothing to "
        f"materialize; expected {name} (or .parquet) in the landing folder {study.landing_folder}/ "
        "(the landing sensor runs the batch once it lands)"
    )


def _same_content_elsewhere(
    warehouse: WarehouseResource, study: StudyConfig, batch: str, sha256: str
) -> list[str]:
    """Other batches whose stored file has this content (the same delivery landed twice)."""
    files = warehouse.get().read_table(study.name, "raw_files")
    if files.empty:
        return []
    same = files[(files["sha256"] == sha256) & (files["partition_key"] != batch)]
    return sorted(same["partition_key"].astype(str))
