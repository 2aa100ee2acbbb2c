"""What the posterior is computed from, and storing one update of it with its audit row.

The inputs are read from the warehouse (files, verdicts, observations, influence values); the
update (the library's :func:`assimilate.admission.update_posterior`: the fusion and the
always-valid interval) is written with the audit row under the warehouse's write lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from assets.audit import AUDIT_TABLE, audit_record
from assets.common import read_verdicts
from assets.partitions import study_partitions
from assimilate.admission import PosteriorUpdate, observations, update_posterior
from assimilate.diagnostics.plan_audit import StudyAudit
from assimilate.incremental import FilterSettings
from checks.calibration import CALIBRATION_TABLE, audit_study
from checks.returning_units import stored_influence
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
    # The study's calibration audit of these observations (None unless configured): a refused
    # estimator's batches are kept out of the fusion.
    audit: StudyAudit | None = None


def load_inputs(store: Warehouse, study: StudyConfig) -> PosteriorInputs:
    """Every period's observation, from the stored files, primary estimates and verdicts.

    The influence values are read only when some unit is in two batches (``stored_influence``).
    """
    verdicts = read_verdicts(store, study)
    files = store.read_table(study.name, "raw_files")
    keys = study_partitions(study).get_partition_keys()
    effects = store.read_table(study.name, "batch_effects")
    observed = observations(keys, files, effects, verdicts, batch_rules=study.batch_rules_hash)
    return PosteriorInputs(files, verdicts, observed, stored_influence(store, study.name))


def read_state(store: Warehouse, study: StudyConfig) -> tuple[PosteriorInputs, pd.DataFrame]:
    """The posterior's inputs and its stored steps."""
    return load_inputs(store, study), store.read_table(study.name, "posterior_steps")


def same_state(a: tuple[PosteriorInputs, pd.DataFrame], b: tuple[PosteriorInputs, pd.DataFrame]) -> bool:
    """Whether nothing the update depends on changed between two reads."""
    (inputs_a, steps_a), (inputs_b, steps_b) = a, b
    fields = ("files", "verdicts", "observed", "influence")
    return steps_a.equals(steps_b) and all(getattr(inputs_a, f).equals(getattr(inputs_b, f)) for f in fields)


def admitted_observations(inputs: PosteriorInputs) -> pd.DataFrame:
    """The observations the filter uses: every batch of an estimator the calibration audit refuses excluded."""
    return inputs.observed if inputs.audit is None else inputs.audit.admitted(inputs.observed)


def _fuse(state: tuple[PosteriorInputs, pd.DataFrame], study: StudyConfig) -> PosteriorUpdate:
    inputs, previous = state
    return update_posterior(
        admitted_observations(inputs),
        previous,
        influence=inputs.influence,
        settings=FilterSettings.from_plan(study),
        planned_looks=study.looks_planned,  # the cadence's year of looks, unless the study plans its own
    )


def audited(
    store: Warehouse, study: StudyConfig, state: tuple[PosteriorInputs, pd.DataFrame]
) -> tuple[PosteriorInputs, pd.DataFrame]:
    """The state with the study's calibration audit of its observations (checks/calibration.py)."""
    inputs, steps = state
    return replace(inputs, audit=audit_study(store, study, inputs.observed)), steps


def store_posterior(
    store: Warehouse, study: StudyConfig, *, run_id: str
) -> tuple[PosteriorInputs, PosteriorUpdate]:
    """Fuse the stored inputs and write the steps, the error correlation and the audit row.

    Write under the lock only what follows from the current inputs: if another run changed them
    meanwhile, fuse again under the lock, so a stale update is never the last one. (The filtering
    itself, a numba compile on a cold cache included, stays outside the lock.)
    """
    state = audited(store, study, read_state(store, study))
    fused = _fuse(state, study)
    with store.exclusive() as locked:
        current = read_state(locked, study)
        if same_state(current, state):
            current = state
        else:
            current = audited(locked, study, current)
            fused = _fuse(current, study)
        inputs = current[0]
        audit = audit_record(
            study,
            run_id=run_id,
            files=inputs.files,
            verdicts=inputs.verdicts,
            observed=admitted_observations(inputs),
            result=fused.update.result,
            recomputed_from=fused.update.first_recomputed_label,
            always_valid=fused.sequence,
        )
        audit_table = {} if inputs.audit is None else {CALIBRATION_TABLE: inputs.audit.to_frame()}
        locked.write(
            study.name,
            whole_tables={
                "posterior_steps": fused.steps,
                CORRELATION_TABLE: fused.correlation_table(),
                **audit_table,
            },
            partition_key=run_id,
            partition_tables={AUDIT_TABLE: audit},
        )
    return inputs, fused


def fusion_metadata(study: StudyConfig, fused: PosteriorUpdate) -> dict[str, object]:
    """What the always-valid interval promises, whether the fusion conditions on shared units, what was recomputed."""
    recomputed = {
        "recomputed_from": fused.update.first_recomputed_label,
        "steps_recomputed": fused.update.n_recomputed,
    }
    metadata: dict[str, object] = {}
    if fused.sequence is not None:
        metadata["always_valid_promise"] = fused.sequence.promise
    shared = fused.shared
    if shared is None or shared.is_disjoint:
        metadata["error_correlation"] = (
            "none: no admitted batch shares a unit with another (independent batches)"
        )
        return metadata | recomputed
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
    return metadata | recomputed
