"""A notebook user's habits: results pickle, deep-copy and go to JSON; ``result.plot()``; seeds and
StatsPAI-style particle calls.

The project's security guard (tests/shell/test_library_purity.py) bars ``import pickle`` from every file,
tests included. So "pickles" is shown without it: :func:`_assert_reducible` walks the object graph
exactly as the pickler does (``__reduce_ex__`` with the highest protocol, down to numbers,
strings, arrays and importable classes and functions) and fails on anything the pickler refuses
(a ``mappingproxy``, a lambda, a local class); ``copy.deepcopy`` then rebuilds the object through
the same reduce protocol and ``__setstate__`` that unpickling uses.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import math
import types
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import assimilate as a
from assimilate._frozen import FrozenDict, to_jsonable
from assimilate.design.card import CausalGraphSpec
from assimilate.design.dag import CausalDAG
from assimilate.diagnostics import (
    overlap_report,
    sample_ratio_mismatch,
    trend_test_of,
    weighted_balance,
)
from assimilate.estimators import encode_covariates, fit_outcome_model, fit_propensity
from assimilate.filters import (
    RandomWalkEffectModel,
    fit_process_variance,
    grid_filter,
    initial_state,
    shared_unit_covariance,
    step,
)
from assimilate.filters.particle import STATSPAI_ARGUMENTS
from assimilate.report.plots import figure_to_png
from assimilate.simulate import simulate_ab_stream

# --- a stream and everything the library returns about it ---------------------------------------


@cache
def stream() -> tuple[Any, list[float], list[float]]:
    sim = simulate_ab_stream(rng=np.random.default_rng(0), n_batches=8, n_per_batch=200)
    fits = [a.difference_in_means(b, treatment="treatment", outcome="outcome") for b in sim.batches]
    return sim, [f.estimate for f in fits], [f.std_error for f in fits]


def _batch() -> pd.DataFrame:
    return stream()[0].batches[0]


def _kalman() -> a.AssimilationResult:
    _, e, se = stream()
    excluded = [False, False, True, False, False, False, False, False]
    reasons = ["", "", "srm failed", "", "", "", "", ""]
    return a.causal_kalman(
        e,
        se,
        process_var="mle",
        smooth=True,
        excluded=excluded,
        exclusion_reasons=reasons,
        diffuse=True,
    )


def _particle() -> a.AssimilationResult:
    _, e, se = stream()
    return a.particle_filter(e, se, process_var="mle", rng=3, n_particles=300, observation="student_t", df=5)


def _returning() -> a.AssimilationResult:
    sim = simulate_ab_stream(rng=np.random.default_rng(1), n_batches=3, n_per_batch=100)
    batches = [b.assign(unit_id=[f"u{i}" for i in range(100)]) for b in sim.batches]  # same units
    return a.assimilative_causal(
        batches,
        lambda b: a.influence_contributions(
            b, method="difference_in_means", treatment="treatment", outcome="outcome"
        ),
        unit_id="unit_id",
    )


def _design() -> Any:
    return encode_covariates(_batch(), ["x"])


def _propensity() -> Any:
    return fit_propensity(_design(), _batch()["treatment"])


RESULTS: dict[str, Callable[[], Any]] = {
    "EffectEstimate": lambda: a.aipw(_batch(), treatment="treatment", outcome="outcome", covariates=["x"]),
    "AssimilationResult_kalman": _kalman,
    "AssimilationResult_particle": _particle,
    "AssimilationResult_returning_units": _returning,
    "ConfidenceSequence": lambda: a.confidence_sequence(stream()[1], stream()[2], planned_looks=8),
    "ConfidenceSequence_asymptotic": lambda: a.asymptotic_confidence_sequence(
        np.random.default_rng(2).normal(0.5, 1.0, 400), look_ends=[100, 200, 400], planned_n=400
    ),
    "ProcessVarianceFit": lambda: fit_process_variance(stream()[1], stream()[2]),
    "TrendTest": lambda: trend_test_of(_kalman()),
    "InfluenceContributions": lambda: a.influence_contributions(
        _batch(), method="aipw", treatment="treatment", outcome="outcome", covariates=["x"]
    ),
    "SharedUnits": lambda: shared_unit_covariance(
        [(["a", "b", "c"], [0.1, -0.2, 0.3]), (["b", "c"], [1.0, 2.0])]
    ),
    "GridFilterResult": lambda: grid_filter(stream()[1], stream()[2], process_var=1e-3, df=4),
    "GateVerdict": lambda: sample_ratio_mismatch(520, 480, rule="calibrated", looks=12).verdict,
    "SRMReport": lambda: sample_ratio_mismatch(520, 480),
    "BalanceComparison": lambda: weighted_balance(
        _batch()[["x"]], _batch()["treatment"], propensity=_propensity().scores, rule="calibrated"
    ),
    "OverlapReport": lambda: overlap_report(_propensity().scores, _batch()["treatment"]),
    "InnovationReport": lambda: a.innovation_diagnostics(_particle()),
    "PropensityModel": _propensity,
    "OutcomeModel": lambda: fit_outcome_model(_design(), _batch()["treatment"], _batch()["outcome"]),
    "DesignMatrix": _design,
    "KalmanState": lambda: step(initial_state(prior_mean=0.0, prior_var=1.0), 0.4, 0.1, process_var=0.01)[0],
    "RandomWalkEffectModel": lambda: RandomWalkEffectModel(process_var=0.01, observation="student_t", df=4),
    "SimulatedStream": lambda: stream()[0],
    "CausalDAG_check": lambda: CausalDAG(
        CausalGraphSpec.model_validate({"edges": [("x", "d"), ("x", "y"), ("d", "y")]}),
        treatment="d",
        outcome="y",
    ).check_adjustment(["x"]),
}


def _fields(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return obj._asdict()  # type: ignore[no-any-return]
    raise AssertionError(f"{type(obj).__name__} is neither a dataclass nor a named tuple")


ATOMS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    np.ndarray,
    np.generic,
    pd.DataFrame,
    pd.Series,
    pd.Index,
)


def _importable(obj: Any) -> bool:
    """The pickler stores classes and functions by reference: they must be found by name."""
    module = importlib.import_module(obj.__module__)
    found: Any = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is obj


def _assert_reducible(obj: Any, seen: set[int] | None = None, path: str = "result") -> None:
    """Fail where ``pickle.dumps(obj)`` would: the pickler's own walk, without the pickle module."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, ATOMS):
        return
    seen.add(id(obj))
    if isinstance(obj, types.MappingProxyType):
        raise AssertionError(f"{path}: a mappingproxy cannot be pickled")
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        assert _importable(obj), f"{path}: {obj!r} cannot be pickled (not importable by name)"
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for i, item in enumerate(obj):
            _assert_reducible(item, seen, f"{path}[{i}]")
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            _assert_reducible(key, seen, f"{path} key")
            _assert_reducible(item, seen, f"{path}[{key!r}]")
        return
    reduced = obj.__reduce_ex__(5)  # raises TypeError as pickle.dumps would
    assert not isinstance(reduced, str)
    for i, part in enumerate(reduced):
        _assert_reducible(part, seen, f"{path}.<reduce {i}>")


def _read_only_arrays(obj: Any, prefix: str = "") -> dict[str, bool]:
    """Writeable flag of every array field, nested results included."""
    flags: dict[str, bool] = {}
    for name, value in _fields(obj).items():
        if isinstance(value, np.ndarray):
            flags[prefix + name] = value.flags.writeable
        elif dataclasses.is_dataclass(value):
            flags |= _read_only_arrays(value, f"{prefix}{name}.")
    return flags


def _assert_same(left: Any, right: Any) -> None:
    assert type(left) is type(right)
    for name, value in _fields(left).items():
        other = _fields(right)[name]
        if isinstance(value, pd.DataFrame | pd.Series):
            assert value.equals(other), name
        else:
            assert to_jsonable(value) == to_jsonable(other), name


def test_the_reduce_walk_catches_what_the_pickler_refuses() -> None:
    with pytest.raises(AssertionError, match="mappingproxy"):
        _assert_reducible({"details": types.MappingProxyType({"a": 1})})
    with pytest.raises(AssertionError, match="not importable"):
        _assert_reducible([lambda x: x])
    with pytest.raises(TypeError):
        _assert_reducible(x for x in ())  # a generator
    _assert_reducible({"fine": (1, "a", np.ones(2), pd.DataFrame({"x": [1]}), FrozenDict({"b": 2}))})


@pytest.mark.parametrize("name", list(RESULTS))
def test_every_result_pickles_and_deep_copies_staying_read_only(name: str) -> None:
    original = RESULTS[name]()
    _assert_reducible(original)
    copied = copy.deepcopy(original)
    _assert_same(original, copied)
    assert _read_only_arrays(copied) == _read_only_arrays(original)
    if dataclasses.is_dataclass(original) and original.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        first = dataclasses.fields(original)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(copied, first, None)


@pytest.mark.parametrize(
    "name", [n for n in RESULTS if n.startswith(("AssimilationResult", "ConfidenceSeq"))]
)
def test_copied_arrays_are_read_only(name: str) -> None:
    copied = copy.deepcopy(RESULTS[name]())
    flags = _read_only_arrays(copied)
    assert flags and not any(flags.values())
    with pytest.raises(ValueError, match="read-only"):
        next(v for v in _fields(copied).values() if isinstance(v, np.ndarray))[0] = 1.0


def test_mappings_stay_read_only_after_a_copy() -> None:
    result = copy.deepcopy(_kalman())
    estimate = copy.deepcopy(RESULTS["EffectEstimate"]())
    for mapping in (result.details, estimate.diagnostics, copy.deepcopy(_design()).categories):
        assert isinstance(mapping, FrozenDict)
        with pytest.raises(TypeError):
            mapping["new"] = 1  # type: ignore[index]
    assert result.details["process_var_fit"].process_var == _kalman().details["process_var_fit"].process_var


# --- JSON -------------------------------------------------------------------------------------------


def test_effect_estimate_to_dict_is_json_and_from_dict_inverts_it() -> None:
    estimate = RESULTS["EffectEstimate"]()
    text = json.dumps(estimate.to_dict(), allow_nan=False)
    back = a.EffectEstimate.from_dict(json.loads(text))
    assert back.to_dict() == estimate.to_dict()
    assert (back.estimate, back.std_error, back.n, back.method) == (
        estimate.estimate,
        estimate.std_error,
        estimate.n,
        estimate.method,
    )
    with pytest.raises(ValueError, match="unknown key"):
        a.EffectEstimate.from_dict({**estimate.to_dict(), "estimat": 1.0})
    with pytest.raises(ValueError, match="missing field"):
        a.EffectEstimate.from_dict({"estimate": 1.0})


def test_non_finite_numbers_are_written_as_json_can_hold_them() -> None:
    estimate = a.EffectEstimate(
        estimate=math.nan,
        std_error=math.inf,
        n_treated=1,
        n_control=1,
        method="m",
        se_method="s",
        diagnostics={"bound": -math.inf, "pair": (1, 2)},
    )
    data = estimate.to_dict()
    assert (data["estimate"], data["std_error"], data["diagnostics"]) == (
        None,
        "inf",
        {"bound": "-inf", "pair": [1, 2]},
    )
    back = a.EffectEstimate.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert math.isnan(back.estimate) and back.std_error == math.inf


@pytest.mark.parametrize("name", [n for n in RESULTS if n.startswith("AssimilationResult")])
def test_assimilation_result_round_trips_through_json_exactly(name: str) -> None:
    result = RESULTS[name]()
    back = a.AssimilationResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False)))
    for field in dataclasses.fields(result):
        if field.name == "details":
            continue
        value, other = getattr(result, field.name), getattr(back, field.name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(other, value)
            assert other.dtype == value.dtype and not other.flags.writeable
        else:
            assert other == value or (math.isnan(value) and math.isnan(other)), field.name
    assert back.to_dict() == result.to_dict()
    assert back.trajectory().equals(result.trajectory())
    for key in ("process_var_fit", "shared_units"):
        if key in result.details:
            assert type(back.details[key]) is type(result.details[key])
    if "shared_units" in result.details:
        np.testing.assert_array_equal(
            back.details["shared_units"].n_shared, result.details["shared_units"].n_shared
        )


def test_from_dict_names_a_missing_field() -> None:
    data = _kalman().to_dict()
    del data["posterior_mean"]
    with pytest.raises(ValueError, match="posterior_mean"):
        a.AssimilationResult.from_dict(data)


# --- plot -------------------------------------------------------------------------------------------


def test_plot_returns_a_figure_naming_the_excluded_batch() -> None:
    result = _kalman()
    figure = result.plot(title="Churn effect")
    assert isinstance(figure, Figure)
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    excluded = [t for t in texts if t.startswith("excluded")]
    assert excluded == ["excluded batch"]
    assert [t.get_text() for t in figure.axes[0].texts] == [result.labels[2]]
    assert figure.axes[0].get_title() == "Churn effect"
    assert figure_to_png(figure)[:4] == b"\x89PNG"


def test_plot_names_batches_without_an_estimate() -> None:
    result = a.causal_kalman(
        [0.5, math.nan, 0.4], [0.1, math.nan, 0.1], process_var=0.0, labels=["w1", "w2", "w3"]
    )
    axes = result.plot().axes[0]
    assert "excluded batch (no estimate)" in [t.get_text() for t in axes.get_legend().get_texts()]
    assert [t.get_text() for t in axes.texts] == ["w2"]


# --- particle filter: seeds and StatsPAI's names ------------------------------------------------------

ARGS = ([0.5, 0.6, 0.45, 0.55], [0.1, 0.1, 0.1, 0.1])
COMMON: dict[str, Any] = {"prior_mean": 0.0, "prior_var": 1.0, "n_particles": 400}


def test_an_int_seed_is_a_generator_seeded_with_it() -> None:
    by_seed = a.particle_filter(*ARGS, process_var=0.01, rng=42, **COMMON)
    by_generator = a.particle_filter(*ARGS, process_var=0.01, rng=np.random.default_rng(42), **COMMON)
    other = a.particle_filter(*ARGS, process_var=0.01, rng=43, **COMMON)
    np.testing.assert_array_equal(by_seed.posterior_mean, by_generator.posterior_mean)
    assert not np.array_equal(by_seed.posterior_mean, other.posterior_mean)
    for bad in (None, True, 1.5, "42"):
        with pytest.raises(TypeError, match="rng"):
            a.particle_filter(*ARGS, process_var=0.01, rng=bad, **COMMON)


def test_a_statspai_call_runs_unchanged_and_equals_ours() -> None:
    # The call benchmarks/filters.py makes to statspai.assimilation.particle_filter.
    theirs = a.particle_filter(
        ARGS[0], ARGS[1], prior_mean=0.0, prior_var=1.0, process_sd=0.1, n_particles=400, random_state=7,
        ess_resample_threshold=0.3,
    )  # fmt: skip
    ours = a.particle_filter(*ARGS, process_var=0.1**2, rng=7, ess_threshold=0.3, **COMMON)
    np.testing.assert_array_equal(theirs.posterior_mean, ours.posterior_mean)
    assert theirs.process_var == 0.1**2 and theirs.details["ess_threshold"] == 0.3


@pytest.mark.parametrize(
    ("ours", "theirs", "value"),
    [
        ("process_var", "process_sd", 0.1),
        ("rng", "random_state", 1),
        ("ess_threshold", "ess_resample_threshold", 0.5),
    ],
)
def test_an_argument_and_its_statspai_alias_together_are_refused(ours: str, theirs: str, value: Any) -> None:
    given: dict[str, Any] = {"process_var": 0.01, "rng": 1, ours: value, theirs: value}
    with pytest.raises(TypeError, match=f"'{ours}' and its StatsPAI alias '{theirs}'"):
        a.particle_filter(*ARGS, **given, **COMMON)


@pytest.mark.parametrize(
    ("option", "advice"), [("transition_sampler", "process_var"), ("observation_log_pdf", "student_t")]
)
def test_statspai_options_we_lack_name_what_to_use(option: str, advice: str) -> None:
    with pytest.raises(TypeError, match=f"StatsPAI's '{option}'.*{advice}"):
        a.particle_filter(*ARGS, process_var=0.01, rng=1, **{option: lambda *x: x}, **COMMON)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_particle'"):
        a.particle_filter(*ARGS, process_var=0.01, rng=1, n_particle=10)


def test_missing_process_var_or_seed_names_our_argument_and_the_alias() -> None:
    with pytest.raises(TypeError, match=r"needs process_var.*process_sd"):
        a.particle_filter(*ARGS, rng=1)
    with pytest.raises(TypeError, match=r"needs rng.*random_state"):
        a.particle_filter(*ARGS, process_var=0.0)


def test_the_statspai_mapping_covers_their_signature() -> None:
    # statspai.assimilation.particle_filter's keyword arguments (StatsPAI 1.40).
    theirs = {
        "prior_sampler", "prior_mean", "prior_var", "transition_sampler", "process_sd",
        "observation_log_pdf", "n_particles", "ess_resample_threshold", "alpha", "random_state",
    }  # fmt: skip
    assert set(STATSPAI_ARGUMENTS) == theirs
    ours = set(inspect.signature(a.particle_filter).parameters)
    for name, meaning in STATSPAI_ARGUMENTS.items():
        assert name in ours or meaning.startswith("not supported"), name
