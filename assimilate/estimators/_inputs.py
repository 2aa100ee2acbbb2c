"""Validation of a batch handed to an estimator: columns, a 0/1 treatment, a finite outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from assimilate.estimators.design_matrix import DesignMatrix, encode_covariates
from assimilate.estimators.models import as_binary

MIN_PER_ARM = 2


class BatchArrays(NamedTuple):
    treatment: NDArray[np.int64]
    outcome: NDArray[np.float64]
    design: DesignMatrix


def arm_counts(treatment: NDArray[np.int64]) -> tuple[int, int]:
    n_treated = int(treatment.sum())
    return n_treated, len(treatment) - n_treated


def check_arms(treatment: NDArray[np.int64], *, column: str = "treatment") -> tuple[int, int]:
    n_treated, n_control = arm_counts(treatment)
    if min(n_treated, n_control) < MIN_PER_ARM:
        raise ValueError(
            f"{column}: needs at least {MIN_PER_ARM} treated and {MIN_PER_ARM} control units, "
            f"got {n_treated} treated and {n_control} control"
        )
    return n_treated, n_control


def batch_arrays(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    categories: Mapping[str, Sequence[str]] | None = None,
    design: DesignMatrix | None = None,
) -> BatchArrays:
    """Treatment, outcome and design matrix of a batch, each rule broken named with its column.

    ``design``, when the caller has encoded ``covariates`` of ``data`` with ``categories``
    already, is used as it is instead of encoding them again (a 1e7-row design is 0.7 GB).
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.empty:
        raise ValueError("data is empty: the batch has no rows")
    for role, column in (("treatment", treatment), ("outcome", outcome)):
        if column not in data.columns:
            raise ValueError(f"{role} column {column!r} not in the data (columns: {list(data.columns)})")
    if data[treatment].isna().any():
        raise ValueError(
            f"treatment column {treatment!r}: {int(data[treatment].isna().sum())} missing value(s)"
        )
    d = as_binary(f"treatment column {treatment!r}", data[treatment].to_numpy())
    try:
        y = data[outcome].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"outcome column {outcome!r} must be numeric: {error}") from error
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"outcome column {outcome!r}: {int(bad.sum())} missing or non-finite value(s)")
    check_arms(d, column=f"treatment column {treatment!r}")
    if np.ptp(y) == 0:
        raise ValueError(f"outcome column {outcome!r} is constant in this batch: no effect can be estimated")
    if design is None:
        design = encode_covariates(data, list(covariates), categories=categories)
    constant = [c for c in covariates if _is_constant(data[c])]
    if constant:
        raise ValueError(
            f"covariate column(s) {constant} are constant in this batch: they carry no information and make "
            "the design singular"
        )
    return BatchArrays(d, y, design)


def _is_constant(values: pd.Series) -> bool:
    """One distinct value (NaN counting as one), without hashing the column when it is numeric."""
    array = values.to_numpy()
    if array.dtype.kind not in "biuf" or not len(array):
        return bool(values.nunique(dropna=False) < 2)
    same = array == array[0]
    if array.dtype.kind == "f" and np.isnan(array[0]):
        same = np.isnan(array)
    return bool(same.all())


def sampling_weights(
    values: ArrayLike | None, n: int, *, name: str = "weights"
) -> NDArray[np.float64] | None:
    """Sampling (survey) weights checked and normalized to mean 1; None for none or constant weights.

    Each row stands for ``w_i`` units of the target population. Every estimator here is invariant
    to multiplying the weights by a constant, so they are rescaled to mean 1 (the tolerances of the
    nuisance fits then mean what they mean unweighted), and constant weights are no weights at all:
    None, so they reproduce the unweighted results bit for bit.

    Raises
    ------
    ValueError
        Naming ``name`` and the rule: one weight per row, finite, positive.
    """
    if values is None:
        return None
    try:
        w = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"sampling weights {name!r} must be numeric: {error}") from error
    if w.ndim != 1 or len(w) != n:
        raise ValueError(f"sampling weights {name!r}: need one weight per row ({n}), got shape {w.shape}")
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"sampling weights {name!r}: {int(bad.sum())} missing or non-finite value(s)")
    if (w <= 0).any():
        raise ValueError(
            f"sampling weights {name!r}: {int((w <= 0).sum())} value(s) not > 0 (a weight must be positive)"
        )
    if np.ptp(w) == 0:
        return None
    return np.asarray(w / w.mean(), dtype=np.float64)
