"""The compiled Hajek IPW influence against the whole-vector arithmetic it replaces.

The reference below is the numpy implementation the kernels replaced, line for line; the
estimators' agreement with statsmodels' sandwich is tested in test_estimators.py and
test_sampling_weights.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import linalg

from assimilate.estimators import DesignMatrix, encode_covariates
from assimilate.estimators._threads import parallel_passes
from assimilate.estimators.models import PropensityModel, fit_propensity
from assimilate.estimators.weighting import ipw_influence
from assimilate.simulate import OUTREACH_COVARIATES, simulate_outreach_batch
from tests.lib.test_pass_kernels import at_offset

FloatArray = NDArray[np.float64]
CLOSE = 1e-12


def reference_influence(
    X: FloatArray, d: NDArray[np.int64], y: FloatArray, propensity: PropensityModel
) -> tuple[float, FloatArray]:
    keep = propensity.keep
    treated = d.astype(np.float64)
    control = 1.0 - treated
    e = np.where(keep, propensity.used_scores, 0.5)
    inverse = np.where(keep, 1.0 / np.abs(treated - 1.0 + e), 0.0)
    s = propensity.weights
    weight = inverse if s is None else inverse * s
    total1, total0 = float(weight @ treated), float(weight @ control)
    mu1, mu0 = float((weight * y) @ treated) / total1, float((weight * y) @ control) / total0
    psi = weight * (y - mu1 * treated - mu0 * control)
    n = len(y)
    a11, a00 = total1 / n, total0 / n
    raw = propensity.scores
    derivative = raw * (1.0 - raw) * ((propensity.used_scores == raw) & keep) * psi * inverse
    derivative *= treated / a11 + control / a00
    direction = linalg.solve(propensity.information, X.T @ derivative, assume_a="pos")
    influence = psi * (treated / a11 - control / a00)
    score = treated - raw if s is None else s * (treated - raw)
    return mu1 - mu0, influence - score * (X @ direction)


def outreach(n: int, seed: int) -> tuple[DesignMatrix, NDArray[np.int64], FloatArray]:
    frame = simulate_outreach_batch(n, rng=np.random.default_rng(seed))
    design = encode_covariates(frame, OUTREACH_COVARIATES)
    outcome = frame["churn"].to_numpy(np.float64) + frame["health_score"].to_numpy() / 100
    return design, frame["outreach"].to_numpy(np.int64), outcome


@pytest.mark.parametrize("policy", ["clip", "trim", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_kernels_give_the_whole_vector_answer(policy: Any, weighted: bool) -> None:
    design, d, y = outreach(5_000, 11)
    weights = np.random.default_rng(2).uniform(0.5, 1.5, len(y)) if weighted else None
    if weights is not None:
        weights /= weights.mean()
    # Tight bounds, so that clipped or trimmed units (whose scores do not move) are many.
    model = fit_propensity(design, d, policy=policy, bounds=(0.3, 0.7), weights=weights)
    assert policy == "none" or model.n_clipped + model.n_trimmed > 100
    estimate, influence = ipw_influence(design.values, d, y, model)
    want_estimate, want_influence = reference_influence(design.values, d, y, model)
    assert estimate == pytest.approx(want_estimate, rel=CLOSE, abs=CLOSE)
    scale = float(np.abs(want_influence).max())
    np.testing.assert_allclose(influence, want_influence, rtol=CLOSE, atol=CLOSE * scale)


def test_the_bits_do_not_depend_on_the_thread_count_or_where_the_arrays_lie() -> None:
    design, d, y = outreach(150_000, 12)  # several chunks
    model = fit_propensity(design, d)
    answers = set()
    for offset in range(4):
        moved = dataclasses.replace(
            model,
            scores=at_offset(model.scores, offset),
            used_scores=at_offset(model.used_scores, offset + 1),
        )
        for threads in (1, 2, 3):
            with parallel_passes(threads):
                estimate, influence = ipw_influence(
                    at_offset(design.values, offset),
                    at_offset(d, offset + 2),
                    at_offset(y, offset + 3),
                    moved,
                )
            answers.add((estimate, influence.tobytes()))
    assert len(answers) == 1
