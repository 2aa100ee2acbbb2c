"""A study with one guardrail through the real pipeline: its own posterior and checks, in the primary's memo.

The primary (order value) and the guardrail (a refund flag) come from the same landed files; one
landing tick runs both per batch, the guardrail as the study ``<study>__refunded``.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assimilate.report.guardrails import harm_verdict
from orchestration.runner import batch_and_posterior_assets, run_landed_batches
from resources.study import StudyConfig, load_study
from tests.pipeline_support import Project, ab_batch, write_batch

ROOT = Path(__file__).resolve().parents[2]
NAME, GUARD = "ab_guarded", "ab_guarded__refunded"
GUARDRAIL = """
guardrails:
  - {outcome: refunded, outcome_type: binary, desired_direction: decrease, margin: 0.02}
"""


def guarded_study(tmp_path: Path) -> StudyConfig:
    text = (ROOT / "studies" / "ab_checkout.yaml").read_text()
    for old, new in [("name: ab_checkout", f"name: {NAME}"), ("landing_folder: ab_checkout", "")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(text + GUARDRAIL)
    return load_study(path)


def with_refunds(seed: int) -> pd.DataFrame:
    """An A/B batch plus a refund flag (5% in both arms) drawn from its own generator."""
    frame = ab_batch(seed, n=400)
    rng = np.random.default_rng(1000 + seed)
    return frame.assign(refunded=rng.binomial(1, 0.05, size=len(frame)))


def test_a_guardrail_has_its_own_posterior_and_checks_and_the_primary_memo_reports_it(
    tmp_path: Path,
) -> None:
    study = guarded_study(tmp_path)
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    for month in (1, 2, 3):
        write_batch(project.landing(NAME), f"2025-0{month}", with_refunds(month))
    results = project.tick()
    assert len(results) == 3 and all(r.success for r in results)  # one run per batch runs both studies

    # Its own warehouse tables: three batches estimated on the refund flag, and its own posterior.
    effects = project.warehouse.read_table(GUARD, "batch_effects")
    assert sorted(effects["partition_key"].astype(str).unique()) == ["2025-01-01", "2025-02-01", "2025-03-01"]
    steps = project.steps(GUARD)
    assert len(steps) == 3 and not steps["excluded"].astype(bool).any()
    primary_steps = project.steps(NAME)
    assert not np.allclose(steps["posterior_mean"], primary_steps["posterior_mean"])

    # Its own checks, evaluated on its own assets: each check of its raw batch once per batch.
    instance = project.instance
    graph = project.defs.resolve_asset_graph()
    raw_checks = [k for k in graph.asset_check_keys if k.asset_key == dg.AssetKey([GUARD, "raw_batch"])]
    assert raw_checks
    for check in raw_checks:
        history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
        assert len(history) == 3, check

    # The primary's report is written after the guardrail's posterior, in the same run.
    posterior, report = (
        instance.fetch_materializations(dg.AssetKey(path), limit=1).records[0]
        for path in ([GUARD, "effect_posterior"], [NAME, "posterior_report"])
    )
    assert posterior.run_id == report.run_id == results[-1].run_id
    assert posterior.storage_id < report.storage_id

    # The primary's memo: the guardrail's 95% interval (k = 1) from its stored posterior, and the verdict.
    memo = (project.data / "reports" / NAME / "memo.md").read_text()
    assert "## Guardrails" in memo
    row = next(line for line in memo.splitlines() if line.startswith(f"| refunded ({GUARD})"))
    mean, sd = float(steps["posterior_mean"].iloc[-1]), float(np.sqrt(steps["posterior_var"].iloc[-1]))
    lower, upper = mean - 1.959963984540054 * sd, mean + 1.959963984540054 * sd
    shown = re.search(r"\[(-?[0-9.]+), (-?[0-9.]+)\] percentage points \(95%\)", row)
    assert shown is not None, row
    decimals = len(shown.group(1).split(".")[1]) if "." in shown.group(1) else 0
    for text, value in zip(shown.groups(), (lower, upper), strict=True):
        assert abs(float(text) - 100 * value) <= 0.5 * 10**-decimals + 1e-9
    verdict = harm_verdict(lower, upper, desired_direction="decrease", margin=0.02)
    assert row.rstrip().endswith(f"| {verdict} |")
    assert "3 of 3" in row
    # The guardrail's own memo, as every study has.
    assert (project.data / "reports" / GUARD / "memo.md").exists()
    batch_assets, posterior_assets = batch_and_posterior_assets(project.defs, study)
    assert dg.AssetKey([GUARD, "raw_batch"]) in batch_assets
    assert dg.AssetKey([GUARD, "effect_posterior"]) in posterior_assets


def test_a_backfilled_range_runs_the_guardrail_once_over_the_range(tmp_path: Path) -> None:
    study = guarded_study(tmp_path)
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    for month in (1, 2):
        write_batch(project.landing(NAME), f"2025-0{month}", with_refunds(month))
    results = run_landed_batches(project.defs, project.instance, [study], cursors={}, backfill=True)
    assert len(results) == 1 and results[0].success
    assert len(project.steps(GUARD)) == 2 and len(project.steps(NAME)) == 2
    memo = (project.data / "reports" / NAME / "memo.md").read_text()
    assert "2 of 2" in next(line for line in memo.splitlines() if line.startswith(f"| refunded ({GUARD})"))
