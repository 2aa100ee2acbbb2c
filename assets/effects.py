"""batch_effect: every configured estimator on one batch; the primary one is the filter's observation."""

from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import (
    as_json,
    batch_asset_options,
    batch_rng,
    checked_asset,
    described,
    frame_to_records_md,
    is_withdrawn,
    key,
    plot_metadata,
    verdict_table,
    withdraw,
    withdrawn_results,
)
from assets.models import usable_rows
from assets.partition_range import each_batch
from assimilate.design.plan import ONE_SUBJECT
from assimilate.diagnostics import Verdict, weighted_balance
from assimilate.estimators import (
    EffectEstimate,
    InfluenceContributions,
    estimate_effect,
    influence_contributions,
)
from assimilate.estimators.duplicates import duplicate_unit_clusters
from assimilate.estimators.variance import t_conf_int, with_standard_error
from assimilate.report import figure_to_png, love_plot
from checks.results import ERROR, WARN, check_results, check_spec, naming_batch, not_assessed, verdict_rows
from checks.returning_units import (
    INFLUENCE_TABLE,
    MATERIAL_SE_CHANGE,
    influence_frame,
    returning_units_verdict,
)
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

EFFECT_COLUMNS = [
    "method",
    "is_primary",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "n_treated",
    "n_control",
    "se_method",
    "error",
    "diagnostics_json",
    "batch_rules",
]


def estimate_batch(
    study: StudyConfig, valid: pd.DataFrame, batch: str
) -> tuple[pd.DataFrame, Verdict, pd.DataFrame]:
    """All configured estimators, the verdict on the primary one, and its per-row influence values.

    The primary estimator returns its influence values from the same fit as its estimate, so the
    nuisance models are fitted once.
    """
    rule = "the primary estimator returns a finite estimate and a positive standard error"
    problem = usable_rows(study, valid)
    rows = []
    rng = batch_rng(study, batch)
    primary_fit: InfluenceContributions | None = None
    for method in study.estimators:
        row: dict[str, object] = {"method": method, "is_primary": method == study.primary_estimator}
        if problem is None:
            try:
                fit = run_estimator(study, valid, method, rng, influence=bool(row["is_primary"]))
                est = fit.estimate if isinstance(fit, InfluenceContributions) else fit
                primary_fit = fit if isinstance(fit, InfluenceContributions) else primary_fit
                est = study_standard_error(study, valid, est, batch)
                lower, upper = t_conf_int(est, alpha=0.05)
                row |= {
                    "estimate": est.estimate,
                    "std_error": est.std_error,
                    "ci_lower": lower,
                    "ci_upper": upper,
                    "n_treated": est.n_treated,
                    "n_control": est.n_control,
                    "se_method": est.se_method,
                    "error": "",
                    "diagnostics_json": as_json({**est.diagnostics, "estimand": est.estimand}),
                }
            except ValueError as error:
                row |= {"error": str(error)}
        else:
            row |= {"error": problem}
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    table["error"] = table["error"].fillna("")
    table["batch_rules"] = study.batch_rules_hash  # the posterior never mixes batches judged otherwise
    table = table.astype({"n_treated": "Int64", "n_control": "Int64"})  # one column type for every batch
    primary = table[table["is_primary"]].iloc[0]
    usable = primary["error"] == "" and np.isfinite(primary["estimate"]) and primary["std_error"] > 0
    problem_text = primary["error"] or "the standard error is not positive"
    verdict = Verdict.evaluate(
        "estimation",
        value=float(primary["std_error"]) if usable else float("nan"),
        threshold=0.0,
        rule=rule,
        passed=bool(usable),
        reason="" if usable else f"batch {batch}: {study.primary_estimator}: {problem_text}",
    )
    return table, verdict, influence_frame(valid, study.unit_id, primary_fit if usable else None)


def study_standard_error(
    study: StudyConfig, valid: pd.DataFrame, est: EffectEstimate, batch: str
) -> EffectEstimate:
    """The estimate with the study's standard error: clustered on its cluster column and repeated units, or
    the HC type it names; unchanged when the study asks for neither."""
    if not study.clustered and study.standard_errors is None:
        return est
    labels = duplicate_unit_clusters(
        valid, unit_id=study.unit_id, policy=study.duplicate_units, cluster=study.cluster
    )
    options = estimator_options(study, est.method, batch_rng(study, batch))  # the same fit, refitted
    options.pop("estimand")  # read from the estimate
    return with_standard_error(
        est,
        valid,
        treatment=study.treatment,
        outcome=study.outcome,
        covariates=list(study.model_columns),
        cluster=labels,
        se_type=study.standard_errors,
        **options,
    )


def estimator_options(study: StudyConfig, method: str, rng: np.random.Generator) -> dict[str, object]:
    """The study's options of one estimator (estimand, propensity policy, cross-fitting)."""
    options: dict[str, object] = {"estimand": study.estimand}
    if method in ("ipw", "aipw"):
        options |= {"policy": study.propensity.policy, "bounds": tuple(study.propensity.bounds)}
    if method == "aipw" and study.cross_fitting_folds:
        options |= {"n_folds": study.cross_fitting_folds, "rng": rng}
    return options


def run_estimator(
    study: StudyConfig, valid: pd.DataFrame, method: str, rng: np.random.Generator, *, influence: bool = False
) -> EffectEstimate | InfluenceContributions:
    covariates = list(study.model_columns)
    options = estimator_options(study, method, rng)
    if method == "n_of_1" and study.n_of_1 is not None:
        # One subject's days (no per-unit influence): the study file's washout, and the Kenward-Roger
        # df carried into the fused posterior (docs in assimilate/estimators/n_of_1.py).
        days = study.n_of_1
        options |= {
            "time": days.time,
            "washout": days.washout_days,
            "trend": days.trend,
            "fusion_correction": True,
        }
        influence = False
    run = influence_contributions if influence else estimate_effect
    return run(  # type: ignore[operator]
        valid,
        method=method,
        treatment=study.treatment,
        outcome=study.outcome,
        covariates=covariates if method != "difference_in_means" else (),
        **options,
    )


def balance_verdict(
    study: StudyConfig, valid: pd.DataFrame, scores: pd.DataFrame, batch: str
) -> tuple[Verdict, pd.DataFrame]:
    """max |SMD| after inverse-propensity weighting, with the stored propensity scores."""
    threshold = study.thresholds.max_abs_smd
    if study.single_subject:
        return Verdict.undefined(
            "balance",
            threshold=threshold,
            rule=f"max |SMD| after weighting <= {threshold}",
            reason=ONE_SUBJECT,
        ), pd.DataFrame()
    if usable_rows(study, valid) is not None or scores.empty:
        return Verdict.undefined(
            "balance",
            threshold=threshold,
            rule=f"max |SMD| after weighting <= {threshold}",
            reason=f"batch {batch}: no propensity scores",
        ), pd.DataFrame()
    merged = valid.merge(scores[["row_index", "used_propensity"]], on="row_index")
    merged = merged[merged["used_propensity"].notna()]
    comparison = weighted_balance(
        merged[list(study.model_columns)],
        merged[study.treatment],
        propensity=merged["used_propensity"],
        threshold=threshold,
        rule=study.thresholds.gate_rule,
        alpha=study.thresholds.balance_alpha,
        estimand=study.estimand,
    )
    return comparison.verdict, comparison.to_frame()


def build_batch_effect(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: list[dg.AssetKey]
) -> dg.AssetsDefinition:
    asset_key = key(study, "batch_effect")
    specs = [
        check_spec(
            asset_key,
            "balance",
            f"inverse-propensity weighting; max_abs_smd = {study.thresholds.max_abs_smd} "
            f"({study.thresholds.gate_rule} rule)",
            partitions,
        ),
        check_spec(asset_key, "estimation", f"primary estimator {study.primary_estimator}", partitions),
        check_spec(
            asset_key,
            "returning_units",
            f"material: the running average's standard error changes by more than {MATERIAL_SE_CHANGE:.0%}",
            partitions,
        ),
    ]

    @checked_asset(
        key=asset_key,
        deps=upstream,
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        check_specs=specs,
        description=described(
            study,
            f"{study.name}: naive, regression, IPW and AIPW estimates; {study.primary_estimator} feeds the filter.",
        ),
    )
    @each_batch
    def batch_effect(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        batch = context.partition_key
        store = warehouse.get()
        with store.reading() as reader:
            withdrawn = is_withdrawn(reader, study, batch)
            valid = reader.read_table(study.name, "covariates", partition_key=batch)
            scores = reader.read_table(study.name, "propensity_scores", partition_key=batch)
            stored_influence = reader.read_table(study.name, INFLUENCE_TABLE)
        if withdrawn:
            tables = ["batch_effects", INFLUENCE_TABLE, "balance", verdict_table("batch_effect")]
            withdraw(store, study, batch, tables)
            yield from withdrawn_results(asset_key, ["balance", "estimation", "returning_units"])
            return
        effects, estimation, influence = estimate_batch(study, valid, batch)
        balance, balance_table = balance_verdict(study, valid, scores, batch)
        returning, returning_metadata = returning_units_verdict(
            stored_influence, influence, batch, kalman=study.backend.kind == "kalman"
        )
        if study.single_subject:  # no per-unit values: one subject's days, none of which returns
            returning = replace(returning, reason=ONE_SUBJECT)
        verdicts = {
            "balance": (naming_batch(balance, batch), ERROR),
            "estimation": (naming_batch(estimation, batch), ERROR),
            "returning_units": (naming_batch(returning, batch), WARN),
        }
        store.replace_partition_tables(
            study.name,
            batch,
            {
                "batch_effects": effects,
                INFLUENCE_TABLE: influence,
                "balance": balance_table,
                verdict_table("batch_effect"): verdict_rows("batch_effect", verdicts),
            },
        )
        primary = effects[effects["is_primary"]].iloc[0]
        plots: dict[str, object] = {}
        if not balance_table.empty:
            figure = love_plot(
                balance_table, threshold=study.thresholds.max_abs_smd, title=f"{study.name} {batch}"
            )
            plots = plot_metadata(reports, study, f"{batch}/love_plot.png", figure_to_png(figure))
        yield dg.MaterializeResult(
            metadata={
                **plots,
                "primary_estimator": study.primary_estimator,
                "estimate": float(primary["estimate"]) if estimation.passed else "n/a",
                "std_error": float(primary["std_error"]) if estimation.passed else "n/a",
                "ci_95": f"[{primary['ci_lower']:.4g}, {primary['ci_upper']:.4g}]"
                if estimation.passed
                else "n/a",
                "max_abs_smd_after": balance.value if balance.value is not None else "n/a",
                "seed": study.seed,
                "estimates": frame_to_records_md(
                    effects[["method", "estimate", "std_error", "ci_lower", "ci_upper"]]
                ),
                **not_assessed("batch_effect", verdicts),
            }
        )
        yield from check_results(asset_key, verdicts, {"returning_units": returning_metadata})

    return batch_effect
