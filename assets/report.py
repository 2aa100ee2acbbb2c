"""posterior_report: trajectory (filtered and smoothed), fan chart, causal graph and decision memo, as files."""

import dagster as dg

from assets.common import code_version, described, frame_to_records_md, key, plot_metadata
from assets.memo import causal_dag_png, memo_inputs
from assets.partition_range import SINGLE_RUN
from assets.posterior import CORRELATION_TABLE, filter_settings
from assets.posterior_inputs import correlation_from_table, stored_always_valid
from assimilate.incremental import full_filter
from assimilate.report import (
    MemoFigures,
    decision_memo_html,
    decision_memo_markdown,
    fan_chart,
    figure_to_png,
)
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource


def build_posterior_report(study: StudyConfig, upstream: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(study, "posterior_report"),
        deps=[upstream],
        group_name=study.name,
        backfill_policy=SINGLE_RUN,  # once after a range of batches
        code_version=code_version(study),
        kinds={"python"},
        description=described(
            study,
            f"{study.name}: decision memo, trajectory, fan chart and causal graph (files under data/reports).",
        ),
    )
    def posterior_report(warehouse: WarehouseResource, reports: ReportsResource) -> dg.MaterializeResult:
        store, settings = warehouse.get(), filter_settings(study)
        with store.reading() as reader:
            steps = reader.read_table(study.name, "posterior_steps")
            correlations = reader.read_table(study.name, CORRELATION_TABLE)
        if steps.empty:
            return dg.MaterializeResult(metadata={"batches": 0})
        labels = steps["batch"].astype(str).tolist()
        # The stored correlation and interval: the report smooths what the posterior fused.
        correlation = correlation_from_table(correlations, labels)
        result = full_filter(steps, settings, smooth=True, correlation=correlation)
        trajectory = result.trajectory()
        memo = memo_inputs(
            store, study, result, always_valid=stored_always_valid(steps, alpha=settings.alpha)
        )
        scale = memo.scale
        chart = fan_chart(
            result,
            title=f"{study.name}: assimilated effect",
            ylabel=f"effect on {memo.outcome_name} ({scale.unit})",
            factor=scale.factor,
        )
        fan, dag_png = figure_to_png(chart), causal_dag_png(study)
        plots = plot_metadata(reports, study, "fan_chart.png", fan)
        if dag_png is not None:
            plots |= plot_metadata(reports, study, "causal_dag.png", dag_png)
        # The markdown links the figure files written above; the HTML page embeds them.
        figures = MemoFigures(fan_chart=fan, causal_dag=dag_png)
        memo_md = decision_memo_markdown(memo, figures=figures)
        paths = {
            "memo": reports.write_text(study.name, "memo.md", memo_md),
            "memo_html": reports.write_text(
                study.name, "memo.html", decision_memo_html(memo, figures=figures)
            ),
            "trajectory": reports.write_text(study.name, "trajectory.csv", trajectory.to_csv(index=False)),
            "summary": reports.write_text(study.name, "summary.txt", result.summary() + "\n"),
        }
        shown = trajectory[["batch", "estimate", "std_error", "excluded", "posterior_mean", "posterior_sd"]]
        return dg.MaterializeResult(
            metadata={
                "memo_status": memo.status,
                "memo_decision": memo.decision,
                "always_valid_interval": "[{:.4g}, {:.4g}]".format(*memo.decision_interval.conf_int()),
                "memo": dg.MetadataValue.md(memo_md),
                "summary": dg.MetadataValue.md(f"```\n{result.summary()}\n```"),
                "trajectory": frame_to_records_md(shown),
                **plots,
                **{f"{name}_path": dg.MetadataValue.path(str(path)) for name, path in paths.items()},
            }
        )

    return posterior_report
