"""Plots and reports of an assimilated effect."""

from assimilate.report.plots import fan_chart, figure_to_png

__all__ = ["fan_chart", "figure_to_png"]
