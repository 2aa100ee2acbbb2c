"""The posterior read back from its stored steps equals a fresh filter run, and runs no filter.

Kalman: every number to 1e-12 (the smoothed path is the RTS smoother over the stored states);
particle: the stored draws' numbers exactly (a fresh run with the same seed draws them again);
an MLE process variance is read back, never refitted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import assimilate.filters as filters
import assimilate.incremental as incremental
from assimilate.design.plan import AnalysisPlan
from assimilate.diagnostics import innovation_diagnostics
from assimilate.filters import correlated, grid, kalman, mle, particle
from assimilate.incremental import FilterSettings, full_filter, refilter_from_first_change, result_from_steps
from assimilate.result import AssimilationResult
from assimilate.stored_steps import STEP_COLUMNS

ARRAYS = (
    "estimates",
    "standard_errors",
    "forecast_mean",
    "forecast_var",
    "posterior_mean",
    "posterior_var",
    "posterior_lower",
    "posterior_upper",
    "innovations",
    "innovation_var",
)
KALMAN = FilterSettings(process_var=0.002, prior_mean=0.0, prior_var=1.0)
PARTICLE = FilterSettings(
    backend="particle", process_var=0.002, prior_mean=0.0, prior_var=1.0, n_particles=400
)


def observed(n: int = 12, *, seed: int = 3, drift: float = 0.04) -> pd.DataFrame:
    """A drifting stream with one failed batch and one batch without an estimate."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "batch": [f"2025-{m:02d}-01" for m in range(1, n + 1)],
            "estimate": 0.5 + np.cumsum(rng.normal(0, drift, n)) + rng.normal(0, 0.1, n),
            "std_error": rng.uniform(0.08, 0.12, n),
            "excluded": [i == 4 for i in range(n)],
            "exclusion_reason": ["failed overlap (share 0.3)" if i == 4 else "" for i in range(n)],
        }
    )
    if n > 7:
        frame.loc[7, "estimate"] = np.nan
    return frame


def assert_same(rebuilt: AssimilationResult, fresh: AssimilationResult, *, atol: float) -> None:
    for name in ARRAYS:
        np.testing.assert_allclose(
            getattr(rebuilt, name), getattr(fresh, name), rtol=0, atol=atol, err_msg=name
        )
    for name in ("smoothed_mean", "smoothed_var", "ess"):
        ours, theirs = getattr(rebuilt, name), getattr(fresh, name)
        assert (ours is None) == (theirs is None), name
        if ours is not None:
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol, err_msg=name)
    assert rebuilt.labels == fresh.labels and rebuilt.exclusion_reasons == fresh.exclusion_reasons
    np.testing.assert_array_equal(rebuilt.excluded, fresh.excluded)
    assert rebuilt.backend == fresh.backend and rebuilt.alpha == fresh.alpha
    assert rebuilt.process_var == fresh.process_var
    assert rebuilt.log_likelihood == pytest.approx(fresh.log_likelihood, rel=0, abs=atol)
    assert (rebuilt.prior_mean, rebuilt.prior_var) == (fresh.prior_mean, fresh.prior_var)


@pytest.fixture
def no_filter_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every filter pass raises, wherever it is called from: what is read back comes from the steps alone."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a filter ran")

    passes = {
        kalman: ("kalman_pass", "update"),  # the compiled pass and the step API (step = predict + update)
        particle: ("particle_pass",),
        correlated: ("_condition",),
        mle: ("kalman_pass", "grid_pass"),  # every likelihood the process-variance MLE evaluates
        grid: ("grid_pass",),
    }
    for module, names in passes.items():
        for name in names:
            monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize(
    "settings",
    [KALMAN, FilterSettings(process_var=0.0), FilterSettings(process_var=0.01, diffuse=True, alpha=0.1)],
    ids=["prior", "diffuse static", "diffuse 90%"],
)
def test_kalman_steps_read_back_equal_a_full_refilter_with_the_rts_smoother(settings: FilterSettings) -> None:
    stream = observed()
    first = refilter_from_first_change(stream.iloc[:9], None, settings)
    steps = refilter_from_first_change(stream, first.steps, settings).steps  # resumed: 3 steps appended
    fresh = full_filter(stream, settings, smooth=True)
    rebuilt = result_from_steps(steps, settings)
    assert fresh.smoothed_mean is not None
    assert_same(rebuilt, fresh, atol=1e-12)
    assert rebuilt.details == fresh.details
    assert rebuilt.trajectory().equals(fresh.trajectory())  # the report's trajectory.csv, number for number


def test_an_mle_process_variance_is_read_back_not_refitted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FilterSettings(process_var="mle", prior_mean=0.0, prior_var=1.0)
    stream = observed(drift=0.3)
    steps = refilter_from_first_change(stream, None, settings).steps
    fresh = full_filter(stream, settings, smooth=True)
    assert fresh.process_var > 0 and (steps["process_var"] == fresh.process_var).all()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the MLE ran again")

    monkeypatch.setattr(incremental, "fit_process_variance", refuse)
    monkeypatch.setattr(filters, "fit_process_variance", refuse)
    assert_same(result_from_steps(steps, settings), fresh, atol=1e-12)


@pytest.mark.parametrize(
    "settings",
    [
        PARTICLE,
        FilterSettings(
            backend="particle", process_var="mle", observation="student_t", df=4.0, n_particles=300
        ),
    ],
    ids=["gaussian", "student-t mle"],
)
def test_particle_steps_read_back_the_stored_numbers(settings: FilterSettings) -> None:
    stream = observed()
    update = refilter_from_first_change(stream, None, settings)
    rebuilt = result_from_steps(update.steps, settings)
    assert update.result is not None and rebuilt.ess is not None
    assert_same(rebuilt, update.result, atol=0.0)  # the numbers the filter stored, exactly
    assert_same(rebuilt, full_filter(stream, settings), atol=0.0)  # and a fresh run with the seed
    assert rebuilt.smoothed_mean is None  # a particle path has no smoother
    assert rebuilt.details["n_particles"] == settings.n_particles
    ours, theirs = innovation_diagnostics(rebuilt), innovation_diagnostics(update.result)
    assert ours.ess == theirs.ess and ours.ess.status != "undefined"  # the ESS check reads them


def test_a_correlated_fusion_reads_back_its_exact_smoother() -> None:
    stream = observed(6)
    correlation = np.full((6, 6), 0.3) + 0.7 * np.eye(6)
    steps = refilter_from_first_change(stream, None, KALMAN, correlation=correlation).steps
    fresh = full_filter(stream, KALMAN, smooth=True, correlation=correlation)
    rebuilt = result_from_steps(steps, KALMAN)
    assert_same(rebuilt, fresh, atol=1e-12)
    assert rebuilt.details["correlated_errors"]
    rts = result_from_steps(steps.assign(settings_fingerprint=KALMAN.fingerprint(0.002)), KALMAN)
    assert rts.smoothed_mean is not None and fresh.smoothed_mean is not None
    assert not np.allclose(rts.smoothed_mean, fresh.smoothed_mean)  # the RTS smoother would be wrong here


@pytest.mark.parametrize("settings", [KALMAN, PARTICLE], ids=["kalman", "particle"])
def test_reading_steps_back_runs_no_filter(settings: FilterSettings, request: pytest.FixtureRequest) -> None:
    steps = refilter_from_first_change(observed(), None, settings).steps
    expected = full_filter(observed(), settings)
    request.getfixturevalue("no_filter_runs")
    with pytest.raises(AssertionError, match="a filter ran"):
        full_filter(observed(), settings)  # the guard holds
    assert_same(result_from_steps(steps, settings), expected, atol=1e-12)


def test_steps_of_other_settings_or_an_earlier_version_are_refused() -> None:
    steps = refilter_from_first_change(observed(), None, KALMAN).steps
    with pytest.raises(ValueError, match="other filter settings"):
        result_from_steps(steps, FilterSettings(process_var=0.01, prior_mean=0.0, prior_var=1.0))
    with pytest.raises(ValueError, match=r"lack column\(s\) \['ess'\]"):
        result_from_steps(steps.drop(columns="ess"), KALMAN)
    with pytest.raises(ValueError, match="nothing was filtered"):
        result_from_steps(steps.iloc[0:0], KALMAN)


def test_steps_stored_before_the_new_columns_are_recomputed_from_the_start() -> None:
    stream = observed()
    old = refilter_from_first_change(stream.iloc[:9], None, KALMAN).steps.drop(columns=["ess", "process_var"])
    update = refilter_from_first_change(stream, old, KALMAN)
    assert update.n_recomputed == len(stream)
    assert list(update.steps.columns) == STEP_COLUMNS


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"prior": {"mean": 0.1, "variance": 2.0}, "process_var": 0.001},
            FilterSettings(process_var=0.001, prior_mean=0.1, prior_var=2.0, seed=7),
        ),
        (
            {"prior": {"diffuse": True}, "process_var": "mle"},
            FilterSettings(process_var="mle", diffuse=True, seed=7),
        ),
        (
            {"process_var": 0.0, "backend": {"kind": "particle", "observation": "student_t", "df": 5}},
            FilterSettings(backend="particle", n_particles=2000, observation="student_t", df=5.0, seed=7),
        ),
    ],
    ids=["prior", "diffuse mle", "robust particle"],
)
def test_filter_settings_from_the_plan(changes: dict[str, object], expected: FilterSettings) -> None:
    plan = AnalysisPlan.model_validate(
        {
            "unit_id": "visitor",
            "treatment": "treated",
            "outcome": "order_value",
            "outcome_type": "continuous",
            "design": {"kind": "randomized"},
            "primary_estimator": "difference_in_means",
            "seed": 7,
            **changes,
        }
    )
    assert FilterSettings.from_plan(plan) == expected
