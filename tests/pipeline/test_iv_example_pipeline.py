"""The shipped encouragement study (studies/encouragement_iv.yaml) through the real pipeline.

Its first eight months, as the demo lands them: the weak-instrument gate keeps out the month whose
e-mails bounced and alerts on it, the other months' LATEs are fused into a posterior that covers
the simulated compliers' effect, and the memo says what a LATE is, names the instrument and
reports the latest batch's first-stage F and Anderson-Rubin interval.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from orchestration.runner import run_landed_batches
from scripts.example_encouragement import (
    BOUNCED_MONTH,
    COMPLIER_EFFECT,
    SEED,
    encouragement_months,
)
from tests.pipeline_support import Project, example_study, write_batch

STUDY = "encouragement_iv"


def test_the_encouragement_study_gates_the_bounced_month_and_covers_the_late(tmp_path: Path) -> None:
    study = example_study(STUDY)
    assert study.estimand == "LATE" and study.design.kind == "iv"
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    months = encouragement_months(np.random.default_rng(SEED), months=BOUNCED_MONTH)
    for label, batch in months:
        write_batch(project.landing(STUDY), label, batch)
    results = run_landed_batches(project.defs, project.instance, project.studies, backfill=True)
    assert results and all(r.success for r in results)

    bounced = f"{months[-1][0]}-01"
    steps = project.steps(STUDY).set_index("batch")
    steps.index = steps.index.astype(str)
    assert len(steps) == BOUNCED_MONTH
    assert list(steps.index[steps["excluded"]]) == [bounced]  # only the bounced month is kept out
    reason = steps.loc[bounced, "exclusion_reason"]
    assert "weak_instrument" in reason and "effective F" in reason, reason

    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    verdicts["partition_key"] = verdicts["partition_key"].astype(str)
    verdicts["check"] = verdicts["check_name"].str.removeprefix("check_batch_effect_")
    weak = verdicts[verdicts["check"] == "weak_instrument"].set_index("partition_key")
    assert weak.loc[bounced, "status"] == "fail" and weak.loc[bounced, "value"] < 10
    assert (weak.drop(index=bounced)["status"] == "pass").all()
    assert (weak.drop(index=bounced)["value"] > 100).all()  # about 30% compliers in 3,000 rows
    sign = verdicts[verdicts["check"] == "first_stage_sign"]
    assert not (sign["status"] == "fail").any()  # the collapse is no significant flip: no warning

    onsets = [a for a in project.alerts() if a.kind == "onset" and a.check_name.endswith("weak_instrument")]
    # One alert for the study and one for its overdraft-fees guardrail, a study of its own on the same batches.
    assert sorted((a.study, a.partition_key) for a in onsets) == [
        (STUDY, bounced),
        (f"{STUDY}__overdraft_fees", bounced),
    ]

    last = steps.iloc[-1]  # the bounced month: predict-only, the posterior of the seven good months
    assert last["ci_lower"] <= COMPLIER_EFFECT <= last["ci_upper"], last.to_dict()
    assert last["ci_upper"] - last["ci_lower"] < 30  # informative: each month's SE is about 12 USD

    memo = (project.data / "reports" / STUDY / "memo.md").read_text()
    assert "LATE" in memo and "compliers" in memo
    assert "the instrument (encouraged)" in memo  # by name
    instrument = memo.split("### Instrument and compliers", 1)[1].split("###", 1)[0]
    f_bounced = weak.loc[bounced, "value"]
    assert f"**Latest batch ({bounced}):** effective first-stage F {f_bounced:.3g}" in instrument
    assert "it fails, so the batch is kept out of the posterior" in instrument
    assert "Anderson-Rubin 95% interval: (-inf, inf) USD" in instrument  # the whole line, said in words
    assert "Unmeasured confounding of the treatment and the outcome is allowed" in memo
