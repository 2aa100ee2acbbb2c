"""Guardrail outcomes in the primary study's memo: each one's posterior, interval and verdict on harm.

A guardrail is an outcome that must not be harmed while the study pursues its primary outcome (a
refund rate, support contacts, latency). Each guardrail has its own fused posterior (the pipeline
runs it as a study of its own); this module judges them together.

Multiplicity rule (Bonferroni, docs/DECISIONS.md): with ``k`` guardrails and the memo's ``alpha``,
each guardrail's interval is the two-sided central interval at level ``1 - alpha / k``, so the
``k`` intervals hold together with probability at least ``1 - alpha`` (whatever their correlation)
and the chance that any verdict below is wrong is at most ``alpha``. The interval is
``mean +- z sd`` with ``z = Phi^-1(1 - alpha / (2k))``: exact for the Kalman filter's Gaussian
posterior, a normal approximation for the particle filter's.

Verdict, with harm a change against ``desired_direction`` larger than ``margin`` (a non-inferiority
margin in the outcome's units; 0: any harm counts). For ``desired_direction="increase"`` the harm
region is ``effect < -margin``:

* **harm excluded**: the whole interval lies outside the harm region (``lower > -margin``);
* **harm detected**: the whole interval lies inside it (``upper < -margin``);
* **harm not excluded**: the interval straddles the boundary;
* **no evidence**: no batch has updated the guardrail's posterior.

``desired_direction="decrease"`` mirrors it (harm: ``effect > margin``).

Example
-------
>>> g = GuardrailPosterior(study="ab__refunded", outcome="refunded", desired_direction="decrease",
...                        margin=0.02, mean=0.001, sd=0.005, n_used=12, n_batches=12,
...                        outcome_type="binary")
>>> reading = read_guardrails([g], alpha=0.05)[0]
>>> reading.verdict, round(reading.level, 3)
('harm excluded', 0.95)
>>> harm_verdict(-0.5, 0.1, desired_direction="increase", margin=0.0)
'harm not excluded'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from assimilate._validation import check_choice
from assimilate.report._document import Paragraph, Section, Table
from assimilate.report.units import OUTCOME_TYPES, EffectScale, OutcomeType

GuardrailVerdict = Literal["harm excluded", "harm not excluded", "harm detected", "no evidence"]
DIRECTIONS = ("increase", "decrease")


def bonferroni_level(alpha: float, k: int) -> float:
    """The level of each of ``k`` intervals that hold together with probability ``>= 1 - alpha``.

    Parameters
    ----------
    alpha : float
        The family-wise error rate, in (0, 1).
    k : int
        How many guardrails (intervals) the family holds, at least 1.

    Returns
    -------
    float
        ``1 - alpha / k``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return 1.0 - alpha / k


def harm_verdict(
    lower: float, upper: float, *, desired_direction: str, margin: float = 0.0
) -> GuardrailVerdict:
    """Harm excluded, detected or not excluded by the interval ``[lower, upper]`` (module docstring).

    Parameters
    ----------
    lower, upper : float
        The guardrail's interval, ``lower <= upper``.
    desired_direction : {"increase", "decrease"}
        The wanted change of the guardrail's outcome; harm is the other way.
    margin : float
        The tolerated harm (>= 0), in the outcome's units.
    """
    check_choice("desired_direction", desired_direction, DIRECTIONS)
    if not (math.isfinite(lower) and math.isfinite(upper)) or lower > upper:
        raise ValueError(f"the interval must be finite with lower <= upper, got [{lower!r}, {upper!r}]")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    # Flip a "decrease is wanted" guardrail so that harm is always below the boundary.
    low, high = (lower, upper) if desired_direction == "increase" else (-upper, -lower)
    if low > -margin:
        return "harm excluded"
    if high < -margin:
        return "harm detected"
    return "harm not excluded"


@dataclass(frozen=True, kw_only=True)
class GuardrailPosterior:
    """One guardrail's fused posterior after its latest batch, as its own study stored it.

    ``mean`` and ``sd`` are None when no batch has updated it (``n_used == 0``).
    """

    study: str
    outcome: str
    desired_direction: str
    margin: float = 0.0
    mean: float | None = None
    sd: float | None = None
    n_used: int = 0
    n_batches: int = 0
    outcome_type: OutcomeType = "continuous"
    outcome_unit: str | None = None

    def __post_init__(self) -> None:
        check_choice("desired_direction", self.desired_direction, DIRECTIONS)
        check_choice("outcome_type", self.outcome_type, OUTCOME_TYPES)
        if (self.mean is None) != (self.sd is None):
            raise ValueError(f"guardrail {self.outcome}: give both mean and sd, or neither")
        if self.sd is not None and not (math.isfinite(self.sd) and self.sd >= 0):
            raise ValueError(f"guardrail {self.outcome}: sd must be finite and >= 0, got {self.sd!r}")
        if not 0 <= self.n_used <= self.n_batches:
            raise ValueError(f"guardrail {self.outcome}: need 0 <= n_used <= n_batches")


@dataclass(frozen=True)
class GuardrailReading:
    """A guardrail's interval at the family's per-guardrail level, and its verdict."""

    guardrail: GuardrailPosterior
    level: float
    lower: float | None
    upper: float | None
    verdict: GuardrailVerdict


def read_guardrails(
    guardrails: Sequence[GuardrailPosterior], *, alpha: float = 0.05
) -> tuple[GuardrailReading, ...]:
    """Every guardrail's Bonferroni interval (level ``1 - alpha / k``) and its verdict.

    ``k`` counts every guardrail declared, including one without evidence yet: the family is
    fixed by the study, not by which guardrails happen to have data.
    """
    if not guardrails:
        return ()
    level = bonferroni_level(alpha, len(guardrails))
    z = float(stats.norm.ppf(1.0 - (1.0 - level) / 2.0))
    readings = []
    for g in guardrails:
        if g.mean is None or g.sd is None or g.n_used == 0:
            readings.append(GuardrailReading(g, level, None, None, "no evidence"))
            continue
        lower, upper = g.mean - z * g.sd, g.mean + z * g.sd
        verdict = harm_verdict(lower, upper, desired_direction=g.desired_direction, margin=g.margin)
        readings.append(GuardrailReading(g, level, lower, upper, verdict))
    return tuple(readings)


def multiplicity_rule(k: int, alpha: float) -> str:
    """The sentence that states the multiplicity rule for ``k`` guardrails at family-wise ``alpha``."""
    level = bonferroni_level(alpha, k)
    if k == 1:
        return (
            f"One guardrail: its interval is the {_percent(level)} credible interval, and a verdict on it is "
            f"wrong with probability at most {_percent(alpha)}."
        )
    return (
        f"Multiplicity rule (Bonferroni across the {k} guardrails): each interval is at {_percent(level)} "
        f"(1 \u2212 {alpha:g}/{k}), so the {k} intervals hold together with probability at least "
        f"{_percent(1 - alpha)} and the chance that any verdict below is wrong is at most {_percent(alpha)}."
    )


def guardrails_section(
    readings: Sequence[GuardrailReading], *, alpha: float, per: str | None = None
) -> Section:
    """The memo's "Guardrails" section: the rule, one row per guardrail, and what the verdicts say.

    ``per`` is the unit of analysis (the estimand card's ``unit``) for the effects' unit phrase.
    """
    rows = tuple(_row(reading, per) for reading in readings)
    header = ("guardrail", "harm is", "posterior mean", "interval", "batches used", "verdict")
    blocks = (
        Paragraph(
            "Outcomes that must not be harmed, each with its own posterior and checks (a study of its own, "
            "named below). " + multiplicity_rule(len(readings), alpha)
        ),
        Table(header, rows),
        Paragraph(_summary(readings), lead="Guardrails:"),
    )
    return Section("Guardrails", blocks)


def guardrail_caveats(guardrails: Sequence[GuardrailPosterior], *, alpha: float) -> tuple[str, ...]:
    """The recommendation's line on the guardrails: none when harm is excluded on every one.

    A guardrail never changes the decision on the primary outcome; the line says what to weigh
    before acting on it.
    """
    readings = read_guardrails(guardrails, alpha=alpha)
    if all(r.verdict == "harm excluded" for r in readings):
        return ()
    return (f"Before acting, weigh the guardrails (section Guardrails): {_summary(readings)}",)


def _row(reading: GuardrailReading, per: str | None) -> tuple[str, ...]:
    g = reading.guardrail
    scale = EffectScale.of(
        outcome_type=g.outcome_type,
        outcome_unit=g.outcome_unit,
        per=per,
        sd=g.sd if g.sd is not None else math.nan,
    )
    way = "a decrease" if g.desired_direction == "increase" else "an increase"
    harm = f"{way} beyond {scale.size(g.margin)}" if g.margin > 0 else way
    if reading.lower is None or reading.upper is None or g.mean is None:
        mean, interval = "none yet", "none yet"
    else:
        mean = scale.effect(g.mean)
        interval = f"{scale.interval(reading.lower, reading.upper)} ({_percent(reading.level)})"
    return (f"{g.outcome} ({g.study})", harm, mean, interval, f"{g.n_used} of {g.n_batches}", reading.verdict)


def _summary(readings: Sequence[GuardrailReading]) -> str:
    by_verdict: dict[str, list[str]] = {}
    for reading in readings:
        by_verdict.setdefault(reading.verdict, []).append(reading.guardrail.outcome)
    parts = []
    if "harm detected" in by_verdict:
        parts.append(f"harm detected on {', '.join(by_verdict['harm detected'])}")
    if "harm not excluded" in by_verdict:
        parts.append(f"harm not yet excluded on {', '.join(by_verdict['harm not excluded'])}")
    if "no evidence" in by_verdict:
        parts.append(f"no evidence yet on {', '.join(by_verdict['no evidence'])}")
    if not parts:
        return "harm is excluded on every guardrail."
    return "; ".join(parts) + "."


def _percent(value: float) -> str:
    return f"{100 * value:.4g}%"
