"""Post-treatment exclusion: no column caused by the treatment may reach a model.

A model column fails when the study's causal graph makes it a descendant of the treatment, when
the study marks it post-treatment, when its name embeds a marked post-treatment column's name (a
derived column such as ``engagement_z``), or when its values track a post-treatment column (marked,
or a descendant of the treatment in the graph) present in the landed file (|correlation| >= the
threshold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assimilate.diagnostics import Verdict
from orchestration.study_config import StudyConfig

DERIVED_CORRELATION = 0.95


def post_treatment_offenders(study: StudyConfig, typed: pd.DataFrame) -> dict[str, str]:
    """Model columns that are, descend from or derive from a post-treatment column, with the reason."""
    dag = study.causal_dag()
    descendants = set() if dag is None else dag.descendants_of_treatment - {study.outcome}
    offenders: dict[str, str] = {}
    for column in study.model_columns:
        if dag is not None and column in descendants:
            path = dag.format_path(dag.path_from_treatment(column))
            offenders[column] = (
                f"{column!r} is a descendant of the treatment {study.treatment!r} in causal_graph ({path}): "
                "a post-treatment column is never a control"
            )
            continue
        for post in study.post_treatment:
            if column == post:
                offenders[column] = f"{column!r} is marked post-treatment"
            elif post.lower() in column.lower():
                offenders[column] = f"{column!r} is derived from post-treatment column {post!r} (name)"
        if column in offenders:
            continue
        for post in sorted(set(study.post_treatment) | descendants):
            if column in typed and post in typed and column != post and _tracks(typed[column], typed[post]):
                offenders[column] = (
                    f"{column!r} is derived from post-treatment column {post!r} "
                    f"(|correlation| >= {DERIVED_CORRELATION})"
                )
    return offenders


def _tracks(column: pd.Series, post: pd.Series) -> bool:
    if not (pd.api.types.is_numeric_dtype(column) and pd.api.types.is_numeric_dtype(post)):
        return False
    both = pd.concat([column, post], axis=1).replace([np.inf, -np.inf], np.nan).dropna()
    if len(both) < 3 or both.iloc[:, 0].std() == 0 or both.iloc[:, 1].std() == 0:
        return False
    return bool(abs(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1]) >= DERIVED_CORRELATION)


def post_treatment_verdict(study: StudyConfig, typed: pd.DataFrame, *, batch: str) -> Verdict:
    """Fail when any model column is, descends from or derives from a post-treatment column."""
    offenders = post_treatment_offenders(study, typed)
    reason = "; ".join(offenders.values())
    return Verdict.evaluate(
        "post_treatment_exclusion",
        value=float(len(offenders)),
        threshold=0.0,
        rule="no model column is a descendant of the treatment or derives from a post-treatment column",
        passed=not offenders,
        reason=f"batch {batch}: {reason}" if offenders else "no post-treatment column reaches a model",
    )
