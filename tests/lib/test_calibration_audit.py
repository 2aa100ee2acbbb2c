"""The calibration audit against known answers: its counting, its cluster-robust scale, and its verdicts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from assimilate.diagnostics.calibration_audit import _judged, calibration_audit
from assimilate.estimators import EffectEstimate, estimate_effect
from simulations.calibration_audit import run


def history(seed: int, *, batches: int = 8, n: int = 300) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for b in range(batches):
        d, x = rng.binomial(1, 0.5, n), rng.standard_normal(n)
        out[f"b{b}"] = pd.DataFrame({"d": d, "x": x, "y": 2 * d + x + rng.standard_normal(n)})
    return out


def test_the_miss_share_and_its_scale_follow_the_closed_form() -> None:
    # Three batches, 20 placebos each, 2 + 4 + 0 misses: m = 6/60 = 0.1.
    per_batch = (("a", 20, 18), ("b", 20, 16), ("c", 20, 20))
    audit = _judged("m", per_batch, alpha=0.05, audit_alpha=0.01, tolerance=0.02)
    assert audit.coverage == pytest.approx(0.9)
    residual = np.array([2 - 0.1 * 20, 4 - 0.1 * 20, 0 - 0.1 * 20])
    clustered = float(np.sum(residual**2)) / 60**2 * 3 / 2
    assert clustered > 0.05 * 0.95 / 60  # the batches disagree: the clustered scale is the larger
    assert audit.std_error == pytest.approx(np.sqrt(clustered), rel=1e-12)
    assert audit.statistic == pytest.approx((0.1 - 0.05) / np.sqrt(clustered), rel=1e-12)
    # Same misses spread evenly: the binomial floor applies instead.
    even = _judged(
        "m", (("a", 20, 18), ("b", 20, 18), ("c", 20, 18)), alpha=0.05, audit_alpha=0.01, tolerance=0.02
    )
    assert even.std_error == pytest.approx(np.sqrt(0.05 * 0.95 / 60), rel=1e-12)
    assert audit.to_frame()["coverage"].tolist() == pytest.approx([0.9, 0.8, 1.0])


def test_a_valid_estimator_passes_and_an_understated_standard_error_fails() -> None:
    batches = history(1)
    valid = calibration_audit(
        batches, method="regression_adjustment", treatment="d", outcome="y", covariates=["x"],
        rng=np.random.default_rng(2),
    )  # fmt: skip
    assert valid.verdict.status == "pass"
    assert valid.n_intervals == 8 * 20
    assert valid.verdict.false_alarm_rate == 0.01

    def halved(frame: pd.DataFrame, treatment: str) -> EffectEstimate:
        fit = estimate_effect(frame, method="difference_in_means", treatment=treatment, outcome="y")
        return replace(fit, std_error=fit.std_error / 2)

    bad = calibration_audit(
        batches, estimate=halved, treatment="d", outcome="y", rng=np.random.default_rng(2)
    )
    assert bad.verdict.status == "fail"
    assert bad.method == "halved"
    assert bad.coverage < 0.8  # a 95% interval with half the SE covers about 67%
    assert "cover zero" in bad.verdict.reason


def test_an_audit_with_nothing_to_estimate_is_undefined_and_bad_options_are_refused() -> None:
    def broken(frame: pd.DataFrame, treatment: str) -> EffectEstimate:
        raise ValueError("cannot fit")

    audit = calibration_audit(
        history(3, batches=2), estimate=broken, treatment="d", outcome="y", rng=np.random.default_rng(0)
    )
    assert audit.verdict.status == "undefined"
    assert audit.n_intervals == 0
    with pytest.raises(ValueError, match="exactly one of method="):
        calibration_audit(history(3), treatment="d", outcome="y", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="batches is empty"):
        calibration_audit({}, method="ipw", treatment="d", outcome="y", rng=np.random.default_rng(0))


def test_the_fast_simulation_keeps_its_promises() -> None:
    table = run(fast=True)
    promised = table[table["target"] != ""]
    assert len(promised) >= 3
    assert promised["passed"].all(), promised.to_string()
