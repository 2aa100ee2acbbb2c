r"""Plots: the fan chart of the posterior, the love plot of balance, propensity overlap.

Returns matplotlib figures (the caller decides where they go); ``figure_to_png`` gives the bytes.

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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
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
) -> Figure:
    """Per-batch estimates with intervals, the filtered band, the smoothed band, excluded batches.

    Parameters
    ----------
    result : AssimilationResult
        The filtered (and optionally smoothed) posterior.
    true_effects : sequence of float, optional
        The true effect per batch, when known (simulations).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Interval levels are ``1 - result.alpha``.
    """
    x = np.arange(result.n_batches)
    z = float(stats.norm.ppf(1 - result.alpha / 2))
    level = f"{100 * result.level:g}%"
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.fill_between(
        x,
        result.posterior_lower,
        result.posterior_upper,
        color="tab:blue",
        alpha=0.25,
        label=f"filtered {level} band",
    )
    ax.plot(x, result.posterior_mean, color="tab:blue", lw=2, label="filtered mean")
    if result.smoothed_mean is not None and result.smoothed_sd is not None:
        ax.plot(x, result.smoothed_mean, color="tab:green", lw=1.5, ls="--", label="smoothed mean")
        ax.fill_between(
            x,
            result.smoothed_mean - z * result.smoothed_sd,
            result.smoothed_mean + z * result.smoothed_sd,
            color="tab:green",
            alpha=0.12,
            label=f"smoothed {level} band",
        )
    has = np.isfinite(result.estimates) & np.isfinite(result.standard_errors)
    used = has & ~result.excluded
    dropped = has & result.excluded
    ax.errorbar(
        x[used],
        result.estimates[used],
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
            result.estimates[dropped],
            yerr=z * result.standard_errors[dropped],
            fmt="x",
            color="tab:red",
            ms=7,
            capsize=2,
            label=_named("excluded, not assimilated", result, dropped),
        )
    missing = result.excluded & ~has
    for count, index in enumerate(np.flatnonzero(missing)):
        label = _named("no estimate", result, missing) if count == 0 else None
        ax.axvline(float(index), color="tab:red", alpha=0.3, ls=":", label=label)
    if true_effects is not None:
        ax.plot(x, np.asarray(true_effects, dtype=float), color="tab:orange", lw=1.5, label="true effect")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(x, list(result.labels), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("effect")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _named(what: str, result: AssimilationResult, mask: np.ndarray, most: int = 4) -> str:
    """A legend entry naming the batches in ``mask`` (the first ``most``, then how many more)."""
    labels = [result.labels[i] for i in np.flatnonzero(mask)]
    shown = ", ".join(labels[:most]) + (f" and {len(labels) - most} more" if len(labels) > most else "")
    return f"{what}: {shown}"


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
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5), dpi=100)
    ax.scatter(
        table["before"], y, marker="o", facecolors="none", edgecolors="tab:red", label="before weighting"
    )
    ax.scatter(table["after"], y, marker="o", color="tab:blue", label="after weighting")
    for row, (low, high) in enumerate(zip(table["after"], table["before"], strict=True)):
        ax.plot([low, high], [row, row], color="grey", lw=0.6)
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
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    edges = np.linspace(0.0, 1.0, 41).tolist()
    ax.hist(e[d], bins=edges, alpha=0.55, color="tab:blue", label=f"treated (n={int(d.sum())})", density=True)
    ax.hist(
        e[~d],
        bins=edges,
        alpha=0.55,
        color="tab:orange",
        label=f"control (n={int((~d).sum())})",
        density=True,
    )
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
    """PNG bytes of a figure; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
