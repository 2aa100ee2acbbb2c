"""One job per study: every batch asset for a partition, then the posterior and its report.

The posterior is unpartitioned and folds all batches, so running it in the same run as the batch
means a landed file reaches the posterior without a daemon tick or a human (see DESIGN.md).
"""

from __future__ import annotations

import dagster as dg

from resources.guardrails import derive_guardrail_studies
from resources.study import StudyConfig


def study_job_name(study: StudyConfig) -> str:
    return f"{study.name}_batch_job"


def build_study_job(study: StudyConfig) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        study_job_name(study),
        # A guardrail's assets run in its primary's runs (resources/guardrails.py): one run per batch.
        selection=dg.AssetSelection.groups(study.name, *(g.name for g in derive_guardrail_studies(study))),
        description=f"{study.name}: ingest, validate, model and estimate one batch, then update the posterior.",
        tags={"assimilate/study": study.name},
    )
