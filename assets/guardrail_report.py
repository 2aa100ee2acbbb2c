"""A primary study's guardrails, as its report reads them: their posterior assets and stored steps.

Each guardrail runs as a study of its own (``resources/guardrails.py``) with its own
``effect_posterior``; the primary's ``posterior_report`` depends on each of them (so the memo is
written after every guardrail's posterior in the same run) and reads each one's last stored step.
"""

from __future__ import annotations

import math

import dagster as dg
import pandas as pd

from assets.common import key
from assimilate.report.guardrails import GuardrailPosterior
from resources.guardrails import Guardrail, derive_guardrail_studies
from resources.study import StudyConfig
from resources.warehouse import Warehouse


def guardrail_posterior_keys(study: StudyConfig) -> list[dg.AssetKey]:
    """The ``effect_posterior`` of each of the study's guardrails (none without guardrails)."""
    return [key(guardrail, "effect_posterior") for guardrail in derive_guardrail_studies(study)]


def guardrail_posterior(spec: Guardrail, name: str, steps: pd.DataFrame) -> GuardrailPosterior:
    """A guardrail's posterior after its latest batch, from the stored steps of its study ``name``."""
    used = int((~steps["excluded"].astype(bool)).sum()) if not steps.empty else 0
    mean = sd = None
    if used:
        last = steps.iloc[-1]
        mean, sd = float(last["posterior_mean"]), math.sqrt(max(float(last["posterior_var"]), 0.0))
    return GuardrailPosterior(
        study=name,
        outcome=spec.outcome,
        desired_direction=spec.desired_direction,
        margin=spec.margin,
        mean=mean,
        sd=sd,
        n_used=used,
        n_batches=len(steps),
        outcome_type=spec.outcome_type,
        outcome_unit=spec.outcome_unit,
    )


def read_guardrail_posteriors(store: Warehouse, study: StudyConfig) -> tuple[GuardrailPosterior, ...]:
    """Every guardrail's posterior after its latest batch (no evidence where none is stored yet)."""
    posteriors = []
    for spec, derived in zip(study.guardrails, derive_guardrail_studies(study), strict=True):
        posteriors.append(
            guardrail_posterior(spec, derived.name, store.read_table(derived.name, "posterior_steps"))
        )
    return tuple(posteriors)
