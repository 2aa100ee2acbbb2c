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

With ``unit_id`` the estimator returns each row's influence values and batches that share units
are fused with the covariance those units imply (:func:`correlated_kalman`):

>>> from assimilate.estimators import influence_contributions
>>> res = assimilative_causal(stream.batches, lambda b: influence_contributions(b,
...     method="difference_in_means", treatment="treatment", outcome="outcome"), unit_id="unit_id")
>>> float(res.details["shared_units"].returning_share.max())  # this stream's batches are disjoint
0.0
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from assimilate._validation import check_choice
from assimilate.estimators.influence import InfluenceContributions
from assimilate.estimators.result import EffectEstimate
from assimilate.filters import causal_kalman, correlated_kalman, particle_filter, shared_unit_covariance
from assimilate.result import AssimilationResult

EstimatorOutput = EffectEstimate | InfluenceContributions | tuple[float, float]
Estimator = Callable[[pd.DataFrame], EstimatorOutput]
BACKENDS: dict[str, Callable[..., AssimilationResult]] = {
    "kalman": causal_kalman,
    "particle": particle_filter,
}


def _observation(label: str, value: EstimatorOutput) -> tuple[float, float]:
    if isinstance(value, InfluenceContributions):
        value = value.estimate
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
    unit_id: str | None = None,
    **backend_options: Any,
) -> AssimilationResult:
    """Apply ``estimator`` to every batch and assimilate the estimates with the chosen backend.

    Parameters
    ----------
    batches : sequence of DataFrame, or mapping of label to DataFrame
        The batches in time order (labels are the mapping's keys, else ``batch_1`` ...).
    estimator : callable
        Maps a batch to an ``EffectEstimate``, an ``InfluenceContributions`` or an
        ``(estimate, std_error)`` pair.
    backend : {"kalman", "particle"}
        The filter: ``causal_kalman`` or ``particle_filter``.
    unit_id : str, optional
        Column naming each row's unit. Then the estimator must return ``InfluenceContributions``
        (e.g. :func:`assimilate.estimators.influence_contributions`), the correlation of the
        batch estimates is estimated from the units they share
        (:func:`assimilate.filters.shared_unit_covariance`) and the stream is fused by
        :func:`assimilate.filters.correlated_kalman` (Kalman backend only). Disjoint batches give
        exactly the result without ``unit_id``; ``details["shared_units"]`` holds the per-batch
        returning shares and correlations.
    **backend_options
        Passed through to the backend (``process_var``, ``prior_mean``, ``alpha``, ``n_particles``,
        ``rng``, ``df`` ...); an option the backend does not take raises ``TypeError``.

    Returns
    -------
    AssimilationResult
    """
    check_choice("backend", backend, ("kalman", "particle"))
    if unit_id is not None and backend != "kalman":
        raise ValueError(
            "unit_id (correlated batches) needs backend='kalman': the particle filter assumes independence"
        )
    function = BACKENDS[backend] if unit_id is None else correlated_kalman
    fixed = {"estimates", "standard_errors", "labels", "correlation"}
    accepted = set(inspect.signature(function).parameters) - fixed
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
    outputs = [estimator(frame) for _, frame in items]
    observations = [_observation(str(label), out) for (label, _), out in zip(items, outputs, strict=True)]
    estimates = np.array([o[0] for o in observations], dtype=np.float64)
    standard_errors = np.array([o[1] for o in observations], dtype=np.float64)
    labels = [str(label) for label, _ in items]
    if unit_id is None:
        return function(estimates, standard_errors, labels=labels, **backend_options)
    shared = shared_unit_covariance(
        [
            _unit_values(label, frame, out, unit_id)
            for (label, frame), out in zip(items, outputs, strict=True)
        ],
        labels=labels,
    )
    result = correlated_kalman(
        estimates, standard_errors, correlation=shared.correlation, labels=labels, **backend_options
    )
    return dataclasses.replace(result, details={**result.details, "shared_units": shared})


def _unit_values(
    label: object, frame: pd.DataFrame, output: EstimatorOutput, unit_id: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A batch's unit ids and influence values, aligned row by row."""
    if not isinstance(output, InfluenceContributions):
        raise TypeError(
            f"batch {label}: with unit_id the estimator must return InfluenceContributions "
            f"(assimilate.estimators.influence_contributions), got {type(output).__name__}"
        )
    if unit_id not in frame.columns:
        raise ValueError(f"batch {label}: unit_id column {unit_id!r} not in the data")
    if len(frame) != output.n:
        raise ValueError(f"batch {label}: {output.n} influence values for {len(frame)} rows")
    return frame[unit_id].to_numpy(), output.values
