r"""How the memo writes an effect: its scale, its unit and how many digits it deserves.

A binary outcome's effect is a difference of probabilities, written in percentage points
(:math:`100\,\hat\tau`, "-4.9 percentage points"); a continuous outcome's effect is written in the
study's ``outcome_unit`` per the estimand card's unit ("+1.23 USD per visitor"). Digits follow the
uncertainty: every effect is rounded to the second significant digit of the posterior standard
deviation (on the displayed scale), so a number never claims more precision than it has.

Example
-------
>>> scale = EffectScale.of(outcome_type="binary", sd=0.0121)
>>> scale.effect(-0.04882), scale.interval(-0.072, -0.025)
('-4.9 percentage points', '[-7.2, -2.5] percentage points')
>>> usd = EffectScale.of(outcome_type="continuous", outcome_unit="USD", per="visitor", sd=0.41)
>>> usd.effect(1.2345), usd.size(0.41)
('+1.23 USD per visitor', '0.41 USD per visitor')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from assimilate._validation import check_choice

OutcomeType = Literal["continuous", "binary"]
OUTCOME_TYPES: tuple[OutcomeType, ...] = ("continuous", "binary")
PERCENTAGE_POINTS = "percentage points"
MAX_DECIMALS = 8


def decimals_for(sd: float, *, digits: int = 2) -> int | None:
    """Decimals that show ``sd`` to ``digits`` significant digits; None when ``sd`` is not a positive number."""
    if not math.isfinite(sd) or sd <= 0:
        return None
    return int(min(MAX_DECIMALS, max(0, digits - 1 - math.floor(math.log10(sd)))))


def fixed(value: float, decimals: int, *, signed: bool = False) -> str:
    """``value`` with ``decimals`` decimals, never a negative zero; ``+`` before a positive value if ``signed``.

    Infinities are ``inf``/``-inf``, NaN ``n/a``.
    """
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        return text.lstrip("-")
    return f"+{text}" if signed and value > 0 else text


def significant(value: float, digits: int = 2) -> str:
    """``value`` to ``digits`` significant digits in plain decimal notation (no exponent)."""
    places = decimals_for(abs(value), digits=digits)
    return fixed(value, 0 if places is None else places)


@dataclass(frozen=True, kw_only=True)
class EffectScale:
    """The displayed scale of an effect: a factor, a unit phrase and the decimals.

    Parameters
    ----------
    outcome_type : {"continuous", "binary"}
        A binary outcome's effects are shown in percentage points (factor 100).
    outcome_unit : str, optional
        The continuous outcome's unit (e.g. ``"USD"``); ignored for a binary outcome.
    per : str, optional
        The unit of analysis (the estimand card's ``unit``, e.g. ``"visitor"``).
    decimals : int
        Decimals of every effect on the displayed scale (see :meth:`of`).
    """

    outcome_type: OutcomeType = "continuous"
    outcome_unit: str | None = None
    per: str | None = None
    decimals: int = 3

    def __post_init__(self) -> None:
        check_choice("outcome_type", self.outcome_type, OUTCOME_TYPES)
        if not 0 <= int(self.decimals) <= MAX_DECIMALS:
            raise ValueError(f"decimals must lie in [0, {MAX_DECIMALS}], got {self.decimals!r}")

    @classmethod
    def of(
        cls,
        *,
        outcome_type: OutcomeType = "continuous",
        outcome_unit: str | None = None,
        per: str | None = None,
        sd: float = math.nan,
    ) -> EffectScale:
        """The scale whose decimals show ``sd`` (on the outcome's scale) to two significant digits."""
        factor = 100.0 if outcome_type == "binary" else 1.0
        places = decimals_for(factor * sd)
        default = 1 if outcome_type == "binary" else 3
        return cls(
            outcome_type=outcome_type,
            outcome_unit=outcome_unit,
            per=per,
            decimals=default if places is None else places,
        )

    @property
    def factor(self) -> float:
        """Multiplier from the outcome's scale to the displayed one (100 for percentage points)."""
        return 100.0 if self.outcome_type == "binary" else 1.0

    @property
    def unit(self) -> str:
        """The unit phrase after a number: ``percentage points``, ``USD per visitor``, ``outcome units``."""
        if self.outcome_type == "binary":
            return PERCENTAGE_POINTS
        if self.outcome_unit is None:
            return "outcome units"
        return f"{self.outcome_unit} per {self.per}" if self.per else self.outcome_unit

    @property
    def unit_known(self) -> bool:
        """Whether the unit is stated (always for a binary outcome)."""
        return self.outcome_type == "binary" or self.outcome_unit is not None

    def number(self, value: float, *, signed: bool = False) -> str:
        """A value on the effect's scale, scaled and rounded, without its unit."""
        return fixed(self.factor * value, self.decimals, signed=signed)

    def effect(self, value: float) -> str:
        """A signed effect with its unit: ``-4.9 percentage points``."""
        return f"{self.number(value, signed=True)} {self.unit}"

    def size(self, value: float) -> str:
        """An unsigned amount (a standard deviation, a distance) with its unit."""
        return f"{self.number(abs(value))} {self.unit}"

    def bounds(self, lower: float, upper: float) -> str:
        """``[lower, upper]`` without the unit (for a table whose header names it)."""
        return f"[{self.number(lower)}, {self.number(upper)}]"

    def interval(self, lower: float, upper: float) -> str:
        """``[lower, upper] unit``."""
        return f"{self.bounds(lower, upper)} {self.unit}"

    def header(self, name: str) -> str:
        """A table header naming the unit: ``estimate (USD per visitor)``."""
        return f"{name} ({self.unit})"

    def sd(self, variance: float) -> str:
        """The sd of a variance on the outcome's scale (process, prior), two significant digits, with the unit."""
        return f"{significant(self.factor * math.sqrt(max(variance, 0.0)))} {self.unit}"

    def level(self, value: float) -> str:
        """An outcome level (a baseline): a rate in % to one decimal, or three significant digits and the unit."""
        if self.outcome_type == "binary":
            return f"{fixed(100.0 * value, 1)}%"
        return f"{significant(value, 3)} {self.unit}"


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """The outcome's mean among control units of one batch (a rate for a binary outcome).

    Parameters
    ----------
    mean : float
        Mean outcome of the batch's control units.
    batch : str
        The batch it was measured in.
    n_control : int
        How many control units it averages.
    """

    mean: float
    batch: str
    n_control: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            raise ValueError(f"baseline mean must be finite, got {self.mean!r}")
        if int(self.n_control) < 1:
            raise ValueError(f"baseline needs at least one control unit, got {self.n_control!r}")


__all__ = ["Baseline", "EffectScale", "OutcomeType", "decimals_for", "fixed", "significant"]
