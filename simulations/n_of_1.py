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

Coverage is the share of batch estimates (``coverage_per_batch``) or of streams
(``coverage_fused``) whose 95% interval holds the true effect 0.5. Its Monte Carlo error is
binomial over batches (the batches of one stream are nearly independent: only the few days at a
boundary are correlated) or over streams. The fast run (CI) uses 150 streams and allows 2 Monte
Carlo standard errors around [0.93, 0.97]; the full run 1,000 streams and the bare interval.

Run: ``python -m simulations.n_of_1`` (full) prints the table.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from assimilate.estimators import n_of_1_from_arrays
from assimilate.filters import causal_kalman
from assimilate.simulate import n_of_1_series
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


def run(*, fast: bool = True, seed: int = 20250711) -> pd.DataFrame:
    """The study's table: one row per measured quantity (see the module docstring)."""
    n_streams = 150 if fast else 1000
    children = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(len(SCENARIOS))]
    rows: list[dict[str, Any]] = []
    for rng, scenario in zip(children, SCENARIOS, strict=True):
        rows += _rows(scenario, _estimates(rng, n_streams, scenario), fast)
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    print(run(fast=False).to_string(index=False))
