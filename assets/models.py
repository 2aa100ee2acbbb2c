"""propensity_model and outcome_model: coefficients and per-row predictions as tables, never pickles."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import (
    batch_asset_options,
    checked_asset,
    described,
    frame_to_records_md,
    key,
    plot_metadata,
    verdict_table,
)
from assets.partition_range import each_batch
from assimilate.design.plan import ONE_SUBJECT
from assimilate.diagnostics import Verdict, overlap_report
from assimilate.diagnostics.overlap import OverlapReport
from assimilate.estimators import DesignMatrix, encode_covariates, fit_outcome_model, fit_propensity
from assimilate.report import figure_to_png, overlap_plot
from checks.results import ERROR, check_results, check_spec, naming_batch, not_assessed, verdict_rows
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource


def calibrated_overlap(
    study: StudyConfig, scores: np.ndarray, treatment: np.ndarray, design: np.ndarray, *, trimmed: int
) -> OverlapReport:
    """The overlap gate under the study's rule; the calibrated rule corrects for the fit's own noise.

    Its correction needs the plain maximum-likelihood fit on ``design``; when the fit had to fall
    back (a penalized fit after separation), the scores are judged as known propensities instead.
    """
    thresholds = study.thresholds
    options = {
        "eps": thresholds.overlap_eps,
        "max_share_outside": thresholds.overlap_max_share_outside,
        "trimmed": trimmed,
        "rule": thresholds.gate_rule,
        "alpha": thresholds.overlap_alpha,
        "estimand": study.estimand,
    }
    try:
        return overlap_report(scores, treatment, design=design, **options)
    except ValueError:
        return overlap_report(scores, treatment, **options)


def usable_rows(study: StudyConfig, valid: pd.DataFrame) -> str | None:
    """None when both arms have at least two valid units; otherwise the reason."""
    if valid.empty:
        return "no valid rows"
    n_treated = int(valid[study.treatment].sum())
    n_control = len(valid) - n_treated
    if min(n_treated, n_control) < 2:
        return (
            f"needs at least 2 treated and 2 control units, got {n_treated} treated and {n_control} control"
        )
    return None


def design_for(study: StudyConfig, valid: pd.DataFrame) -> DesignMatrix:
    return encode_covariates(valid, list(study.model_columns), categories=study.categorical)


def fit_and_check_overlap(
    study: StudyConfig, valid: pd.DataFrame, batch: str
) -> tuple[Verdict, pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Fit the propensity model of one batch and judge overlap; a batch that cannot be fitted fails."""
    thresholds = study.thresholds
    rule = (
        f"share outside [{thresholds.overlap_eps}, {1 - thresholds.overlap_eps}] "
        f"<= {thresholds.overlap_max_share_outside}"
    )
    coefficients = pd.DataFrame(columns=["term", "coefficient"])
    scores = pd.DataFrame(
        columns=["row_index", "unit_id", "treatment", "propensity", "used_propensity", "kept"]
    )
    problem = ONE_SUBJECT if study.single_subject else usable_rows(study, valid)
    if problem is not None:
        verdict = Verdict.undefined(
            "overlap",
            threshold=thresholds.overlap_max_share_outside,
            rule=rule,
            reason=f"batch {batch}: {problem}",
        )
        return verdict, coefficients, scores, {}
    treatment = valid[study.treatment].to_numpy(dtype=np.int64)
    design = design_for(study, valid)
    try:
        fit = fit_propensity(
            design,
            treatment,
            policy=study.propensity.policy,
            bounds=tuple(study.propensity.bounds),
        )
    except ValueError as error:
        # The library's ValueError says why this batch cannot be modelled (e.g. separation). There
        # are no scores, so no overlap numbers: the value is n/a, never a stand-in such as inf.
        verdict = Verdict(
            "overlap", None, thresholds.overlap_max_share_outside, rule, "fail", f"batch {batch}: {error}"
        )
        return verdict, coefficients, scores, {"fit": f"not fitted: {error}"}
    coefficients = fit.coefficients.rename_axis("term").reset_index(name="coefficient")
    scores = pd.DataFrame(
        {
            "row_index": valid["row_index"].to_numpy(),
            "unit_id": valid[study.unit_id].to_numpy(),
            "treatment": treatment,
            "propensity": fit.scores,
            "used_propensity": fit.used_scores,
            "kept": fit.keep,
        }
    )
    report = calibrated_overlap(study, fit.scores, treatment, design.values, trimmed=fit.n_trimmed)
    metadata: dict[str, object] = {
        "converged": fit.converged,
        "clipped": fit.n_clipped,
        "trimmed": fit.n_trimmed,
        "propensity_min": float(np.min(fit.scores)),
        "propensity_max": float(np.max(fit.scores)),
    }
    return report.verdict, coefficients, scores, metadata | overlap_metadata(report)


def overlap_metadata(report: OverlapReport) -> dict[str, object]:
    """The overlap numbers of a fitted batch, failed or not: shares outside, ESS, quantiles per arm."""
    return {
        "overlap_eps": report.eps,
        "share_outside": report.share_outside,
        "share_outside_treated": report.share_outside_treated,
        "share_outside_control": report.share_outside_control,
        "ess_fraction": report.ess_fraction,
        "propensity_quantiles": frame_to_records_md(report.to_frame().reset_index(), float_digits=3),
    }


def build_propensity_model(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: dg.AssetKey
) -> dg.AssetsDefinition:
    asset_key = key(study, "propensity_model")
    thresholds = study.thresholds
    overlap = (
        f"overlap_eps = {thresholds.overlap_eps}, overlap_max_share_outside = "
        f"{thresholds.overlap_max_share_outside} ({thresholds.gate_rule} rule)"
    )

    @checked_asset(
        key=asset_key,
        deps=[upstream],
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        check_specs=[check_spec(asset_key, "overlap", overlap, partitions)],
        description=described(
            study, f"{study.name}: logistic propensity model (coefficients) and per-row propensity scores."
        ),
    )
    @each_batch
    def propensity_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        batch = context.partition_key
        store = warehouse.get()
        valid = store.read_table(study.name, "covariates", partition_key=batch)
        verdict, coefficients, scores, metadata = fit_and_check_overlap(study, valid, batch)
        verdicts = {"overlap": (naming_batch(verdict, batch), ERROR)}
        store.replace_partition_tables(
            study.name,
            batch,
            {
                "propensity_coefficients": coefficients,
                "propensity_scores": scores,
                verdict_table("propensity_model"): verdict_rows("propensity_model", verdicts),
            },
        )
        if not scores.empty:
            figure = overlap_plot(
                scores["propensity"],
                scores["treatment"],
                bounds=tuple(study.propensity.bounds),
                eps=study.thresholds.overlap_eps,
                title=f"{study.name} {batch}: propensity overlap",
            )
            metadata |= plot_metadata(reports, study, f"{batch}/overlap.png", figure_to_png(figure))
        yield dg.MaterializeResult(
            # rows: the batch's valid rows, fitted or not (a failed fit still had its rows)
            metadata={
                "rows": len(valid),
                "scored_rows": len(scores),
                "terms": len(coefficients),
                **metadata,
                **not_assessed("propensity_model", verdicts),
            }
        )
        yield from check_results(asset_key, verdicts)

    return propensity_model


def build_outcome_model(
    study: StudyConfig, partitions: dg.PartitionsDefinition, upstream: dg.AssetKey
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(study, "outcome_model"),
        deps=[upstream],
        **batch_asset_options(study, partitions),
        kinds={"duckdb"},
        description=described(
            study, f"{study.name}: arm-wise outcome regressions (coefficients) and mu0/mu1 per row."
        ),
    )
    @each_batch
    def outcome_model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        batch = context.partition_key
        store = warehouse.get()
        valid = store.read_table(study.name, "covariates", partition_key=batch)
        coefficients = pd.DataFrame(columns=["arm", "term", "coefficient"])
        predictions = pd.DataFrame(columns=["row_index", "mu0", "mu1"])
        kind = "not fitted"
        fit = None
        if usable_rows(study, valid) is None:
            try:
                fit = fit_outcome_model(
                    design_for(study, valid),
                    valid[study.treatment].to_numpy(dtype=np.int64),
                    valid[study.outcome].to_numpy(dtype=float),
                )
            except ValueError as error:
                kind = f"not fitted: {error}"
        if fit is not None:
            kind = fit.kind
            coefficients = pd.concat(
                [
                    fit.coefficients_control.rename_axis("term")
                    .reset_index(name="coefficient")
                    .assign(arm="control"),
                    fit.coefficients_treated.rename_axis("term")
                    .reset_index(name="coefficient")
                    .assign(arm="treated"),
                ]
            )[["arm", "term", "coefficient"]]
            predictions = pd.DataFrame(
                {"row_index": valid["row_index"].to_numpy(), "mu0": fit.mu0, "mu1": fit.mu1}
            )
        store.replace_partition_tables(
            study.name,
            batch,
            {
                "outcome_coefficients": coefficients,
                "outcome_predictions": predictions,
            },
        )
        fallbacks = [] if fit is None else fit.report()["outcome_fallbacks"]
        # A singular arm is fitted by a fallback, never silently: the UI says which and why.
        return dg.MaterializeResult(
            metadata={
                "rows": len(predictions),
                "model": kind,
                "fallbacks": len(fallbacks),
                "fallback_reasons": dg.MetadataValue.json(fallbacks),
            }
        )

    return outcome_model
