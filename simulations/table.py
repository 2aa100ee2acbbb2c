"""The row format every simulation study returns, and a helper to build rows."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

COLUMNS = ["study", "scenario", "quantity", "value", "target", "mc_error", "passed"]


def row(
    study: str,
    scenario: str,
    quantity: str,
    value: float,
    *,
    target: str = "",
    mc_error: float = math.nan,
    passed: bool | None = None,
) -> dict[str, Any]:
    """One measured quantity; ``target`` says the promise in words (``"in [0.93, 0.97]"``, ``"<= 0.05"``)."""
    return {
        "study": study,
        "scenario": scenario,
        "quantity": quantity,
        "value": float(value),
        "target": target,
        "mc_error": float(mc_error),
        "passed": passed,
    }


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a table in the standard column order."""
    return pd.DataFrame(rows, columns=COLUMNS)


def binomial_mc_error(share: float, n: int) -> float:
    """Monte Carlo standard error of a share estimated from ``n`` independent streams."""
    return math.sqrt(max(share * (1.0 - share), 0.0) / n) if n > 0 else math.nan
