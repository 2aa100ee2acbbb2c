"""effect_posterior: the filter folded over every period's observation, resumed where inputs changed."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import WRITE_POOL, checked_asset, code_version, described, frame_to_records_md, key
from assets.partition_range import SINGLE_RUN, holding_the_warehouse, last_batch
from assets.posterior_state import CORRELATION_TABLE, PosteriorInputs, fusion_metadata, store_posterior
from assimilate.diagnostics import TrendTest, innovation_diagnostics, trend_test_of
from assimilate.result import AssimilationResult
from assimilate.stored_steps import PATH_COLUMNS
from checks.calibration import audit_metadata, audit_spec, audit_verdicts
from checks.results import WARN, Verdicts, check_results, check_spec, not_assessed
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

__all__ = ["CORRELATION_TABLE", "build_effect_posterior"]


def posterior_metadata(
    study: StudyConfig,
    inputs: PosteriorInputs,
    steps: pd.DataFrame,
    result: AssimilationResult | None,
    batch: str | None,
) -> dict[str, object]:
    """The posterior after the latest period, and after the run's own batch (with its input hash)."""
    metadata: dict[str, object] = {
        "batches": len(inputs.observed),
        "code_version": code_version(study),
        **path_table(steps),
    }
    if not steps.empty and "always_valid_lower" in steps.columns:
        last = steps.iloc[-1]
        lower, upper = float(last["always_valid_lower"]), float(last["always_valid_upper"])
        metadata |= {
            "always_valid_lower": lower,
            "always_valid_upper": upper,
            "always_valid_interval": f"[{lower:.4g}, {upper:.4g}] (95%, always valid)",
        }
    if result is not None and result.n_batches:
        lower, upper = result.final_ci
        metadata |= {
            "posterior_mean": result.final_mean,
            "posterior_sd": result.final_sd,
            "ci_lower": lower,
            "ci_upper": upper,
            "alpha": 1 - result.level,
            "excluded_batches": int(np.sum(result.excluded)),
            "process_var": result.process_var,
        }
    own = steps[steps["batch"] == batch] if batch is not None and not steps.empty else steps.iloc[0:0]
    if len(own):
        row = own.iloc[0]
        files = (
            inputs.files[inputs.files["partition_key"] == batch] if not inputs.files.empty else inputs.files
        )
        metadata |= {
            "batch": batch,
            "batch_excluded": bool(row["excluded"]),
            "posterior_mean_after_batch": float(row["posterior_mean"]),
            "posterior_sd_after_batch": float(np.sqrt(row["posterior_var"])),
            "input_sha256": str(files["sha256"].iloc[0]) if len(files) else "withdrawn",
        }
    return metadata


def unplotted(metadata: dict[str, object]) -> dict[str, object]:
    """Posterior numbers as text, so Dagster does not plot them over materialization time.

    Each materialization's numbers are the posterior under that run's process variance, which is
    re-estimated as batches arrive: a plot of them against run time is no path of the effect
    (docs/DECISIONS.md). The path is the per-batch table (and the report's fan chart).
    """
    return {
        label: dg.MetadataValue.text(repr(value)) if isinstance(value, float) else value
        for label, value in metadata.items()
    }


def path_table(steps: pd.DataFrame) -> dict[str, object]:
    """The filtered path, one row per batch, as the fan chart draws it."""
    if steps.empty:
        return {}
    columns = [
        *PATH_COLUMNS,
        *(c for c in ("always_valid_lower", "always_valid_upper") if c in steps.columns),
    ]
    return {"posterior_path": frame_to_records_md(steps[columns])}


def trend_metadata(trend: TrendTest) -> dict[str, object]:
    """The trend test's numbers and the steady-state effect, for the check's metadata."""
    metadata: dict[str, object] = {"direction": trend.direction, "p_value": trend.p_value or "n/a"}
    if trend.steady_state is not None:
        lower, upper = trend.steady_state.conf_int
        metadata |= {
            "steady_state_effect": trend.steady_state.estimate,
            "steady_state_interval": f"[{lower:.4g}, {upper:.4g}]",
            "steady_state_batches": f"{trend.steady_state.first_batch} .. {trend.steady_state.last_batch}",
        }
    return metadata


def posterior_verdicts(study: StudyConfig, result: AssimilationResult | None) -> tuple[Verdicts, TrendTest]:
    """The posterior's own checks (all WARN) under the study's thresholds, and the trend test."""
    report = innovation_diagnostics(
        result,
        z_threshold=study.thresholds.innovation_z,
        min_ess_fraction=study.thresholds.min_ess_fraction,
    )
    trend = trend_test_of(result)
    verdicts = {
        "innovation": (report.latest_innovation, WARN),
        "one_sided_innovations": (report.one_sided, WARN),
        "particle_ess": (report.ess, WARN),
        "effect_trend": (trend.verdict, WARN),
    }
    return verdicts, trend


def build_effect_posterior(study: StudyConfig, upstream: dg.AssetKey) -> dg.AssetsDefinition:
    asset_key = key(study, "effect_posterior")
    specs = [
        check_spec(asset_key, "innovation", f"innovation_z = {study.thresholds.innovation_z}"),
        check_spec(asset_key, "one_sided_innovations"),
        check_spec(
            asset_key,
            "particle_ess",
            f"min_ess_fraction = {study.thresholds.min_ess_fraction}"
            if study.backend.kind == "particle"
            else "not assessed: the Kalman backend has no particles",
        ),
        check_spec(
            asset_key,
            "effect_trend",
            "given the filter's process variance; the steady-state effect is the last third of the batches",
        ),
    ]
    if study.calibration_audit is not None:  # opt-in: the study-level audit of the primary estimator
        specs.append(audit_spec(study, asset_key))

    @checked_asset(
        key=asset_key,
        deps=[upstream],
        group_name=study.name,
        pool=WRITE_POOL,
        backfill_policy=SINGLE_RUN,  # once after a range of batches
        code_version=code_version(study),
        kinds={"duckdb"},
        check_specs=specs,
        description=described(
            study, f"{study.name}: posterior of the effect after every period ({study.backend.kind} filter)."
        ),
    )
    @holding_the_warehouse
    def effect_posterior(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """The filter resumed where the inputs changed (one pass), stored with its audit row; its checks."""
        inputs, fused = store_posterior(warehouse.get(), study, run_id=context.run.run_id)
        result = fused.update.result
        metadata = posterior_metadata(study, inputs, fused.steps, result, last_batch(context))
        metadata |= fusion_metadata(study, fused)
        verdicts, trend = posterior_verdicts(study, result)
        verdicts = {**verdicts, **audit_verdicts(study, inputs.audit)}
        yield dg.MaterializeResult(metadata=unplotted(metadata) | not_assessed("effect_posterior", verdicts))
        numbers = {"effect_trend": trend_metadata(trend), **audit_metadata(inputs.audit)}
        yield from check_results(asset_key, verdicts, numbers)

    return effect_posterior
