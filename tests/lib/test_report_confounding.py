"""The memo's sensitivity section and contour plot: numbers from statsmodels' OLS and the closed forms."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from assimilate import causal_kalman
from assimilate.design.plan import AnalysisPlan
from assimilate.diagnostics.sensitivity import (
    bias_bound,
    e_value,
    risk_ratio_from_difference,
    robustness_value,
)
from assimilate.report import (
    DesignSummary,
    MemoFigures,
    MemoInputs,
    decision_memo_html,
    decision_memo_markdown,
    figure_to_png,
)
from assimilate.report.confounding import (
    ConfounderSensitivity,
    confounder_sensitivity,
    sensitivity_contour,
    sensitivity_contour_of,
    sensitivity_section,
)
from assimilate.report.from_tables import latest_row_columns, memo_inputs

pytestmark = pytest.mark.library

BATCH = "2025-03-01"


def _rows(n: int = 1500, seed: int = 3, *, effect: float = 0.3, binary: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    w = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], size=n)
    d = (0.8 * x + 0.2 * w + (group == "b") + rng.normal(size=n) > 0).astype(float)
    if binary:
        y = (rng.random(n) < 0.3 - effect * d + 0.05 * np.clip(x, -2, 2)).astype(float)
    else:
        y = effect * d + 1.2 * x + 0.3 * w + 0.5 * (group == "c") + rng.normal(size=n)
    return pd.DataFrame({"d": d, "y": y, "x": x, "w": w, "group": group})


def _ols(rows: pd.DataFrame) -> tuple[float, float, int]:
    exog = sm.add_constant(pd.get_dummies(rows[["d", "x", "w", "group"]], drop_first=True, dtype=float))
    fit = sm.OLS(rows["y"], exog).fit()
    return float(fit.params["d"]), float(fit.tvalues["d"]), int(fit.df_resid)


def _inputs(
    found: ConfounderSensitivity | None, *, kind: str = "observational", binary: bool = False
) -> MemoInputs:
    result = causal_kalman([0.5], [0.1], labels=[BATCH], prior_mean=0.0, prior_var=1.0)
    return MemoInputs(
        study="demo",
        result=result,
        design=DesignSummary(kind=kind),  # type: ignore[arg-type]
        latest_estimates=(),
        primary_estimator="aipw",
        outcome_type="binary" if binary else "continuous",
        sensitivity=found,
    )


def _text(inputs: MemoInputs) -> str:
    return " ".join(block.text for block in sensitivity_section(inputs).blocks)  # type: ignore[attr-defined]


def _analyse(rows: pd.DataFrame, *, binary: bool = False) -> ConfounderSensitivity:
    return confounder_sensitivity(
        rows,
        treatment="d",
        outcome="y",
        covariates=["x", "w", "group"],
        batch=BATCH,
        outcome_type="binary" if binary else "continuous",
    )


def test_the_sentence_states_the_robustness_values_of_statsmodels_ols() -> None:
    rows = _rows()
    found = _analyse(rows)
    _, t_stat, dof = _ols(rows)
    rv, rv_alpha = robustness_value(t_stat, dof), robustness_value(t_stat, dof, alpha=0.05)
    assert 0 < rv_alpha < rv < 1
    text = _text(_inputs(found))
    stated = re.search(r"explain ([\d.]+)% of the residual variance.*?\(([\d.]+)% to make its 95%", text)
    assert stated is not None
    assert stated.groups() == (f"{100 * rv:.1f}", f"{100 * rv_alpha:.1f}")
    # x drives treatment and outcome most: a confounder as strong as x explains the effect away.
    strongest = found.strongest_benchmark()
    assert strongest is not None and strongest.covariate == "x" and found.explains_away(strongest)
    analysis = found.analysis
    assert analysis is not None and analysis.estimate > 0
    bias = bias_bound(analysis.standard_error, analysis.dof, strongest.r2_dz_x, strongest.r2_yz_dx)
    adjusted, lower, upper = found.bounds(strongest)
    assert bias > analysis.estimate and adjusted == pytest.approx(analysis.estimate - bias) and adjusted < 0
    assert lower <= adjusted <= upper
    assert "a confounder as strong as x, the strongest measured covariate, would explain it away" in text


def test_a_weakly_confounded_strong_effect_is_not_explained_away() -> None:
    rows = _rows(effect=3.0).assign(y=lambda f: f["y"] - 1.1 * f["x"])  # x barely reaches the outcome
    text = _text(_inputs(_analyse(rows)))
    assert "would not explain it away" in text


def test_an_interval_that_already_includes_zero_says_so() -> None:
    text = _text(_inputs(_analyse(_rows(effect=0.0, seed=5))))
    assert "its 95% interval already includes zero" in text


def test_a_binary_outcome_adds_the_e_values_on_the_risk_ratio_scale() -> None:
    rows = _rows(n=4000, effect=0.12, binary=True)
    found = _analyse(rows, binary=True)
    estimate, t_stat, dof = _ols(rows)
    control = float(rows.loc[rows["d"] == 0, "y"].mean())
    assert found.control_risk == pytest.approx(control)
    assert found.e_value == pytest.approx(e_value(risk_ratio_from_difference(control, estimate)), rel=1e-9)
    from scipy import stats

    upper = estimate + float(stats.t.ppf(0.975, dof)) * estimate / t_stat
    assert upper < 0  # a protective effect: the interval's limit nearest no effect is its upper one
    assert found.e_value_interval == pytest.approx(
        e_value(risk_ratio_from_difference(control, upper)), rel=1e-9
    )
    assert 1 < found.e_value_interval < found.e_value
    text = _text(_inputs(found, binary=True))
    assert (
        f"risk ratio of {found.e_value:.2f}" in text and f"and {found.e_value_interval:.2f} to move" in text
    )
    assert "E-value" not in _text(_inputs(_analyse(_rows())))  # a continuous outcome has none


def test_randomized_and_iv_designs_say_why_there_is_none() -> None:
    assert _text(_inputs(None, kind="randomized")).startswith("Not needed: treatment was randomized")
    assert _text(_inputs(None, kind="iv")).startswith(
        "Not applicable: the estimate is identified by the instrument"
    )
    missing = confounder_sensitivity(_rows(), treatment="d", outcome="y", covariates=["age"], batch=BATCH)
    assert missing.analysis is None
    assert _text(_inputs(missing)) == f"Not computed: batch {BATCH} has no column(s) ['age']."


def test_the_contour_marks_zero_at_the_robustness_value_and_the_benchmarks() -> None:
    found = _analyse(_rows())
    analysis = found.analysis
    assert analysis is not None
    figure = sensitivity_contour(analysis, factor=100.0, unit="pp")
    ax = figure.axes[0]
    (zero,) = [c for c in ax.collections if c.get_gid() == "zero"]
    assert list(zero.levels) == [0.0]  # type: ignore[attr-defined]
    vertices = np.vstack([p.vertices for p in zero.get_paths() if len(p.vertices)])
    rv = analysis.robustness_value
    # The zero contour crosses the diagonal at the robustness value, where the bias equals the estimate.
    assert np.min(np.hypot(vertices[:, 0] - rv, vertices[:, 1] - rv)) < 0.01
    assert bias_bound(analysis.standard_error, analysis.dof, rv, rv) == pytest.approx(abs(analysis.estimate))
    (points,) = [c for c in ax.collections if c.get_label() == "benchmarks"]
    expected = [(b.r2_dz_x, b.r2_yz_dx) for b in analysis.benchmarks]
    assert len(expected) == 9  # three covariates, k = 1, 2, 3
    np.testing.assert_allclose(points.get_offsets(), expected)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="factor"):
        sensitivity_contour(analysis, factor=0.0)


def test_the_memo_embeds_the_contour_and_its_plan_feeds_the_section() -> None:
    rows = _rows().rename(columns={"d": "treated", "y": "order_value"})
    plan = AnalysisPlan.model_validate(
        {
            "unit_id": "visitor",
            "treatment": "treated",
            "outcome": "order_value",
            "outcome_type": "continuous",
            "design": {"kind": "observational"},
            "covariates": ["x", "w"],
            "categorical": {"group": ["a", "b", "c"]},
            "primary_estimator": "regression_adjustment",
            "estimators": ["difference_in_means", "regression_adjustment"],
            "process_var": 0.0,
        }
    )
    result = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
    inputs = memo_inputs(
        plan, result, study="demo", effects=pd.DataFrame(), verdicts=pd.DataFrame(), latest_rows=rows
    )
    assert inputs.sensitivity is not None and inputs.sensitivity.batch == "m2"
    stored = rows.assign(visitor=[f"v{i}" for i in range(len(rows))], unused=1.0)  # as the warehouse has them
    read = stored[list(latest_row_columns(plan))]  # what the report reads back: no unit ids
    assert list(read.columns) == ["treated", "order_value", "x", "w", "group"]
    again = memo_inputs(
        plan, result, study="demo", effects=pd.DataFrame(), verdicts=pd.DataFrame(), latest_rows=read
    )
    assert (again.sensitivity, again.baseline) == (inputs.sensitivity, inputs.baseline)
    _, t_stat, dof = _ols(rows.rename(columns={"treated": "d", "order_value": "y"}))
    assert inputs.sensitivity.analysis.robustness_value == pytest.approx(robustness_value(t_stat, dof))  # type: ignore[union-attr]
    figure = sensitivity_contour_of(inputs)
    assert figure is not None
    png = figure_to_png(figure)
    figures = MemoFigures(sensitivity_contour=png)
    markdown = decision_memo_markdown(inputs, figures=figures)
    assert (
        "## Sensitivity to an unmeasured confounder" in markdown and "](sensitivity_contour.png)" in markdown
    )
    assert "no sensitivity analysis is included" not in markdown
    html = decision_memo_html(inputs, figures=figures)
    assert html.count('<img src="data:image/png;base64,') == 1
    randomized_plan = plan.model_copy(
        update={"design": plan.design.model_copy(update={"kind": "randomized"})}
    )
    randomized = memo_inputs(
        randomized_plan,
        result,
        study="demo",
        effects=pd.DataFrame(),
        verdicts=pd.DataFrame(),
        latest_rows=rows,
    )
    assert randomized.sensitivity is None and sensitivity_contour_of(randomized) is None
    assert latest_row_columns(randomized_plan) == ("treated", "order_value")  # the baseline's columns only
