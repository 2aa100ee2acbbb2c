"""The study file's ``outcome_unit``: what the memo writes effects in; it changes no batch's rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from resources.study import StudyConfigError, load_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _write(tmp_path: Path, name: str, **changes: object) -> Path:
    data = yaml.safe_load((STUDIES / f"{name}.yaml").read_text()) | changes
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_shipped_studies_state_their_scale() -> None:
    assert load_study(STUDIES / "ab_checkout.yaml").outcome_unit == "USD"
    outreach = load_study(STUDIES / "retention_outreach.yaml")
    assert outreach.outcome_type == "binary" and outreach.outcome_unit is None  # percentage points


def test_the_unit_is_tidied_and_changes_no_batch_rules(tmp_path: Path) -> None:
    study = load_study(STUDIES / "ab_checkout.yaml")
    minutes = load_study(_write(tmp_path, "ab_checkout", outcome_unit="  minutes  of  use "))
    assert minutes.outcome_unit == "minutes of use"
    assert minutes.batch_rules_hash == study.batch_rules_hash  # no batch is re-run for a new unit
    assert minutes.config_hash != study.config_hash


@pytest.mark.parametrize(
    ("name", "unit", "rule"),
    [
        ("retention_outreach", "accounts", "a binary outcome's effect is reported in percentage points"),
        ("ab_checkout", " ", "must be a short unit name of 1 to 40 characters"),
        ("ab_checkout", "x" * 41, "must be a short unit name of 1 to 40 characters"),
    ],
)
def test_a_bad_unit_names_the_file_the_key_and_the_rule(
    tmp_path: Path, name: str, unit: str, rule: str
) -> None:
    path = _write(tmp_path, name, outcome_unit=unit)
    with pytest.raises(StudyConfigError, match=rf"{re.escape(str(path))}: outcome_unit: {re.escape(rule)}"):
        load_study(path)
