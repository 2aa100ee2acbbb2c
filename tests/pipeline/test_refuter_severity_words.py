"""A refuter the study makes ERROR is described, alerted and written in the memo as ERROR, not as the
catalogue's WARN: its check's description says a failure keeps the batch out, the alert carries
ERROR, and the memo says the batch was excluded because of it (not "a warning")."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assimilate.diagnostics import catalogue
from tests.pipeline.test_refuter_checks import BROKEN, batch, refuted_study
from tests.pipeline_support import Project, write_batch

CHECK = "check_batch_effect_negative_control_outcome"


def test_an_error_refuter_is_error_in_its_description_alert_and_memo(tmp_path: Path) -> None:
    study = refuted_study("ERROR")
    assert catalogue.check_spec("negative_control_outcome").severity == "WARN"  # the catalogue's default
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    graph = project.defs.resolve_asset_graph()
    specs = {
        key.name: graph.get_check_spec(key).description or ""
        for key in graph.asset_check_keys
        if key.asset_key.path[0] == "ab_checkout"
    }
    assert catalogue.ERROR_CONSEQUENCE in specs[CHECK]
    assert catalogue.WARN_CONSEQUENCE in specs["check_batch_effect_placebo_treatment"]  # left at WARN

    landing = project.landing("ab_checkout")
    for seed, label in enumerate(("2025-01", "2025-02", "2025-03"), start=1):
        write_batch(landing, label, batch(seed, broken=label == BROKEN[:7]))
    assert all(r.success for r in project.tick())

    (alert,) = [a for a in project.alerts() if a.kind == "onset" and a.partition_key == BROKEN]
    assert alert.severity == "ERROR" and f"{CHECK} (ERROR)" in alert.message

    memo = (project.data / "reports" / "ab_checkout" / "memo.md").read_text()
    (line,) = [text for text in memo.splitlines() if f"Batch {BROKEN}:" in text]
    assert "excluded from the posterior" in line and "Negative-control outcome" in line
    assert "(a warning)" not in line.split("also")[0]  # the refuter itself is not called a warning
