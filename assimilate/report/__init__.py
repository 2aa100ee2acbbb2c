"""Plots and reports of an assimilated effect and its assumption checks."""

from assimilate.report.checklist import (
    ChecklistRow,
    EstimatorAgreement,
    diagnostic_checklist,
    estimator_agreement,
)
from assimilate.report.decision import decide, provisional_reasons
from assimilate.report.figures import MemoFigures
from assimilate.report.memo import decision_memo_html, decision_memo_markdown
from assimilate.report.memo_inputs import DesignSummary, MemoInputs, verdicts_from_frame
from assimilate.report.plots import fan_chart, figure_to_png, love_plot, overlap_plot
from assimilate.report.units import Baseline, EffectScale

__all__ = [
    "Baseline",
    "ChecklistRow",
    "DesignSummary",
    "EffectScale",
    "EstimatorAgreement",
    "MemoFigures",
    "MemoInputs",
    "decide",
    "decision_memo_html",
    "decision_memo_markdown",
    "diagnostic_checklist",
    "estimator_agreement",
    "fan_chart",
    "figure_to_png",
    "love_plot",
    "overlap_plot",
    "provisional_reasons",
    "verdicts_from_frame",
]

# Sensitivity to an unmeasured confounder in the memo (issue 16).
from assimilate.report.confounding import (
    ConfounderSensitivity,
    confounder_sensitivity,
    sensitivity_contour,
)

# The forest plot of effects by segment (issue 16).
from assimilate.report.forest import forest_plot

__all__ += ["forest_plot"]
__all__ += ["ConfounderSensitivity", "confounder_sensitivity", "sensitivity_contour"]
