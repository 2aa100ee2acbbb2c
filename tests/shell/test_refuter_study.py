"""A study's refuters key in the shell: its batch rules hash, the negative control as a typed column,
the study's severity over the catalogue's, and a load error that names the refuter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from assimilate.diagnostics import catalogue
from checks.covariates import covariate_schema, split_valid_rows
from checks.refutations import refuter_details, refuter_severities
from checks.results import ERROR, WARN, check_spec, severity
from checks.typed_batch import required_columns
from orchestration.instance import PROJECT_ROOT
from resources.study import StudyConfig, StudyConfigError, load_study


def study(refuters: dict[str, Any] | None, **changes: Any) -> StudyConfig:
    data = load_study(PROJECT_ROOT / "studies" / "ab_checkout.yaml").model_dump()
    data["causal_graph"]["roles"]["nc"] = "negative_control"
    return StudyConfig.model_validate({**data, "refuters": refuters, **changes})


def test_a_study_without_refuters_keeps_its_hash_and_the_key_changes_it() -> None:
    shipped = load_study(PROJECT_ROOT / "studies" / "ab_checkout.yaml")
    assert shipped.refuters is None
    assert shipped.batch_rules_hash == "83ad6f820b5e4572"  # its hash before the key existed
    warn = study({"negative_control_outcome": {}})
    error = study({"negative_control_outcome": {"severity": "ERROR"}})
    assert len({shipped.batch_rules_hash, warn.batch_rules_hash, error.batch_rules_hash}) == 3


def test_the_negative_control_is_a_required_typed_column() -> None:
    configured = study({"negative_control_outcome": {}})
    assert "nc" in required_columns(configured) and "nc" not in required_columns(study(None))
    assert "nc" in covariate_schema(configured).columns
    raw = pd.DataFrame(
        {
            "unit_id": ["a", "b", "c"],
            "x": ["0.1", "0.2", "0.3"],
            "treatment": ["0", "1", "1"],
            "outcome": ["1", "2", "3"],
            "nc": ["0.5", "oops", "1.5"],
        }
    )
    split = split_valid_rows(raw, configured)
    assert list(split.valid["nc"]) == [0.5, 1.5]
    assert split.quarantine[["column", "rule"]].values.tolist() == [["nc", "value must be a number"]]
    missing = split_valid_rows(raw.drop(columns="nc"), configured)
    assert missing.missing_columns == ("nc",) and "negative_control" in missing.missing_reason


def test_the_study_sets_each_refuters_severity_and_its_description_says_what_a_failure_does() -> None:
    configured = study({"placebo_treatment": {}, "negative_control_outcome": {"severity": "ERROR"}})
    levels = refuter_severities(configured)
    assert levels == {"placebo_treatment": "WARN", "negative_control_outcome": "ERROR"}
    assert severity("negative_control_outcome") == WARN  # the catalogue's
    assert (
        severity("negative_control_outcome", levels) == ERROR
        and severity("placebo_treatment", levels) == WARN
    )
    assert severity("balance", levels) == ERROR  # the others keep the catalogue's
    key = dg.AssetKey(["ab_checkout", "batch_effect"])
    spec = check_spec(key, "negative_control_outcome", "x", level="ERROR")
    assert catalogue.ERROR_CONSEQUENCE in (spec.description or "")
    assert catalogue.check_spec("negative_control_outcome").question in (spec.description or "")
    assert "n_placebos = 10" in refuter_details(configured)["placebo_treatment"]


def test_a_refuter_the_study_cannot_run_is_a_load_error_naming_it(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "studies" / "ab_checkout.yaml").read_text()
    path = tmp_path / "x.yaml"
    path.write_text(text + "refuters: {negative_control_outcome: {}}\n")
    with pytest.raises(
        StudyConfigError, match=r"refuters\.negative_control_outcome: needs a causal_graph role"
    ):
        load_study(path)
    path.write_text(text + "refuters: {placebo_treatment: {n_placebos: 1}}\n")
    with pytest.raises(StudyConfigError, match=r"refuters\.placebo_treatment\.n_placebos"):
        load_study(path)
