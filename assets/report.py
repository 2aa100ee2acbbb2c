"""posterior_report: trajectory (filtered and smoothed), fan chart, causal graph, sensitivity contour
(observational designs) and decision memo, as files.

The report reads the posterior's stored steps back (the library's ``result_from_steps``: the RTS
smoother over the stored states) and never runs a filter; the memo's other inputs are the stored
estimates, verdicts and the latest admitted batch's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import dagster as dg
import pandas as pd

from assets.common import code_version, described, frame_to_records_md, key, plot_metadata, read_verdicts
from assets.did_report import placebo_batches, with_event_study
from assets.guardrail_report import guardrail_posterior_keys, read_guardrail_posteriors
from assets.partition_range import SINGLE_RUN, holding_the_warehouse
from assets.segments import who_benefits_of
from assimilate.admission import stored_always_valid
from assimilate.design import to_dot
from assimilate.incremental import FilterSettings, result_from_steps
from assimilate.report import (
    MemoFigures,
    MemoInputs,
    decision_memo_html,
    decision_memo_markdown,
    fan_chart,
    figure_to_png,
)
from assimilate.report.confounding import sensitivity_contour_of
from assimilate.report.from_tables import latest_row_columns, memo_inputs
from assimilate.report.instrument import with_stored_diagnostics
from checks.calibration import stored_audit
from resources.graphviz import render_png
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import Warehouse, WarehouseResource

SHOWN_COLUMNS = ["batch", "estimate", "std_error", "excluded", "posterior_mean", "posterior_sd"]


@dataclass(frozen=True)
class StoredTables:
    """The stored rows a report is written from."""

    steps: pd.DataFrame
    effects: pd.DataFrame
    verdicts: pd.DataFrame
    latest_rows: pd.DataFrame | None


def read_report_tables(store: Warehouse, study: StudyConfig) -> StoredTables:
    """The posterior steps, estimates, verdicts and the rows of the latest admitted batch, in one read."""
    with store.reading() as reader:
        steps = reader.read_table(study.name, "posterior_steps")
        admitted = steps.loc[~steps["excluded"].astype(bool), "batch"] if not steps.empty else steps
        latest_rows = (
            reader.read_table(
                study.name,
                "covariates",
                partition_key=str(admitted.iloc[-1]),
                columns=latest_row_columns(study),  # not the unit ids: gigabytes at 1e7 rows
            )
            if len(admitted)
            else None
        )
        effects = reader.read_table(study.name, "batch_effects")
        return StoredTables(steps, effects, read_verdicts(reader, study), latest_rows)


def causal_dag_png(study: StudyConfig) -> bytes | None:
    """The study's causal graph as a PNG (adjustment set marked), or None without a graph."""
    dag = study.causal_dag()
    if dag is None:
        return None
    return render_png(to_dot(dag, adjustment=study.model_columns))


def write_report(reports: ReportsResource, study: StudyConfig, memo: MemoInputs) -> dict[str, object]:
    """Write the figures, the memo (markdown and HTML), trajectory and summary; their metadata."""
    result, scale = memo.result, memo.scale
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
    if memo.event_study is not None and memo.event_study.png is not None:  # a did study's event study
        plots |= plot_metadata(reports, study, memo.event_study.file_name, memo.event_study.png)
    contour = sensitivity_contour_of(memo, title=f"{study.name}: sensitivity to an unmeasured confounder")
    contour_png = None if contour is None else figure_to_png(contour)  # observational designs only
    if contour_png is not None:
        plots |= plot_metadata(reports, study, "sensitivity_contour.png", contour_png)
    # The markdown links the figure files written above; the HTML page embeds them.
    figures = MemoFigures(fan_chart=fan, causal_dag=dag_png, sensitivity_contour=contour_png)
    memo_md, trajectory = decision_memo_markdown(memo, figures=figures), result.trajectory()
    paths = {
        "memo": reports.write_text(study.name, "memo.md", memo_md),
        "memo_html": reports.write_text(study.name, "memo.html", decision_memo_html(memo, figures=figures)),
        "trajectory": reports.write_text(study.name, "trajectory.csv", trajectory.to_csv(index=False)),
        "summary": reports.write_text(study.name, "summary.txt", result.summary() + "\n"),
    }
    return {
        "memo_status": memo.status,
        "memo_decision": memo.decision,
        "always_valid_interval": "[{:.4g}, {:.4g}]".format(*memo.decision_interval.conf_int()),
        "memo": dg.MetadataValue.md(memo_md),
        "summary": dg.MetadataValue.md(f"```\n{result.summary()}\n```"),
        "trajectory": frame_to_records_md(trajectory[SHOWN_COLUMNS]),
        **plots,
        **{f"{name}_path": dg.MetadataValue.path(str(path)) for name, path in paths.items()},
    }


def build_posterior_report(
    study: StudyConfig, upstream: dg.AssetKey, *segments: dg.AssetKey
) -> dg.AssetsDefinition:
    """``segments``: the segment posterior, when the study has effect modifiers (the memo's "Who benefits")."""

    @dg.asset(
        key=key(study, "posterior_report"),
        # the memo reports each guardrail's posterior, and the segments' (a study with effect modifiers)
        deps=[upstream, *guardrail_posterior_keys(study), *segments],
        group_name=study.name,
        backfill_policy=SINGLE_RUN,  # once after a range of batches
        code_version=code_version(study),
        kinds={"python"},
        description=described(
            study,
            f"{study.name}: decision memo, trajectory, fan chart and causal graph (files under data/reports).",
        ),
    )
    @holding_the_warehouse
    def posterior_report(warehouse: WarehouseResource, reports: ReportsResource) -> dg.MaterializeResult:
        """The posterior read back from its stored steps (no filter runs), written as memo and figures."""
        stored = read_report_tables(warehouse.get(), study)
        if stored.steps.empty:
            return dg.MaterializeResult(metadata={"batches": 0})
        settings = FilterSettings.from_plan(study)
        result = result_from_steps(stored.steps, settings)
        memo = memo_inputs(
            study,
            result,
            study=study.name,
            effects=stored.effects,
            verdicts=stored.verdicts,
            latest_rows=stored.latest_rows,
            always_valid=stored_always_valid(stored.steps, alpha=settings.alpha),
            planned_looks=study.looks_planned,  # the cadence's year of looks, unless the study plans its own
            acknowledged_exclusions={**placebo_batches(study, stored.effects), **study.acknowledged},
        )
        memo = with_stored_diagnostics(memo, stored.effects)  # an IV study's first stage and AR set
        memo = with_event_study(memo, study, stored.effects, stored.verdicts)  # a did study's event study
        memo = replace(memo, guardrails=read_guardrail_posteriors(warehouse.get(), study))
        memo = replace(memo, calibration_audit=stored_audit(warehouse.get(), study))  # the checklist names it
        memo = replace(memo, segments=who_benefits_of(warehouse.get(), study, reports)) if segments else memo
        return dg.MaterializeResult(metadata=write_report(reports, study, memo))

    return posterior_report
