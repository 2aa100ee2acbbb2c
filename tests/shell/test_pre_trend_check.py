"""The pre-trend check and the did fit of one batch, from stored-like history tables (no Dagster run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from assets.did_fit import fit_period
from checks.pre_trend import pre_trend_severities, pre_trend_verdict
from resources.study import load_study
from scripts.example_rollout import rollout_months
from tests.pipeline_support import PROJECT_ROOT

STUDY = load_study(PROJECT_ROOT / "studies" / "regional_rollout_did.yaml")


def _history(drift: float = 0.0) -> tuple[list[tuple[str, pd.DataFrame]], dict[str, pd.DataFrame]]:
    months = rollout_months(np.random.default_rng(2), pre_trend_drift=drift, stores_per_region=40)
    covariates = pd.concat([frame.assign(partition_key=label) for label, frame in months], ignore_index=True)
    effects, influence = [], []
    for label, frame in months[:3]:
        fit = fit_period(STUDY, frame, covariates, label)
        tables = fit.tables(batch_rules=STUDY.batch_rules_hash)
        effects.append(tables["effects"].assign(partition_key=label))
        influence.append(tables["influence"].assign(partition_key=label))
    history = {
        "covariates": covariates,
        "batch_effects": pd.concat(effects, ignore_index=True),
        "batch_influence": pd.concat([f for f in influence if not f.empty], ignore_index=True),
    }
    return months, history


def test_a_post_batch_is_judged_on_the_stored_placebos() -> None:
    months, history = _history()
    label, frame = months[4]
    fit = fit_period(STUDY, frame, history["covariates"], label)
    assert fit.verdicts["estimation"].passed
    verdict, metadata = pre_trend_verdict(STUDY, history, fit, label)
    assert verdict.status == "pass" and metadata["leads"] == 2 and metadata["first_adoption"] == "2025-04-01"
    assert "event_study" in metadata and "p_value" in metadata


def test_a_drift_fails_and_a_missing_placebo_fails_naming_its_batch() -> None:
    months, history = _history(drift=1.5)
    label, frame = months[3]
    fit = fit_period(STUDY, frame, history["covariates"], label)
    assert pre_trend_verdict(STUDY, history, fit, label)[0].status == "fail"
    effects = history["batch_effects"]
    history["batch_effects"] = effects[effects["partition_key"] != "2025-03-01"]
    verdict, _ = pre_trend_verdict(STUDY, history, fit, label)
    assert verdict.status == "fail" and "['2025-03-01'] is not stored yet" in verdict.reason


def test_pre_periods_and_other_designs_are_not_assessed_and_an_acknowledgement_warns() -> None:
    months, history = _history()
    label, frame = months[2]
    fit = fit_period(STUDY, frame, history["covariates"], label)
    assert fit.verdicts["estimation"].status == "undefined"
    assert "pre-period placebo" in fit.frames["effects"]["error"].iloc[0]
    assert pre_trend_verdict(STUDY, history, fit, label)[0].status == "undefined"
    ab = load_study(PROJECT_ROOT / "studies" / "ab_checkout.yaml")
    verdict, _ = pre_trend_verdict(ab, history, fit, label)
    assert verdict.status == "undefined" and verdict.reason.startswith("not assessed")
    assert pre_trend_severities(STUDY) == {}
    design = STUDY.design.model_copy(update={"pre_trend_acknowledged": "known refit"})
    assert pre_trend_severities(STUDY.model_copy(update={"design": design})) == {"pre_trend": "WARN"}
