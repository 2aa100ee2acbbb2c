"""assimilative_causal and the resumable filter that the pipeline stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assimilate import assimilative_causal, causal_kalman, difference_in_means, particle_filter
from assimilate.incremental import (
    FilterSettings,
    full_filter,
    refilter_from_first_change,
    resolved_process_var,
)
from assimilate.simulate import simulate_ab_stream


@pytest.fixture(scope="module")
def stream():  # type: ignore[no-untyped-def]
    return simulate_ab_stream(rng=np.random.default_rng(50))


def naive(batch: pd.DataFrame):  # type: ignore[no-untyped-def]
    return difference_in_means(batch, treatment="treatment", outcome="outcome")


def test_kalman_backend_equals_a_direct_call(stream) -> None:  # type: ignore[no-untyped-def]
    res = assimilative_causal(
        dict(zip(stream.labels, stream.batches, strict=True)),
        naive,
        process_var=1e-4,
        prior_mean=0.0,
        prior_var=1.0,
    )
    estimates = [naive(b) for b in stream.batches]
    direct = causal_kalman(
        [e.estimate for e in estimates],
        [e.std_error for e in estimates],
        process_var=1e-4,
        prior_mean=0.0,
        prior_var=1.0,
    )
    np.testing.assert_array_equal(res.posterior_mean, direct.posterior_mean)
    assert res.labels == stream.labels


def test_particle_options_pass_through(stream) -> None:  # type: ignore[no-untyped-def]
    res = assimilative_causal(
        stream.batches,
        lambda b: (naive(b).estimate, naive(b).std_error),
        backend="particle",
        process_var=1e-4,
        n_particles=321,
        rng=np.random.default_rng(9),
        prior_mean=0.0,
        prior_var=1.0,
    )
    estimates = [naive(b) for b in stream.batches]
    direct = particle_filter(
        [e.estimate for e in estimates],
        [e.std_error for e in estimates],
        process_var=1e-4,
        n_particles=321,
        rng=np.random.default_rng(9),
        prior_mean=0.0,
        prior_var=1.0,
    )
    np.testing.assert_array_equal(res.posterior_mean, direct.posterior_mean)
    assert res.details["n_particles"] == 321


def test_unknown_options_and_bad_estimators_are_rejected(stream) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="n_particles"):
        assimilative_causal(stream.batches, naive, n_particles=10)
    with pytest.raises(TypeError, match="EffectEstimate"):
        assimilative_causal(stream.batches, lambda b: 0.5)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="backend"):
        assimilative_causal(stream.batches, naive, backend="ensemble")  # type: ignore[arg-type]


def _observations(values: list[float], excluded: list[bool] | None = None) -> pd.DataFrame:
    flags = excluded or [False] * len(values)
    return pd.DataFrame(
        {
            "batch": [f"2025-{m:02d}-01" for m in range(1, len(values) + 1)],
            "estimate": values,
            "std_error": [0.1] * len(values),
            "excluded": flags,
            "exclusion_reason": ["failed check" if f else "" for f in flags],
        }
    )


SETTINGS = FilterSettings(process_var=0.002, prior_mean=0.0, prior_var=1.0)


def test_an_append_costs_one_step_and_equals_a_full_refilter() -> None:
    values = [0.5, 0.55, 0.6, 0.52, 0.58]
    first = refilter_from_first_change(_observations(values[:4]), None, SETTINGS)
    appended = refilter_from_first_change(_observations(values), first.steps, SETTINGS)
    assert appended.n_recomputed == 1 and appended.first_recomputed_label == "2025-05-01"
    full = causal_kalman(values, [0.1] * 5, process_var=0.002, prior_mean=0.0, prior_var=1.0)
    np.testing.assert_array_equal(appended.steps["posterior_mean"].to_numpy(dtype=float), full.posterior_mean)
    again = refilter_from_first_change(_observations(values), appended.steps, SETTINGS)
    assert again.n_recomputed == 0


def test_a_correction_or_exclusion_recomputes_from_its_batch() -> None:
    values = [0.5, 0.55, 0.6, 0.52, 0.58]
    start = refilter_from_first_change(_observations(values), None, SETTINGS)
    corrected = [0.5, 0.9, 0.6, 0.52, 0.58]
    update = refilter_from_first_change(_observations(corrected), start.steps, SETTINGS)
    assert update.n_recomputed == 4 and update.first_recomputed_label == "2025-02-01"
    full = causal_kalman(corrected, [0.1] * 5, process_var=0.002, prior_mean=0.0, prior_var=1.0)
    np.testing.assert_array_equal(update.steps["posterior_mean"].to_numpy(dtype=float), full.posterior_mean)
    excluded = refilter_from_first_change(
        _observations(values, [False, False, True, False, False]), start.steps, SETTINGS
    )
    assert excluded.n_recomputed == 3
    assert excluded.steps.loc[2, "posterior_mean"] == excluded.steps.loc[1, "posterior_mean"]


def test_changed_settings_recompute_everything_and_report_equals_the_stored_path() -> None:
    observed = _observations([0.5, 0.55, 0.6])
    start = refilter_from_first_change(observed, None, SETTINGS)
    changed = refilter_from_first_change(
        observed, start.steps, FilterSettings(process_var=0.01, prior_mean=0.0, prior_var=1.0)
    )
    assert changed.n_recomputed == 3
    report = full_filter(start.steps, SETTINGS)
    np.testing.assert_allclose(
        report.posterior_mean, start.steps["posterior_mean"].to_numpy(dtype=float), atol=1e-15
    )


def test_plots_render_to_png() -> None:
    from assimilate.diagnostics import weighted_balance
    from assimilate.report import fan_chart, figure_to_png, love_plot, overlap_plot

    rng = np.random.default_rng(70)
    x = rng.standard_normal((500, 2))
    e = 1 / (1 + np.exp(-x[:, 0]))
    d = rng.binomial(1, e)
    balance = weighted_balance(x, d, propensity=e, names=["a", "b"]).to_frame()
    result = causal_kalman(
        [0.5, np.nan, 0.6],
        [0.1, 0.1, 0.1],
        prior_mean=0.0,
        prior_var=1.0,
        process_var=0.01,
        excluded=[False, False, True],
    )
    for figure in (
        love_plot(balance),
        overlap_plot(e, d, bounds=(0.01, 0.99), eps=0.05),
        fan_chart(result, true_effects=[0.5, 0.55, 0.6]),
    ):
        png = figure_to_png(figure)
        assert png[:4] == b"\x89PNG" and len(png) > 5_000


def test_summary_names_the_backend_the_real_level_the_numbers_and_the_exclusions() -> None:
    res = causal_kalman(
        [0.5, np.nan, 0.7],
        [0.1, 0.1, 0.1],
        labels=["2025-01", "2025-02", "2025-03"],
        exclusion_reasons=["", "failed balance", ""],
        excluded=[False, True, False],
        prior_mean=0.0,
        prior_var=1.0,
        process_var=0.01,
        alpha=0.1,
    )
    text = res.summary()
    lower, upper = res.final_ci
    assert text.startswith("Assimilated effect (kalman filter, 3 batches, 1 excluded)")
    assert f"90% credible interval [{lower:.6g}, {upper:.6g}]" in text
    assert f"mean {res.final_mean:.6g}, sd {res.final_sd:.6g}" in text
    assert "excluded 2025-02: failed balance" in text and "excluded 2025-01" not in text
    assert str(res) == text
    particle = particle_filter(
        [0.5, 0.6],
        [0.1, 0.1],
        prior_mean=0.0,
        prior_var=1.0,
        process_var=0.01,
        n_particles=500,
        rng=np.random.default_rng(0),
    )
    assert (
        particle.summary().startswith("Assimilated effect (particle filter")
        and "min ESS" in particle.summary()
    )


def test_the_pipelines_mle_of_a_robust_particle_filter_uses_its_student_t_likelihood() -> None:
    """Issue 13: a Gaussian fit read one 20-SE outlier in 24 static batches as drift (q 0 -> 0.08)."""
    rng = np.random.default_rng(11)
    values = list(0.5 + 0.1 * rng.standard_normal(24))
    values[12] += 20 * 0.1
    observed = _observations(values)
    robust = FilterSettings(process_var="mle", backend="particle", observation="student_t", df=4.0)
    gaussian = FilterSettings(process_var="mle", backend="particle")
    q_robust = resolved_process_var(observed, robust)
    q_gaussian = resolved_process_var(observed, gaussian)
    assert q_gaussian > 0.02
    assert q_robust < 0.1 * q_gaussian
