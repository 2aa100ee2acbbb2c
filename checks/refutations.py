"""The study's refuters as checks on batch_effect: one verdict per configured refuter, and its numbers.

The refuters (``refuters:`` in the study file) re-run the primary estimator on versions of the batch
whose answer is known (:func:`assimilate.diagnostics.batch_refutations.refute_batch`); each check's
question is the refuter's null hypothesis, its severity the study's (WARN unless it says ERROR), and
its metadata the refutation's numbers. A refuter that does not apply to the batch (no usable
estimate, a refit the estimator cannot do) is undefined with the reason: not assessed, never passed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from assimilate.diagnostics import Verdict
from assimilate.diagnostics.batch_refutations import refutation_metadata, refute_batch
from assimilate.diagnostics.catalogue import Severity
from assimilate.estimators.batch import BatchFit
from resources.study import StudyConfig


def refuter_severities(study: StudyConfig) -> dict[str, Severity]:
    """Each configured refuter's severity, as the study says (the catalogue's WARN unless ERROR)."""
    return {} if study.refuters is None else {n: s.severity for n, s in study.refuters.configured.items()}


def refuter_details(study: StudyConfig) -> dict[str, str]:
    """The study's settings of each configured refuter, for its check's description."""
    if study.refuters is None:
        return {}
    method = f"primary estimator {study.primary_estimator}"
    return {
        name: ", ".join(
            [method, *(f"{k} = {v}" for k, v in settings.model_dump().items() if k != "severity")]
        )
        for name, settings in study.refuters.configured.items()
    }


def refutation_verdicts(
    study: StudyConfig, valid: pd.DataFrame, fit: BatchFit, batch: str, *, rng: np.random.Generator
) -> tuple[dict[str, Verdict], dict[str, dict[str, Any]]]:
    """The configured refuters' verdicts on this batch, and each one's numbers for its check's metadata."""
    if study.refuters is None:
        return {}, {}
    estimation = fit.verdicts["estimation"]
    refutations = refute_batch(
        valid,
        study,
        rng=rng,
        estimate=fit.estimates.get(study.primary_estimator),
        propensity=fit.propensity,
        problem="" if estimation.passed else estimation.reason or "the primary estimate is not usable",
    )
    verdicts = {name: r.verdict for name, r in refutations.items()}
    return verdicts, {name: refutation_metadata(r) for name, r in refutations.items()}
