"""Design matrices from a batch: numeric covariates as they are, categoricals one-hot encoded.

``X = [1, x_1 .. x_k, 1{c = level_2} .. 1{c = level_m}]`` with the first level of each
categorical dropped. Missing or non-finite values are an error that names the column.

Example
-------
>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "region": ["a", "b", "a"]})
>>> design = encode_covariates(frame, ["x", "region"])
>>> design.columns
('intercept', 'x', 'region[b]')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._frozen import FrozenDict


@dataclass(frozen=True)
class DesignMatrix:
    """A float64 design matrix with named columns (``"intercept"`` first when present)."""

    values: NDArray[np.float64]
    columns: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", FrozenDict(self.categories))

    @property
    def n_rows(self) -> int:
        """Number of units."""
        return int(self.values.shape[0])

    def without_intercept(self) -> NDArray[np.float64]:
        """The covariate columns only."""
        if self.columns and self.columns[0] == "intercept":
            return self.values[:, 1:]
        return self.values


def _is_categorical(series: pd.Series) -> bool:
    return bool(
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(series)
        or pd.api.types.is_string_dtype(series)
        or pd.api.types.is_bool_dtype(series)
    )


def encode_covariates(
    data: pd.DataFrame,
    covariates: Sequence[str],
    *,
    categories: Mapping[str, Sequence[str]] | None = None,
    intercept: bool = True,
) -> DesignMatrix:
    """Build the design matrix of ``covariates`` from ``data``.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    covariates : sequence of str
        Columns to include. Numeric columns enter as they are; text, categorical and boolean
        columns are one-hot encoded with the first level dropped.
    categories : mapping, optional
        Allowed levels per categorical column, in order (the first is the reference). A value
        outside them is an error naming the column and the level. Default: the sorted levels seen.
    intercept : bool
        Prepend a column of ones named ``"intercept"``.

    Returns
    -------
    DesignMatrix
    """
    given = dict(categories or {})
    missing = [c for c in covariates if c not in data.columns]
    if missing:
        raise ValueError(f"covariate column(s) {missing} not in the data (columns: {list(data.columns)})")
    n = len(data)
    # Each column's source first (a numeric column, or a categorical one's level per row), then
    # the matrix filled column by column: no block per column beside it (a 1e7-row design is 0.7 GB).
    sources: list[tuple[NDArray[Any], int | None]] = [(np.broadcast_to(1.0, n), None)] if intercept else []
    names: list[str] = ["intercept"] if intercept else []
    levels_used: dict[str, tuple[str, ...]] = {}
    for column in covariates:
        series = data[column]
        if column in given or _is_categorical(series):
            if series.isna().any():
                raise ValueError(f"covariate {column!r}: {int(series.isna().sum())} missing value(s)")
            # Each distinct value once: its text (as str() writes it) names its level.
            codes, distinct = pd.factorize(series.to_numpy())
            texts = [str(v) for v in distinct]
            levels = tuple(str(v) for v in given[column]) if column in given else tuple(sorted(set(texts)))
            unknown = sorted(set(texts) - set(levels))
            if unknown:
                raise ValueError(f"covariate {column!r}: unknown level(s) {unknown}; allowed {list(levels)}")
            levels_used[column] = levels
            position = {level: j for j, level in enumerate(levels)}
            level_of_row = np.array([position[t] for t in texts], dtype=np.int64)[codes]
            sources += [(level_of_row, j) for j in range(1, len(levels))]
            names += [f"{column}[{level}]" for level in levels[1:]]
        else:
            try:
                values = series.to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"covariate {column!r} must be numeric: {error}") from error
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(f"covariate {column!r}: {int(bad.sum())} missing or non-finite value(s)")
            sources.append((values, None))
            names.append(column)
    matrix = np.empty((n, len(sources)))
    for k, (values, level) in enumerate(sources):
        matrix[:, k] = values if level is None else values == level
    return DesignMatrix(matrix, tuple(names), levels_used)
