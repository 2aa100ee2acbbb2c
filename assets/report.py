"""posterior_report: trajectory (filtered and smoothed), latest numbers and a fan chart, as files."""

import dagster as dg

from assets.common import code_version, frame_to_records_md, key, plot_metadata
from assets.posterior import filter_settings
from assimilate.incremental import full_filter
from assimilate.report import fan_chart, figure_to_png
from orchestration.study_config import StudyConfig
from resources.reports import ReportsResource
from resources.warehouse import WarehouseResource


def build_posterior_report(study: StudyConfig, upstream: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(study, "posterior_report"),
        deps=[upstream],
        group_name=study.name,
        code_version=code_version(study),
        kinds={"python"},
        description=f"{study.name}: trajectory table, fan chart and latest numbers (files under data/reports).",
    )
    def posterior_report(warehouse: WarehouseResource, reports: ReportsResource) -> dg.MaterializeResult:
        steps = warehouse.get().read_table(study.name, "posterior_steps")
        if steps.empty:
            return dg.MaterializeResult(metadata={"batches": 0})
        result = full_filter(steps, filter_settings(study), smooth=True)
        trajectory = result.trajectory()
        png = figure_to_png(fan_chart(result, title=f"{study.name}: assimilated effect"))
        paths = {
            "trajectory": reports.write_text(study.name, "trajectory.csv", trajectory.to_csv(index=False)),
            "summary": reports.write_text(study.name, "summary.txt", result.summary() + "\n"),
        }
        shown = trajectory[["batch", "estimate", "std_error", "excluded", "posterior_mean", "posterior_sd"]]
        return dg.MaterializeResult(
            metadata={
                "summary": dg.MetadataValue.md(f"```\n{result.summary()}\n```"),
                "trajectory": frame_to_records_md(shown),
                **plot_metadata(reports, study, "fan_chart.png", png),
                **{f"{name}_path": dg.MetadataValue.path(str(path)) for name, path in paths.items()},
            }
        )

    return posterior_report
