"""What the UI shows of a batch's fit: each estimation asset's metadata, figures included.

A step over a range of batches draws the figures of its last batch only (assets/partition_range.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.common import frame_to_records_md, plot_metadata
from assets.partition_range import FIGURE_NOT_DRAWN
from assimilate.estimators.batch import BatchFit
from assimilate.report import figure_to_png, love_plot, overlap_plot
from resources.reports import ReportsResource
from resources.study import StudyConfig


def propensity_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str, *, figures: bool
) -> dict[str, Any]:
    """propensity_model: rows scored, the propensity quantiles and the overlap plot."""
    scores, metadata = fit.frames["propensity_scores"], fit.propensity_summary()
    # rows: the batch's valid rows, fitted or not (a failed fit still had its rows)
    counts = {
        "rows": fit.n_rows,
        "scored_rows": len(scores),
        "terms": len(fit.frames["propensity_coefficients"]),
    }
    if fit.overlap is not None:
        quantiles = fit.overlap.to_frame().reset_index()
        metadata["propensity_quantiles"] = frame_to_records_md(quantiles, float_digits=3)
    if not scores.empty and not figures:
        metadata["overlap"] = FIGURE_NOT_DRAWN
    elif not scores.empty:
        figure = overlap_plot(
            scores["propensity"],
            scores["treatment"],
            bounds=(study.propensity.bounds[0], study.propensity.bounds[1]),
            eps=study.thresholds.overlap_eps,
            title=f"{study.name} {batch}: propensity overlap",
        )
        metadata |= plot_metadata(reports, study, f"{batch}/overlap.png", figure_to_png(figure))
    return counts | metadata


def outcome_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str, *, figures: bool
) -> dict[str, Any]:
    """outcome_model: rows predicted and how each arm was fitted."""
    # A singular arm is fitted by a fallback, never silently: the UI says which and why.
    summary = fit.outcome_summary()
    rows = {"rows": len(fit.frames["outcome_predictions"])}
    return rows | summary | {"fallback_reasons": dg.MetadataValue.json(summary["fallback_reasons"])}


def effect_metadata(
    study: StudyConfig, fit: BatchFit, reports: ReportsResource, batch: str, *, figures: bool
) -> dict[str, Any]:
    """batch_effect: the primary estimate and its interval, every estimator's, and the love plot."""
    effects, balance = fit.frames["effects"], fit.frames["balance"]
    primary, passed = effects[effects["is_primary"]].iloc[0], fit.verdicts["estimation"].passed
    plots: dict[str, Any] = {}
    if not balance.empty and not figures:
        plots = {"love_plot": FIGURE_NOT_DRAWN}
    elif not balance.empty:
        figure = love_plot(balance, threshold=study.thresholds.max_abs_smd, title=f"{study.name} {batch}")
        plots = plot_metadata(reports, study, f"{batch}/love_plot.png", figure_to_png(figure))
    smd = fit.verdicts["balance"].value
    return {
        **plots,
        "primary_estimator": study.primary_estimator,
        "estimate": float(primary["estimate"]) if passed else "n/a",
        "std_error": float(primary["std_error"]) if passed else "n/a",
        "ci_lower": float(primary["ci_lower"]) if passed else "n/a",  # the 95% interval (alpha 0.05)
        "ci_upper": float(primary["ci_upper"]) if passed else "n/a",
        "max_abs_smd_after": smd if smd is not None else "n/a",
        "seed": study.seed,
        "estimates": frame_to_records_md(
            effects[["method", "estimate", "std_error", "ci_lower", "ci_upper"]]
        ),
    }


METADATA: dict[str, Callable[..., dict[str, Any]]] = {
    "propensity_model": propensity_metadata,
    "outcome_model": outcome_metadata,
    "batch_effect": effect_metadata,
}
