"""A difference-in-differences study's event study: its periods' effects and placebos, plotted and told.

From the stored estimates of every batch (``batch_effects``): each pre-period batch's placebo
(``callaway_santanna_placebo``; zero under parallel trends) and each post-period batch's effect in
that period (``callaway_santanna``, the ATT ``theta_C(t)``), placed at their period relative to the
first adoption. The plot shows both with their 95% intervals; the paragraph says what an ATT under
parallel trends means and what the joint pre-trend test found, for the check's metadata and the memo.

Example
-------
>>> import pandas as pd
>>> effects = pd.DataFrame({
...     "partition_key": ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"],
...     "method": ["callaway_santanna", "callaway_santanna_placebo", "callaway_santanna", "callaway_santanna"],
...     "is_primary": [True, False, True, True], "estimate": [float("nan"), 0.1, 1.2, 1.5],
...     "ci_lower": [float("nan"), -0.2, 0.9, 1.1], "ci_upper": [float("nan"), 0.4, 1.5, 1.9],
...     "error": ["pre-period placebo: first period", "", "", ""]})
>>> event_study_table(effects)[["batch", "event_time", "kind"]].values.tolist()
[['2025-02-01', -1, 'placebo'], ['2025-03-01', 0, 'effect'], ['2025-04-01', 1, 'effect']]
>>> figure = event_study_plot(event_study_table(effects), title="demo")
>>> len(figure.axes)
1
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from assimilate.estimators.did_batch import PLACEBO_METHOD
from assimilate.estimators.did_staggered import METHOD

DID_METHOD = METHOD
TABLE_COLUMNS = ["batch", "event_time", "estimate", "ci_lower", "ci_upper", "kind"]


def event_study_table(effects: pd.DataFrame, *, first_adoption: str | None = None) -> pd.DataFrame:
    """The placebos and effects of a did study's batches, by period relative to the first adoption.

    Parameters
    ----------
    effects : DataFrame
        Stored ``batch_effects`` rows: partition_key, method, is_primary, estimate, ci_lower, ci_upper, error.
    first_adoption : str, optional
        The first cohort's batch (default: the first batch with an effect).

    Returns
    -------
    DataFrame
        :data:`TABLE_COLUMNS`; ``kind`` is ``placebo`` or ``effect``; ``event_time`` counts the
        study's batches from the first adoption (0), placebos negative.
    """
    if effects.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    rows = effects.assign(batch=effects["partition_key"].astype(str), error=effects["error"].fillna(""))
    placebo = rows[rows["method"] == PLACEBO_METHOD].assign(kind="placebo")
    effect = rows[(rows["method"] == DID_METHOD) & (rows["error"] == "")].assign(kind="effect")
    chosen = pd.concat([placebo, effect]).sort_values("batch")
    if chosen.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    periods = sorted(rows["batch"].unique())
    start = first_adoption or (str(effect["batch"].min()) if not effect.empty else periods[-1])
    anchor = bisect.bisect_left(periods, start)
    chosen["event_time"] = [periods.index(b) - anchor for b in chosen["batch"]]
    return chosen[TABLE_COLUMNS].reset_index(drop=True)


def event_study_plot(
    table: pd.DataFrame,
    *,
    title: str = "Event study",
    ylabel: str = "effect",
    factor: float = 1.0,
    pre_trend: Mapping[str, Any] | None = None,
) -> Figure:
    """Placebos (grey) and period effects (blue) with their intervals, against periods since the first adoption.

    Parameters
    ----------
    table : DataFrame
        :func:`event_study_table`.
    title, ylabel : str
        Figure title and the effect axis' label (name the unit).
    factor : float
        Multiplier of every effect (100 for percentage points).
    pre_trend : mapping, optional
        ``statistic``, ``p_value`` and ``status`` of the joint pre-trend test, written in the corner.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(7.0, 3.6))
    axes = figure.add_subplot()
    for kind, color, label in (
        ("placebo", "0.45", "pre-period placebo"),
        ("effect", "tab:blue", "ATT in the period"),
    ):
        part = table[table["kind"] == kind]
        if part.empty:
            continue
        x = part["event_time"].to_numpy(dtype=float)
        y = part["estimate"].to_numpy(dtype=float) * factor
        low = part["ci_lower"].to_numpy(dtype=float) * factor
        high = part["ci_upper"].to_numpy(dtype=float) * factor
        axes.errorbar(x, y, yerr=np.vstack([y - low, high - y]), fmt="o", color=color, capsize=3, label=label)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.axvline(-0.5, color="tab:red", linestyle="--", linewidth=0.8, label="first adoption")
    axes.set_xlabel("periods since the first adoption")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if pre_trend is not None and pre_trend.get("p_value") is not None:
        axes.text(
            0.01,
            0.97,
            f"pre-trend test: chi2 = {float(pre_trend['statistic']):.3g}, p = {float(pre_trend['p_value']):.3g}"
            f" ({pre_trend.get('status', '')})",
            transform=axes.transAxes,
            va="top",
            fontsize=8,
        )
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def did_paragraph(
    table: pd.DataFrame,
    *,
    control: str,
    pre_trend: Mapping[str, Any] | None,
    level: float,
    acknowledged: str | None = None,
) -> str:
    """What the study's ATT means under parallel trends, and what its pre-trend test found, in words.

    Parameters
    ----------
    table : DataFrame
        :func:`event_study_table`.
    control : {"not_yet_treated", "never_treated"}
        The comparison units.
    pre_trend : mapping, optional
        The latest pre-trend verdict: ``status``, ``p_value``, ``statistic``, ``leads``.
    level : float
        The test's level (the study's ``design.pre_trend_level``).
    acknowledged : str, optional
        The analyst's reason for keeping post periods despite a failed test.
    """
    comparison = (
        "units not yet treated in that period" if control == "not_yet_treated" else "never-treated units"
    )
    placebos = int((table["kind"] == "placebo").sum()) if not table.empty else 0
    effects = int((table["kind"] == "effect").sum()) if not table.empty else 0
    text = (
        "Each post-period batch estimates the ATT in that period: the average effect on the units whose "
        f"region or cohort had adopted by then, against {comparison}. It is causal if, without the rollout, "
        "the adopting units' outcomes would have moved in parallel with the comparison units' (parallel "
        f"trends) and no unit changed before its adoption. {placebos} pre-period batch(es) give placebo "
        f"effects (zero under parallel trends); {effects} post-period batch(es) give effects; pre-period "
        "batches never enter the posterior."
    )
    if pre_trend is None or pre_trend.get("status") in (None, "undefined"):
        return text + " The joint pre-trend test was not assessed (no placebo to test)."
    p_value = float(pre_trend["p_value"])
    if pre_trend["status"] == "pass":
        return text + (
            f" The joint pre-trend test of the placebos found no departure from parallel trends (p = {p_value:.3g} "
            f">= {level:g}); a pass is not proof: the test has little power against small or gradual departures."
        )
    verdict = (
        f" The joint pre-trend test failed (p = {p_value:.3g} < {level:g}): the adopting units were already "
        "drifting away before adoption, so the effects may be biased"
    )
    if acknowledged:
        return text + verdict + f"; the analyst kept the post periods in the posterior: {acknowledged}."
    return text + verdict + "; every post-period batch is kept out of the posterior until the analyst acts."


@dataclass(frozen=True, kw_only=True)
class EventStudySummary:
    """What a did study's memo shows: the event-study table, its plot and the latest pre-trend test.

    Parameters
    ----------
    table : DataFrame
        :func:`event_study_table` of the stored estimates.
    control : {"not_yet_treated", "never_treated"}
        The comparison units.
    level : float
        The pre-trend test's level.
    pre_trend : mapping, optional
        The latest post-period batch's pre-trend verdict: ``status``, ``p_value``, ``statistic``, ``reason``.
    acknowledged : str, optional
        The analyst's reason for keeping post periods despite a failed test.
    png : bytes, optional
        The event-study plot (:func:`event_study_plot`) as PNG.
    file_name : str
        Its file name beside the Markdown memo.
    """

    table: pd.DataFrame = field(compare=False)
    control: str
    level: float
    pre_trend: Mapping[str, Any] | None = None
    acknowledged: str | None = None
    png: bytes | None = field(default=None, repr=False)
    file_name: str = "event_study.png"

    def paragraph(self) -> str:
        """:func:`did_paragraph` of this summary."""
        return did_paragraph(
            self.table,
            control=self.control,
            pre_trend=self.pre_trend,
            level=self.level,
            acknowledged=self.acknowledged,
        )
