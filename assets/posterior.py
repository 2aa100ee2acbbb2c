"""effect_posterior: the filter folded over every period's observation, resumed where inputs changed."""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from assets.audit import AUDIT_TABLE, audit_record
from assets.common import WRITE_POOL, code_version, described, key, read_verdicts
from assets.posterior_inputs import observations
from assimilate.diagnostics import innovation_diagnostics
from assimilate.incremental import FilterSettings, refilter_from_first_change
from assimilate.result import AssimilationResult
from checks.results import WARN, check_result, check_spec
from orchestration.partitions import study_partitions
from orchestration.study_config import StudyConfig
from resources.warehouse import Warehouse, WarehouseResource


@dataclass(frozen=True)
class PosteriorInputs:
    """What the posterior is computed from: stored files, every verdict, and the observations."""

    files: pd.DataFrame
    verdicts: pd.DataFrame
    observed: pd.DataFrame


def load_inputs(store: Warehouse, study: StudyConfig) -> PosteriorInputs:
    """Every period's observation, from the stored files, primary estimates and verdicts."""
    verdicts = read_verdicts(store, study)
    files = store.read_table(study.name, "raw_files")
    keys = study_partitions(study).get_partition_keys()
    observed = observations(keys, files, store.read_table(study.name, "batch_effects"), verdicts)
    return PosteriorInputs(files, verdicts, observed)


def filter_settings(study: StudyConfig) -> FilterSettings:
    prior = study.prior
    return FilterSettings(
        backend=study.backend.kind,
        process_var=study.process_var,
        prior_mean=None if prior is None or prior.diffuse else prior.mean,
        prior_var=None if prior is None or prior.diffuse else prior.variance,
        diffuse=bool(prior is not None and prior.diffuse),
        n_particles=getattr(study.backend, "n_particles", None),
        observation=getattr(study.backend, "observation", "gaussian"),
        df=getattr(study.backend, "df", None),
        seed=study.seed,
    )


def posterior_metadata(
    study: StudyConfig,
    inputs: PosteriorInputs,
    steps: pd.DataFrame,
    result: AssimilationResult | None,
    batch: str | None,
) -> dict[str, object]:
    """The posterior after the latest period, and after the run's own batch (with its input hash)."""
    metadata: dict[str, object] = {"batches": len(inputs.observed), "code_version": code_version(study)}
    if result is not None and result.n_batches:
        lower, upper = result.final_ci
        metadata |= {
            "posterior_mean": result.final_mean,
            "posterior_sd": result.final_sd,
            "credible_interval": f"[{lower:.4g}, {upper:.4g}] ({100 * result.level:g}%)",
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


def read_state(store: Warehouse, study: StudyConfig) -> tuple[PosteriorInputs, pd.DataFrame]:
    """The posterior's inputs and its stored steps."""
    return load_inputs(store, study), store.read_table(study.name, "posterior_steps")


def same_state(a: tuple[PosteriorInputs, pd.DataFrame], b: tuple[PosteriorInputs, pd.DataFrame]) -> bool:
    """Whether nothing the update depends on changed between two reads."""
    (inputs_a, steps_a), (inputs_b, steps_b) = a, b
    fields = ("files", "verdicts", "observed")
    return steps_a.equals(steps_b) and all(getattr(inputs_a, f).equals(getattr(inputs_b, f)) for f in fields)


def build_effect_posterior(study: StudyConfig, upstream: dg.AssetKey) -> dg.AssetsDefinition:
    asset_key = key(study, "effect_posterior")
    specs = [
        check_spec(
            asset_key, "innovation", f"latest |standardized innovation| <= {study.thresholds.innovation_z}"
        ),
        check_spec(asset_key, "one_sided_innovations", "innovations are not persistently one-sided (drift)"),
        check_spec(asset_key, "particle_ess", f"particle ESS/N >= {study.thresholds.min_ess_fraction}"),
    ]

    @dg.asset(
        key=asset_key,
        deps=[upstream],
        group_name=study.name,
        pool=WRITE_POOL,
        code_version=code_version(study),
        kinds={"duckdb"},
        check_specs=specs,
        description=described(
            study, f"{study.name}: posterior of the effect after every period ({study.backend.kind} filter)."
        ),
    )
    def effect_posterior(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        store, settings = warehouse.get(), filter_settings(study)
        state = read_state(store, study)
        update = refilter_from_first_change(state[0].observed, state[1], settings)
        # Write under the lock only what follows from the current inputs: if another run changed
        # them meanwhile, filter again under the lock, so a stale update is never the last one.
        # (The filtering itself, a numba compile on a cold cache included, stays outside the lock.)
        with store.exclusive() as locked:
            current = read_state(locked, study)
            if not same_state(current, state):
                update = refilter_from_first_change(current[0].observed, current[1], settings)
            inputs = current[0]
            audit = audit_record(
                study,
                run_id=context.run.run_id,
                files=inputs.files,
                verdicts=inputs.verdicts,
                observed=inputs.observed,
                result=update.result,
                recomputed_from=update.first_recomputed_label,
            )
            locked.write(
                study.name,
                whole_tables={"posterior_steps": update.steps},
                partition_key=context.run.run_id,
                partition_tables={AUDIT_TABLE: audit},
            )
        result = update.result
        batch = context.run.tags.get("dagster/partition")
        metadata = posterior_metadata(study, inputs, update.steps, result, batch)
        metadata |= {
            "recomputed_from": update.first_recomputed_label,
            "steps_recomputed": update.n_recomputed,
        }
        yield dg.MaterializeResult(metadata=metadata)
        report = innovation_diagnostics(
            result,
            z_threshold=study.thresholds.innovation_z,
            min_ess_fraction=study.thresholds.min_ess_fraction,
        )
        yield check_result(asset_key, "innovation", report.latest_innovation, severity=WARN)
        yield check_result(asset_key, "one_sided_innovations", report.one_sided, severity=WARN)
        yield check_result(asset_key, "particle_ess", report.ess, severity=WARN)

    return effect_posterior
