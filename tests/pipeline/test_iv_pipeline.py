"""An instrumental-variables study through the pipeline: 2SLS per batch, the weak-instrument gate,
the first stage's sign across batches, a posterior over the batches' LATEs, a memo that says what a
LATE is."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assimilate.estimators.iv_diagnostics import IV_METHOD
from resources.study import StudyConfig
from tests.pipeline_support import Project, example_study, write_batch

LATE = 2.0


def encouragement_batch(
    seed: int, *, compliers: float, defiers: bool = False, n: int = 1_500
) -> pd.DataFrame:
    """An offer (the instrument) that moves take-up for a share of compliers; an unmeasured trait
    makes some take it up anyway and raises the outcome, so the naive comparison is biased."""
    rng = np.random.default_rng(seed)
    offer, x, u = rng.binomial(1, 0.5, n), rng.standard_normal(n), rng.standard_normal(n)
    kind = rng.choice(["complier", "always", "never"], size=n, p=[compliers, 0.15, 0.85 - compliers])
    took_up = np.where(kind == "always", 1, np.where(kind == "complier", 1 - offer if defiers else offer, 0))
    took_up = np.where((kind == "never") & (u > 1.5), 1, took_up)  # the trait also pushes take-up
    outcome = LATE * took_up + 0.5 * x + u + rng.standard_normal(n)
    return pd.DataFrame(
        {
            "unit_id": [f"u{seed}-{i}" for i in range(n)],
            "x": x,
            "offer": offer,
            "treatment": took_up,
            "outcome": outcome,
        }
    )


def iv_study() -> StudyConfig:
    """The checkout study's file, turned into an encouragement design (validated as a study file is)."""
    data = example_study("ab_checkout").model_dump()
    data["estimand_card"]["estimand"] = "LATE"
    data["thresholds"] = {k: v for k, v in data["thresholds"].items() if not k.startswith("srm")}
    return StudyConfig.model_validate(
        {
            **data,
            "design": {"kind": "iv", "instrument": ["offer"], "min_first_stage_f": 10.0},
            "primary_estimator": IV_METHOD,
            "estimators": [IV_METHOD],
            "causal_graph": None,
        }
    )


def test_an_iv_study_gates_weak_instruments_and_fuses_the_lates(tmp_path: Path) -> None:
    study = iv_study()
    assert study.estimand == "LATE"
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    landing = project.landing("ab_checkout")
    write_batch(landing, "2025-01", encouragement_batch(1, compliers=0.5))
    write_batch(landing, "2025-02", encouragement_batch(2, compliers=0.5))
    write_batch(landing, "2025-03", encouragement_batch(3, compliers=0.01))  # the offer barely moves anyone
    write_batch(
        landing, "2025-04", encouragement_batch(4, compliers=0.5, defiers=True)
    )  # the offer now deters
    results = project.tick()
    assert results and all(r.success for r in results)

    effects = project.warehouse.read_table("ab_checkout", "batch_effects").set_index("partition_key")
    effects.index = effects.index.astype(str)
    assert set(effects["method"]) == {IV_METHOD}
    for batch in ("2025-01-01", "2025-02-01"):
        row = effects.loc[batch]
        assert abs(row["estimate"] - LATE) < 4 * row["std_error"]
        assert '"estimand": "LATE"' in row["diagnostics_json"]

    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_batch_effect")
    verdicts["partition_key"] = verdicts["partition_key"].astype(str)
    verdicts["check"] = verdicts["check_name"].str.removeprefix("check_batch_effect_")
    status = verdicts.set_index(["partition_key", "check"])["status"]
    assert status[("2025-01-01", "weak_instrument")] == "pass"
    assert status[("2025-03-01", "weak_instrument")] == "fail"
    assert status[("2025-01-01", "first_stage_sign")] == "undefined"  # nothing earlier to compare with
    assert status[("2025-02-01", "first_stage_sign")] == "pass"
    assert status[("2025-04-01", "first_stage_sign")] == "fail"
    assert not {"overlap", "balance"} & set(verdicts["check"])  # an IV design has no propensity gates

    steps = project.steps("ab_checkout").set_index("batch")
    steps.index = steps.index.astype(str)
    assert bool(steps.loc["2025-03-01", "excluded"])
    assert "effective F" in steps.loc["2025-03-01", "exclusion_reason"]
    assert not steps.loc[["2025-01-01", "2025-02-01", "2025-04-01"], "excluded"].any()  # a WARN admits

    memo = (project.data / "reports" / "ab_checkout" / "memo.md").read_text()
    assert "LATE" in memo and "compliers" in memo
    assert "instrument strength" in memo
