"""Frozen results that survive ``pickle`` and ``copy.deepcopy``, and their JSON form.

* :class:`FrozenDict` is a read-only mapping (like ``types.MappingProxyType``) that pickles and
  deep-copies as itself;
* :class:`ReadOnlyArrays` is a mixin for frozen dataclasses holding read-only arrays: a pickled or
  deep-copied result keeps its arrays read-only (numpy would otherwise hand back writable copies);
* :func:`to_jsonable` turns a result's fields into JSON-safe data, :func:`float_from_json` and
  :func:`array_from_json` read them back.

JSON has no NaN or infinity: NaN is written ``None`` and an infinity as the string ``"inf"`` or
``"-inf"`` (as ``KalmanState.to_dict`` does).

Example
-------
>>> import copy
>>> d = FrozenDict({"a": 1})
>>> copy.deepcopy(d) == d
True
>>> to_jsonable({"x": float("inf"), "y": float("nan")})
{'x': 'inf', 'y': None}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import DTypeLike, NDArray


class FrozenDict(Mapping[str, Any]):
    """A read-only mapping that pickles and deep-copies (``MappingProxyType`` does neither)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self._data),))


class ReadOnlyArrays:
    """Mixin for frozen dataclasses: arrays stay read-only through ``pickle`` and ``copy.deepcopy``."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)  # a fresh copy made by pickle or deepcopy
            object.__setattr__(self, name, value)


def _float(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def to_jsonable(value: Any) -> Any:
    """JSON-safe data: numbers, strings, booleans, None, lists and string-keyed dicts.

    Arrays become lists, tuples lists, mappings dicts, data frames ``{column: list}``, dataclasses
    (and objects with ``to_dict``) dicts of their fields; numpy scalars become Python numbers; NaN
    becomes ``None`` and infinities ``"inf"``/``"-inf"``. Anything else is written as ``str``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float(float(value))
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()]
    if isinstance(value, pd.DataFrame):
        return {str(column): to_jsonable(value[column].to_numpy()) for column in value.columns}
    if isinstance(value, pd.Series):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    return str(value)


def float_from_json(value: Any) -> float:
    """Inverse of the float rule of :func:`to_jsonable` (``None`` -> NaN, ``"inf"`` -> inf)."""
    return math.nan if value is None else float(value)


def _floats(values: Any) -> Any:
    return [_floats(v) for v in values] if isinstance(values, list | tuple) else float_from_json(values)


def array_from_json(values: Any, dtype: DTypeLike = np.float64) -> NDArray[Any]:
    """A read-only array from the (nested) list :func:`to_jsonable` wrote (``None`` -> NaN for floats)."""
    array = np.array(_floats(values) if np.dtype(dtype).kind == "f" else values, dtype=dtype)
    array.setflags(write=False)
    return array
