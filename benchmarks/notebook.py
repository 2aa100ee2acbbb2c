"""The reference for the pipeline benchmarks: what a statistician does in a notebook with one file.

``library_path`` is the honest counterpart of one landed batch's run, in plain library calls, with
no storage, no Dagster and no report:

1. read the file (``pandas.read_parquet``, or ``read_csv`` for a CSV);
2. check it, as a careful notebook would: the study's columns are there, rows with a missing value
   in them are dropped, the treatment (and a binary outcome) is 0/1, each categorical column holds
   only its declared levels, the unit ids are unique and both arms are present;
3. estimate: ``fit_batch`` with the study's analysis plan, so the propensity and outcome models
   are fitted once, every configured estimator runs and the overlap, balance and estimation
   verdicts are computed (with the pipeline's seed for the batch, so its estimates are the
   pipeline's);
4. one Kalman filter step with the primary estimate.

What it leaves out, and the pipeline does: hashing and storing the raw rows, typing rows from
text and quarantining bad ones with their rule, the checks against earlier batches, storing
every table, the process-variance fit over the history, the memo and its plots, and Dagster's
events. The pipeline targets are ratios to this path. It imports the library only (no Dagster,
no shell), so a subprocess running it measures the library's memory (benchmarks/memory.py).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from assimilate.design.plan import AnalysisPlan
from assimilate.estimators import EffectEstimate
from assimilate.estimators.batch import fit_batch
from assimilate.filters import initial_state, step

OUTREACH_STUDY = Path(__file__).resolve().parent.parent / "studies" / "retention_outreach.yaml"


def retention_study_data(*, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The shipped outreach study file's content, by default without its opt-in per-batch extras.

    Its refuters refit the estimator and its effect modifier (region) adds a segment step: both
    are left out unless named in ``keep`` ("refuters", "segments"), so the per-batch budget
    measures the core path (benchmarks/refuters.py measures the refuters against it).
    """
    data = yaml.safe_load(OUTREACH_STUDY.read_text())
    if "refuters" not in keep:
        data.pop("refuters", None)
    if "segments" not in keep:
        roles = data["causal_graph"]["roles"]
        data["causal_graph"]["roles"] = {
            column: "confounder" if role == "effect_modifier" else role for column, role in roles.items()
        }
    return data


def outreach_plan() -> AnalysisPlan:
    """The analysis plan of ``retention_study_data()``: the statistical half of the study file."""
    data = retention_study_data()
    return AnalysisPlan.model_validate({k: v for k, v in data.items() if k in AnalysisPlan.model_fields})


def batch_seed(plan: AnalysisPlan, batch: str) -> np.random.Generator:
    """The pipeline's generator for a batch (assets/common.py ``batch_rng``; the benchmarks compare
    the estimates, so a change there shows as a disagreement)."""
    digest = hashlib.sha256(f"{plan.seed}:{batch}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def checked_rows(frame: pd.DataFrame, study: AnalysisPlan, name: str) -> pd.DataFrame:
    """The notebook's checks of one file: its valid rows, or a ValueError naming file, column and rule."""
    columns = [study.unit_id, study.treatment, study.outcome, *study.covariates, *study.categorical]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: columns {missing} are missing")
    valid = frame.loc[frame[columns].notna().all(axis=1), columns]
    binary = [study.treatment, *([study.outcome] if study.outcome_type == "binary" else [])]
    for column in binary:
        if not valid[column].isin((0, 1)).all():
            raise ValueError(f"{name}: column {column!r} must be 0 or 1")
    for column, levels in study.categorical.items():
        if not valid[column].isin(levels).all():
            raise ValueError(f"{name}: column {column!r} has values outside {list(levels)}")
    if not valid[study.unit_id].is_unique:
        raise ValueError(f"{name}: column {study.unit_id!r} repeats a unit id")
    if valid[study.treatment].nunique() < 2:
        raise ValueError(f"{name}: column {study.treatment!r} must hold both arms")
    return valid.reset_index(drop=True)


def library_path(path: Path, study: AnalysisPlan, batch: str | None = None) -> EffectEstimate:
    """Read, check, ``fit_batch`` and one filter step on one landed file; the primary estimate.

    ``batch`` is the batch's partition key (the pipeline's seed for it); default: the file's stem.
    """
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    valid = checked_rows(frame, study, path.name)
    batch = batch or path.stem
    fit = fit_batch(valid, study, batch=batch, rng=batch_seed(study, batch))
    primary = fit.estimates.get(study.primary_estimator)
    if primary is None:
        raise ValueError(f"{path.name}: {study.primary_estimator}: {fit.errors.get(study.primary_estimator)}")
    state = initial_state(prior_mean=0.0, prior_var=math.inf)
    step(state, primary.estimate, primary.std_error, process_var=1e-4)
    return primary


def relative_difference(ours: float, theirs: float) -> float:
    """|a - b| / max(1, |b|): the agreement measure of two estimates."""
    return abs(ours - theirs) / max(1.0, abs(theirs))
