"""covariate_table: the typed pre-treatment columns of the stored raw rows; bad rows quarantined.

One call of the covariate validator (``checks/covariates.py``), which owns every row rule and the
quarantined share that excludes a batch; this module reads the stored raw rows and writes.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

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
from checks.covariates import PROPERTIES, srm_description, validate_batch
from checks.results import check_results, check_spec, verdict_rows
from resources.raw_columns import load_raw
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

TABLES = ["covariates", "quarantine", verdict_table("covariate_table")]


def build_covariate_table(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: dg.AssetKey
) -> dg.AssetsDefinition:
    asset_key = key(study, "covariate_table")
    specs = [
        check_spec(
            asset_key,
            "schema",
            f"pandera schema; max_quarantine_share = {study.thresholds.max_quarantine_share}",
            partitions,
        ),
        check_spec(asset_key, "post_treatment_exclusion", "", partitions),
        check_spec(asset_key, "sample_ratio_mismatch", srm_description(study), partitions),
    ]

    @checked_asset(
        key=asset_key,
        deps=[upstream],
        **batch_asset_options(study, partitions),
        kinds={"duckdb", "pandera"},
        check_specs=specs,
        description=described(
            study,
            f"{study.name}: typed, validated pre-treatment covariates; bad rows quarantined with the reason.",
        ),
    )
    @each_batch
    def covariate_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        batch, store = context.partition_key, warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            raw = pd.DataFrame() if withdrawn else load_raw(reader, study, batch)
        if withdrawn:
            withdraw(store, study, batch, TABLES)
            yield from withdrawn_results(asset_key, list(PROPERTIES))
            return
        result = validate_batch(raw, study, batch=batch)  # rows typed and judged once, here
        verdicts = verdict_rows("covariate_table", result.verdicts)
        store.replace_partition_tables(
            study.name, batch, dict(zip(TABLES, [result.valid, result.quarantine, verdicts], strict=True))
        )
        yield dg.MaterializeResult(metadata=result.metadata)
        yield from check_results(asset_key, result.verdicts, result.check_metadata)

    return covariate_table
