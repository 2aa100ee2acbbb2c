"""Calibrated gates: a stated false-alarm rate per batch, and the threshold that achieves it.

A gate that excludes a batch should trip on a systematic violation, not on sampling noise. A
calibrated gate states ``alpha``, the probability that it fails a batch drawn from a correct design,
and sets its threshold from the batch at hand so that ``P(fail | correct design) <= alpha`` at
every batch size. A gate checked at ``m`` looks a year splits a per-study-year family-wise rate
over the looks (Šidák, exact for independent batches): ``alpha_look = 1 - (1 - alpha_year)^(1/m)``.

Example
-------
>>> round(per_look_alpha(0.01, looks=365), 7)
2.75e-05
>>> round(bonferroni_critical(0.01, tests=4), 3)
3.023
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats

from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.verdict import Verdict

GateRule = Literal["fixed", "calibrated"]
GATE_RULES: tuple[GateRule, ...] = ("fixed", "calibrated")
Cadence = Literal["daily", "weekly", "monthly"]
LOOKS_PER_YEAR: dict[str, int] = {"daily": 365, "weekly": 52, "monthly": 12}


@dataclass(frozen=True)
class GateVerdict(Verdict):
    """A verdict of a calibrated gate: also states its false-alarm rate per batch.

    Parameters
    ----------
    false_alarm_rate : float or None
        The probability that the gate fails a batch from a correct design (None: not stated).
    """

    false_alarm_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with the stated false-alarm rate."""
        return super().to_dict() | {"false_alarm_rate": self.false_alarm_rate}

    def __str__(self) -> str:
        text = super().__str__()
        return (
            text
            if self.false_alarm_rate is None
            else f"{text} [false-alarm rate {self.false_alarm_rate:.3g}]"
        )


def stating_rate(verdict: Verdict, false_alarm_rate: float) -> GateVerdict:
    """The same verdict, carrying the gate's stated false-alarm rate per batch."""
    fields = {field.name: getattr(verdict, field.name) for field in dataclasses.fields(Verdict)}
    return GateVerdict(**fields, false_alarm_rate=float(false_alarm_rate))


def check_rule(rule: str) -> GateRule:
    """``rule`` if it is ``"fixed"`` or ``"calibrated"``."""
    return check_choice("rule", rule, GATE_RULES)


def per_look_alpha(family_alpha: float, *, looks: int) -> float:
    """Level per look so that ``looks`` independent looks falsely fail with probability ``family_alpha``.

    Parameters
    ----------
    family_alpha : float
        Family-wise false-alarm rate over the looks (e.g. per study-year).
    looks : int
        Number of looks in the family (e.g. 365 for a daily study-year).

    Returns
    -------
    float
        ``1 - (1 - family_alpha)^(1 / looks)`` (Šidák 1967).
    """
    check_alpha(family_alpha)
    if isinstance(looks, bool) or int(looks) != looks or looks < 1:
        raise ValueError(f"looks must be a whole number >= 1, got {looks!r}")
    return float(-math.expm1(math.log1p(-family_alpha) / int(looks)))


def looks_per_year(cadence: Cadence) -> int:
    """Batches a year at a study cadence: daily 365, weekly 52, monthly 12."""
    return LOOKS_PER_YEAR[check_choice("cadence", cadence, ("daily", "weekly", "monthly"))]


def bonferroni_critical(alpha: float, *, tests: int) -> float:
    """Two-sided normal critical value at level ``alpha`` split over ``tests`` tests (Bonferroni)."""
    check_alpha(alpha)
    if tests < 1:
        raise ValueError(f"tests must be >= 1, got {tests}")
    return float(stats.norm.isf(alpha / (2 * tests)))
