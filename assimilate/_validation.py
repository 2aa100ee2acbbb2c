"""Argument checks shared by the library: one clear ``ValueError`` per broken rule.

Every public entry point validates its inputs with these helpers so that the same mistake
gives the same message everywhere (the argument's name, the rule, the value seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

T = TypeVar("T", bound=str)


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float if it lies strictly inside (0, 1)."""
    value = float(alpha)
    if not (0.0 < value < 1.0):
        raise ValueError(
            f"alpha must lie strictly between 0 and 1 (e.g. 0.05 for a 95% interval), got {alpha!r}"
        )
    return value


def check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float if it is > 0 (and finite unless ``allow_inf``)."""
    number = float(value)
    if math.isnan(number) or number <= 0.0 or (math.isinf(number) and not allow_inf):
        rule = "positive" if allow_inf else "positive and finite"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return number


def check_non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and >= 0."""
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
    return number


def check_finite(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def check_choice(name: str, value: str, choices: Sequence[T]) -> T:
    """Return ``value`` if it is one of ``choices`` (the ``Literal`` options of an argument)."""
    for choice in choices:
        if value == choice:
            return choice
    options = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{name} must be one of {options}, got {value!r}")


def as_float_vector(name: str, values: ArrayLike) -> NDArray[np.float64]:
    """Return ``values`` as a 1-d float64 array; NaN is allowed, other shapes are not."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array
