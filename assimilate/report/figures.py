"""The memo's figures: the fan chart and the causal graph, as PNG bytes with their alt text.

The HTML memo embeds each figure as a ``data:`` URI, so the page stays one standalone file that
needs no network; the Markdown memo links the file of the same name, written beside it. Alt text
says what the figure shows in words, with the excluded batches named, for a reader who cannot see
the image.

Example
-------
>>> from assimilate import causal_kalman
>>> from assimilate.report import DesignSummary, MemoInputs, fan_chart, figure_to_png
>>> res = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
>>> figures = MemoFigures(fan_chart=figure_to_png(fan_chart(res)))
>>> inputs = MemoInputs(study="demo", result=res, design=DesignSummary(kind="randomized"),
...                     latest_estimates=(), primary_estimator="difference_in_means")
>>> fan_chart_image(inputs, figures).alt.startswith("Fan chart of the effect on the outcome")
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assimilate.report._document import Image
from assimilate.report.memo_inputs import MemoInputs


@dataclass(frozen=True, kw_only=True)
class MemoFigures:
    """PNG bytes of the memo's figures and the file names they are written under.

    Parameters
    ----------
    fan_chart : bytes, optional
        The fan chart (:func:`assimilate.report.plots.fan_chart`) as PNG.
    causal_dag : bytes, optional
        The study's causal graph as PNG.
    fan_chart_file, causal_dag_file : str
        File names beside the Markdown memo (plain ``*.png`` names).
    causal_dag_alt : str, optional
        Alt text of the causal graph (default: a sentence naming the adjustment set).
    sensitivity_contour : bytes, optional
        The sensitivity contour plot (:func:`assimilate.report.confounding.sensitivity_contour`) as PNG.
    sensitivity_contour_file : str
        Its file name beside the Markdown memo.
    """

    fan_chart: bytes | None = None
    causal_dag: bytes | None = None
    fan_chart_file: str = "fan_chart.png"
    causal_dag_file: str = "causal_dag.png"
    causal_dag_alt: str | None = None
    sensitivity_contour: bytes | None = None
    sensitivity_contour_file: str = "sensitivity_contour.png"


def _excluded_labels(inputs: MemoInputs) -> list[str]:
    result = inputs.result
    return [label for label, flag in zip(result.labels, result.excluded, strict=True) if flag]


def fan_chart_image(inputs: MemoInputs, figures: MemoFigures | None) -> Image | None:
    """The fan chart with alt text naming the outcome, its unit, the batches and the excluded ones."""
    if figures is None or figures.fan_chart is None:
        return None
    result, scale = inputs.result, inputs.scale
    level = f"{100 * result.level:g}%"
    excluded = _excluded_labels(inputs)
    marked = (
        f"excluded batches marked in red and labelled: {', '.join(excluded)}"
        if excluded
        else "no batch was excluded"
    )
    smoothed = ", the smoothed band" if result.smoothed_mean is not None else ""
    finite = np.isfinite(result.posterior_mean)
    latest = scale.effect(float(result.posterior_mean[finite][-1])) if finite.any() else "n/a"
    alt = (
        f"Fan chart of the effect on {inputs.outcome_name} in {scale.unit}, over {result.n_batches} batches "
        f"from {result.labels[0]} to {result.labels[-1]}: each batch's estimate with its {level} interval, "
        f"the filter's posterior mean and {level} band{smoothed}; {marked}. The latest posterior mean is {latest}."
    )
    caption = (
        "The effect batch by batch: black dots are the batches' estimates, the blue band is the posterior; "
        "red marks an excluded batch."
    )
    return Image(figures.fan_chart_file, figures.fan_chart, alt, caption)


def causal_dag_image(inputs: MemoInputs, figures: MemoFigures | None) -> Image | None:
    """The causal graph with alt text naming the treatment, the outcome and the adjustment set."""
    if figures is None or figures.causal_dag is None:
        return None
    adjusted = ", ".join(inputs.design.adjustment_set) or "nothing"
    alt = figures.causal_dag_alt or (
        "Causal graph of the study: arrows run from cause to effect among the treatment, the outcome and "
        f"the covariates; the adjustment set is marked ({adjusted})."
    )
    caption = "The study's causal graph, as declared in its study file; the adjustment set is marked."
    return Image(figures.causal_dag_file, figures.causal_dag, alt, caption)


__all__ = ["MemoFigures", "causal_dag_image", "fan_chart_image"]
