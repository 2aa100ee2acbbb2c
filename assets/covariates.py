"""covariate_table: pandera-validated pre-treatment covariates; failing rows go to quarantine."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from assets.batch_validation import covariate_schema, split_valid_rows
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
from assets.raw_records import records_frame
from assets.typed_batch import type_batch
from assimilate.design.plan import ONE_SUBJECT
from assimilate.diagnostics import Verdict, sample_ratio_mismatch
from checks.post_treatment import post_treatment_verdict
from checks.results import ERROR, check_results, check_spec, naming_batch, not_assessed, verdict_rows
from resources.study import StudyConfig
from resources.warehouse import Warehouse, WarehouseResource


def load_raw(store: Warehouse, study: StudyConfig, batch: str) -> pd.DataFrame:
    """The raw batch as delivered (all text), rebuilt from the stored rows in their order."""
    rows = store.read_table(study.name, "raw_rows", partition_key=batch)
    if rows.empty:
        return pd.DataFrame()
    return records_frame(rows.sort_values("row_index")["record_json"])


def schema_verdict(
    study: StudyConfig,
    valid: pd.DataFrame,
    missing: tuple[str, ...],
    n_rows: int,
    n_quarantined: int,
    batch: str,
    missing_reason: str = "",
) -> Verdict:
    """The valid table conforms (pandera) and the quarantined share stays under the threshold.

    ``missing_reason``: the study key and closest column of each missing one (``type_batch``).
    """
    rule = f"required columns present and quarantined share <= {study.thresholds.max_quarantine_share}"
    if missing:
        return Verdict.evaluate(
            "schema",
            value=1.0,
            threshold=study.thresholds.max_quarantine_share,
            rule=rule,
            passed=False,
            reason=f"batch {batch}: missing required columns {list(missing)}"
            + (f": {missing_reason}" if missing_reason else ""),
        )
    if not valid.empty:
        covariate_schema(study).validate(valid.drop(columns="row_index"))
    share = n_quarantined / n_rows if n_rows else 1.0
    reason = f"batch {batch}: {n_quarantined} of {n_rows} rows quarantined"
    return Verdict.evaluate(
        "schema",
        value=share,
        threshold=study.thresholds.max_quarantine_share,
        rule=rule,
        passed=share <= study.thresholds.max_quarantine_share,
        reason=reason,
    )


def srm_verdict(study: StudyConfig, valid: pd.DataFrame) -> Verdict:
    if study.single_subject:
        rule = f"p-value >= {study.thresholds.srm_alpha}"
        return Verdict.undefined("sample_ratio_mismatch", threshold=None, rule=rule, reason=ONE_SUBJECT)
    if study.design.kind != "randomized" or valid.empty:
        reason = (
            "observational design: no designed split"
            if study.design.kind != "randomized"
            else "no valid rows"
        )
        return Verdict.undefined(
            "sample_ratio_mismatch",
            threshold=study.thresholds.srm_alpha,
            rule=f"p-value >= {study.thresholds.srm_alpha}",
            reason=reason,
        )
    n_treated = int(valid[study.treatment].sum())
    report = sample_ratio_mismatch(
        n_treated,
        len(valid) - n_treated,
        expected_treated_share=study.design.treated_share,
        alpha=study.thresholds.srm_alpha,
        min_units=study.thresholds.srm_min_units,
        rule=study.thresholds.gate_rule,
        looks=study.batches_per_year,
        family_alpha=study.thresholds.srm_false_alarm_per_year,
    )
    return report.verdict


def srm_description(study: StudyConfig) -> str:
    if study.single_subject:
        return ONE_SUBJECT
    if study.design.kind != "randomized":
        return "not assessed: an observational design has no designed split"
    if study.thresholds.gate_rule == "fixed":
        return f"chi-square test of the designed treatment split at srm_alpha = {study.thresholds.srm_alpha}"
    rate = study.thresholds.srm_false_alarm_per_year
    return (
        f"exact binomial test of the designed treatment split; a healthy study fails some batch "
        f"with probability {rate:g} a year ({study.batches_per_year} looks)"
    )


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
        batch = context.partition_key
        store = warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            raw = pd.DataFrame() if withdrawn else load_raw(reader, study, batch)
        if withdrawn:
            withdraw(store, study, batch, ["covariates", "quarantine", verdict_table("covariate_table")])
            yield from withdrawn_results(
                asset_key, ["schema", "post_treatment_exclusion", "sample_ratio_mismatch"]
            )
            return
        typed = type_batch(raw, study)  # the same reader as the quality suite's
        split = split_valid_rows(raw, study, typed=typed)
        verdicts = {
            "schema": (
                schema_verdict(
                    study,
                    split.valid,
                    split.missing_columns,
                    len(raw),
                    split.quarantined_rows,
                    batch,
                    missing_reason=split.missing_reason,
                ),
                ERROR,
            ),
            "post_treatment_exclusion": (post_treatment_verdict(study, typed.frame, batch=batch), ERROR),
            "sample_ratio_mismatch": (srm_verdict(study, split.valid), ERROR),
        }
        verdicts = {prop: (naming_batch(v, batch), severity) for prop, (v, severity) in verdicts.items()}
        store.replace_partition_tables(
            study.name,
            batch,
            {
                "covariates": split.valid,
                "quarantine": split.quarantine,
                verdict_table("covariate_table"): verdict_rows("covariate_table", verdicts),
            },
        )
        yield dg.MaterializeResult(
            metadata={
                "valid_rows": len(split.valid),
                "quarantined_rows": split.quarantined_rows,
                "missing_columns": ", ".join(split.missing_columns) or "none",
                "dagster/row_count": len(split.valid),
                **not_assessed("covariate_table", verdicts),
            }
        )
        yield from check_results(asset_key, verdicts)

    return covariate_table
