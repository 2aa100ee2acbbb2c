"""A study's calibration audit (assimilate/diagnostics/plan_audit.py): the plan's primary estimator on its
admitted batches, each batch with its own seeded generator; refusal of a failed estimator's batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from assimilate.admission import observations
from assimilate.design.plan import AnalysisPlan
from assimilate.diagnostics.calibration_audit import audit_from_counts, calibration_audit
from assimilate.diagnostics.plan_audit import StoredAudit, audit_plan, batch_generator
from assimilate.estimators import EffectEstimate, difference_in_means


def plan(
    primary: str = "mine", *, refuse: bool = True, min_batches: int = 4, **changes: object
) -> AnalysisPlan:
    data: dict[str, object] = {
        "unit_id": "id", "treatment": "d", "outcome": "y", "outcome_type": "continuous",
        "design": {"kind": "randomized"}, "covariates": ["x"], "primary_estimator": primary,
        "process_var": 0.0, "seed": 7,
        "calibration_audit": {"placebos": 20, "min_batches": min_batches, "refuse": refuse},
    }  # fmt: skip
    if primary == "mine":
        data["custom_estimators"] = {"mine": "team.module:mine"}
    return AnalysisPlan.model_validate(data | changes)


def halved(data: pd.DataFrame, *, treatment: str, outcome: str, **_: object) -> EffectEstimate:
    fit = difference_in_means(data, treatment=treatment, outcome=outcome)
    return dataclasses.replace(fit, std_error=fit.std_error / 2)


def history(n_batches: int = 6, n: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for m in range(1, n_batches + 1):
        x, d = rng.standard_normal(n), rng.binomial(1, 0.5, n)
        out[f"2025-{m:02d}-01"] = pd.DataFrame({"x": x, "d": d, "y": 0.5 * d + x + rng.standard_normal(n)})
    return out


def test_a_halved_standard_error_fails_with_the_librarys_own_counts() -> None:
    batches = history()
    found = audit_plan(batches, plan(), custom={"mine": halved})
    assert found.verdict.name == "calibration_audit" and found.verdict.failed and found.refused
    assert found.audit is not None and found.audit.n_intervals == 120
    assert 1 - found.audit.coverage > 0.2  # about 33% of halved intervals miss
    # Known answer: the library's audit of each batch alone, with that batch's generator, then judged.
    counts = []
    for label, frame in batches.items():
        rng = batch_generator(7, label)

        def fit(rows: pd.DataFrame, placebo: str, rng: np.random.Generator = rng) -> EffectEstimate:
            return halved(rows, treatment=placebo, outcome="y", covariates=(), estimand="ATE", rng=rng)

        alone = calibration_audit(
            {label: frame}, treatment="d", outcome="y", rng=rng, estimate=fit, covariates=["x"]
        )
        counts.extend(alone.per_batch)
    expected = audit_from_counts("mine", counts)
    assert found.audit.per_batch == expected.per_batch and found.audit.p_value == expected.p_value


def test_a_batchs_count_does_not_depend_on_the_other_batches() -> None:
    batches = history()
    whole = audit_plan(batches, plan("regression_adjustment"))
    fewer = audit_plan(dict(list(batches.items())[2:]), plan("regression_adjustment"))
    assert whole.audit is not None and fewer.audit is not None
    assert whole.audit.per_batch[2:] == fewer.audit.per_batch
    assert whole.verdict.passed  # regression adjustment's intervals are valid


def test_below_min_batches_the_audit_is_not_assessed_and_refuses_nothing() -> None:
    found = audit_plan(dict(list(history().items())[:3]), plan(), custom={"mine": halved})
    assert found.verdict.status == "undefined" and "at least 4" in found.verdict.reason
    assert not found.refused and found.audit is None


def test_a_refused_estimator_keeps_every_admitted_batch_out_with_the_reason() -> None:
    keys = ["2025-01-01", "2025-02-01", "2025-03-01"]
    files = pd.DataFrame({"partition_key": keys})
    effects = pd.DataFrame(
        {"partition_key": keys, "is_primary": True, "estimate": [0.5, np.nan, 0.6], "std_error": [0.1, np.nan, 0.1],
         "error": ["", "singular", ""]}
    )  # fmt: skip
    observed = observations(keys, files, effects, pd.DataFrame())
    failed = audit_plan(history(4), plan(min_batches=2), custom={"mine": halved})
    out = failed.admitted(observed)
    assert out["excluded"].all()
    assert out.loc[1, "exclusion_reason"] == "not estimated: singular"  # its own reason stays
    assert out.loc[0, "exclusion_reason"].startswith(
        "calibration audit of mine failed (placebo intervals cover"
    )
    warned = audit_plan(history(4), plan(min_batches=2, refuse=False), custom={"mine": halved})
    assert warned.verdict.failed and not warned.refused
    pd.testing.assert_frame_equal(warned.admitted(observed), observed)


def test_the_stored_row_reads_back_and_says_what_happened() -> None:
    found = audit_plan(history(4), plan(min_batches=2), custom={"mine": halved})
    stored = StoredAudit.from_frame(found.to_frame())
    assert stored is not None and stored.status == "fail" and stored.refused
    assert stored.n_intervals == 80 and stored.misses == round((1 - stored.coverage) * 80)
    assert "refuses the estimator" in stored.sentence()
    assert StoredAudit.from_frame(pd.DataFrame()) is None


def test_an_unresolved_custom_estimator_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="custom estimator 'mine' was not resolved"):
        audit_plan(history(4), plan(min_batches=2))


def test_a_batch_without_stored_rows_adds_no_placebo() -> None:
    batches = history(4)
    batches["2025-02-01"] = pd.DataFrame()
    found = audit_plan(batches, plan("regression_adjustment", min_batches=2))
    assert found.audit is not None and ("2025-02-01", 0, 0) in found.audit.per_batch
    assert found.audit.n_intervals == 60


def test_a_design_a_permuted_treatment_cannot_mimic_is_not_assessed() -> None:
    iv = plan(
        "two_stage_least_squares",
        min_batches=2,
        design={"kind": "iv", "instrument": ["z"]},
        covariates=["x"],
    )
    found = audit_plan(history(4), iv)
    assert found.verdict.status == "undefined" and "an instrumental-variables design" in found.verdict.reason
    assert not found.refused
