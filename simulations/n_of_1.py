"""N-of-1 trials: do the per-batch and the fused 95% intervals cover with autocorrelated days?

Model (:func:`assimilate.simulate.n_of_1_series`): one subject followed for 336 days, treatment in
weekly blocks whose order within each pair of weeks is random, ``y_t = 5 + 0.5 c_t + u_t`` with
stationary AR(1) errors ``u_t`` (marginal SD 1, coefficient ``rho``) and a 2-day linear carry-over
of the exposure ``c_t`` after every switch. The days are cut into batches; each batch is estimated
by :func:`assimilate.estimators.n_of_1_from_arrays` with a 2-day washout: AR(1) errors by REML
with the Kenward-Roger interval (``ar1_kenward_roger``, the promise), and beside it the ordinary
OLS (``iid``) and Newey-West (``hac``) standard errors on the same days. The batches are fused by
:func:`assimilate.causal_kalman` with a static effect (``process_var=0``) and a diffuse start.

Scenarios: ``16wk_rho_0.0`` .. ``16wk_rho_0.7`` (3 batches of 16 weeks); ``16wk_trend_rho_0.5``
(the baseline drifts by 0.01 a day, 3.4 SDs over the trial, estimated with ``trend=True``);
``8wk_rho_0.7`` (6 batches of 8 weeks) and ``4wk_rho_0.7`` (12 batches of 4 weeks);
``16wk_no_washout_rho_0.5`` (the carry-over is not dropped: biased towards zero, no promise).

The per-batch interval is promised for every batch length. The fused interval is promised for
16-week batches only: the Kalman filter weights each batch by its *estimated* precision as if it
were known, and with a few weeks of strongly autocorrelated days the standard error is itself
uncertain (Kenward-Roger df about 10-25), so the fusion over-weights batches whose error is
understated. Meier (1953, "Variance of a weighted mean", Biometrics 9: 59-73) gives the variance
factor ``1 + 4 sum_b w_b (1 - w_b) / df_b`` (``w_b`` the batch's share of the weight); it is
reported beside the plain fused coverage as ``meier_coverage_fused``.

The shipped example, ``studies/n_of_1_sleep.yaml``, has monthly batches: scenarios
``monthly_rho_0.0`` .. ``monthly_rho_0.7`` run its configuration as the pipeline does (the
study file's weekly blocks, washout, start date and process variance; the calendar months of a
year; ``fusion_correction=True``, which widens each batch's standard error by ``sqrt(1 + 4 / df)``,
the many-batch form of Meier's factor). Their promise is the fused interval after the year
(``coverage_fused``, in [0.93, 0.97]; 0.945-0.966 in the full run);
``uncorrected_coverage_fused`` is the same fusion on the Kenward-Roger errors alone (0.86-0.93 in
the full run), and ``coverage_per_batch`` of the widened errors is conservative (about 0.98): the
correction is for the fusion, not for one month read alone.

Coverage is the share of batch estimates (``coverage_per_batch``) or of streams
(``coverage_fused``) whose 95% interval holds the true effect 0.5. Its Monte Carlo error is
binomial over batches (the batches of one stream are nearly independent: only the few days at a
boundary are correlated) or over streams. The fast run (CI) uses 150 streams (250 for the monthly
scenarios) and allows 2 Monte Carlo standard errors around [0.93, 0.97]; the full run 1,000
streams and the bare interval.

Run: ``python -m simulations.n_of_1`` (full) prints the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from assimilate.estimators import n_of_1_from_arrays
from assimilate.filters import causal_kalman
from assimilate.simulate import n_of_1_series
from resources.study import load_study
from simulations.table import binomial_mc_error, frame, row

STUDY = "n_of_1"
N_DAYS = 336
EFFECT = 0.5
CARRYOVER = 2
WASHOUT = 2
TREND_PER_DAY = 0.01
LOW, HIGH = 0.93, 0.97
Z = float(stats.norm.ppf(0.975))


class Scenario(NamedTuple):
    name: str
    rho: float
    days_per_batch: int
    slope: float = 0.0
    washout: int = WASHOUT
    trend: bool = False
    fused_promised: bool = True


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("16wk_rho_0.0", 0.0, 112),
    Scenario("16wk_rho_0.3", 0.3, 112),
    Scenario("16wk_rho_0.5", 0.5, 112),
    Scenario("16wk_rho_0.7", 0.7, 112),
    Scenario("16wk_trend_rho_0.5", 0.5, 112, slope=TREND_PER_DAY, trend=True),
    Scenario("8wk_rho_0.7", 0.7, 56, fused_promised=False),
    Scenario("4wk_rho_0.7", 0.7, 28, fused_promised=False),
    Scenario("16wk_no_washout_rho_0.5", 0.5, 112, washout=0, fused_promised=False),
)
METHODS = ("ar1_kenward_roger", "iid", "hac")
STUDY_FILE = Path(__file__).resolve().parent.parent / "studies" / "n_of_1_sleep.yaml"
MONTHS = 12
MONTHLY_RHOS = (0.0, 0.3, 0.5, 0.7)


def _estimates(rng: np.random.Generator, n_streams: int, scenario: Scenario) -> dict[str, np.ndarray]:
    """Per method, arrays ``(n_streams, n_batches, 3)``: estimate, standard error, df."""
    d, y = n_of_1_series(
        rng, n_streams=n_streams, n_days=N_DAYS, effect=EFFECT, rho=scenario.rho, slope=scenario.slope,
        carryover_days=CARRYOVER,
    )  # fmt: skip
    days = np.arange(N_DAYS, dtype=np.float64)
    length = scenario.days_per_batch
    n_batches = N_DAYS // length
    out = {method: np.empty((n_streams, n_batches, 3)) for method in METHODS}
    for s in range(n_streams):
        for b in range(n_batches):
            part = slice(b * length, (b + 1) * length)
            for method in METHODS:
                fit = n_of_1_from_arrays(
                    y[s, part], d[s, part], days[part], washout=scenario.washout, trend=scenario.trend,
                    se_method=method,  # type: ignore[arg-type]
                )  # fmt: skip
                df = fit.diagnostics.get("kenward_roger_df", math.inf)
                out[method][s, b] = fit.estimate, fit.std_error, df
    return out


def _fused_hits(fits: np.ndarray, *, meier: bool = False) -> np.ndarray:
    """Whether each stream's fused 95% interval after the last batch holds the effect."""
    hits = np.empty(len(fits), dtype=bool)
    for s, batch in enumerate(fits):
        result = causal_kalman(batch[:, 0], batch[:, 1], process_var=0.0, diffuse=True, smooth=False)
        half = Z * result.final_sd
        if meier:
            share = batch[:, 1] ** -2 / np.sum(batch[:, 1] ** -2)
            half *= math.sqrt(1.0 + 4.0 * float(np.sum(share * (1.0 - share) / batch[:, 2])))
        hits[s] = abs(result.final_mean - EFFECT) <= half
    return hits


def _rows(scenario: Scenario, fits: dict[str, np.ndarray], fast: bool) -> list[dict[str, Any]]:
    slack = 2.0 if fast else 0.0
    target = f"in [{LOW}, {HIGH}]" + (" +- 2 MC s.e." if fast else "")
    main = fits["ar1_kenward_roger"]
    name = scenario.name
    rows = [
        row(STUDY, name, "streams", len(main)),
        row(STUDY, name, "batches_per_stream", main.shape[1]),
        row(STUDY, name, "bias", float(np.mean(main[..., 0]) - EFFECT), mc_error=float(np.std(main[..., 0]) / math.sqrt(main[..., 0].size))),
        row(STUDY, name, "median_kenward_roger_df", float(np.median(main[..., 2]))),
    ]  # fmt: skip
    unbiased = scenario.washout >= CARRYOVER
    for method, fit in fits.items():
        prefix = "" if method == "ar1_kenward_roger" else f"{method}_"
        per_batch = np.abs(fit[..., 0] - EFFECT) <= Z * fit[..., 1]
        for quantity, hits, promised in (
            ("coverage_per_batch", per_batch, unbiased),
            ("coverage_fused", _fused_hits(fit), unbiased and scenario.fused_promised),
        ):
            share, error = float(hits.mean()), binomial_mc_error(float(hits.mean()), hits.size)
            if method == "ar1_kenward_roger" and promised:
                passed = LOW - slack * error <= share <= HIGH + slack * error
                rows.append(row(STUDY, name, quantity, share, target=target, mc_error=error, passed=passed))
            else:
                rows.append(row(STUDY, name, prefix + quantity, share, mc_error=error))
    meier = _fused_hits(main, meier=True)
    rows.append(
        row(
            STUDY,
            name,
            "meier_coverage_fused",
            float(meier.mean()),
            mc_error=binomial_mc_error(float(meier.mean()), meier.size),
        )
    )
    return rows


def month_edges(start: str, n_months: int) -> np.ndarray:
    """Day offsets of the first day of each calendar month from ``start`` (a month's first day), and of the end."""
    firsts = pd.date_range(start, periods=n_months + 1, freq="MS")
    return np.asarray((firsts - firsts[0]).days, dtype=np.int64)


def _monthly_estimates(rng: np.random.Generator, n_streams: int, rho: float) -> np.ndarray:
    """Arrays ``(n_streams, MONTHS, 4)``: estimate, fusion standard error, Kenward-Roger standard error, df."""
    study = load_study(STUDY_FILE)
    assert study.n_of_1 is not None and study.cadence == "monthly"
    edges = month_edges(study.start_date.isoformat(), MONTHS)
    pair = 2 * study.n_of_1.block_days
    d, y = n_of_1_series(
        rng, n_streams=n_streams, n_days=pair * -(-int(edges[-1]) // pair), block_days=study.n_of_1.block_days,
        effect=EFFECT, rho=rho, carryover_days=CARRYOVER,
    )  # fmt: skip
    days = np.arange(d.shape[1], dtype=np.float64)
    out = np.empty((n_streams, MONTHS, 4))
    for s in range(n_streams):
        for b in range(MONTHS):
            part = slice(int(edges[b]), int(edges[b + 1]))
            fit = n_of_1_from_arrays(
                y[s, part], d[s, part], days[part], washout=study.n_of_1.washout_days, trend=study.n_of_1.trend,
                fusion_correction=True,
            )  # fmt: skip
            diagnostics = fit.diagnostics
            out[s, b] = (
                fit.estimate,
                fit.std_error,
                diagnostics["kenward_roger_std_error"],
                diagnostics["kenward_roger_df"],
            )
    return out


def _monthly_rows(rho: float, fits: np.ndarray, fast: bool) -> list[dict[str, Any]]:
    study = load_study(STUDY_FILE)
    process_var = float(study.process_var)  # the shipped study's: a stable effect
    slack = 2.0 if fast else 0.0
    target = f"in [{LOW}, {HIGH}]" + (" +- 2 MC s.e." if fast else "")
    name = f"monthly_rho_{rho}"

    def fused(errors: np.ndarray) -> np.ndarray:
        hits = np.empty(len(fits), dtype=bool)
        for s in range(len(fits)):
            result = causal_kalman(
                fits[s, :, 0], errors[s], process_var=process_var, diffuse=True, smooth=False
            )
            hits[s] = abs(result.final_mean - EFFECT) <= Z * result.final_sd
        return hits

    corrected, plain = fused(fits[..., 1]), fused(fits[..., 2])
    per_batch = np.abs(fits[..., 0] - EFFECT) <= Z * fits[..., 1]
    share, error = float(corrected.mean()), binomial_mc_error(float(corrected.mean()), corrected.size)
    passed = LOW - slack * error <= share <= HIGH + slack * error
    return [
        row(STUDY, name, "streams", len(fits)),
        row(STUDY, name, "batches_per_stream", MONTHS),
        row(STUDY, name, "median_kenward_roger_df", float(np.median(fits[..., 3]))),
        row(STUDY, name, "coverage_fused", share, target=target, mc_error=error, passed=passed),
        row(STUDY, name, "uncorrected_coverage_fused", float(plain.mean()),
            mc_error=binomial_mc_error(float(plain.mean()), plain.size)),
        row(STUDY, name, "coverage_per_batch", float(per_batch.mean()),
            mc_error=binomial_mc_error(float(per_batch.mean()), per_batch.size)),
    ]  # fmt: skip


def run(*, fast: bool = True, seed: int = 20250711) -> pd.DataFrame:
    """The study's table: one row per measured quantity (see the module docstring)."""
    n_streams = 150 if fast else 1000
    sequence = np.random.SeedSequence(seed)
    children = [np.random.default_rng(c) for c in sequence.spawn(len(SCENARIOS))]
    rows: list[dict[str, Any]] = []
    for rng, scenario in zip(children, SCENARIOS, strict=True):
        rows += _rows(scenario, _estimates(rng, n_streams, scenario), fast)
    # Spawned after the others, so that the earlier scenarios keep their numbers.
    monthly = [np.random.default_rng(c) for c in sequence.spawn(len(MONTHLY_RHOS))]
    for rng, rho in zip(monthly, MONTHLY_RHOS, strict=True):
        # More streams in the fast run than above: its slack must leave out the uncorrected ~0.88.
        rows += _monthly_rows(rho, _monthly_estimates(rng, 250 if fast else n_streams, rho), fast)
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    print(run(fast=False).to_string(index=False))
