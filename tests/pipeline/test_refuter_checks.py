"""Refuters as checks on batch_effect: a study that configures the placebo and the negative control,
with one batch whose assignment an unmeasured trait broke (it moves the treatment, the outcome and the
negative control): that batch's negative-control check fails, WARN admits it, ERROR keeps it out."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.study import StudyConfig
from tests.pipeline_support import Project, example_study, write_batch

BROKEN = "2025-02-01"


def batch(seed: int, *, broken: bool = False, n: int = 600) -> pd.DataFrame:
    """A 50/50 A/B batch with a negative-control outcome ``nc`` the treatment never moves; ``broken``:
    an unmeasured trait ``u`` decides the arm (the split stays 50/50) and raises the outcome and ``nc``."""
    rng = np.random.default_rng(seed)
    x, u = rng.standard_normal(n), rng.standard_normal(n)
    d = (u + 0.5 * rng.standard_normal(n) > 0).astype(int) if broken else rng.binomial(1, 0.5, n)
    y = 0.5 * d + 0.2 * x + 0.5 * u + rng.normal(0, 0.3, n)
    nc = 0.5 * u + rng.normal(0, 0.3, n)
    ids = [f"s{seed}-{i}" for i in range(n)]
    return pd.DataFrame({"unit_id": ids, "x": x, "treatment": d, "outcome": y, "nc": nc})


def refuted_study(severity: str) -> StudyConfig:
    data = example_study("ab_checkout").model_dump()
    data["causal_graph"]["roles"]["nc"] = "negative_control"
    data["refuters"] = {
        "placebo_treatment": {"n_placebos": 4},
        "negative_control_outcome": {"severity": severity},
    }
    return StudyConfig.model_validate(data)


@pytest.mark.parametrize("severity", ["WARN", "ERROR"])
def test_a_failed_negative_control_warns_or_excludes_as_the_study_says(tmp_path: Path, severity: str) -> None:
    study = refuted_study(severity)
    assert study.batch_rules_hash != example_study("ab_checkout").batch_rules_hash
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    landing = project.landing("ab_checkout")
    for seed, label in enumerate(("2025-01", "2025-02", "2025-03"), start=1):
        write_batch(landing, label, batch(seed, broken=label == BROKEN[:7]))
    results = project.tick()
    assert results and all(r.success for r in results)

    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_batch_effect")
    verdicts["partition_key"] = verdicts["partition_key"].astype(str)
    verdicts["check"] = verdicts["check_name"].str.removeprefix("check_batch_effect_")
    rows = verdicts.set_index(["partition_key", "check"])
    for key in ("2025-01-01", BROKEN, "2025-03-01"):
        assert rows.loc[(key, "placebo_treatment"), "status"] == "pass"  # randomized: no placebo bias
        assert rows.loc[(key, "placebo_treatment"), "severity"] == "WARN"
        assert rows.loc[(key, "negative_control_outcome"), "severity"] == severity
        expected = "fail" if key == BROKEN else "pass"
        assert rows.loc[(key, "negative_control_outcome"), "status"] == expected
    assert not {"random_common_cause", "data_subsets"} & set(verdicts["check"])  # not configured

    evaluations = [
        e
        for r in results
        for e in r.get_asset_check_evaluations()
        if e.check_name == "check_batch_effect_negative_control_outcome" and not e.passed
    ]
    assert len(evaluations) == 1
    metadata = evaluations[0].metadata
    assert {"effect", "scale", "statistic", "p_value", "replicates", "level", "null_hypothesis"} <= set(
        metadata
    )
    assert metadata["effect"].value > 0 and metadata["p_value"].value < 0.05

    steps = project.steps("ab_checkout").set_index("batch")
    steps.index = steps.index.astype(str)
    assert bool(steps.loc[BROKEN, "excluded"]) is (severity == "ERROR")
    assert not steps.loc[["2025-01-01", "2025-03-01"], "excluded"].any()
