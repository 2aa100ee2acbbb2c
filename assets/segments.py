"""segment_effects and segment_posterior: the effect on each segment of the study's effect modifiers.

Only a study whose causal graph names ``effect_modifier`` columns has them (docs/SEGMENTS.md).
``segment_effects`` (per batch, after covariate_table) refits the primary estimator on each
segment's valid rows and checks whether a segment differs from the rest; ``segment_posterior``
(after effect_posterior) fuses the stored segment effects over the batches the effect posterior
admitted, with partial pooling across segments, checks the fused difference and draws the forest plot.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import (
    OP_OPTIONS,
    WRITE_POOL,
    batch_asset_options,
    batch_rng,
    code_version,
    described,
    frame_to_records_md,
    is_withdrawn,
    key,
    plot_metadata,
    verdict_table,
    withdraw,
    withdrawn_results,
)
from assets.partition_range import SINGLE_RUN, each_batch
from assimilate.report import figure_to_png
from assimilate.report.forest import forest_plot
from assimilate.report.units import EffectScale
from assimilate.report.who_benefits import WhoBenefits
from assimilate.segment_study import (
    CHECK_NAME,
    POSTERIOR_CHECK_NAME,
    PooledDifferences,
    effects_from_table,
    fuse_segments,
    posterior_differences,
    shared_unit_inflation,
)
from assimilate.stored_steps import CORRELATED
from checks.results import check_results, not_assessed, verdict_rows
from checks.segments import (
    SEGMENT_TABLE,
    batch_segment_results,
    difference_metadata,
    first_batch_rows,
    has_segments,
    posterior_level,
    segment_check_spec,
)
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import Warehouse, WarehouseResource

TABLES = [SEGMENT_TABLE, verdict_table("segment_effects")]
POSTERIOR_TABLE, DIFFERENCES_TABLE = "segment_posterior", "segment_differences"
SHOWN = [
    "modifier",
    "segment",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "n_treated",
    "n_control",
    "reason",
]
FUSED = ["modifier", "segment", "mean", "lower", "upper", "borrowed_share", "common_mean", "between_var"]


def segment_asset(
    *, key: dg.AssetKey, check_specs: list[dg.AssetCheckSpec], **options: Any
) -> Callable[[Callable[..., Iterator[Any]]], dg.AssetsDefinition]:
    """``assets.common.checked_asset`` without its exclusion tag: a failed segment check (even at the
    study's ERROR severity) is a finding about the effect and never keeps a batch out."""
    op_options = {name: options.pop(name) for name in OP_OPTIONS if name in options}
    return lambda body: dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[dg.AssetSpec(key, **options)],
        check_specs=check_specs,
        can_subset=True,  # a check that was not assessed is left unreported (skipped, never passed)
        **op_options,
    )(body)


def build_segment_assets(
    study: StudyConfig, partitions: dg.PartitionsDefinition, covariates: dg.AssetKey, posterior: dg.AssetKey
) -> list[dg.AssetsDefinition]:
    """The study's two segment assets, or none when its causal graph names no effect modifier."""
    if not has_segments(study):
        return []
    effects = build_segment_effects(study, partitions, covariates)
    return [effects, build_segment_posterior(study, effects.key, posterior)]


def build_segment_effects(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: dg.AssetKey
) -> dg.AssetsDefinition:
    asset_key = key(study, "segment_effects")

    @segment_asset(
        key=asset_key,
        deps=[upstream],
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        check_specs=[segment_check_spec(study, asset_key, CHECK_NAME, partitions)],
        description=described(
            study,
            f"{study.name}: the {study.primary_estimator} effect on each segment of "
            f"{', '.join(study.effect_modifiers)} in the batch.",
        ),
    )
    @each_batch
    def segment_effects(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Each segment's effect in the batch (its own refit), stored; does a segment differ from the rest?"""
        batch, store = context.partition_key, warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            valid = reader.read_table(study.name, "covariates", partition_key=batch)
            first = first_batch_rows(reader, study)
        if withdrawn:
            withdraw(store, study, batch, TABLES)
            yield from withdrawn_results(asset_key, [CHECK_NAME])
            return
        rng = batch_rng(study, batch).spawn(2)[1]  # apart from the fit's and the refuters' streams
        table, verdicts, numbers = batch_segment_results(study, valid, first, batch, rng)
        rows = verdict_rows("segment_effects", verdicts)
        store.replace_partition_tables(study.name, batch, dict(zip(TABLES, [table, rows], strict=True)))
        metadata = {"segments": frame_to_records_md(table[SHOWN])} if len(table) else {}
        yield dg.MaterializeResult(metadata=metadata | not_assessed("segment_effects", verdicts))
        yield from check_results(asset_key, verdicts, numbers)

    return segment_effects


def build_segment_posterior(
    study: StudyConfig, segments: dg.AssetKey, posterior: dg.AssetKey
) -> dg.AssetsDefinition:
    asset_key = key(study, "segment_posterior")

    @segment_asset(
        key=asset_key,
        deps=[segments, posterior],
        group_name=study.name,
        pool=WRITE_POOL,
        backfill_policy=SINGLE_RUN,  # once after a range of batches
        code_version=code_version(study),
        kinds={"duckdb"},
        check_specs=[segment_check_spec(study, asset_key, POSTERIOR_CHECK_NAME)],
        description=described(
            study,
            f"{study.name}: each segment's effect fused over the batches, partially pooled across segments; "
            "forest plot.",
        ),
    )
    def segment_posterior(
        warehouse: WarehouseResource, reports: ReportsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """The stored segment effects of the admitted batches fused (tau integrated); the fused check."""
        store = warehouse.get()
        with store.reading() as reader:
            steps = reader.read_table(study.name, "posterior_steps")
            table = reader.read_table(study.name, SEGMENT_TABLE)
        fused, frames, metadata = fused_segments(study, steps, table)
        pooled = posterior_differences(fused, study.segment_settings)
        store.write(study.name, whole_tables={POSTERIOR_TABLE: frames, DIFFERENCES_TABLE: pooled.table})
        metadata |= forest_metadata(study, reports, fused, table, pooled)
        verdicts = {POSTERIOR_CHECK_NAME: (pooled.verdict, posterior_level(study))}
        yield dg.MaterializeResult(metadata=metadata | not_assessed("segment_posterior", verdicts))
        yield from check_results(asset_key, verdicts, {POSTERIOR_CHECK_NAME: difference_metadata(pooled)})

    return segment_posterior


def fused_segments(
    study: StudyConfig, steps: pd.DataFrame, table: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Fuse over the effect posterior's batches (its exclusions, its process variance); the tidy frame."""
    if steps.empty or table.empty:
        return {}, pd.DataFrame(columns=["batch", "modifier", *FUSED[1:]]), {"batches": 0}
    batches = [str(b) for b in steps["batch"]]
    excluded = [bool(x) for x in steps["excluded"]]
    process_var = max(float(steps["process_var"].iloc[-1]), 0.0)
    shared = str(steps["settings_fingerprint"].iloc[-1]).startswith(CORRELATED)
    inflation = shared_unit_inflation(steps["estimate"], steps["std_error"], excluded,
                                      fused_var=float(steps["posterior_var"].iloc[-1]),
                                      process_var=process_var) if shared else 1.0  # fmt: skip
    fused = fuse_segments(table, batches, excluded, common_process_var=process_var, se_inflation=inflation)
    frames = [p.to_frame().assign(modifier=m) for m, p in fused.items()]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["batch", *FUSED])
    latest = frame[frame["batch"] == batches[-1]] if len(frame) else frame
    metadata: dict[str, Any] = {
        "batches": len(batches),
        "batches_admitted": int(len(batches) - np.sum(excluded)),
        "latest_batch": batches[-1],
        # The segment filter treats batches as independent; batches that share units are not.
        "batches_share_units": shared,
        "segment_se_inflation": inflation,  # the overall effect's design effect, sqrt (1: independent)
    }
    if len(latest):
        metadata["fused_effects"] = frame_to_records_md(latest[FUSED])
    return fused, frame.assign(batches_share_units=shared, se_inflation=inflation), metadata


def forest_metadata(
    study: StudyConfig,
    reports: ReportsResource,
    fused: dict[str, Any],
    table: pd.DataFrame,
    pooled: PooledDifferences,
) -> dict[str, Any]:
    """One forest plot per modifier (the first as forest_plot.png): the fused effects, the latest
    batch's estimates beside them, the segments that differ in red."""
    scale = EffectScale.of(outcome_type=study.outcome_type, outcome_unit=study.outcome_unit)
    latest = table[table["partition_key"] == table["partition_key"].max()] if len(table) else table
    batch = effects_from_table(latest) if len(latest) else {}
    metadata: dict[str, Any] = {}
    for i, (column, posterior) in enumerate(fused.items()):
        own = batch.get(column)
        figure = forest_plot(
            batch=own if own is not None and set(own.labels) <= set(posterior.segments) else None,
            posterior=posterior,
            differences=pooled.for_modifier(column),
            title=f"{study.name}: effect by {column}",
            xlabel=f"effect on {study.outcome} ({scale.unit})",
            factor=scale.factor,
        )
        name = "forest_plot.png" if i == 0 else f"forest_plot_{column}.png"
        metadata |= plot_metadata(reports, study, name, figure_to_png(figure))
    return metadata


def who_benefits_of(store: Warehouse, study: StudyConfig, reports: ReportsResource) -> WhoBenefits | None:
    """The memo's "Who benefits" from the stored segment posterior, its check and its forest plot."""
    with store.reading() as reader:
        fused = reader.read_table(study.name, POSTERIOR_TABLE)
        tests = reader.read_table(study.name, DIFFERENCES_TABLE)
    plot = reports.folder(study.name) / "forest_plot.png"
    first = fused.iloc[0] if len(fused) else pd.Series(dtype=object)
    return WhoBenefits.from_tables(
        fused,
        tests,
        multiplicity=study.segment_settings.multiplicity,
        level=study.segment_settings.level,
        batches_share_units=bool(first.get("batches_share_units", False)),
        se_inflation=float(first.get("se_inflation", 1.0)),
        forest_plot=plot.read_bytes() if plot.exists() and len(fused) else None,
    )
