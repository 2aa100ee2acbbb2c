"""A memo a product manager can read: units and scale, human check names, each reason once, figures
inside the HTML, excluded batches labelled on the chart, drift said as estimated, picklable inputs."""

from __future__ import annotations

import base64
import copy
import importlib
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest

from assimilate import causal_kalman
from assimilate.design.card import EstimandCard
from assimilate.diagnostics import Verdict
from assimilate.estimators import EffectEstimate
from assimilate.report import (
    Baseline,
    DesignSummary,
    EffectScale,
    MemoFigures,
    MemoInputs,
    decision_memo_html,
    decision_memo_markdown,
    fan_chart,
    figure_to_png,
)
from assimilate.report._document import PNG_SIGNATURE, Image

LABELS = [f"2025-{m:02d}-01" for m in range(1, 7)]
PP = "percentage points"
REASON = "perfect separation: the 0/1 variable is (almost) determined by the covariates"


def _card(**changes: str) -> EstimandCard:
    fields = {
        "business_question": "Is outreach worth it?",
        "causal_question": "Change in monthly churn if every account were reached out to",
        "unit": "customer account",
        "treatment": "outreach",
        "control_condition": "no outreach",
        "outcome": "churn",
        "time_window": "one month",
        "target_population": "active accounts",
        "estimand": "ATE",
        "required_assumptions": ["no unmeasured confounding"],
        "likely_threats": ["targeting on unrecorded signals"],
    }
    return EstimandCard(**(fields | changes))


def _churn(*, process_var: float = 0.0, excluded: int | None = None, **changes: object) -> MemoInputs:
    """A binary outcome: churn falls by about 4.9 percentage points; batch ``excluded`` is kept out."""
    estimates = [-0.050, -0.047, -0.051, -0.046, -0.049, -0.050]
    flags = [i == excluded for i in range(len(LABELS))]
    result = causal_kalman(
        estimates,
        [0.03] * len(LABELS),
        labels=LABELS,
        excluded=flags,
        exclusion_reasons=["failed gate" if f else "" for f in flags],
        process_var=process_var,
        prior_mean=0.0,
        prior_var=1.0,
    )
    latest = (
        EffectEstimate(
            estimate=-0.050, std_error=0.02, n_treated=667, n_control=1333, method="aipw", se_method="if"
        ),
    )
    fields: dict[str, object] = {
        "study": "retention_outreach",
        "result": result,
        "design": DesignSummary(kind="observational", adjustment_set=["tenure"]),
        "latest_estimates": latest,
        "primary_estimator": "aipw",
        "card": _card(),
        "desired_direction": "decrease",
        "outcome_type": "binary",
        "baseline": Baseline(mean=0.1523, batch=LABELS[-1], n_control=1333),
    }
    return MemoInputs(**(fields | changes))  # type: ignore[arg-type]


def _sections(markdown: str) -> dict[str, str]:
    parts = markdown.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1].strip() for part in parts}


def _prose(markdown: str) -> list[str]:
    """Paragraphs and bullets, without tables, headings and the appendix."""
    body = markdown.split("\n## Appendix")[0]
    return [line for line in body.splitlines() if line.strip() and not line.startswith(("|", "#", "!["))]


# --- 1. units and scale ---------------------------------------------------------------------------


def test_a_binary_outcome_is_in_percentage_points_with_the_baseline_rate_in_percent() -> None:
    inputs = _churn()
    result, scale = inputs.result, inputs.scale
    assert scale.decimals == 1  # posterior sd about 1.2 percentage points: two significant digits
    mean = f"{100 * result.final_mean:+.1f}"
    markdown = decision_memo_markdown(inputs)
    status = _sections(markdown)["Status \u2014 read this first"]
    assert f"posterior mean {mean} {PP}" in status
    assert "baseline 15.2% among the 1,333 control units of batch 2025-06-01" in status
    assert f"{result.final_mean:.4f}" not in markdown and f"{result.final_mean:.3f}" not in markdown
    evidence = _sections(markdown)["Evidence"]
    assert f"| interval | range ({PP}) |" in evidence
    assert f"| estimator | estimate ({PP}) | std error ({PP}) | 95% interval ({PP}) |" in evidence
    assert "| aipw | -5.0 | 2.0 | [-8.9, -1.1] |" in evidence
    for line in _prose(markdown):  # every effect interval in the prose says its unit
        for found in re.finditer(r"\[-?[\d.]+, -?[\d.]+\]", line):
            assert line[found.end() :].startswith(f" {PP}"), line


def test_a_continuous_outcome_is_in_its_unit_per_the_cards_unit() -> None:
    inputs = _churn(outcome_type="continuous", outcome_unit="USD", card=_card(unit="visitor"), baseline=None)
    markdown = decision_memo_markdown(inputs)
    mean = f"{inputs.result.final_mean:+.3f}"
    assert inputs.scale.decimals == 3  # sd about 0.012 USD
    assert f"posterior mean {mean} USD per visitor" in markdown
    assert "| estimator | estimate (USD per visitor) |" in markdown
    assert PP not in markdown and "outcome units" not in markdown
    assert "The outcome's unit is not stated" not in markdown
    unknown = decision_memo_markdown(replace(inputs, outcome_unit=None))
    assert f"posterior mean {mean} outcome units" in unknown
    assert "The outcome's unit is not stated (outcome_unit in the study file)" in unknown
    with pytest.raises(ValueError, match="percentage points"):
        replace(inputs, outcome_type="binary")


def test_the_effect_scale_rounds_to_two_significant_digits_of_the_sd() -> None:
    assert EffectScale.of(outcome_type="binary", sd=0.0121).effect(-0.04882) == "-4.9 percentage points"
    assert (
        EffectScale.of(outcome_unit="USD", per="visitor", sd=0.41).effect(1.2345) == "+1.23 USD per visitor"
    )
    assert EffectScale.of(outcome_unit="min", sd=35.0).effect(-0.2) == "0 min"  # never "-0"
    assert EffectScale.of(outcome_type="binary", sd=0.0121).sd(4.07e-6) == "0.20 percentage points"
    assert EffectScale.of(outcome_type="binary", sd=0.0121).level(0.1523) == "15.2%"


# --- 2 and 3. human check names; each exclusion's reason once --------------------------------------


def _pipeline_verdicts(inputs: MemoInputs) -> MemoInputs:
    """Verdicts named as the pipeline names them; batch 2 failed two gates for one reason and warned."""
    ok = {
        "check_covariate_table_schema": Verdict.evaluate(
            "check_covariate_table_schema", value=0.0, threshold=0.05, rule="r", passed=True
        ),
        "check_batch_effect_balance": Verdict.evaluate(
            "check_batch_effect_balance", value=0.02, threshold=0.1, rule="r", passed=True
        ),
    }
    bad = LABELS[1]
    failed = (
        Verdict.evaluate(
            "check_propensity_model_overlap",
            value=0.4,
            threshold=0.1,
            rule="r",
            passed=False,
            reason=f"batch {bad}: {REASON}",
        ),
        Verdict("check_batch_effect_estimation", None, 0.0, "r", "fail", f"batch {bad}: aipw: {REASON}"),
        Verdict.evaluate(
            "check_batch_effect_returning_units",
            value=0.3,
            threshold=0.05,
            rule="r",
            passed=False,
            reason=f"batch {bad}: 30% of its units were seen before",
        ),
    )
    verdicts = {label: tuple(ok.values()) for label in LABELS}
    verdicts[bad] = (*verdicts[bad], *failed)
    reason = (
        f"failed check_batch_effect_estimation (batch {bad}: aipw: {REASON}); "
        f"check_propensity_model_overlap (batch {bad}: {REASON})"
    )
    result = inputs.result
    reasons = [
        reason if label == bad else r for label, r in zip(LABELS, result.exclusion_reasons, strict=True)
    ]
    return replace(
        inputs,
        result=replace(result, exclusion_reasons=tuple(reasons)),
        verdicts=verdicts,
        exclusions={bad: ("check_batch_effect_estimation", "check_propensity_model_overlap")},
    )


def test_checks_go_by_their_titles_and_the_technical_name_appears_once() -> None:
    inputs = _pipeline_verdicts(_churn(excluded=1))
    markdown = decision_memo_markdown(inputs)
    for name in (
        "check_covariate_table_schema",
        "check_batch_effect_balance",
        "check_propensity_model_overlap",
        "check_batch_effect_estimation",
        "check_batch_effect_returning_units",
        "one_sided_innovations",
        "nis_calibration",
    ):
        assert markdown.count(name) == 1, name  # the appendix's row, nowhere else
    assert re.findall(r"check_\w+", markdown.split("\n## Appendix")[0]) == []
    status = _sections(markdown)["Status \u2014 read this first"]
    assert "Propensity overlap (0.4 vs threshold 0.1) and Estimation failed" in status
    assert "| Covariate balance | 6 | 0 | 0 | none |" in _sections(markdown)["Key diagnostics"]
    assert "| Propensity overlap | check_propensity_model_overlap |" in markdown


def test_each_exclusions_reason_is_said_once() -> None:
    inputs = _pipeline_verdicts(_churn(excluded=1))
    markdown, page = decision_memo_markdown(inputs), decision_memo_html(inputs)
    assert markdown.count("perfect separation") == 1
    assert page.count("perfect separation") == 1
    assert markdown.count("30% of its units were seen before") == 1
    line = next(line for line in markdown.splitlines() if line.startswith(f"- Batch {LABELS[1]}:"))
    assert line == (
        f"- Batch {LABELS[1]}: excluded from the posterior: Propensity overlap (0.4 vs threshold 0.1) and "
        f"Estimation failed: aipw: {REASON}; also Returning units (0.3 vs threshold 0.05) failed: 30% of its "
        "units were seen before (a warning); not acknowledged."
    )


# --- 4 and 5. figures in the HTML, links in the Markdown, the chart labels excluded batches -------------


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))


def _figures(inputs: MemoInputs) -> MemoFigures:
    return MemoFigures(
        fan_chart=figure_to_png(fan_chart(inputs.result, factor=100.0)),
        causal_dag=figure_to_png(fan_chart(inputs.result)),  # any PNG stands in for the graph
    )


def test_the_html_embeds_the_figures_with_alt_text_and_the_markdown_links_them() -> None:
    hostile = '<script>alert("x")</script> "]('
    inputs = _churn(excluded=2, card=_card(outcome=f"churn {hostile}"))
    figures = _figures(inputs)
    page = decision_memo_html(inputs, figures=figures)
    parser = _Images()
    parser.feed(page)
    assert "script" not in parser.tags and "http" not in page
    dag, fan = parser.images  # the graph in the design section, the chart in the evidence
    assert fan["src"] == "data:image/png;base64," + base64.b64encode(figures.fan_chart or b"").decode()
    assert dag["src"] == "data:image/png;base64," + base64.b64encode(figures.causal_dag or b"").decode()
    alt = fan["alt"] or ""
    assert f"excluded batches marked in red and labelled: {LABELS[2]}" in alt
    assert f"in {PP}" in alt and hostile in alt  # the parser unescaped what the page escaped
    assert "adjustment set is marked (tenure)" in (dag["alt"] or "")
    assert "<img" not in decision_memo_html(inputs)  # no figures given, none shown
    markdown = decision_memo_markdown(inputs, figures=figures)
    links = re.findall(r"!\[((?:[^\]\\]|\\.)*)\]\(([^)]*)\)", markdown)
    assert [target for _, target in links] == ["causal_dag.png", "fan_chart.png"]
    assert "\\<script>" in links[1][0] and "\\]" in links[1][0]  # the alt text cannot end early
    with pytest.raises(ValueError, match="plain"):
        Image("../memo.png", PNG_SIGNATURE, "alt")
    with pytest.raises(ValueError, match="not a PNG"):
        Image("x.png", b"<svg/>", "alt")


def test_the_fan_chart_labels_each_excluded_batch() -> None:
    result = causal_kalman(
        [0.5, np.nan, 0.45, 0.9],
        [0.1, np.nan, 0.1, 0.1],
        labels=["w1", "w2", "w3", "w4"],
        excluded=[False, True, False, True],
        process_var=0.0,
    )
    figure = fan_chart(result, ylabel="effect (percentage points)", factor=100.0)
    axes = figure.axes[0]
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "excluded batch" in legend and "excluded batch (no estimate)" in legend
    assert {"w2", "w4"} <= {t.get_text() for t in axes.texts}
    assert axes.get_ylabel() == "effect (percentage points)"
    mean = next(line for line in axes.lines if line.get_label() == "filtered mean")
    np.testing.assert_allclose(np.asarray(mean.get_ydata(), dtype=float), 100 * result.posterior_mean)
    assert figure_to_png(figure).startswith(PNG_SIGNATURE)


def test_importing_and_drawing_the_plots_never_switches_matplotlibs_backend() -> None:
    import matplotlib

    from assimilate.report import plots

    original = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's or an app's choice
    try:
        importlib.reload(plots)  # the module's import-time code runs again under that choice
        png = plots.figure_to_png(plots.fan_chart(causal_kalman([0.5, 0.6], [0.1, 0.1], process_var=0.0)))
        assert png.startswith(PNG_SIGNATURE)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(original)


# --- 6. language that follows the estimated drift ------------------------------------------------------


def test_zero_process_variance_is_a_stable_effect_and_a_positive_one_says_how_far_it_moves() -> None:
    stable = decision_memo_markdown(_churn(process_var=0.0, process_var_source="estimated"))
    assert (
        "The filter models the effect as stable, the same in every batch (process variance 0, estimated from the batches)"
        in stable
    )
    assert "drifting effect" not in stable and "allowing it to drift" not in stable
    assert "moves by about" not in stable and "may move by about" not in stable
    moving = decision_memo_markdown(_churn(process_var=4e-6, process_var_source="set"))
    assert f"The effect may move by about 0.20 {PP} per batch" in moving
    assert "process variance 4e-06, set in the study" in moving
    assert f"allowing it to move by about 0.20 {PP} per batch" in moving
    assert "models the effect as stable" not in moving


# --- 7. picklable inputs ------------------------------------------------------------------------------


def test_memo_inputs_deep_copy_to_the_same_memo() -> None:
    # Pickling is tested in tests/lib/test_pickle_round_trip.py, the one file allowed to import pickle.
    inputs = memo_inputs_for_copying()
    back = copy.deepcopy(inputs)
    assert decision_memo_markdown(back) == decision_memo_markdown(inputs)
    assert back.status == inputs.status and back.scale == inputs.scale
    with pytest.raises(TypeError):
        back.verdicts["x"] = ()  # type: ignore[index]


def memo_inputs_for_copying() -> MemoInputs:
    """Inputs with every optional part a memo reads: verdicts, exclusions, acknowledgement, baseline."""
    return _pipeline_verdicts(_churn(excluded=1, acknowledged_exclusions={LABELS[1]: "vendor outage"}))
