"""Effects by segment, as the shell judges them: the batch's segments, their difference check, the fused one.

A study whose causal graph names ``effect_modifier`` columns gets two checks: on ``segment_effects``
(each batch: does a segment's estimate differ from the rest's?) and on ``segment_posterior`` (the
partially pooled belief after the latest batch). Both adjust every segment's p-value of every
modifier together by the study's rule (``segments.multiplicity``), at its ``segments.level``, with its
``segments.severity`` (WARN unless the study says ERROR). Neither keeps a batch out of the posterior:
an effect that differs by segment is a finding about the effect, not a broken batch.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from assimilate.diagnostics import Verdict
from assimilate.segment_study import (
    CHECK_NAME,
    POSTERIOR_CHECK_NAME,
    PooledDifferences,
    batch_segments,
    modifiers_of,
    pooled_differences,
    segment_table,
)
from checks.results import Verdicts, check_spec, naming_batch, severity
from resources.study import StudyConfig
from resources.warehouse import Warehouse

SEGMENT_TABLE = "segment_effects"
SHOWN = ["modifier", "segment", "difference", "std_error", "p_value", "adjusted_p_value", "differs"]


def has_segments(study: StudyConfig) -> bool:
    """Whether the study estimates effects by segment (its causal graph names an effect modifier)."""
    return bool(study.effect_modifiers)


def segment_detail(study: StudyConfig) -> str:
    """The study's numbers for the checks' descriptions."""
    s = study.segment_settings
    rule = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}[
        s.multiplicity
    ]
    return (
        f"modifiers {', '.join(study.effect_modifiers)}; estimator {study.primary_estimator}; "
        f"{rule} at level {s.level:g}; severity {s.severity} (never keeps a batch out)"
    )


def segment_check_spec(
    study: StudyConfig, asset_key: dg.AssetKey, prop: str, partitions: Any = None
) -> dg.AssetCheckSpec:
    """The spec of ``segment_difference`` or ``fused_segment_difference``.

    Its description states the catalogue's consequence (reported, the batch still enters the
    posterior) at either severity: ERROR only makes Dagster show and alert it as an error.
    """
    return check_spec(asset_key, prop, segment_detail(study), partitions)


def first_batch_rows(store: Warehouse, study: StudyConfig) -> pd.DataFrame | None:
    """The valid rows of the study's first stored batch (continuous modifiers are cut at its quantiles)."""
    if not any(
        c not in study.categorical and c not in study.segment_settings.edges for c in study.effect_modifiers
    ):
        return None  # every modifier's segments are declared: no batch needed
    # The earliest landed batch (raw_files is one row per file: a small read).
    files = store.read_table(study.name, "raw_files")
    if files.empty:
        return None
    return store.read_table(study.name, "covariates", partition_key=str(files["partition_key"].min()))


def batch_segment_results(
    study: StudyConfig, valid: pd.DataFrame, first: pd.DataFrame | None, batch: str, rng: np.random.Generator
) -> tuple[pd.DataFrame, Verdicts, dict[str, Any]]:
    """The batch's stored segment rows, its difference verdict, and the check's numbers.

    A batch the estimator refuses as a whole (one arm missing) has no rows and an undefined verdict
    with the estimator's message: not assessed, never passed.
    """
    settings, level = (
        study.segment_settings,
        severity(CHECK_NAME, {CHECK_NAME: study.segment_settings.severity}),
    )
    try:
        found = batch_segments(valid, study, modifiers_of(study, first), batch=batch, rng=rng)
    except ValueError as error:
        verdict = Verdict.undefined(
            CHECK_NAME, threshold=settings.level, rule="segments estimated", reason=str(error)
        )
        return segment_table({}), {CHECK_NAME: (naming_batch(verdict, batch), level)}, {}
    pooled = pooled_differences(found, settings)
    table = segment_table(found)
    return (
        table,
        {CHECK_NAME: (naming_batch(pooled.verdict, batch), level)},
        {CHECK_NAME: difference_metadata(pooled)},
    )


def posterior_level(study: StudyConfig) -> dg.AssetCheckSeverity:
    """The fused check's severity, as the study says."""
    return severity(POSTERIOR_CHECK_NAME, {POSTERIOR_CHECK_NAME: study.segment_settings.severity})


def difference_metadata(pooled: PooledDifferences) -> dict[str, Any]:
    """The check's numbers: the flagged segments, and every segment's test as a table."""
    flagged = [f"{m} = {s}" for m, s in pooled.flagged]
    metadata: dict[str, Any] = {"flagged_segments": ", ".join(flagged) if flagged else "none"}
    if not pooled.table.empty:
        metadata["segments_tested"] = len(pooled.table)
        metadata["differences"] = dg.MetadataValue.md(pooled.table[SHOWN].round(4).to_markdown(index=False))
    return metadata
