"""Per-study asset factories: raw batch -> covariates -> models -> effect -> posterior -> report."""

from __future__ import annotations

import dagster as dg

from assets.common import key
from assets.estimation import build_estimation
from assets.intake import build_intake
from assets.partitions import study_partitions
from assets.posterior import build_effect_posterior
from assets.report import build_posterior_report
from assets.segments import build_segment_assets
from resources.study import StudyConfig


def build_study_assets(
    study: StudyConfig, partitions: dg.TimeWindowPartitionsDefinition | None = None
) -> list[dg.AssetsDefinition]:
    """The asset group of one study, keys prefixed by the study name (default: every period up to now)."""
    partitions = partitions or study_partitions(study)
    # raw_batch and covariate_table: one step that reads the batch once
    intake = build_intake(study, partitions)
    covariates = key(study, "covariate_table")
    # propensity_model, outcome_model and batch_effect: one step over one fit of the batch
    estimation = build_estimation(study, partitions, covariates)
    posterior = build_effect_posterior(study, key(study, "batch_effect"))
    # Effects by segment, only for a study whose causal graph names an effect modifier (else none).
    segments = build_segment_assets(study, partitions, covariates, posterior.key)
    report = build_posterior_report(study, posterior.key, *(a.key for a in segments[1:]))
    return [intake, estimation, posterior, *segments, report]
