"""raw_batch and covariate_table: one step, the landed batch read once and its rows validated as read.

raw_batch is the delivered file, cell for cell, with its SHA-256 and the file-level quality suite
(``checks/quality.py``), stored column by column (``resources/raw_columns.py``). covariate_table
is the typed pre-treatment columns of those rows, from one call of the covariate validator
(``checks/covariates.py``), bad rows quarantined with the reason. In one step, the covariate table
validates the rows raw_batch has just read instead of reading them back from the warehouse; a run
of covariate_table alone (a subset) reads the stored rows, which give back the same frame
(``batch_from_rows``). Each asset's tables go in their own transaction, raw_batch's first, so a
batch the validator cannot finish still has its raw batch stored and materialized, as two steps had.
"""

from collections.abc import Generator, Iterator
from typing import Any

import dagster as dg
import pandas as pd

from assets.common import (
    batch_asset_options,
    described,
    is_withdrawn,
    key,
    marking_exclusions,
    verdict_table,
    withdraw,
    withdrawn_results,
)
from assets.partition_range import each_batch
from checks.covariates import PROPERTIES, srm_description, validate_batch
from checks.quality import judge_landed_file
from checks.results import ERROR, check_result, check_results, check_spec, verdict_rows
from resources.batch_sources import no_data, read_batch
from resources.cadence import expected_name
from resources.landing import LandingResource
from resources.raw_columns import batch_from_rows, load_raw, raw_rows_table, stored_names
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

ASSETS = ("raw_batch", "covariate_table")
RAW_TABLES = ["raw_files", "raw_rows", verdict_table("raw_batch")]
COVARIATE_TABLES = ["covariates", "quarantine", verdict_table("covariate_table")]
Events = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# Only the twins: a range of 1,000 daily batches would read the whole table 1,000 times.
_TWINS_SQL = "SELECT partition_key FROM {table} WHERE sha256 = $sha256 AND partition_key <> $batch"


def build_intake(study: StudyConfig, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """raw_batch and covariate_table of ``study`` as one multi-asset (a run may select either)."""
    keys = {name: key(study, name) for name in ASSETS}
    options = batch_asset_options(study, partitions)
    step = {name: options.pop(name) for name in ("pool", "retry_policy", "backfill_policy")}

    @dg.multi_asset(
        name=f"{study.name}__intake",
        specs=_asset_specs(study, keys, options),
        check_specs=_check_specs(study, keys, partitions),
        can_subset=True,  # a withdrawn batch's checks are skipped, not passed
        **step,
    )
    @marking_exclusions
    @each_batch
    def intake(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> Events:
        """Read the batch once; store, describe and check each selected asset."""
        selected = {name for name in ASSETS if keys[name] in context.selected_asset_keys}
        delivered = None  # the rows as raw_batch read them, when it runs in this step
        if "raw_batch" in selected:
            delivered = yield from raw_batch(
                context.partition_key, context.run, study, keys["raw_batch"], warehouse, landing
            )
        if "covariate_table" in selected:
            yield from covariate_table(
                context.partition_key, study, keys["covariate_table"], warehouse, delivered
            )

    return intake


def raw_batch(
    batch: str,
    run: dg.DagsterRun,
    study: StudyConfig,
    asset_key: dg.AssetKey,
    warehouse: WarehouseResource,
    landing: LandingResource,
) -> Generator[dg.MaterializeResult | dg.AssetCheckResult, None, pd.DataFrame | None]:
    """Read, hash, judge and store the batch; return its rows as the warehouse gives them back
    (None for a withdrawn batch)."""
    landed = read_batch(study, batch, landing, warehouse)  # unreadable: a failed check, not a crash
    if landed is None:
        if not _withdrawal(run, warehouse, study, batch):
            raise dg.Failure(description=missing_file(study, batch), allow_retries=False)
        withdraw(warehouse.get(), study, batch, RAW_TABLES)
        yield from withdrawn_results(asset_key, ["data_quality"])
        return None
    twins = _same_content_elsewhere(warehouse, study, batch, landed.sha256)
    quality = judge_landed_file(landed, study, batch=batch, twins=twins)
    verdicts = verdict_rows("raw_batch", {"data_quality": (quality.verdict, ERROR)})
    rows = raw_rows_table(landed.raw)
    stored = dict(zip(RAW_TABLES, [landed.files_row(), rows, verdicts], strict=True))
    warehouse.get().replace_partition_tables(study.name, batch, stored)
    yield dg.MaterializeResult(
        asset_key=asset_key, metadata=landed.metadata(), data_version=dg.DataVersion(landed.sha256)
    )
    yield check_result(asset_key, "data_quality", quality.verdict, severity=ERROR, metadata=quality.metadata)
    return batch_from_rows(rows, list(landed.raw.columns), stored_names(landed.raw))


def covariate_table(
    batch: str,
    study: StudyConfig,
    asset_key: dg.AssetKey,
    warehouse: WarehouseResource,
    delivered: pd.DataFrame | None,
) -> Events:
    """Validate the batch's rows (read back from the warehouse when raw_batch did not run) and store."""
    store = warehouse.get()
    if delivered is None:  # not read by raw_batch here, or withdrawn by it (its writes may be held)
        withdrawn = is_withdrawn(store, study, batch)
        delivered = pd.DataFrame() if withdrawn else load_raw(store, study, batch)
        if withdrawn:
            withdraw(store, study, batch, COVARIATE_TABLES)
            yield from withdrawn_results(asset_key, list(PROPERTIES))
            return
    result = validate_batch(delivered, study, batch=batch)  # rows typed and judged once, here
    verdicts = verdict_rows("covariate_table", result.verdicts)
    tables = [result.valid, result.quarantine, verdicts]
    store.replace_partition_tables(study.name, batch, dict(zip(COVARIATE_TABLES, tables, strict=True)))
    yield dg.MaterializeResult(asset_key=asset_key, metadata=result.metadata)
    yield from check_results(asset_key, result.verdicts, result.check_metadata)


def _asset_specs(
    study: StudyConfig, keys: dict[str, dg.AssetKey], options: dict[str, Any]
) -> list[dg.AssetSpec]:
    raw = dg.AssetSpec(
        keys["raw_batch"],
        kinds={"duckdb"},
        description=described(
            study, f"{study.name}: the landed batch file, cell for cell as delivered, with its SHA-256."
        ),
        **options,
    )
    covariates = dg.AssetSpec(
        keys["covariate_table"],
        deps=[keys["raw_batch"]],
        kinds={"duckdb", "pandera"},
        description=described(
            study,
            f"{study.name}: typed, validated pre-treatment covariates; bad rows quarantined with the reason.",
        ),
        **options,
    )
    return [raw, covariates]


def _check_specs(
    study: StudyConfig, keys: dict[str, dg.AssetKey], partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    raw, covariates = keys["raw_batch"], keys["covariate_table"]
    quarantine = f"pandera schema; max_quarantine_share = {study.thresholds.max_quarantine_share}"
    return [
        check_spec(raw, "data_quality", "Great Expectations suite on the landed file", partitions),
        check_spec(covariates, "schema", quarantine, partitions),
        check_spec(covariates, "post_treatment_exclusion", "", partitions),
        check_spec(covariates, "sample_ratio_mismatch", srm_description(study), partitions),
    ]


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
    params = {"sha256": sha256, "batch": batch}
    same = warehouse.get().read_query_on(study.name, "raw_files", _TWINS_SQL, params)
    return [] if same is None else sorted(same["partition_key"].astype(str))
