"""Peeking: does the memo's decision keep its error rate when it is read after every batch?

Model: ``y_t ~ N(theta, se_t^2)`` independent, ``se_t = 0.05 exp(N(0, 0.25^2))`` drawn per batch,
``T`` looks (12 monthly, 52 weekly, 365 daily). Under the null (``theta = 0``), per horizon:

- the always-valid interval (:func:`assimilate.sequential.confidence_sequence`, tuned for ``T``
  batches as precise as the first) ever excludes 0: target <= 0.05;
- the fixed-horizon 95% interval of the fused estimate (precision-weighted mean +/- 1.96 SE), read
  at every look, ever excludes 0: the number that motivated issue 13 (about 0.2 at 12 looks);
- the memo's decision ever says ``act`` (desired direction: increase), and ever acts on a sign
  (no desired direction): target <= 0.05. Each look's decision is the memo's own:
  :attr:`MemoInputs.decision` on the posterior of the batches so far. Looks are pre-screened with
  :func:`assimilate.report.decide` at status ``pass``, the only status that can act, so a memo is
  built only where its decision could be ``act``.

Under an effect ``theta = k * 0.05 / sqrt(T)`` (``k`` = 2 and 4 planned standard errors of the final
fused estimate), the power of the memo read after every batch is reported beside the power of the
fixed-horizon interval read once, at the last batch (checked against its exact value
``mean(Phi(theta sqrt(V_T) - 1.96))``).

Run: ``python -m simulations.peeking`` (full) prints the table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from assimilate import causal_kalman
from assimilate.report import DesignSummary, MemoInputs, decide
from assimilate.sequential import ConfidenceSequence, confidence_sequence
from simulations.table import binomial_mc_error, frame, row

STUDY = "peeking"
HORIZONS = (12, 52, 365)
SE = 0.05
SE_SPREAD = 0.25
ALPHA = 0.05
EFFECT_SIZES = (2.0, 4.0)
Z = float(stats.norm.ppf(1 - ALPHA / 2))


def _streams(
    rng: np.random.Generator, n_streams: int, n_looks: int, effect: float
) -> tuple[np.ndarray, np.ndarray]:
    se = SE * np.exp(rng.normal(0.0, SE_SPREAD, (n_streams, n_looks)))
    return effect + se * rng.standard_normal((n_streams, n_looks)), se


def _memo(y: np.ndarray, se: np.ndarray, n_looks: int, desired: str | None) -> MemoInputs:
    labels = [f"look_{i + 1:03d}" for i in range(len(y))]
    result = causal_kalman(y, se, labels=labels, alpha=ALPHA, process_var=0.0, smooth=False)
    return MemoInputs(
        study=STUDY,
        result=result,
        design=DesignSummary(kind="randomized", treated_share=0.5),
        latest_estimates=(),
        primary_estimator="difference_in_means",
        desired_direction=desired,  # type: ignore[arg-type]
        planned_looks=n_looks,
    )


def _memo_acts(
    y: np.ndarray, se: np.ndarray, cs: ConfidenceSequence, n_looks: int, desired: str | None
) -> bool:
    """Whether the memo, read after every batch, says act (or acts on a sign) at some look."""
    wanted = "act" if desired is not None else "act on the sign"
    for t in range(n_looks):
        screen = decide(status="pass", lower=cs.lower[t], upper=cs.upper[t], desired_direction=desired)  # type: ignore[arg-type]
        if screen == wanted and _memo(y[: t + 1], se[: t + 1], n_looks, desired).decision == wanted:
            return True
    return False


def _fixed_ever(y: np.ndarray, se: np.ndarray) -> np.ndarray:
    w = 1.0 / se**2
    information = np.cumsum(w, axis=1)
    mean = np.cumsum(w * y, axis=1) / information
    return np.any(np.abs(mean) > Z / np.sqrt(information), axis=1)


def _share_row(
    scenario: str, quantity: str, hits: np.ndarray, *, target: str, passed: bool | None
) -> dict[str, Any]:
    share = float(np.mean(hits))
    return row(
        STUDY,
        scenario,
        quantity,
        share,
        target=target,
        mc_error=binomial_mc_error(share, len(hits)),
        passed=passed,
    )


def _null(rng: np.random.Generator, n_looks: int, n_streams: int) -> list[dict[str, Any]]:
    y, se = _streams(rng, n_streams, n_looks, 0.0)
    sequences = [
        confidence_sequence(y[i], se[i], alpha=ALPHA, planned_looks=n_looks) for i in range(n_streams)
    ]
    cs_ever = np.array([bool(cs.excludes(0.0).any()) for cs in sequences])
    act = np.array([_memo_acts(y[i], se[i], sequences[i], n_looks, "increase") for i in range(n_streams)])
    sign = np.array([_memo_acts(y[i], se[i], sequences[i], n_looks, None) for i in range(n_streams)])
    fixed = _fixed_ever(y, se)
    scenario = f"null effect, {n_looks} looks, {n_streams} streams"
    return [
        _share_row(
            scenario,
            "always-valid interval ever excludes 0",
            cs_ever,
            target="<= 0.05",
            passed=cs_ever.mean() <= ALPHA,
        ),
        _share_row(
            scenario,
            "fixed-horizon 95% interval ever excludes 0",
            fixed,
            target="> 0.10 (peeking inflates it)",
            passed=fixed.mean() > 0.10,
        ),
        _share_row(
            scenario,
            "memo says act (desired increase) at some look",
            act,
            target="<= 0.05",
            passed=act.mean() <= ALPHA,
        ),
        _share_row(
            scenario,
            "memo acts on a sign (no desired direction) at some look",
            sign,
            target="<= 0.05",
            passed=sign.mean() <= ALPHA,
        ),
    ]


def _power(rng: np.random.Generator, n_looks: int, n_streams: int, k: float) -> list[dict[str, Any]]:
    effect = k * SE / math.sqrt(n_looks)
    y, se = _streams(rng, n_streams, n_looks, effect)
    information = np.sum(1.0 / se**2, axis=1)
    final_mean = np.sum(y / se**2, axis=1) / information
    fixed_final = final_mean - Z / np.sqrt(information) > 0
    expected = float(np.mean(stats.norm.cdf(effect * np.sqrt(information) - Z)))
    sequences = [
        confidence_sequence(y[i], se[i], alpha=ALPHA, planned_looks=n_looks) for i in range(n_streams)
    ]
    cs_final = np.array([cs.lower[-1] > 0 for cs in sequences])
    act = np.array([_memo_acts(y[i], se[i], sequences[i], n_looks, "increase") for i in range(n_streams)])
    scenario = (
        f"effect {effect:.4g} ({k:g} planned SE of the final estimate), {n_looks} looks, {n_streams} streams"
    )
    mc = binomial_mc_error(expected, n_streams)
    return [
        _share_row(
            scenario,
            "power: memo says act at some look (always-valid, read every batch)",
            act,
            target="",
            passed=None,
        ),
        _share_row(
            scenario,
            "power: always-valid interval excludes 0 at the last look",
            cs_final,
            target="",
            passed=None,
        ),
        _share_row(
            scenario,
            "power: fixed-horizon 95% interval read once at the last look",
            fixed_final,
            target=f"within 3 MC errors of exact {expected:.3f}",
            passed=abs(float(fixed_final.mean()) - expected) <= 3 * mc,
        ),
    ]


def run(*, fast: bool = True, seed: int = 20250613) -> pd.DataFrame:
    """Null error rates and power of the memo read after every batch, at 12, 52 and 365 looks.

    Parameters
    ----------
    fast : bool
        ``True``: 400 null and 200 power streams per horizon (CI); ``False``: 10,000 and 2,000.
    seed : int
        Seed of the study; each horizon and scenario draws from its own child generator.

    Returns
    -------
    DataFrame
        One row per measured quantity in the columns of :data:`simulations.table.COLUMNS`.
    """
    n_null, n_power = (400, 200) if fast else (10_000, 2_000)
    rows: list[dict[str, Any]] = []
    for h, n_looks in enumerate(HORIZONS):
        rows += _null(np.random.default_rng([seed, h, 0]), n_looks, n_null)
        for j, k in enumerate(EFFECT_SIZES):
            rows += _power(np.random.default_rng([seed, h, j + 1]), n_looks, n_power, k)
    return frame(rows)


if __name__ == "__main__":
    with pd.option_context("display.width", 250, "display.max_colwidth", 90, "display.max_rows", 100):
        print(run(fast=False).drop(columns="study").to_string(index=False))
