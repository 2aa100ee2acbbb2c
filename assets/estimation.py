"""propensity_model, outcome_model and batch_effect: one step, one ``fit_batch``, three assets.

The batch's valid rows are read once; :func:`assimilate.estimators.batch.fit_batch` fits the
propensity and outcome models once and runs every configured estimator and verdict from those fits.
The step stores each asset's tables in one transaction and reports each asset's materialization and
checks, as three assets did: covariate_table -> propensity_model, outcome_model -> batch_effect.
A run of some of the three (a subset) stores and reports only those.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandas as pd

from assets.common import (
    batch_asset_options,
    batch_rng,
    described,
    frame_to_records_md,
    is_withdrawn,
    key,
    plot_metadata,
    verdict_table,
    withdrawn_results,
)
from assets.did_fit import did_history_tables, fit_period
from assets.partition_range import each_batch
from assimilate.diagnostics import Verdict, catalogue
from assimilate.estimators.batch import BatchFit, fit_batch
from assimilate.estimators.iv_diagnostics import IV_METHOD
from assimilate.report import figure_to_png, love_plot, overlap_plot
from checks.first_stage import first_stage_sign_verdict
from checks.pre_trend import pre_trend_severities, pre_trend_verdict
from checks.refutations import refutation_verdicts, refuter_details, refuter_severities
from checks.results import (
    Verdicts,
    check_results,
    check_spec,
    gate_failures,
    mark_excluded,
    naming_batch,
    not_assessed,
    severity,
    verdict_rows,
)
from checks.returning_units import INFLUENCE_TABLE, MATERIAL_SE_CHANGE, batch_returning_units
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import Warehouse, WarehouseResource

ASSETS = ("propensity_model", "outcome_model", "batch_effect")
CHECKS = (  # each on its catalogue asset, declared when the study's design assesses it
    "overlap",
    "balance",
    "estimation",
    "returning_units",
    "weak_instrument",
    "first_stage_sign",
    "pre_trend",
)
STORED = {  # fit_batch's table -> (asset, warehouse table)
    "propensity_coefficients": ("propensity_model", "propensity_coefficients"),
    "propensity_scores": ("propensity_model", "propensity_scores"),
    "outcome_coefficients": ("outcome_model", "outcome_coefficients"),
    "outcome_predictions": ("outcome_model", "outcome_predictions"),
    "effects": ("batch_effect", "batch_effects"),
    "balance": ("batch_effect", "balance"),
    "influence": ("batch_effect", INFLUENCE_TABLE),
}
Events = Iterator[dg.MaterializeResult | dg.AssetCheckResult]


def build_estimation(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: dg.AssetKey
) -> dg.AssetsDefinition:
    """The three estimation assets of ``study`` as one multi-asset over ``upstream`` (covariate_table)."""
    keys = {name: key(study, name) for name in ASSETS}
    options = batch_asset_options(study, partitions)
    step = {name: options.pop(name) for name in ("pool", "retry_policy", "backfill_policy")}
    tables_read = _history_tables(study)

    @dg.multi_asset(
        name=f"{study.name}__estimation",
        specs=_asset_specs(study, keys, upstream, options),
        check_specs=_check_specs(study, keys, partitions),
        can_subset=True,  # a check that was not assessed is left unreported (skipped, never passed)
        **step,
    )
    @_tagging_exclusions
    @each_batch
    def estimation(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource
    ) -> Events:
        """Fit the batch once; store, describe and check each selected asset."""
        batch, store = context.partition_key, warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            valid = reader.read_table(study.name, "covariates", partition_key=batch)
            history = {table: reader.read_table(study.name, table) for table in tables_read}
        fit = _fit(study, valid, history, batch)
        found, check_metadata = batch_verdicts(study, history, valid, fit, batch)
        verdicts = _verdicts(study, {**fit.verdicts, **found}, batch)
        selected = [name for name in ASSETS if keys[name] in context.selected_asset_keys]
        _store(store, study, fit, verdicts, selected, withdrawn=withdrawn and "batch_effect" in selected)
        for name in selected:
            if name == "batch_effect" and withdrawn:
                yield from _withdrawn(keys[name], verdicts[name])
                continue
            metadata = METADATA[name](study, fit, reports, batch)
            yield dg.MaterializeResult(
                asset_key=keys[name], metadata=metadata | not_assessed(name, verdicts[name])
            )
            yield from check_results(keys[name], verdicts[name], check_metadata)

    return estimation


def _asset_specs(
    study: StudyConfig, keys: dict[str, dg.AssetKey], upstream: dg.AssetKey, options: dict[str, Any]
) -> list[dg.AssetSpec]:
    what = {
        "propensity_model": "logistic propensity model (coefficients) and per-row propensity scores.",
        "outcome_model": "arm-wise outcome regressions (coefficients) and mu0/mu1 per row.",
        "batch_effect": f"{', '.join(study.estimators)} estimates; {study.primary_estimator} feeds the filter.",
    }
    deps = {"batch_effect": [keys["propensity_model"], keys["outcome_model"]]}
    return [
        dg.AssetSpec(
            keys[name],
            deps=deps.get(name, [upstream]),
            kinds={"duckdb"},
            description=described(study, f"{study.name}: {what[name]}"),
            **options,
        )
        for name in ASSETS
    ]


def _check_specs(
    study: StudyConfig, keys: dict[str, dg.AssetKey], partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    t = study.thresholds
    detail = {
        "overlap": f"overlap_eps = {t.overlap_eps}, overlap_max_share_outside = "
        f"{t.overlap_max_share_outside} ({t.gate_rule} rule)",
        "balance": f"inverse-propensity weighting; max_abs_smd = {t.max_abs_smd} ({t.gate_rule} rule)",
        "estimation": f"primary estimator {study.primary_estimator}",
        "returning_units": "material: the running average's standard error changes by more than "
        f"{MATERIAL_SE_CHANGE:.0%}",
        "weak_instrument": f"effective first-stage F >= {getattr(study.design, 'min_first_stage_f', 10.0):g}",
        "first_stage_sign": "opposite signs, each significant at 5%",
        "pre_trend": f"joint Wald test of the pre-period placebos at {getattr(study.design, 'pre_trend_level', 0.05):g}",
    }
    detail |= refuter_details(study)
    levels = _severities(study)
    return [
        check_spec(keys[catalogue.check_spec(p).asset], p, detail[p], partitions, level=levels.get(p))
        for p in assessed(study)
    ]


def _history_tables(study: StudyConfig) -> tuple[str, ...]:
    """The stored tables the checks against earlier batches read: the effects only for the first-stage sign."""
    effects = ("batch_effects",) if "first_stage_sign" in assessed(study) else ()
    return (INFLUENCE_TABLE, *effects, *did_history_tables(study))


def _fit(study: StudyConfig, valid: pd.DataFrame, history: dict[str, pd.DataFrame], batch: str) -> BatchFit:
    """``fit_batch`` on the batch's rows; a did study's period from the stored earlier periods and this one."""
    if study.design.kind == "did":
        return fit_period(study, valid, history["covariates"], batch)
    return fit_batch(valid, study, batch=batch, rng=batch_rng(study, batch), custom=study.custom_functions)


def _severities(study: StudyConfig) -> dict[str, catalogue.Severity]:
    """The study's own severities: its refuters', and a did study's acknowledged pre-trend (WARN)."""
    return {**refuter_severities(study), **pre_trend_severities(study)}


def assessed(study: StudyConfig) -> tuple[str, ...]:
    """The checks this step declares: those the study's design assesses (an IV study has no overlap),
    and the refuters the study configures."""
    return (*(p for p in CHECKS if study.design.not_assessed(p) is None), *refuter_severities(study))


def batch_verdicts(
    study: StudyConfig, history: dict[str, pd.DataFrame], valid: pd.DataFrame, fit: BatchFit, batch: str
) -> tuple[dict[str, Verdict], dict[str, dict[str, Any]]]:
    """The checks beyond ``fit_batch``'s: against the earlier batches, and the study's refuters."""
    found, metadata = history_verdicts(study, history, fit, batch)
    # The refuters' own stream, apart from the fit's cross-fitting folds (same seed, a spawned child).
    rng = batch_rng(study, batch).spawn(1)[0]
    refuted, numbers = refutation_verdicts(study, valid, fit, batch, rng=rng)
    return {**found, **refuted}, {**metadata, **numbers}


def history_verdicts(
    study: StudyConfig, history: dict[str, pd.DataFrame], fit: BatchFit, batch: str
) -> tuple[dict[str, Verdict], dict[str, dict[str, Any]]]:
    """The checks that compare the batch with the stored earlier ones, and their metadata."""
    returning, returning_metadata = batch_returning_units(
        study, history[INFLUENCE_TABLE], fit.frames["influence"], batch
    )
    sign, sign_metadata = first_stage_sign_verdict(
        study, history.get("batch_effects", pd.DataFrame()), fit.estimates.get(IV_METHOD), batch
    )
    trend, trend_metadata = pre_trend_verdict(study, history, fit, batch)
    verdicts = {"returning_units": returning, "first_stage_sign": sign, "pre_trend": trend}
    metadata = {"returning_units": returning_metadata, "first_stage_sign": sign_metadata}
    return verdicts, metadata | {"pre_trend": trend_metadata}


def _verdicts(study: StudyConfig, found: dict[str, Verdict], batch: str) -> dict[str, Verdicts]:
    """Each asset's verdicts by property, every reason naming the batch, severities from the catalogue
    (or the study's, for its refuters)."""
    verdicts: dict[str, Verdicts] = {name: {} for name in ASSETS}
    levels = _severities(study)  # a study may make a refuter ERROR, or acknowledge a failed pre-trend
    for prop in assessed(study):
        asset = catalogue.check_spec(prop).asset
        verdicts[asset] = {
            **verdicts[asset],
            prop: (naming_batch(found[prop], batch), severity(prop, levels)),
        }
    return verdicts


def _store(
    store: Warehouse,
    study: StudyConfig,
    fit: BatchFit,
    verdicts: dict[str, Verdicts],
    selected: list[str],
    *,
    withdrawn: bool,
) -> None:
    """The selected assets' tables and verdict rows in one transaction; a withdrawn batch's effect emptied."""
    tables: dict[str, pd.DataFrame] = {}
    for name, frame in fit.tables(batch_rules=study.batch_rules_hash).items():
        asset, table = STORED[name]
        if asset in selected:
            tables[table] = pd.DataFrame() if withdrawn and asset == "batch_effect" else frame
    for asset in (a for a in selected if verdicts[a]):
        gone = withdrawn and asset == "batch_effect"
        tables[verdict_table(asset)] = pd.DataFrame() if gone else verdict_rows(asset, verdicts[asset])
    store.replace_partition_tables(study.name, fit.batch, tables)


def _withdrawn(asset_key: dg.AssetKey, verdicts: Verdicts) -> Iterator[dg.MaterializeResult]:
    for result in withdrawn_results(asset_key, list(verdicts)):
        yield dg.MaterializeResult(asset_key=asset_key, metadata=result.metadata)


def _propensity_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str
) -> dict[str, Any]:
    scores, metadata = fit.frames["propensity_scores"], fit.propensity_summary()
    # rows: the batch's valid rows, fitted or not (a failed fit still had its rows)
    counts = {
        "rows": fit.n_rows,
        "scored_rows": len(scores),
        "terms": len(fit.frames["propensity_coefficients"]),
    }
    if fit.overlap is not None:
        quantiles = fit.overlap.to_frame().reset_index()
        metadata["propensity_quantiles"] = frame_to_records_md(quantiles, float_digits=3)
    if not scores.empty:
        figure = overlap_plot(
            scores["propensity"],
            scores["treatment"],
            bounds=(study.propensity.bounds[0], study.propensity.bounds[1]),
            eps=study.thresholds.overlap_eps,
            title=f"{study.name} {batch}: propensity overlap",
        )
        metadata |= plot_metadata(reports, study, f"{batch}/overlap.png", figure_to_png(figure))
    return counts | metadata


def _outcome_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str
) -> dict[str, Any]:
    # A singular arm is fitted by a fallback, never silently: the UI says which and why.
    summary = fit.outcome_summary()
    rows = {"rows": len(fit.frames["outcome_predictions"])}
    return rows | summary | {"fallback_reasons": dg.MetadataValue.json(summary["fallback_reasons"])}


def _effect_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str
) -> dict[str, Any]:
    effects, balance = fit.frames["effects"], fit.frames["balance"]
    primary, passed = effects[effects["is_primary"]].iloc[0], fit.verdicts["estimation"].passed
    plots: dict[str, Any] = {}
    if not balance.empty:
        figure = love_plot(balance, threshold=study.thresholds.max_abs_smd, title=f"{study.name} {batch}")
        plots = plot_metadata(reports, study, f"{batch}/love_plot.png", figure_to_png(figure))
    smd = fit.verdicts["balance"].value
    return {
        **plots,
        "primary_estimator": study.primary_estimator,
        "estimate": float(primary["estimate"]) if passed else "n/a",
        "std_error": float(primary["std_error"]) if passed else "n/a",
        "ci_lower": float(primary["ci_lower"]) if passed else "n/a",  # the 95% interval (alpha 0.05)
        "ci_upper": float(primary["ci_upper"]) if passed else "n/a",
        "max_abs_smd_after": smd if smd is not None else "n/a",
        "seed": study.seed,
        "estimates": frame_to_records_md(
            effects[["method", "estimate", "std_error", "ci_lower", "ci_upper"]]
        ),
    }


METADATA: dict[str, Callable[[StudyConfig, BatchFit, ReportsResource, str], dict[str, Any]]] = {
    "propensity_model": _propensity_metadata,
    "outcome_model": _outcome_metadata,
    "batch_effect": _effect_metadata,
}


def _tagging_exclusions(body: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Tag the run with the ERROR checks that failed in the step (as ``assets.common.checked_asset``)."""

    @functools.wraps(body)
    def step(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events = []
        for event in body(*args, **kwargs):
            events.append(event)
            yield event
        mark_excluded(dg.AssetExecutionContext.get(), gate_failures(events))

    return step
