"""Guardrails: does the memo's Bonferroni rule keep the family-wise error of its verdicts?

Model: a randomized study of ``T = 6`` batches of ``n = 400`` units (half treated) with ``k = 3``
guardrail outcomes measured on the same units, so correlated: ``Y_j = theta_j d + e_j`` with
``e ~ N(0, Sigma)``, unit variances and correlation ``rho = 0.5``. Each batch's estimate of each
guardrail is the difference in means with its unpooled standard error; each guardrail's batches are
fused by the Kalman filter (weak prior N(0, 100), no drift) as the pipeline's guardrail study does,
and :func:`assimilate.report.guardrails.read_guardrails` gives the memo's intervals (each at
``1 - 0.05/3``) and verdicts. Every guardrail wants an increase, with margin ``m = 0.1``: harm is
``theta_j < -0.1``.

Scenarios and promises:

- every guardrail at the harm boundary (``theta = -m``): "harm excluded" on any of them is a false
  "no harm"; target <= 0.05 (Bonferroni bounds it by 0.025). Beside it, the same rule with unadjusted
  95% intervals (no promise): what the correction buys.
- mixed truths (``theta = (0, -m, 0.05)``): the three intervals cover their truths together;
  target >= 0.95.
- no effect (``theta = 0``): "harm detected" on any guardrail is false; target <= 0.05. The share
  with harm excluded on all three is reported (the rule's power at this sample size).

Run: ``python -m simulations.guardrails`` (full) prints the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from assimilate import causal_kalman
from assimilate.report.guardrails import GuardrailPosterior, GuardrailReading, read_guardrails
from simulations.table import binomial_mc_error, frame, row

STUDY = "guardrails"
K, N_BATCHES, N_UNITS, RHO, MARGIN, ALPHA = 3, 6, 400, 0.5, 0.1, 0.05


def _batch_estimates(rng: np.random.Generator, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per batch and guardrail: the difference in means and its standard error, shape (T, k)."""
    cov = RHO + (1 - RHO) * np.eye(K)
    chol = np.linalg.cholesky(cov)
    estimates, errors = np.empty((N_BATCHES, K)), np.empty((N_BATCHES, K))
    for t in range(N_BATCHES):
        d = rng.permutation(np.repeat([0, 1], N_UNITS // 2))
        y = d[:, None] * theta[None, :] + rng.standard_normal((N_UNITS, K)) @ chol.T
        treated, control = y[d == 1], y[d == 0]
        estimates[t] = treated.mean(axis=0) - control.mean(axis=0)
        errors[t] = np.sqrt(
            treated.var(axis=0, ddof=1) / len(treated) + control.var(axis=0, ddof=1) / len(control)
        )
    return estimates, errors


def _stream(rng: np.random.Generator, theta: np.ndarray, alpha: float) -> tuple[GuardrailReading, ...]:
    """One study's guardrail readings, as the memo computes them from the fused posteriors."""
    estimates, errors = _batch_estimates(rng, theta)
    posteriors = []
    for j in range(K):
        result = causal_kalman(
            estimates[:, j], errors[:, j], prior_mean=0.0, prior_var=100.0, process_var=0.0
        )
        posteriors.append(
            GuardrailPosterior(
                study=f"{STUDY}__g{j}",
                outcome=f"g{j}",
                desired_direction="increase",
                margin=MARGIN,
                mean=result.final_mean,
                sd=result.final_sd,
                n_used=N_BATCHES,
                n_batches=N_BATCHES,
            )
        )
    return read_guardrails(posteriors, alpha=alpha)


def _share(
    scenario: str, quantity: str, hits: list[bool], *, bound: tuple[str, float] | None = None
) -> dict[str, Any]:
    """A share with its Monte Carlo error; ``bound`` (``("<=", 0.05)``) holds within 3 MC SE."""
    share = float(np.mean(hits))
    error = binomial_mc_error(share, len(hits))
    passed, target = None, ""
    if bound is not None:
        side, value = bound
        slack = 3 * max(error, binomial_mc_error(value, len(hits)))
        passed = share <= value + slack if side == "<=" else share >= value - slack
        target = f"{side} {value:g} (3 MC SE)"
    return row(STUDY, scenario, quantity, share, target=target, mc_error=error, passed=passed)


def _unadjusted_excludes(readings: tuple[GuardrailReading, ...]) -> bool:
    """'Harm excluded' on any guardrail with each interval at 95% (no multiplicity correction)."""
    z = float(stats.norm.ppf(1 - ALPHA / 2))
    return any(r.guardrail.mean - z * r.guardrail.sd > -MARGIN for r in readings)  # type: ignore[operator]


def run(*, fast: bool = False) -> pd.DataFrame:
    """The guardrail rule's error rates (module docstring); ``fast`` uses fewer streams."""
    n_streams = 300 if fast else 4000
    rng = np.random.default_rng(20261205)
    rows: list[dict[str, Any]] = []

    boundary = [_stream(rng, np.full(K, -MARGIN), ALPHA) for _ in range(n_streams)]
    scenario = f"every guardrail at the harm boundary, k={K}, rho={RHO}, {n_streams} studies"
    false_no_harm = [any(r.verdict == "harm excluded" for r in s) for s in boundary]
    rows.append(
        _share(
            scenario,
            "harm excluded on any guardrail (false)",
            false_no_harm,
            bound=("<=", ALPHA),
        )
    )
    unadjusted = [_unadjusted_excludes(s) for s in boundary]
    rows.append(_share(scenario, "same, unadjusted 95% intervals", unadjusted))

    truth = np.array([0.0, -MARGIN, 0.05])
    mixed = [_stream(rng, truth, ALPHA) for _ in range(n_streams)]
    covered = [all(r.lower <= t <= r.upper for r, t in zip(s, truth, strict=True)) for s in mixed]  # type: ignore[operator]
    scenario = f"mixed truths {truth.tolist()}, {n_streams} studies"
    rows.append(
        _share(
            scenario,
            "the 3 intervals cover together",
            covered,
            bound=(">=", 1 - ALPHA),
        )
    )

    null = [_stream(rng, np.zeros(K), ALPHA) for _ in range(n_streams)]
    scenario = f"no effect on any guardrail, {n_streams} studies"
    detected = [any(r.verdict == "harm detected" for r in s) for s in null]
    rows.append(
        _share(
            scenario,
            "harm detected on any guardrail (false)",
            detected,
            bound=("<=", ALPHA),
        )
    )
    all_clear = [all(r.verdict == "harm excluded" for r in s) for s in null]
    rows.append(_share(scenario, "harm excluded on all three (power)", all_clear))
    return frame(rows)


if __name__ == "__main__":
    print(run().to_markdown(index=False))
