"""Post-treatment exclusion: no column caused by the treatment may reach a model.

A model column that is itself post-treatment (marked ``post_treatment``, or a descendant of the
treatment in the study's causal graph) never reaches a batch: the study fails to load
(``AnalysisPlan``'s column and graph rules). Per batch, a model column fails when its name embeds a
marked post-treatment column's name (a derived column such as ``engagement_z``), or when its
values track a post-treatment column (marked, or a descendant of the treatment in the graph)
present in the landed file (|correlation| >= the threshold).

Beside what the study declares, every model column is screened from the batch's data
(``assimilate.diagnostics.post_treatment_screen``): a column (nearly) determined by the outcome or
the treatment, or, in a randomized design, one whose distribution differs between the arms. A
decisive finding fails the check naming the column and the statistic; a weaker one is reported in
the reason (a warning: it alone does not fail the check). The arm test's level is the SRM gate's
per-look level (``srm_false_alarm_per_year`` over a year of looks; ``srm_alpha`` under the fixed
rule); an N-of-1 study's days are not independent draws, so it gets no arm test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assimilate.diagnostics import PostTreatmentScreen, Verdict, per_look_alpha, post_treatment_screen
from assimilate.diagnostics.calibration import stating_rate
from resources.study import StudyConfig

DERIVED_CORRELATION = 0.95


def post_treatment_offenders(study: StudyConfig, typed: pd.DataFrame) -> dict[str, str]:
    """Model columns derived from a post-treatment column, by name or by values, with the reason."""
    dag = study.causal_dag()
    descendants = set() if dag is None else dag.descendants_of_treatment - {study.outcome}
    offenders: dict[str, str] = {}
    for column in study.model_columns:
        named = [post for post in study.post_treatment if post.lower() in column.lower()]
        if named:
            offenders[column] = f"{column!r} is derived from post-treatment column {named[-1]!r} (name)"
            continue
        for post in sorted(set(study.post_treatment) | descendants):
            if column in typed and post in typed and column != post and _tracks(typed[column], typed[post]):
                offenders[column] = (
                    f"{column!r} is derived from post-treatment column {post!r} "
                    f"(|correlation| >= {DERIVED_CORRELATION})"
                )
    return offenders


def _tracks(column: pd.Series, post: pd.Series) -> bool:
    """|correlation| >= DERIVED_CORRELATION over the rows where both are finite (numeric columns only)."""
    if not (pd.api.types.is_numeric_dtype(column) and pd.api.types.is_numeric_dtype(post)):
        return False
    # numpy, not a pandas concat: a batch screens several pairs, each a few pandas calls of ~1 ms.
    x = column.to_numpy(dtype=np.float64, na_value=np.nan)
    y = post.to_numpy(dtype=np.float64, na_value=np.nan)
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    if len(x) < 3 or x.std(ddof=1) == 0 or y.std(ddof=1) == 0:
        return False
    return bool(abs(np.corrcoef(x, y)[0, 1]) >= DERIVED_CORRELATION)


def screen_batch(study: StudyConfig, typed: pd.DataFrame) -> PostTreatmentScreen | None:
    """The data screen of the study's model columns on one typed batch (None: a column is absent)."""
    # Clusters randomized whole (a cluster column, or a unit's repeated rows kept as a cluster) are
    # compared between arms on their means: rows of one cluster are not independent draws.
    cluster = study.cluster or (study.unit_id if study.duplicate_units == "cluster" else None)
    needed = [study.outcome, study.treatment, *study.model_columns]
    if any(column not in typed for column in [*needed, *([cluster] if cluster else [])]):
        return None  # the data-quality check names the missing column
    columns = dict.fromkeys([*needed, *([cluster] if cluster else [])])
    frame = pd.DataFrame({c: typed[c] for c in columns}, copy=False)  # the typed arrays, not a copy
    for column, levels in study.categorical.items():  # unknown levels are quarantined: leave them out
        frame[column] = frame[column].where(frame[column].isin(levels))
    randomized = study.design.kind == "randomized" and not study.single_subject
    thresholds = study.thresholds
    return post_treatment_screen(
        frame,
        outcome=study.outcome,
        treatment=study.treatment,
        covariates=study.covariates,
        categorical=tuple(study.categorical),
        randomized=randomized,
        cluster=cluster,
        error_alpha=thresholds.srm_alpha
        if thresholds.gate_rule == "fixed"
        else per_look_alpha(thresholds.srm_false_alarm_per_year, looks=study.batches_per_year),
    )


def post_treatment_verdict(study: StudyConfig, typed: pd.DataFrame, *, batch: str) -> Verdict:
    """Fail when a model column derives from a post-treatment column, or when the data screen finds
    one decisively determined by the outcome or the treatment (or moved by it)."""
    offenders = post_treatment_offenders(study, typed)
    screen = screen_batch(study, typed)
    if screen is not None:
        for column, reason in screen.errors().items():
            offenders.setdefault(column, reason)
    warnings = {} if screen is None else {c: r for c, r in screen.warnings().items() if c not in offenders}
    reason = "; ".join(offenders.values()) if offenders else "no post-treatment column reaches a model"
    if warnings:
        reason += "; warning (alone it does not fail the check): " + "; ".join(warnings.values())
    verdict = Verdict.evaluate(
        "post_treatment_exclusion",
        value=float(len(offenders)),
        threshold=0.0,
        rule=(
            "no model column is a descendant of the treatment or derives from a post-treatment column"
            + ("" if screen is None else f"; data screen: {screen.error.rule}")
        ),
        passed=not offenders,
        reason=f"batch {batch}: {reason}" if offenders or warnings else reason,
    )
    rate = None if screen is None else getattr(screen.error, "false_alarm_rate", None)
    return verdict if rate is None else stating_rate(verdict, rate)
