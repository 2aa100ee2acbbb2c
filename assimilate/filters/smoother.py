"""Rauch-Tung-Striebel smoother for the random-walk effect: the belief about batch t given all batches.

``J_t = P_t / P_{t+1|t}``, ``m^s_t = m_t + J_t (m^s_{t+1} - m_{t+1|t})``,
``P^s_t = P_t + J_t^2 (P^s_{t+1} - P_{t+1|t}) = P_t q / P_{t+1|t} + J_t^2 P^s_{t+1}``; for a random walk ``m_{t+1|t} = m_t``.

Example
-------
>>> import numpy as np
>>> mean, var = rts_smooth(np.array([0.5, 0.6]), np.array([0.01, 0.005]), process_var=0.0)
>>> bool(np.allclose(mean, 0.6) and np.allclose(var, 0.005))
True
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from assimilate.filters._kalman_loop import rts_pass

FloatArray = NDArray[np.float64]


def rts_smooth(
    filtered_mean: FloatArray, filtered_var: FloatArray, *, process_var: float
) -> tuple[FloatArray, FloatArray]:
    """Smoothed means and variances from a filtered random-walk path.

    Parameters
    ----------
    filtered_mean, filtered_var : ndarray
        Posterior after each batch.
    process_var : float
        Variance of the random-walk step.

    Returns
    -------
    (ndarray, ndarray)
        Smoothed mean and variance per batch. Where the filter had no information yet (infinite
        variance, diffuse start) the smoothed belief is carried back from the next batch.
    """
    mean = np.array(filtered_mean, dtype=np.float64, copy=True)
    var = np.array(filtered_var, dtype=np.float64, copy=True)
    rts_pass(
        np.ascontiguousarray(filtered_mean, dtype=np.float64),
        np.ascontiguousarray(filtered_var, dtype=np.float64),
        float(process_var),
        mean,
        var,
    )
    return mean, var
