"""What the posterior is computed from, and one update of it: the fusion and the always-valid interval.

The inputs are read from the warehouse (files, verdicts, observations, influence values); the
update fuses the admitted batches, with their error correlation when they share units, and puts
the always-valid interval of every period beside the stored steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.common import read_verdicts
from assets.partitions import study_partitions
from assets.posterior_inputs import (
    admitted_units,
    always_valid,
    error_correlation,
    observations,
    with_always_valid,
)
from assimilate.filters import SharedUnits
from assimilate.incremental import FilterSettings, IncrementalUpdate, refilter_from_first_change
from assimilate.sequential import ConfidenceSequence
from checks.returning_units import INFLUENCE_TABLE
from resources.study import StudyConfig
from resources.warehouse import Warehouse

CORRELATION_TABLE = "posterior_error_correlation"


@dataclass(frozen=True)
class PosteriorInputs:
    """What the posterior is computed from: stored files, verdicts, observations, influence values."""

    files: pd.DataFrame
    verdicts: pd.DataFrame
    observed: pd.DataFrame
    influence: pd.DataFrame


def load_inputs(store: Warehouse, study: StudyConfig) -> PosteriorInputs:
    """Every period's observation, from the stored files, primary estimates and verdicts."""
    verdicts = read_verdicts(store, study)
    files = store.read_table(study.name, "raw_files")
    keys = study_partitions(study).get_partition_keys()
    effects = store.read_table(study.name, "batch_effects")
    observed = observations(keys, files, effects, verdicts, batch_rules=study.batch_rules_hash)
    return PosteriorInputs(files, verdicts, observed, store.read_table(study.name, INFLUENCE_TABLE))


@dataclass(frozen=True)
class PosteriorUpdate:
    """The filter's update, the units the admitted batches share, and the always-valid interval."""

    update: IncrementalUpdate
    shared: SharedUnits | None
    correlation: np.ndarray | None
    sequence: ConfidenceSequence | None
    steps: pd.DataFrame


def update_posterior(
    inputs: PosteriorInputs, previous: pd.DataFrame, study: StudyConfig, settings: FilterSettings
) -> PosteriorUpdate:
    """Fuse the admitted batches (with their correlation when they share units) and add the always-valid interval."""
    shared = admitted_units(inputs.observed, inputs.influence)
    correlation = error_correlation(shared)
    update = refilter_from_first_change(inputs.observed, previous, settings, correlation=correlation)
    if inputs.observed.empty:
        return PosteriorUpdate(update, shared, correlation, None, update.steps)
    sequence = always_valid(
        inputs.observed, correlation, alpha=settings.alpha, planned_looks=study.looks_planned
    )
    return PosteriorUpdate(update, shared, correlation, sequence, with_always_valid(update.steps, sequence))


def fusion_metadata(study: StudyConfig, fused: PosteriorUpdate) -> dict[str, object]:
    """What the always-valid interval promises, and whether the fusion conditions on shared units."""
    metadata: dict[str, object] = {}
    if fused.sequence is not None:
        metadata["always_valid_promise"] = fused.sequence.promise
    shared = fused.shared
    if shared is None or shared.is_disjoint:
        metadata["error_correlation"] = (
            "none: no admitted batch shares a unit with another (independent batches)"
        )
        return metadata
    returning = int(np.sum(shared.n_returning > 0))
    how = (
        "the posterior conditions on it (exact Gaussian conditioning)"
        if study.backend.kind == "kalman"
        else "the particle posterior assumes independent batches and does not use it; the always-valid interval does"
    )
    metadata |= {
        "error_correlation": f"{returning} admitted batch(es) share units with earlier ones: {how}",
        "returning_share_latest": float(shared.returning_share[-1]),
        "max_correlation_with_earlier": float(np.nanmax(shared.max_correlation_with_earlier)),
    }
    return metadata


def read_state(store: Warehouse, study: StudyConfig) -> tuple[PosteriorInputs, pd.DataFrame]:
    """The posterior's inputs and its stored steps."""
    return load_inputs(store, study), store.read_table(study.name, "posterior_steps")


def same_state(a: tuple[PosteriorInputs, pd.DataFrame], b: tuple[PosteriorInputs, pd.DataFrame]) -> bool:
    """Whether nothing the update depends on changed between two reads."""
    (inputs_a, steps_a), (inputs_b, steps_b) = a, b
    fields = ("files", "verdicts", "observed", "influence")
    return steps_a.equals(steps_b) and all(getattr(inputs_a, f).equals(getattr(inputs_b, f)) for f in fields)
