"""A did study's report inputs: its event study from the stored estimates, its placebo batches acknowledged.

The memo of a ``design.kind: did`` study shows the event study (the stored placebos and period
effects, :mod:`assimilate.report.event_study`) with the latest post-period batch's pre-trend verdict;
its pre-period batches are kept out of the posterior by design, so they are acknowledged
exclusions with that reason and never hold the memo's status back.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from assimilate.estimators.did_batch import PLACEBO
from assimilate.report import MemoInputs, figure_to_png
from assimilate.report.event_study import EventStudySummary, event_study_plot, event_study_table
from resources.study import StudyConfig

PRE_TREND = "check_batch_effect_pre_trend"


def placebo_batches(study: StudyConfig, effects: pd.DataFrame) -> dict[str, str]:
    """A did study's pre-period batches (primary row kept out as a placebo) -> that reason."""
    if study.design.kind != "did" or effects.empty:
        return {}
    rows = effects[effects["is_primary"].astype(bool) & effects["error"].fillna("").str.startswith(PLACEBO)]
    return {str(k): f"{PLACEBO}: before the first adoption, by design" for k in rows["partition_key"]}


def with_event_study(
    memo: MemoInputs, study: StudyConfig, effects: pd.DataFrame, verdicts: pd.DataFrame
) -> MemoInputs:
    """The memo inputs with a did study's event study and latest pre-trend verdict; others unchanged."""
    if study.design.kind != "did":
        return memo
    design = study.design
    table = event_study_table(effects)
    trend = None
    if not verdicts.empty:
        rows = verdicts[(verdicts["check_name"] == PRE_TREND) & (verdicts["status"] != "undefined")]
        if not rows.empty:
            latest = rows.assign(key=rows["partition_key"].astype(str)).sort_values("key").iloc[-1]
            trend = {"status": latest["status"], "p_value": latest["value"], "reason": latest["reason"]}
            trend["statistic"] = _statistic(str(latest["reason"]))
    figure = event_study_plot(
        table,
        title=f"{study.name}: event study",
        ylabel=f"effect on {study.outcome}" + (f" ({study.outcome_unit})" if study.outcome_unit else ""),
        pre_trend=trend if trend is not None and trend["statistic"] is not None else None,
    )
    summary = EventStudySummary(
        table=table,
        control=design.control,
        level=design.pre_trend_level,
        pre_trend=trend,
        acknowledged=design.pre_trend_acknowledged,
        png=figure_to_png(figure),
    )
    return replace(memo, event_study=summary)


def _statistic(reason: str) -> float | None:
    """The chi-square statistic the verdict's reason states (``chi2(K) = W, ...``), if any."""
    if " = " not in reason or "chi2(" not in reason:
        return None
    try:
        return float(reason.split("chi2(", 1)[1].split(" = ", 1)[1].split(",", 1)[0])
    except (IndexError, ValueError):
        return None
