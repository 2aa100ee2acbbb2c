"""An IV study's memo: what a LATE is, the instrument by name, the latest first stage and AR interval."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from assimilate import causal_kalman
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.iv import two_stage_least_squares
from assimilate.estimators.iv_diagnostics import anderson_rubin_set_of, weak_instrument_verdict
from assimilate.estimators.result import EffectEstimate
from assimilate.report import decision_memo_markdown
from assimilate.report.instrument import instrument_blocks, with_stored_diagnostics
from assimilate.report.memo_inputs import DesignSummary, MemoInputs
from assimilate.report.units import EffectScale


def batch(seed: int, *, compliers: float, n: int = 2_000) -> pd.DataFrame:
    """A 0/1 offer that moves take-up for ``compliers`` of the units; 20% take it up anyway."""
    rng = np.random.default_rng(seed)
    z, u, kind = rng.binomial(1, 0.5, n), rng.standard_normal(n), rng.random(n)
    complier = kind < compliers
    d = ((kind > 0.8) | (complier & (z == 1))).astype(int)
    return pd.DataFrame({"z": z, "d": d, "y": 2.0 * d + u + 0.5 * complier + rng.standard_normal(n)})


def fit(frame: pd.DataFrame) -> EffectEstimate:
    return two_stage_least_squares(frame, treatment="d", outcome="y", instruments=["z"])


def inputs_for(
    estimate: EffectEstimate, *, kind: str = "iv", gate_of: EffectEstimate | None = None
) -> MemoInputs:
    result = causal_kalman(
        [estimate.estimate], [estimate.std_error**2], labels=["b1"], prior_mean=0.0, prior_var=100.0
    )
    verdict = weak_instrument_verdict(gate_of or estimate)
    check = Verdict(
        name="check_batch_effect_weak_instrument",
        value=verdict.value,
        threshold=verdict.threshold,
        rule=verdict.rule,
        status=verdict.status,
        reason=verdict.reason,
    )
    return MemoInputs(
        study="s",
        result=result,
        design=DesignSummary(kind=kind, instruments=("z",) if kind == "iv" else ()),  # type: ignore[arg-type]
        latest_estimates=(estimate,),
        primary_estimator=estimate.method,
        verdicts={"b1": (check,)},
        outcome_unit="USD",
    )


def text(inputs: MemoInputs) -> str:
    blocks = instrument_blocks(inputs, EffectScale.of(outcome_unit="USD"))
    return "\n".join(getattr(b, "text", "") for b in blocks)


def test_a_strong_batch_reports_its_f_first_stage_and_ar_interval() -> None:
    estimate = fit(batch(1, compliers=0.4))
    first = estimate.diagnostics["first_stage"]
    ar = anderson_rubin_set_of(estimate)
    assert ar.kind == "interval"
    words = text(inputs_for(estimate))
    assert "LATE" in words and "compliers" in words and "instrument (z)" in words
    assert f"effective first-stage F {first['effective_f']:.3g}" in words
    assert "(the gate needs at least 10): it passes" in words
    # the first-stage coefficient of a 0/1 offer is the compliers' share (0.4, within sampling error)
    assert abs(first["coefficients"]["z"] - 0.4) < 3 * first["std_errors"]["z"]
    (lower, upper) = ar.intervals[0]
    assert f"Anderson-Rubin 95% interval: [{lower:.3f}, {upper:.3f}] USD" in words  # the scale's 3 decimals
    assert "whole line" not in words


def test_a_weak_batch_is_said_to_fail_and_its_whole_line_ar_set_is_explained() -> None:
    estimate = fit(batch(2, compliers=0.0))
    assert anderson_rubin_set_of(estimate).kind == "whole_line" or not anderson_rubin_set_of(estimate).bounded
    words = text(inputs_for(estimate))
    assert "it fails, so the batch is kept out of the posterior" in words
    assert "(-inf, inf) USD" in words or "unbounded" in words


def test_other_designs_get_no_instrument_section_and_the_memo_has_it_for_iv() -> None:
    estimate = fit(batch(3, compliers=0.4))
    assert instrument_blocks(inputs_for(estimate, kind="observational"), EffectScale.of()) == []
    memo = decision_memo_markdown(inputs_for(estimate))
    assert "### Instrument and compliers" in memo
    assert "Unmeasured confounding of the treatment and the outcome is allowed" in memo
    assert "No unmeasured confounding given" not in memo  # that is the observational design's assumption


def test_stored_diagnostics_are_restored_onto_the_latest_estimate() -> None:
    estimate = fit(batch(4, compliers=0.4))
    bare = EffectEstimate(
        estimate=estimate.estimate,
        std_error=estimate.std_error,
        n_treated=estimate.n_treated,
        n_control=estimate.n_control,
        method=estimate.method,
        se_method=estimate.se_method,
    )
    stored = pd.DataFrame(
        {
            "partition_key": ["b1"],
            "method": [estimate.method],
            # as the pipeline stores it: the diagnostics with the estimand
            "diagnostics_json": [json.dumps({**estimate.to_dict()["diagnostics"], "estimand": "LATE"})],
        }
    )
    restored = with_stored_diagnostics(inputs_for(bare, gate_of=estimate), stored).latest_estimates[0]
    assert restored.estimand == "LATE"
    assert anderson_rubin_set_of(restored) == anderson_rubin_set_of(estimate)
    assert restored.diagnostics["first_stage"]["effective_f"] == pytest.approx(
        estimate.diagnostics["first_stage"]["effective_f"]
    )
    observational = inputs_for(bare, kind="observational", gate_of=estimate)
    assert with_stored_diagnostics(observational, stored) is observational
