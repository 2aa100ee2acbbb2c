"""``assimilative_causal``: estimate the effect batch by batch, then fuse the estimates over time.

Example
-------
>>> import numpy as np
>>> from assimilate.estimators import difference_in_means
>>> from assimilate.simulate import simulate_ab_stream
>>> stream = simulate_ab_stream(rng=np.random.default_rng(3))
>>> res = assimilative_causal(stream.batches, lambda b: difference_in_means(b, treatment="treatment",
...                           outcome="outcome"), process_var=1e-4)
>>> res.n_batches
12
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from assimilate._validation import check_choice
from assimilate.estimators.result import EffectEstimate
from assimilate.filters import causal_kalman, particle_filter
from assimilate.result import AssimilationResult

Estimator = Callable[[pd.DataFrame], EffectEstimate | tuple[float, float]]
BACKENDS: dict[str, Callable[..., AssimilationResult]] = {
    "kalman": causal_kalman,
    "particle": particle_filter,
}


def _observation(label: str, value: EffectEstimate | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, EffectEstimate):
        return value.estimate, value.std_error
    if isinstance(value, tuple) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise TypeError(
        f"batch {label}: the estimator must return an EffectEstimate or an (estimate, se) pair, got {type(value).__name__}"
    )


def assimilative_causal(
    batches: Sequence[pd.DataFrame] | Mapping[str, pd.DataFrame],
    estimator: Estimator,
    *,
    backend: Literal["kalman", "particle"] = "kalman",
    **backend_options: Any,
) -> AssimilationResult:
    """Apply ``estimator`` to every batch and assimilate the estimates with the chosen backend.

    Parameters
    ----------
    batches : sequence of DataFrame, or mapping of label to DataFrame
        The batches in time order (labels are the mapping's keys, else ``batch_1`` ...).
    estimator : callable
        Maps a batch to an ``EffectEstimate`` or an ``(estimate, std_error)`` pair.
    backend : {"kalman", "particle"}
        The filter: ``causal_kalman`` or ``particle_filter``.
    **backend_options
        Passed through to the backend (``process_var``, ``prior_mean``, ``alpha``, ``n_particles``,
        ``rng``, ``df`` ...); an option the backend does not take raises ``TypeError``.

    Returns
    -------
    AssimilationResult
    """
    check_choice("backend", backend, ("kalman", "particle"))
    function = BACKENDS[backend]
    accepted = set(inspect.signature(function).parameters) - {"estimates", "standard_errors", "labels"}
    unknown = sorted(set(backend_options) - accepted)
    if unknown:
        raise TypeError(f"{backend} backend does not take option(s) {unknown}; it takes {sorted(accepted)}")
    items = (
        list(batches.items())
        if isinstance(batches, Mapping)
        else [(f"batch_{i + 1}", b) for i, b in enumerate(batches)]
    )
    if not items:
        raise ValueError("batches is empty: at least one batch is needed")
    observations = [_observation(str(label), estimator(frame)) for label, frame in items]
    estimates = np.array([o[0] for o in observations], dtype=np.float64)
    standard_errors = np.array([o[1] for o in observations], dtype=np.float64)
    return function(estimates, standard_errors, labels=[str(label) for label, _ in items], **backend_options)
