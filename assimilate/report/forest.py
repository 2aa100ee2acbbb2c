r"""The forest plot of effects by segment: each segment's batch estimate and its fused posterior.

One row per segment: the latest batch's estimate with its interval (grey, open), the partially
pooled posterior with its interval (blue), the common mean's band (the overall effect the
segments shrink towards), a segment flagged by the difference check in red, and a segment not
assessed in the batch named with its reason. Built without pyplot, as :mod:`assimilate.report.plots`.

Example
-------
>>> from assimilate.filters.segments import segment_filter
>>> from assimilate.report.plots import figure_to_png
>>> posterior = segment_filter([[0.5, 0.3, 0.9]], [[0.1, 0.1, 0.4]], segments=["a", "b", "c"])
>>> figure_to_png(forest_plot(posterior=posterior))[:4] == b"\x89PNG"
True
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from scipy import special

from assimilate._validation import check_alpha
from assimilate.diagnostics.heterogeneity import SegmentDifferences
from assimilate.estimators.segments import SegmentEffects
from assimilate.filters.segments import SegmentPosterior


def forest_plot(
    *,
    batch: SegmentEffects | None = None,
    posterior: SegmentPosterior | None = None,
    differences: SegmentDifferences | None = None,
    step: int = -1,
    alpha: float = 0.05,
    title: str = "Effect by segment",
    xlabel: str = "effect",
    factor: float = 1.0,
) -> Figure:
    """Segments' estimates and posteriors with intervals, the common mean, flagged segments.

    Parameters
    ----------
    batch : SegmentEffects, optional
        One batch's segment effects (intervals at ``1 - alpha``).
    posterior : SegmentPosterior, optional
        The fused belief; drawn at batch ``step`` with its own level.
    differences : SegmentDifferences, optional
        The difference check; its flagged segments are drawn in red.
    step : int
        The posterior's batch (default the latest).
    alpha : float
        Level of the batch intervals.
    title, xlabel : str
        Figure title and effect-axis label (name the unit).
    factor : float
        Multiplier of every effect (100 draws a binary outcome in percentage points).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When neither ``batch`` nor ``posterior`` is given, or their segments differ.
    """
    check_alpha(alpha)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    if batch is None and posterior is None:
        raise ValueError("forest_plot needs a batch's segment effects, a segment posterior, or both")
    segments = posterior.segments if posterior is not None else batch.labels  # type: ignore[union-attr]
    if batch is not None and posterior is not None and set(batch.labels) - set(segments):
        raise ValueError(
            f"the batch's segments {list(batch.labels)} are not all in the posterior's {list(segments)}"
        )
    flagged = set(differences.flagged) if differences is not None else set()
    rows = {name: len(segments) - 1 - i for i, name in enumerate(segments)}  # first segment on top
    fig = Figure(figsize=(8, 0.55 * len(segments) + 1.8), dpi=100)
    ax = fig.subplots()
    names = list(segments)
    if posterior is not None:
        z = float(special.ndtri(1.0 - posterior.alpha / 2.0))
        level = f"{100 * (1 - posterior.alpha):g}%"
        centre, spread = posterior.common_mean[step] * factor, posterior.common_sd[step] * factor
        if math.isfinite(spread):
            ax.axvspan(centre - z * spread, centre + z * spread, color="tab:blue", alpha=0.1,
                       label=f"common mean ({level})")  # fmt: skip
            ax.axvline(centre, color="tab:blue", ls="--", lw=1)
        for j, name in enumerate(segments):
            low, high = posterior.lower[step, j] * factor, posterior.upper[step, j] * factor
            if not (math.isfinite(low) and math.isfinite(high)):
                continue
            colour = "tab:red" if name in flagged else "tab:blue"
            ax.plot([low, high], [rows[name]] * 2, color=colour, lw=2.5)
            ax.plot(posterior.mean[step, j] * factor, rows[name], "s", color=colour, ms=7,
                    label=f"fused posterior ({level})" if j == 0 else None)  # fmt: skip
    if batch is not None:
        z = float(special.ndtri(1.0 - alpha / 2.0))
        offset = 0.22 if posterior is not None else 0.0
        shown = False
        for s in batch.segments:
            y = rows[s.segment] - offset
            names[len(segments) - 1 - rows[s.segment]] = f"{s.segment} (n={s.n_treated}/{s.n_control})"
            if s.estimate is None:
                ax.annotate(f"not assessed: {s.reason}", (0.01, y), xycoords=("axes fraction", "data"),
                            va="center", fontsize=7, color="grey")  # fmt: skip
                continue
            colour = "tab:red" if s.segment in flagged and posterior is None else "black"
            estimate, half = s.estimate.estimate * factor, z * s.estimate.std_error * factor
            ax.errorbar(estimate, y, xerr=half, fmt="o", mfc="white", color=colour, ms=5, capsize=2,
                        label=None if shown else f"batch estimate ({100 * (1 - alpha):g}%)")  # fmt: skip
            shown = True
    ax.axvline(0.0, color="grey", lw=0.8)
    positions = np.array([rows[name] for name in segments], dtype=float)
    ax.set_yticks(positions, names, fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), segments, strict=True):
        if name in flagged:
            tick.set_color("tab:red")
    ax.set_ylim(-0.8, len(segments) - 0.4)
    ax.set_xlabel(xlabel)
    ax.set_title(title if not flagged else f"{title} (red: differs from the rest)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
