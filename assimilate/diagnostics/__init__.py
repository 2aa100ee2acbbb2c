"""Assumption diagnostics, each with its numbers, threshold and ``Verdict``."""

from assimilate.diagnostics.balance import BalanceComparison, BalanceReport, balance_table, weighted_balance
from assimilate.diagnostics.calibration import (
    LOOKS_PER_YEAR,
    GateRule,
    GateVerdict,
    looks_per_year,
    per_look_alpha,
)
from assimilate.diagnostics.innovations import InnovationReport, innovation_diagnostics
from assimilate.diagnostics.overlap import OverlapReport, kish_ess, overlap_report
from assimilate.diagnostics.post_treatment_screen import PostTreatmentScreen, ScreenRow, post_treatment_screen
from assimilate.diagnostics.sensitivity import (
    Benchmark,
    SensitivityReport,
    e_value,
    robustness_value,
    sensitivity_analysis,
)
from assimilate.diagnostics.srm import SRMReport, sample_ratio_mismatch
from assimilate.diagnostics.trend import SteadyStateEffect, TrendTest, trend_test, trend_test_of
from assimilate.diagnostics.verdict import Verdict

__all__ = [
    "LOOKS_PER_YEAR",
    "BalanceComparison",
    "BalanceReport",
    "Benchmark",
    "GateRule",
    "GateVerdict",
    "InnovationReport",
    "OverlapReport",
    "PostTreatmentScreen",
    "SRMReport",
    "ScreenRow",
    "SensitivityReport",
    "SteadyStateEffect",
    "TrendTest",
    "Verdict",
    "balance_table",
    "e_value",
    "innovation_diagnostics",
    "kish_ess",
    "looks_per_year",
    "overlap_report",
    "per_look_alpha",
    "post_treatment_screen",
    "robustness_value",
    "sample_ratio_mismatch",
    "sensitivity_analysis",
    "trend_test",
    "trend_test_of",
    "weighted_balance",
]

# Refuters of one batch's estimate, each with a stated false-alarm rate (issue 16).
from assimilate.diagnostics.refuters import (
    REFUTERS,
    Refutation,
    RefuterName,
    negative_controls,
    placebo_treatment,
)
from assimilate.diagnostics.robustness import (
    data_subsets,
    negative_control_outcome,
    random_common_cause,
)

__all__ += [
    "REFUTERS",
    "Refutation",
    "RefuterName",
    "data_subsets",
    "negative_control_outcome",
    "negative_controls",
    "placebo_treatment",
    "random_common_cause",
]

# Does a segment's effect differ from the rest? Holm or Benjamini-Hochberg across segments (issue 16).
from assimilate.diagnostics.heterogeneity import (  # noqa: E402
    CORRECTIONS,
    Correction,
    SegmentDifferences,
    adjust_p_values,
    differences_from_rest,
    posterior_segment_differences,
    segment_differences,
)

__all__ += [
    "CORRECTIONS",
    "Correction",
    "SegmentDifferences",
    "adjust_p_values",
    "differences_from_rest",
    "posterior_segment_differences",
    "segment_differences",
]
