"""Effects by segment: coverage of the partially pooled intervals, shrinkage, and the difference check.

Each stream is ``T`` batches of ``n`` units in five segments of shares 40/25/17/11/7%; ``d ~
Bernoulli(0.5)``, ``y = x + d theta_{s,t} + N(0, 1)`` with ``x ~ N(0, 1)``. Per batch, the segment
effects are the difference in means on each segment's rows
(:func:`assimilate.estimators.segments.segment_effects`); the stream is fused by
:func:`assimilate.filters.segments.segment_filter` (``tau^2`` integrated, the common mean's
random-walk variance known); the difference check (:mod:`assimilate.diagnostics.heterogeneity`)
runs on every batch (Holm and Benjamini-Hochberg) and on the fused posterior (Holm).

Scenarios (the common effect ``mu_t = 0.2 + random walk, SD 0.02 per batch``):

* ``heterogeneous``: ``theta_st = mu_t + delta_s``, ``delta_s ~ N(0, 0.1^2)`` drawn per stream (the
  model's own population of segments): coverage, shrinkage by segment size, width against no pooling;
* ``one effect``: every segment has ``mu_t``: how often the check flags a segment (all flags are false);
* ``one differs``: segment ``d`` (11%) has ``mu_t + 0.5``: the check's power for ``d``, and how often it
  flags the others ("the rest" includes ``d``, so the others' contrasts move too).

Coverage is of the filtered ``95%`` intervals at every batch, its Monte Carlo error by streams.
Run ``python -m simulations.segments`` for the full table.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from assimilate.diagnostics.heterogeneity import posterior_segment_differences, segment_differences
from assimilate.estimators.segments import segment_effects, stack_segment_effects
from assimilate.filters.segments import segment_filter
from simulations.table import binomial_mc_error, frame, row

STUDY = "segments"
SEGMENTS = ("a", "b", "c", "d", "e")
SHARES = np.array([0.40, 0.25, 0.17, 0.11, 0.07])
N_UNITS = 1_500
BASE, DRIFT_SD, TAU, SHIFT, SHIFTED = 0.2, 0.02, 0.1, 0.5, 3
ALPHA = 0.05
LOW, HIGH = 0.93, 0.97
FULL = {"streams": 1_000, "batches": 8}
FAST = {"streams": 80, "batches": 6}


def simulate_batch(rng: np.random.Generator, effects: np.ndarray) -> pd.DataFrame:
    """One batch: segment, treatment, covariate and outcome of ``N_UNITS`` units."""
    segment = rng.choice(len(SEGMENTS), N_UNITS, p=SHARES)
    d = (rng.random(N_UNITS) < 0.5).astype(np.int64)
    x = rng.standard_normal(N_UNITS)
    y = x + d * effects[segment] + rng.standard_normal(N_UNITS)
    return pd.DataFrame({"segment": np.array(SEGMENTS)[segment], "d": d, "x": x, "y": y})


def truth(rng: np.random.Generator, scenario: str, batches: int) -> np.ndarray:
    """``T x S`` true segment effects of one stream."""
    common = BASE + np.cumsum(rng.normal(0.0, DRIFT_SD, batches))
    delta = np.zeros(len(SEGMENTS))
    if scenario == "heterogeneous":
        delta = rng.normal(0.0, TAU, len(SEGMENTS))
    elif scenario == "one differs":
        delta[SHIFTED] = SHIFT
    return np.asarray(common[:, None] + delta[None, :], dtype=np.float64)


def one_stream(rng: np.random.Generator, scenario: str, batches: int) -> dict[str, Any]:
    """Everything measured on one stream."""
    theta = truth(rng, scenario, batches)
    effects = [
        segment_effects(simulate_batch(rng, theta[t]), segment_by="segment", treatment="d", outcome="y",
                        levels=SEGMENTS)
        for t in range(batches)
    ]  # fmt: skip
    y, se, _ = stack_segment_effects(effects, segments=SEGMENTS)
    fused = segment_filter(y, se, segments=SEGMENTS, common_process_var=DRIFT_SD**2)
    out: dict[str, Any] = {
        "covered": (fused.lower <= theta) & (theta <= fused.upper),
        "borrowed": fused.borrowed_share[-1],
        "width": (fused.upper - fused.lower)[-1],
        "flags_holm": [segment_differences(e, alpha=ALPHA).flagged for e in effects],
        "flags_bh": [
            segment_differences(e, alpha=ALPHA, correction="benjamini_hochberg").flagged for e in effects
        ],
        "flags_posterior": posterior_segment_differences(fused, alpha=ALPHA).flagged,
    }
    if scenario == "heterogeneous":
        reml = segment_filter(y, se, segments=SEGMENTS, common_process_var=DRIFT_SD**2, between_var="reml")
        alone = segment_filter(y, se, segments=SEGMENTS, common_process_var=DRIFT_SD**2, between_var=1e6)
        out["covered_reml"] = (reml.lower <= theta) & (theta <= reml.upper)
        out["width_alone"] = (alone.upper - alone.lower)[-1]
    return out


def _coverage_row(
    scenario: str, quantity: str, hits: np.ndarray, *, fast: bool, target: bool
) -> dict[str, Any]:
    """Coverage over streams x batches (x segments); MC error from the spread of the streams' shares."""
    per_stream = hits.reshape(len(hits), -1).mean(axis=1)
    share, error = float(per_stream.mean()), float(per_stream.std(ddof=1) / np.sqrt(len(per_stream)))
    if not target:
        return row(STUDY, scenario, quantity, share, mc_error=error)
    slack = 2 * error if fast else 0.0
    passed = LOW - slack <= share <= HIGH + slack
    text = f"in [{LOW}, {HIGH}]" + (" +- 2 mc_error" if fast else "")
    return row(STUDY, scenario, quantity, share, target=text, mc_error=error, passed=passed)


def _rate_row(scenario: str, quantity: str, hits: list[bool], *, bound: float | None) -> dict[str, Any]:
    rate, n = float(np.mean(hits)), len(hits)
    if bound is None:
        return row(STUDY, scenario, quantity, rate, mc_error=binomial_mc_error(rate, n))
    error = binomial_mc_error(bound, n)
    passed = rate <= bound + 3 * error
    return row(
        STUDY, scenario, quantity, rate, target=f"<= {bound:g} (+3 MC SE)", mc_error=error, passed=passed
    )


def heterogeneous_rows(runs: list[dict[str, Any]], *, fast: bool) -> list[dict[str, Any]]:
    scenario = f"heterogeneous: delta_s ~ N(0, {TAU}^2), tau^2 integrated"
    covered = np.array([r["covered"] for r in runs])  # streams x T x S
    rows = [_coverage_row(scenario, "coverage, all segments", covered, fast=fast, target=True)]
    for j, name in enumerate(SEGMENTS):
        quantity = f"coverage, segment {name} ({SHARES[j]:.0%})"
        rows.append(_coverage_row(scenario, quantity, covered[:, :, j], fast=fast, target=not fast))
    reml = np.array([r["covered_reml"] for r in runs])
    rows.append(
        _coverage_row(scenario, "coverage, tau^2 by REML plug-in (reported)", reml, fast=fast, target=False)
    )
    borrowed = np.mean([r["borrowed"] for r in runs], axis=0)
    ratio = np.mean([r["width"] / r["width_alone"] for r in runs], axis=0)
    for j, name in enumerate(SEGMENTS):
        rows.append(row(STUDY, scenario, f"borrowed share, segment {name} ({SHARES[j]:.0%})", borrowed[j]))
        rows.append(row(STUDY, scenario, f"width / no-pooling width, segment {name}", ratio[j]))
    in_order = float(np.mean(np.diff(borrowed) > 0))  # segments run from the largest to the smallest
    rows.append(
        row(STUDY, scenario, "share of adjacent sizes where the smaller segment borrows more", in_order,
            target="= 1", passed=in_order == 1.0)
    )  # fmt: skip
    return rows


def null_rows(runs: list[dict[str, Any]], *, fast: bool) -> list[dict[str, Any]]:
    scenario = "one effect: every segment has the common effect"
    covered = np.array([r["covered"] for r in runs])
    share = covered.mean()
    rows = [
        row(STUDY, scenario, "coverage, all segments (conservative: tau = 0 is the prior's edge)", share,
            target=f">= {LOW}", mc_error=_coverage_row("", "", covered, fast=fast, target=False)["mc_error"],
            passed=bool(share >= LOW))
    ]  # fmt: skip
    for key, words in (("flags_holm", "per batch, Holm"), ("flags_bh", "per batch, Benjamini-Hochberg")):
        hits = [bool(flags) for r in runs for flags in r[key]]
        rows.append(_rate_row(scenario, f"false-discovery rate, {words}", hits, bound=ALPHA))
    hits = [bool(r["flags_posterior"]) for r in runs]
    rows.append(
        _rate_row(scenario, "false-discovery rate, fused posterior (last batch), Holm", hits, bound=ALPHA)
    )
    return rows


def alternative_rows(runs: list[dict[str, Any]], *, fast: bool) -> list[dict[str, Any]]:
    scenario = f"one differs: segment {SEGMENTS[SHIFTED]} ({SHARES[SHIFTED]:.0%}) has +{SHIFT}"
    name = SEGMENTS[SHIFTED]
    per_batch = [name in flags for r in runs for flags in r["flags_holm"]]
    others = [len(set(flags) - {name}) / (len(SEGMENTS) - 1) for r in runs for flags in r["flags_holm"]]
    posterior = [name in r["flags_posterior"] for r in runs]
    posterior_others = [len(set(r["flags_posterior"]) - {name}) / (len(SEGMENTS) - 1) for r in runs]
    rate = float(np.mean(posterior))
    return [
        _rate_row(scenario, "power, per batch, Holm", per_batch, bound=None),
        _rate_row(scenario, "share of the other segments flagged, per batch", others, bound=None),
        row(STUDY, scenario, "power, fused posterior (last batch), Holm", rate, target=">= 0.8",
            mc_error=binomial_mc_error(rate, len(posterior)), passed=rate >= 0.8),
        _rate_row(scenario, "share of the other segments flagged, fused posterior", posterior_others, bound=None),
        _coverage_row(scenario, "coverage, all segments (reported: one outlier, not normal)",
                      np.array([r["covered"] for r in runs]), fast=fast, target=False),
    ]  # fmt: skip


def run(*, fast: bool = True, seed: int = 20260301) -> pd.DataFrame:
    """Coverage and shrinkage of fused segment effects; false-discovery rate and power of the check."""
    plan = FAST if fast else FULL
    scenarios = {
        "heterogeneous": heterogeneous_rows,
        "one effect": null_rows,
        "one differs": alternative_rows,
    }
    rows: list[dict[str, Any]] = []
    for (scenario, make_rows), stream in zip(
        scenarios.items(), np.random.SeedSequence(seed).spawn(len(scenarios)), strict=True
    ):
        rng = np.random.default_rng(stream)
        runs = [one_stream(rng, scenario, plan["batches"]) for _ in range(plan["streams"])]
        rows += make_rows(runs, fast=fast)
    return frame(rows)


if __name__ == "__main__":
    table = run(fast="--fast" in sys.argv)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 90):
        print(table.to_string(index=False))
