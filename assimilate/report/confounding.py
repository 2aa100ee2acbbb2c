r"""The memo's sensitivity to an unmeasured confounder: one batch's robustness value, in words and a contour plot.

For the latest admitted batch of an observational study, the OLS ``Y ~ D + X`` (the adjustment
set ``X``) and Cinelli & Hazlett's (2020, JRSS-B 82(1)) omitted-variable bound: a confounder ``Z``
with partial R²s ``R²_{D~Z|X}`` and ``R²_{Y~Z|D,X}`` moves the estimate towards zero by

    |bias| = se(τ̂) · √dof · √(R²_{Y~Z|D,X} · R²_{D~Z|X} / (1 − R²_{D~Z|X})),

computed by :func:`assimilate.diagnostics.sensitivity.sensitivity_analysis` (robustness values,
benchmarks from the observed covariates). A binary outcome adds the E-value (VanderWeele & Ding
2017) of the same estimate on the risk-ratio scale, from the batch's control risk. A randomized
design needs none of it; an instrumental-variables design rests on other assumptions.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=400)
>>> d = (x + rng.normal(size=400) > 0).astype(float)
>>> rows = pd.DataFrame({"x": x, "d": d, "y": 0.5 * d + x + rng.normal(size=400)})
>>> found = confounder_sensitivity(rows, treatment="d", outcome="y", covariates=["x"], batch="m1")
>>> 0.0 < found.analysis.robustness_value_alpha < found.analysis.robustness_value < 1.0
True
>>> found.strongest_benchmark().covariate
'x'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from scipy import stats

from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.sensitivity import (
    Benchmark,
    SensitivityReport,
    bias_bound,
    e_value,
    risk_ratio_from_difference,
    sensitivity_analysis,
)
from assimilate.report._document import Block, Image, Paragraph, Section
from assimilate.report.fused_sensitivity import fused_sensitivity_of, fused_sentence
from assimilate.report.units import OUTCOME_TYPES, EffectScale, OutcomeType

if TYPE_CHECKING:
    from assimilate.report.memo_inputs import MemoInputs

TITLE = "Sensitivity to an unmeasured confounder"
FILE_NAME = "sensitivity_contour.png"


@dataclass(frozen=True, kw_only=True)
class ConfounderSensitivity:
    """One batch's sensitivity analysis, or why there is none.

    Attributes
    ----------
    batch : str
        The batch the rows come from (the latest admitted one).
    analysis : SensitivityReport, optional
        Robustness values and benchmarks of the OLS estimate; None when it could not be computed.
    not_computed : str
        Why ``analysis`` is None (empty otherwise).
    control_risk : float, optional
        A binary outcome's control mean in the batch (the risk ratio's denominator).
    e_value, e_value_interval : float, optional
        E-values of the estimate and of its interval's limit nearest no effect (1: the interval
        already includes no effect); None for a continuous outcome or an undefined risk ratio.
    """

    batch: str
    analysis: SensitivityReport | None = None
    not_computed: str = ""
    control_risk: float | None = None
    e_value: float | None = None
    e_value_interval: float | None = None

    def bounds(self, benchmark: Benchmark) -> tuple[float, float, float]:
        """The estimate adjusted for a benchmark-sized confounder and its interval (C&H §4.4).

        The library's bounds (:func:`~assimilate.diagnostics.sensitivity.sensitivity_analysis`):
        ``sign(τ̂)(|τ̂| − bias)``, past zero when the bias exceeds the estimate.
        """
        if self.analysis is None:
            raise ValueError(f"batch {self.batch} has no sensitivity analysis: {self.not_computed}")
        return benchmark.adjusted_estimate, benchmark.adjusted_lower, benchmark.adjusted_upper

    def explains_away(self, benchmark: Benchmark) -> bool:
        """Whether such a confounder moves the interval to include zero, or past it."""
        _, lower, upper = self.bounds(benchmark)
        return lower <= 0 if self.analysis is not None and self.analysis.estimate > 0 else upper >= 0

    def strongest_benchmark(self) -> Benchmark | None:
        """The benchmark (k = 1) whose covariate-sized confounder biases the estimate most."""
        analysis = self.analysis
        if analysis is None:
            return None
        ones = [b for b in analysis.benchmarks if b.k_treatment == b.k_outcome == 1]
        se, dof = analysis.standard_error, analysis.dof
        return max(ones, key=lambda b: bias_bound(se, dof, b.r2_dz_x, b.r2_yz_dx), default=None)


def _e_values(analysis: SensitivityReport, control_risk: float) -> tuple[float, float] | tuple[None, None]:
    t_crit = float(stats.t.ppf(1 - analysis.alpha / 2, analysis.dof))
    lower = analysis.estimate - t_crit * analysis.standard_error
    upper = analysis.estimate + t_crit * analysis.standard_error
    nearest = 0.0 if lower <= 0 <= upper else (lower if analysis.estimate > 0 else upper)
    try:
        point = e_value(risk_ratio_from_difference(control_risk, analysis.estimate))
        limit = e_value(risk_ratio_from_difference(control_risk, nearest)) if nearest else 1.0
    except ValueError:  # a risk difference that leaves (0, 1): no risk ratio to speak of
        return None, None
    return point, limit


def confounder_sensitivity(
    rows: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    batch: str,
    categories: Mapping[str, Sequence[str]] | None = None,
    outcome_type: OutcomeType = "continuous",
    alpha: float = 0.05,
) -> ConfounderSensitivity:
    """Robustness value, benchmarks and (binary outcome) E-values of one batch's rows.

    Parameters
    ----------
    rows : DataFrame
        The batch's valid rows (treatment 0/1, outcome, covariates).
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        The adjustment set; every covariate is also a benchmark.
    batch : str
        The batch's label, named in the memo.
    categories : mapping, optional
        Levels of categorical covariates.
    outcome_type : {"continuous", "binary"}
        A binary outcome adds the E-values.
    alpha : float
        One minus the interval's level.

    Returns
    -------
    ConfounderSensitivity
        With ``not_computed`` saying why when the rows cannot carry the regression.
    """
    check_choice("outcome_type", outcome_type, OUTCOME_TYPES)
    check_alpha(alpha)
    missing = [c for c in (treatment, outcome, *covariates) if c not in rows.columns]
    if missing:
        return ConfounderSensitivity(batch=batch, not_computed=f"batch {batch} has no column(s) {missing}")
    try:
        analysis = sensitivity_analysis(
            rows,
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            categories=categories,
            alpha=alpha,
        )
    except (ValueError, np.linalg.LinAlgError) as error:
        return ConfounderSensitivity(batch=batch, not_computed=f"batch {batch}: {error}")
    if outcome_type != "binary":
        return ConfounderSensitivity(batch=batch, analysis=analysis)
    control = pd.to_numeric(rows.loc[rows[treatment] == 0, outcome], errors="coerce").dropna()
    risk = float(control.mean()) if len(control) else math.nan
    point, limit = _e_values(analysis, risk) if 0 < risk < 1 else (None, None)
    return ConfounderSensitivity(
        batch=batch, analysis=analysis, control_risk=risk, e_value=point, e_value_interval=limit
    )


def _to_interval(analysis: SensitivityReport) -> str:
    level = f"{1 - analysis.alpha:.0%}"
    if analysis.robustness_value_alpha == 0:
        return f"its {level} interval already includes zero"
    return f"{analysis.robustness_value_alpha:.1%} to make its {level} interval include zero"


def _analysis_sentences(found: ConfounderSensitivity, analysis: SensitivityReport, scale: EffectScale) -> str:
    level = f"{1 - analysis.alpha:.0%}"
    text = (
        f"In batch {found.batch}, the regression of the outcome on the treatment and the adjustment set "
        f"estimates {scale.effect(analysis.estimate)}. An unmeasured confounder would have to explain "
        f"{analysis.robustness_value:.1%} of the residual variance of both treatment and outcome to bring "
        f"the estimate to zero ({_to_interval(analysis)})"
    )
    strongest = found.strongest_benchmark()
    if strongest is None:
        return text + "; no observed covariate could serve as a benchmark."
    verdict = "would" if found.explains_away(strongest) else "would not"
    adjusted, lower, upper = found.bounds(strongest)
    return text + (
        f"; a confounder as strong as {strongest.covariate}, the strongest measured covariate, {verdict} "
        f"explain it away (bounds: adjusted estimate {scale.effect(adjusted)}, "
        f"{level} interval {scale.interval(lower, upper)})."
    )


def _e_value_sentence(found: ConfounderSensitivity) -> str | None:
    if found.e_value is None or found.e_value_interval is None or found.control_risk is None:
        return None
    interval = (
        "; its interval already includes no effect"
        if found.e_value_interval == 1
        else f", and {found.e_value_interval:.2f} to move its interval to include no effect"
    )
    return (
        f"On the risk-ratio scale (control risk {found.control_risk:.1%} in that batch), the confounder would "
        f"need a risk ratio of {found.e_value:.2f} with both the treatment and the outcome to explain the "
        f"estimate away{interval} (E-values, VanderWeele & Ding 2017)."
    )


def sensitivity_section(inputs: MemoInputs, image: Image | None = None) -> Section:
    """The memo's section: not needed (randomized), not applicable (IV), or the robustness sentence."""
    kind = inputs.design.kind
    if kind == "randomized":
        text = (
            "Not needed: treatment was randomized, so no confounder, measured or not, is associated with it "
            "by design (the sample-ratio test checks the assignment)."
        )
        return Section(TITLE, (Paragraph(text),))
    if kind == "iv":
        text = (
            "Not applicable: the estimate is identified by the instrument, not by adjusting for covariates, so "
            "a bound on confounders omitted from that adjustment says nothing about it; its threats are an "
            "instrument that reaches the outcome other than through the treatment, or that is itself confounded."
        )
        return Section(TITLE, (Paragraph(text),))
    found = inputs.sensitivity
    if found is None or found.analysis is None:
        why = found.not_computed if found is not None else "no admitted batch's rows were available"
        return Section(TITLE, (Paragraph(f"Not computed: {why}."),))
    blocks: list[Block] = [Paragraph(_analysis_sentences(found, found.analysis, inputs.scale))]
    e_sentence = _e_value_sentence(found) if inputs.outcome_type == "binary" else None
    if e_sentence is not None:
        blocks.append(Paragraph(e_sentence))
    fused = fused_sensitivity_of(inputs)
    if fused is not None:
        admitted = int(np.sum(~np.asarray(inputs.result.excluded, dtype=bool)))
        blocks.append(Paragraph(fused_sentence(fused, inputs.scale, admitted)))
    if image is not None:
        blocks.append(image)
    return Section(TITLE, tuple(blocks))


def sensitivity_image(inputs: MemoInputs, png: bytes | None, file_name: str = FILE_NAME) -> Image | None:
    """The contour plot as a memo figure, with alt text giving the robustness value."""
    found = inputs.sensitivity
    if png is None or found is None or found.analysis is None:
        return None
    strongest = found.strongest_benchmark()
    named = (
        f"; the covariates' benchmarks are points, the strongest {strongest.covariate}" if strongest else ""
    )
    alt = (
        f"Contour plot of the estimate of batch {found.batch} adjusted for an unmeasured confounder, over its "
        f"partial R² with the treatment (horizontal) and with the outcome (vertical); the zero contour is "
        f"red and dashed and crosses the diagonal at the robustness value {found.analysis.robustness_value:.1%}{named}."
    )
    caption = (
        "How strong a confounder would have to be: beyond the red dashed line the estimate changes sign."
    )
    return Image(file_name, png, alt, caption)


def sensitivity_contour(
    analysis: SensitivityReport,
    *,
    factor: float = 1.0,
    unit: str = "outcome units",
    title: str = "Sensitivity to an unmeasured confounder",
    grid: int = 101,
) -> Figure:
    """The adjusted estimate over the confounder's partial R² with treatment and outcome.

    Parameters
    ----------
    analysis : SensitivityReport
        From :func:`~assimilate.diagnostics.sensitivity.sensitivity_analysis`.
    factor : float
        Multiplier of the estimates (100: percentage points).
    unit : str
        The estimate's unit, for the colour bar.
    title : str
        Figure title.
    grid : int
        Grid points per axis.

    Returns
    -------
    matplotlib.figure.Figure
        Contours of ``sign(τ̂)(|τ̂| − bias)``; the zero contour (gid ``"zero"``, red, dashed), the
        robustness value on the diagonal and each benchmark (label ``"benchmarks"``) as a point.
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    if grid < 10:
        raise ValueError(f"grid must be >= 10, got {grid!r}")
    points = [(b.r2_dz_x, b.r2_yz_dx) for b in analysis.benchmarks]
    reach = max([0.4, 1.5 * analysis.robustness_value, *(1.2 * v for p in points for v in p)])
    limit = min(0.99, reach)
    r2 = np.linspace(0.0, limit, grid)
    r2_d, r2_y = np.meshgrid(r2, r2)
    bias = np.vectorize(lambda d, y: bias_bound(analysis.standard_error, analysis.dof, d, y))(r2_d, r2_y)
    adjusted = np.sign(analysis.estimate) * (abs(analysis.estimate) - bias) * factor
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.subplots()
    # Centred at zero so the sign change, not the far corner, sets the colours.
    span = max(float(np.abs(adjusted).max()), 1e-12)
    norm = TwoSlopeNorm(
        vcenter=0.0, vmin=min(float(adjusted.min()), -span / 10), vmax=max(float(adjusted.max()), span / 10)
    )
    filled = ax.contourf(r2_d, r2_y, adjusted, levels=15, cmap="RdBu_r", norm=norm, alpha=0.8)
    fig.colorbar(filled, ax=ax, label=f"adjusted estimate ({unit})")
    zero = ax.contour(r2_d, r2_y, adjusted, levels=[0.0], colors="red", linestyles="--", linewidths=2)
    zero.set_gid("zero")  # contour sets have no legend handle: a proxy line names it
    ax.plot([], [], color="red", ls="--", lw=2, label="estimate = 0")
    rv = analysis.robustness_value
    ax.plot([rv], [rv], marker="D", color="red", ls="none", label=f"robustness value {rv:.1%}")
    if points:
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, ys, color="black", marker="^", zorder=3, label="benchmarks")
        se, dof = analysis.standard_error, analysis.dof
        strongest = max(
            analysis.benchmarks, key=lambda b: bias_bound(se, dof, b.r2_dz_x, b.r2_yz_dx) / b.k_treatment
        )
        for b in analysis.benchmarks:  # every covariate once; the strongest one's multiples too
            if b.k_treatment == 1 or b.covariate == strongest.covariate:
                ax.annotate(
                    f"{b.k_treatment:g}× {b.covariate}",
                    (b.r2_dz_x, b.r2_yz_dx),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.set_xlabel("partial R² of the confounder with the treatment")
    ax.set_ylabel("partial R² of the confounder with the outcome")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def sensitivity_contour_of(inputs: MemoInputs, *, title: str = TITLE) -> Figure | None:
    """The contour plot of a memo's sensitivity analysis on the memo's scale, or None without one."""
    found = inputs.sensitivity
    if inputs.design.kind != "observational" or found is None or found.analysis is None:
        return None
    scale = inputs.scale
    return sensitivity_contour(found.analysis, factor=scale.factor, unit=scale.unit, title=title)


__all__ = [
    "ConfounderSensitivity",
    "confounder_sensitivity",
    "sensitivity_contour",
    "sensitivity_contour_of",
    "sensitivity_image",
    "sensitivity_section",
]
