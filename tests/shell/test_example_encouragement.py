"""The encouragement example's batches keep their known truth: 2SLS finds the compliers' effect, the
naive regression does not, and only the bounced month has a weak first stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import statsmodels.formula.api as smf

from assimilate.estimators.iv import two_stage_least_squares
from resources.study import load_study
from scripts.example_batches import EXAMPLE_BATCHES
from scripts.example_encouragement import (
    BOUNCED_MONTH,
    COMPLIER_EFFECT,
    MONTHS,
    ROWS_PER_MONTH,
    SEED,
    encouragement_months,
    land_encouragement_iv,
)

STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "encouragement_iv.yaml"


def test_the_months_match_the_study_file_and_only_the_bounced_one_is_weak() -> None:
    study = load_study(STUDY_FILE)
    assert EXAMPLE_BATCHES[study.name] is land_encouragement_iv  # the demo lands and runs it
    months = encouragement_months(np.random.default_rng(SEED))
    assert [label for label, _ in months] == [f"2025-{m:02d}" for m in range(1, MONTHS + 1)]
    fits, naive = [], []
    for label, batch in months:
        columns = {study.unit_id, study.treatment, study.outcome, *study.covariates, *study.design.instrument}
        columns |= {guardrail.outcome for guardrail in study.guardrails}
        assert set(batch.columns) == columns and len(batch) == ROWS_PER_MONTH, label
        assert batch[study.unit_id].is_unique
        fit = two_stage_least_squares(
            batch,
            treatment=study.treatment,
            outcome=study.outcome,
            instruments=list(study.design.instrument),
            covariates=list(study.covariates),
        )
        first = fit.diagnostics["first_stage"]
        weak = first["effective_f"] < study.design.min_first_stage_f
        assert weak == (label == months[BOUNCED_MONTH - 1][0]), (label, first["effective_f"])
        if not weak:
            # the first-stage coefficient of the 0/1 e-mail is the compliers' share (about 30%)
            assert abs(first["coefficients"]["encouraged"] - 0.30) < 0.06, label
            fits.append(fit)
            ols = smf.ols("monthly_savings ~ enrolled + age + tenure_months", batch).fit()
            naive.append(ols.params["enrolled"])
    weights = np.array([1 / f.std_error**2 for f in fits])
    pooled = float(np.sum(weights * [f.estimate for f in fits]) / weights.sum())
    pooled_se = float(1 / np.sqrt(weights.sum()))
    assert abs(pooled - COMPLIER_EFFECT) < 2.6 * pooled_se, (pooled, pooled_se)
    assert np.mean(naive) - COMPLIER_EFFECT > 50  # motivation biases the naive comparison upwards
