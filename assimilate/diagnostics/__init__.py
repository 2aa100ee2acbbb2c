"""Assumption diagnostics, each with its numbers, threshold and ``Verdict``."""

from assimilate.diagnostics.balance import BalanceComparison, BalanceReport, balance_table, weighted_balance
from assimilate.diagnostics.innovations import InnovationReport, innovation_diagnostics
from assimilate.diagnostics.overlap import OverlapReport, kish_ess, overlap_report
from assimilate.diagnostics.srm import SRMReport, sample_ratio_mismatch
from assimilate.diagnostics.verdict import Verdict

__all__ = [
    "BalanceComparison",
    "BalanceReport",
    "InnovationReport",
    "OverlapReport",
    "SRMReport",
    "Verdict",
    "balance_table",
    "innovation_diagnostics",
    "kish_ess",
    "overlap_report",
    "sample_ratio_mismatch",
    "weighted_balance",
]
