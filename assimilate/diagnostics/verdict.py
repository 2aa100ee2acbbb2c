"""A diagnostic's verdict: the number, the threshold, the rule and the outcome.

Every assumption diagnostic in the library returns (or carries) a ``Verdict``. When a test does
not apply to a batch (one arm only, too few units) the verdict is ``undefined`` with the reason
stated, never a bare NaN and never a swallowed exception.

Example
-------
>>> v = Verdict.evaluate("max_abs_smd", value=0.04, threshold=0.1, rule="max |SMD| <= threshold",
...                      passed=0.04 <= 0.1)
>>> v.status
'pass'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "undefined"]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one assumption test.

    Parameters
    ----------
    name : str
        Short snake_case name of the property tested, e.g. ``"max_abs_smd"``.
    value : float or None
        The observed statistic (None when undefined).
    threshold : float or None
        The threshold it is compared with.
    rule : str
        The rule as a sentence, e.g. ``"p-value >= 0.001"``.
    status : {"pass", "fail", "undefined"}
        The outcome.
    reason : str
        Why the test is undefined, or a one-line explanation of the outcome.
    """

    name: str
    value: float | None
    threshold: float | None
    rule: str
    status: Status
    reason: str = ""

    @classmethod
    def evaluate(
        cls, name: str, *, value: float, threshold: float, rule: str, passed: bool, reason: str = ""
    ) -> Verdict:
        """A defined verdict; a non-finite ``value`` fails (a NaN never passes a check)."""
        if not math.isfinite(value):
            return cls(name, float(value), threshold, rule, "fail", reason or "statistic is not finite")
        return cls(name, float(value), threshold, rule, "pass" if passed else "fail", reason)

    @classmethod
    def undefined(cls, name: str, *, threshold: float | None, rule: str, reason: str) -> Verdict:
        """A verdict for a test that does not apply, with the reason."""
        return cls(name, None, threshold, rule, "undefined", reason)

    @property
    def passed(self) -> bool:
        """True only for a defined test that passed."""
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        """True only for a defined test that failed."""
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "rule": self.rule,
            "status": self.status,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        text = f"{self.name}: {self.status} (value {shown}; rule {self.rule})"
        return f"{text} - {self.reason}" if self.reason else text
