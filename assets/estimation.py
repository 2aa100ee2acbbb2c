"""propensity_model, outcome_model and batch_effect: one step, one ``fit_batch``, three assets.

The batch's valid rows are read once; :func:`assimilate.estimators.batch.fit_batch` fits the
propensity and outcome models once and runs every configured estimator and verdict from those fits.
The step stores each asset's tables in one transaction and reports each asset's materialization and
checks, as three assets did: covariate_table -> propensity_model, outcome_model -> batch_effect.
A run of some of the three (a subset) stores and reports only those.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from assets.common import (
    batch_asset_options,
    batch_rng,
    described,
    is_withdrawn,
    key,
    marking_exclusions,
    verdict_table,
    withdrawn_results,
)
from assets.did_fit import did_history_tables, fit_period
from assets.estimation_metadata import METADATA
from assets.partition_range import each_batch
from assimilate.diagnostics import Verdict, catalogue
from assimilate.estimators.batch import BatchFit, fit_batch
from assimilate.estimators.iv_diagnostics import IV_METHOD
from checks.first_stage import first_stage_sign_verdict
from checks.pre_trend import pre_trend_severities, pre_trend_verdict
from checks.refutations import refutation_verdicts, refuter_details, refuter_severities
from checks.results import (
    Verdicts,
    check_results,
    check_spec,
    naming_batch,
    not_assessed,
    severity,
    verdict_rows,
)
from checks.returning_units import (
    INFLUENCE_TABLE,
    MATERIAL_SE_CHANGE,
    OVERLAP_TABLE,
    InfluenceHistory,
    batch_returning_units,
    earlier_influence,
)
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

    @dg.multi_asset(
        name=f"{study.name}__estimation",
        specs=_asset_specs(study, keys, upstream, options),
        check_specs=_check_specs(study, keys, partitions),
        can_subset=True,  # a check that was not assessed is left unreported (skipped, never passed)
        **step,
    )
    @marking_exclusions
    @each_batch
    def estimation(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource
    ) -> Events:
        """Fit the batch once; store, describe and check each selected asset."""
        batch, store = context.partition_key, warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            # the ids as Arrow text: a 1e7-row batch's are 0.65 GB as Python objects, held through the fit
            valid = reader.read_table(
                study.name, "covariates", partition_key=batch, arrow_text=[study.unit_id]
            )
        history = _read_history(store, study, batch, valid)  # this step's tables: after its held writes
        fit = _fit(study, valid, history, batch)
        found, check_metadata = batch_verdicts(study, history, valid, fit, batch)
        verdicts = _verdicts(study, {**fit.verdicts, **found}, batch)
        selected = [name for name in ASSETS if keys[name] in context.selected_asset_keys]
        gone = withdrawn and "batch_effect" in selected
        _store(store, study, fit, verdicts, selected, withdrawn=gone, overlap=history.get(OVERLAP_TABLE))
        for name in selected:
            if name == "batch_effect" and withdrawn:
                yield from withdrawn_results(keys[name], list(verdicts[name]))
                continue
            metadata = METADATA[name](study, fit, reports, batch, figures=context.draws_figures)
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


def _read_history(reader: Warehouse, study: StudyConfig, batch: str, valid: pd.DataFrame) -> dict[str, Any]:
    """The stored tables the checks against earlier batches read: the effects only for the first-stage
    sign; the influence values in full for a did study's pre-trend, else only where units return."""
    effects = ("batch_effects",) if "first_stage_sign" in assessed(study) else ()
    influence = (INFLUENCE_TABLE,) if study.design.kind == "did" else ()
    history: dict[str, Any] = {
        table: reader.read_table(study.name, table)
        for table in (*influence, *effects, *did_history_tables(study))
    }
    if not influence:
        units = valid[study.unit_id] if study.unit_id in valid.columns else pd.Series(dtype=object)
        read = earlier_influence(reader, study.name, batch, units)
        history |= {INFLUENCE_TABLE: read.influence, OVERLAP_TABLE: read}
    return history


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
    study: StudyConfig, history: dict[str, Any], valid: pd.DataFrame, fit: BatchFit, batch: str
) -> tuple[dict[str, Verdict], dict[str, dict[str, Any]]]:
    """The checks beyond ``fit_batch``'s: against the earlier batches, and the study's refuters."""
    found, metadata = history_verdicts(study, history, fit, batch)
    # The refuters' own stream, apart from the fit's cross-fitting folds (same seed, a spawned child).
    rng = batch_rng(study, batch).spawn(1)[0]
    refuted, numbers = refutation_verdicts(study, valid, fit, batch, rng=rng)
    return {**found, **refuted}, {**metadata, **numbers}


def history_verdicts(
    study: StudyConfig, history: dict[str, Any], fit: BatchFit, batch: str
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
    overlap: InfluenceHistory | None,
) -> None:
    """The selected assets' tables and verdict rows in one transaction; a withdrawn batch's effect emptied.

    With the influence values goes the batch's ``unit_overlap`` answer and their count
    (checks/returning_units.py): none (an empty partition) where the check did not ask.
    """
    tables: dict[str, pd.DataFrame] = {}
    for name, frame in fit.tables(batch_rules=study.batch_rules_hash, copy=False).items():
        asset, table = STORED[name]
        if asset in selected:
            tables[table] = pd.DataFrame() if withdrawn and asset == "batch_effect" else frame
    if "batch_effect" in selected:
        answer = overlap if overlap is not None and not withdrawn else None
        tables[OVERLAP_TABLE] = answer.overlap_row(len(tables[INFLUENCE_TABLE])) if answer else pd.DataFrame()
    for asset in (a for a in selected if verdicts[a]):
        gone = withdrawn and asset == "batch_effect"
        tables[verdict_table(asset)] = pd.DataFrame() if gone else verdict_rows(asset, verdicts[asset])
    store.replace_partition_tables(study.name, fit.batch, tables)
