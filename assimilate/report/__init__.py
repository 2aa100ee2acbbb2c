"""Plots and reports of an assimilated effect and its assumption checks."""

from assimilate.report.plots import fan_chart, figure_to_png, love_plot, overlap_plot

__all__ = ["fan_chart", "figure_to_png", "love_plot", "overlap_plot"]
