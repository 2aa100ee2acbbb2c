"""A stream of batch estimates, validated once for every filter, and the prior before batch 1.

Shared by the Kalman filter, the particle filter, the grid filter and the process-variance fit
(so none of them imports another to read its input). A stream is ``(y_t, se_t)`` for t = 1..T,
with a NaN estimate or an excluded flag meaning "no observation at t".

Example
-------
>>> inputs = prepare_inputs([0.5, float("nan"), 0.4], [0.1, 0.1, 0.1])
>>> inputs.excluded.tolist(), inputs.reasons
([False, True, False], ('', 'no estimate', ''))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from assimilate._validation import as_float_vector, check_finite, check_positive

FloatArray = NDArray[np.float64]


def default_prior(estimates: FloatArray, standard_errors: FloatArray) -> tuple[float, float]:
    """Scale-aware weak prior: mean 0, SD ten times the larger of median |estimate| and median SE."""
    used = np.isfinite(estimates)
    if not used.any():
        return 0.0, 1.0
    scale = max(float(np.median(np.abs(estimates[used]))), float(np.median(standard_errors[used])))
    return 0.0, (10.0 * scale) ** 2 if scale > 0 else 1.0


class StreamInputs(NamedTuple):
    """A validated stream: estimates, SEs, the skipped flags with their reasons, and labels."""

    estimates: FloatArray
    standard_errors: FloatArray
    excluded: NDArray[np.bool_]
    reasons: tuple[str, ...]
    labels: tuple[str, ...]


def prepare_inputs(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
) -> StreamInputs:
    """Validate a stream: lengths, SEs of used batches, and the excluded flags with their reasons."""
    y = as_float_vector("estimates", estimates)
    se = as_float_vector("standard_errors", standard_errors)
    n = len(y)
    if n == 0:
        raise ValueError("estimates is empty: at least one batch is needed")
    if len(se) != n:
        raise ValueError(f"estimates and standard_errors differ in length ({n} vs {len(se)})")
    flags = np.zeros(n, dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
    if flags.shape != (n,):
        raise ValueError(f"excluded must have one flag per batch ({n}), got {flags.shape}")
    if np.isinf(y).any():
        raise ValueError(
            f"estimates must be finite or NaN (missing); batch {int(np.flatnonzero(np.isinf(y))[0])} is inf"
        )
    used = np.isfinite(y) & ~flags
    bad_se = used & ~(np.isfinite(se) & (se > 0))
    if bad_se.any():
        first = int(np.flatnonzero(bad_se)[0])
        raise ValueError(
            f"standard_errors must be finite and > 0 for every used batch; batch {first} has {se[first]!r}"
        )
    names = default_labels(n) if labels is None else tuple(str(x) for x in labels)
    if len(names) != n:
        raise ValueError(f"labels must have one entry per batch ({n}), got {len(names)}")
    given = None if exclusion_reasons is None else [str(r) for r in exclusion_reasons]
    if given is not None and len(given) != n:
        raise ValueError(f"exclusion_reasons must have one entry per batch ({n}), got {len(given)}")
    # Only the skipped batches need a reason: filling them by index keeps a long stream cheap.
    skipped = np.flatnonzero(~used).tolist()
    reasons = _blank(n)
    if skipped:
        filled = list(reasons)
        for i in skipped:
            filled[i] = (given[i] if given else "") or ("excluded" if flags[i] else "no estimate")
        reasons = tuple(filled)
    return StreamInputs(y, se, ~used, reasons, names)


@functools.lru_cache(maxsize=4)
def _blank(n: int) -> tuple[str, ...]:
    return ("",) * n


@functools.lru_cache(maxsize=4)
def default_labels(n: int) -> tuple[str, ...]:
    """``batch_1`` ... ``batch_n``, built once per length (a million labels take about 0.1 s)."""
    return tuple(f"batch_{i}" for i in range(1, n + 1))


def resolve_prior(
    inputs: StreamInputs, prior_mean: float | None, prior_var: float | None, diffuse: bool
) -> tuple[float, float]:
    """The prior's mean and variance: exactly diffuse (variance inf), as given, or the default."""
    if diffuse:
        if prior_var is not None:
            raise ValueError("give either diffuse=True or prior_var, not both")
        return (0.0 if prior_mean is None else check_finite("prior_mean", prior_mean)), math.inf
    default_mean, default_var = (
        default_prior(np.where(inputs.excluded, np.nan, inputs.estimates), inputs.standard_errors)
        if prior_mean is None or prior_var is None
        else (0.0, 1.0)
    )
    mean = default_mean if prior_mean is None else check_finite("prior_mean", prior_mean)
    var = default_var if prior_var is None else check_positive("prior_var", prior_var)
    return mean, var
