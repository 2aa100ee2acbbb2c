"""A study's calibration_audit key in the shell: validated at load with the key named, left out of the
hashes when unset, and out of the batch rules when set (it judges the fused history, not a batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assimilate.diagnostics.plan_audit import audit_plan
from checks.calibration import audit_spec, audit_verdicts
from checks.results import ERROR, WARN
from orchestration.instance import PROJECT_ROOT
from resources.study import StudyConfig, StudyConfigError, load_study

SHIPPED = PROJECT_ROOT / "studies" / "ab_checkout.yaml"


def study(audit: Any) -> StudyConfig:
    data = load_study(SHIPPED).model_dump()
    return StudyConfig.model_validate({**data, "calibration_audit": audit})


def test_unset_it_leaves_both_hashes_and_set_it_changes_no_batch_rule() -> None:
    shipped = load_study(SHIPPED)
    assert shipped.calibration_audit is None
    assert shipped.batch_rules_hash == "83ad6f820b5e4572"  # the hash before the key existed
    unset = study(None)
    assert (unset.batch_rules_hash, unset.config_hash) == (shipped.batch_rules_hash, shipped.config_hash)
    audited = study({"placebos": 10})
    assert audited.batch_rules_hash == shipped.batch_rules_hash  # no batch is re-run for it
    assert audited.config_hash != shipped.config_hash  # the audit trail records the setting
    assert study({"placebos": 10, "refuse": True}).config_hash != audited.config_hash


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("calibration_audit: {placebos: 1}", r"calibration_audit\.placebos: must be >= 2 \(got 1\)"),
        ("calibration_audit: {refuse: maybe}", r"calibration_audit\.refuse: "),
        ("calibration_audit: {min_batch: 6}", r"calibration_audit\.min_batch: "),
        ("calibration_audit: {tolerance: 0.7}", r"calibration_audit\.tolerance: "),
    ],
)
def test_a_bad_setting_is_a_load_error_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(SHIPPED.read_text() + line + "\n")
    with pytest.raises(StudyConfigError, match=message):
        load_study(path)


def test_the_checks_severity_and_description_follow_refuse() -> None:
    key = dg.AssetKey(["ab_checkout", "effect_posterior"])
    warned, refused = study({"refuse": False}), study({"refuse": True})
    assert "still enter the posterior" in (audit_spec(warned, key).description or "")
    assert "keeps every batch of the primary estimator out" in (audit_spec(refused, key).description or "")
    assert audit_spec(refused, key).name == "check_effect_posterior_calibration_audit"
    assert audit_verdicts(study(None), None) == {}
    with pytest.raises(ValueError, match="no calibration_audit section"):
        audit_spec(study(None), key)
    for config, level in ((warned, WARN), (refused, ERROR)):
        found = audit_plan({}, config)
        assert audit_verdicts(config, found)["calibration_audit"][1] == level
