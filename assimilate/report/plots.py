r"""Plots: the fan chart of the posterior, the love plot of balance, propensity overlap.

Returns matplotlib figures (the caller decides where they go); ``figure_to_png`` gives the bytes.
The figures are built without pyplot, so importing or calling this module never selects or switches
matplotlib's backend (a notebook keeps its own); PNG output needs no display.

Example
-------
>>> from assimilate import causal_kalman
>>> result = causal_kalman([0.5, 0.6, 0.55], [0.1, 0.1, 0.1], prior_mean=0.0, prior_var=1.0, process_var=0.01)
>>> png = figure_to_png(fan_chart(result))
>>> png[:4] == b"\x89PNG"
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import stats

from assimilate.result import AssimilationResult


def fan_chart(
    result: AssimilationResult,
    *,
    true_effects: Sequence[float] | None = None,
    title: str = "Assimilated treatment effect",
    ylabel: str = "effect",
    factor: float = 1.0,
) -> Figure:
    """Per-batch estimates with intervals, the filtered band, the smoothed band, excluded batches.

    Each excluded batch is drawn in red and labelled with its batch label (legend entry
    ``excluded batch``; ``excluded batch (no estimate)`` for one without an estimate).

    Parameters
    ----------
    result : AssimilationResult
        The filtered (and optionally smoothed) posterior.
    true_effects : sequence of float, optional
        The true effect per batch, when known (simulations).
    title : str
        Figure title.
    ylabel : str
        Label of the effect axis (name the unit, e.g. ``"effect (percentage points)"``).
    factor : float
        Multiplier of every effect and true effect (100 draws a binary outcome in percentage points).

    Returns
    -------
    matplotlib.figure.Figure
        Interval levels are ``1 - result.alpha``.
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    x = np.arange(result.n_batches)
    z = float(stats.norm.ppf(1 - result.alpha / 2)) * factor
    level = f"{100 * result.level:g}%"
    estimates = result.estimates * factor
    fig = Figure(figsize=(10, 5), dpi=100)
    ax = fig.subplots()
    ax.fill_between(
        x,
        result.posterior_lower * factor,
        result.posterior_upper * factor,
        color="tab:blue",
        alpha=0.25,
        label=f"filtered {level} band",
    )
    ax.plot(x, result.posterior_mean * factor, color="tab:blue", lw=2, label="filtered mean")
    if result.smoothed_mean is not None and result.smoothed_sd is not None:
        smoothed = result.smoothed_mean * factor
        ax.plot(x, smoothed, color="tab:green", lw=1.5, ls="--", label="smoothed mean")
        ax.fill_between(
            x,
            smoothed - z * result.smoothed_sd,
            smoothed + z * result.smoothed_sd,
            color="tab:green",
            alpha=0.12,
            label=f"smoothed {level} band",
        )
    has = np.isfinite(result.estimates) & np.isfinite(result.standard_errors)
    used = has & ~result.excluded
    dropped = has & result.excluded
    ax.errorbar(
        x[used],
        estimates[used],
        yerr=z * result.standard_errors[used],
        fmt="o",
        color="black",
        ms=4,
        capsize=2,
        label=f"batch estimate ({level} CI)",
    )
    if dropped.any():
        ax.errorbar(
            x[dropped],
            estimates[dropped],
            yerr=z * result.standard_errors[dropped],
            fmt="x",
            color="tab:red",
            ms=7,
            capsize=2,
            label="excluded batch",
        )
        for index in np.flatnonzero(dropped):
            ax.annotate(
                result.labels[index],
                (float(index), float(estimates[index] + z * result.standard_errors[index])),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                color="tab:red",
                fontsize=8,
            )
    missing = result.excluded & ~has
    for count, index in enumerate(np.flatnonzero(missing)):
        label = "excluded batch (no estimate)" if count == 0 else None
        ax.axvline(float(index), color="tab:red", alpha=0.5, ls=":", label=label)
        # Near the top of the axes whatever the data's range: the label names the batch on the line.
        ax.text(
            float(index),
            0.97,
            result.labels[index],
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            color="tab:red",
            fontsize=8,
        )
    if true_effects is not None:
        truth = np.asarray(true_effects, dtype=float) * factor
        ax.plot(x, truth, color="tab:orange", lw=1.5, label="true effect")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(x, list(result.labels), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def love_plot(
    balance: pd.DataFrame, *, threshold: float = 0.1, title: str = "Covariate balance (|SMD|)"
) -> Figure:
    """|SMD| per covariate before and after weighting, with the threshold line.

    Parameters
    ----------
    balance : DataFrame
        Columns ``covariate``, ``smd_before``, ``smd_after`` (``BalanceComparison.to_frame()``).
    threshold : float
        The balance threshold drawn as a vertical line.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = balance.assign(before=balance["smd_before"].abs(), after=balance["smd_after"].abs())
    table = table.sort_values("before")
    y = np.arange(len(table))
    fig = Figure(figsize=(7, 0.35 * len(table) + 1.5), dpi=100)
    ax = fig.subplots()
    ax.scatter(
        table["before"], y, marker="o", facecolors="none", edgecolors="tab:red", label="before weighting"
    )
    ax.scatter(table["after"], y, marker="o", color="tab:blue", label="after weighting")
    ax.hlines(y, table["after"], table["before"], color="grey", lw=0.6)
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_yticks(y, list(table["covariate"]), fontsize=8)
    ax.set_xlabel("|standardized mean difference|")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def overlap_plot(
    propensity: ArrayLike,
    treatment: ArrayLike,
    *,
    bounds: tuple[float, float] | None = None,
    eps: float | None = None,
    title: str = "Propensity overlap",
) -> Figure:
    """Distributions of the propensity score by arm, with the trimming bounds and the eps band.

    Parameters
    ----------
    propensity : array_like
        Estimated P(d = 1 | x) per unit.
    treatment : array_like
        0/1 treatment.
    bounds : (float, float), optional
        Clipping or trimming bounds of the estimator (drawn as solid lines).
    eps : float, optional
        The overlap check's eps (the band outside ``[eps, 1 - eps]`` is shaded).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    e = np.asarray(propensity, dtype=np.float64)
    d = np.asarray(treatment, dtype=np.float64) == 1
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, 41).tolist()
    # One filled outline per arm, not forty bars: a quarter of the drawing time, the same shape.
    for arm, color, name in ((d, "tab:blue", "treated"), (~d, "tab:orange", "control")):
        label = f"{name} (n={int(arm.sum())})"
        ax.hist(e[arm], bins=edges, alpha=0.55, color=color, label=label, density=True, histtype="stepfilled")
    if eps is not None:
        ax.axvspan(0.0, eps, color="grey", alpha=0.2, label=f"outside [{eps:g}, {1 - eps:g}]")
        ax.axvspan(1.0 - eps, 1.0, color="grey", alpha=0.2)
    if bounds is not None:
        for bound in bounds:
            ax.axvline(bound, color="black", lw=1)
    ax.set_xlabel("propensity score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_to_png(figure: Figure) -> bytes:
    """PNG bytes of a figure (drawn by matplotlib's Agg renderer, whatever the backend)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    if figure.canvas.manager is not None:
        # A pyplot figure (made by the caller) is closed, so a loop of plots does not pile them up.
        import matplotlib.pyplot as plt

        plt.close(figure)
    return buffer.getvalue()
