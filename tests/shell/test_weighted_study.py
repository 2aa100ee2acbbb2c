"""A study's ``weights:`` key in the shell: its hashes, its load rules, and the row rules of the weights column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest

from checks.covariates import covariate_schema, split_valid_rows
from checks.typed_batch import MISSING, NUMBER, required_columns
from orchestration.instance import PROJECT_ROOT
from resources import study as study_module
from resources.study import StudyConfig, StudyConfigError, load_study

SHIPPED = PROJECT_ROOT / "studies" / "ab_checkout.yaml"


def weighted(**changes: Any) -> StudyConfig:
    data = load_study(SHIPPED).model_dump()
    return StudyConfig.model_validate({**data, "weights": "w", **changes})


def _dumped(study: StudyConfig, attribute: str) -> dict[str, Any]:
    """The data a hash of ``study`` serialises (json.dumps' argument)."""
    with mock.patch.object(study_module.json, "dumps", wraps=json.dumps) as dumps:
        getattr(study, attribute)
    return dumps.call_args.args[0]


def test_a_study_without_weights_keeps_its_hashes_and_the_key_changes_them() -> None:
    shipped = load_study(SHIPPED)
    assert shipped.weights is None
    assert shipped.batch_rules_hash == "83ad6f820b5e4572"  # its hash before the key existed
    assert "weights" not in _dumped(shipped, "batch_rules_hash")
    assert "weights" not in _dumped(shipped, "config_hash")
    study = weighted()
    assert _dumped(study, "batch_rules_hash")["weights"] == "w"  # another column: every batch re-run
    assert study.batch_rules_hash != shipped.batch_rules_hash
    assert study.config_hash != shipped.config_hash
    assert weighted(weights="v").batch_rules_hash != study.batch_rules_hash


def test_the_weights_column_is_required_and_a_bad_weight_quarantines_its_row_with_the_rule() -> None:
    study = weighted()
    assert "w" in required_columns(study) and "w" not in required_columns(load_study(SHIPPED))
    assert "w" in covariate_schema(study).columns
    raw = pd.DataFrame(
        {
            "unit_id": [f"u{i}" for i in range(7)],
            "x": ["0.1"] * 7,
            "treatment": ["0", "1"] * 3 + ["1"],
            "outcome": ["1"] * 7,
            "w": ["2.5", "-1", "0", "", "inf", "heavy", "1"],
        }
    )
    split = split_valid_rows(raw, study)
    assert list(split.valid["w"]) == [2.5, 1.0]
    assert split.quarantine[["row_index", "column", "rule"]].values.tolist() == [
        [1, "w", "sampling weight 'w' must be > 0"],
        [2, "w", "sampling weight 'w' must be > 0"],
        [3, "w", MISSING],
        [4, "w", "value must be finite"],
        [5, "w", NUMBER],
    ]
    missing = split_valid_rows(raw.drop(columns="w"), study)
    assert missing.missing_columns == ("w",)
    assert missing.missing_reason.startswith("weights: column 'w' is not in the file")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weights": "x"}, "weights: column 'x' is already a covariate"),
        ({"weights": "treatment"}, "weights: column 'treatment' is already the treatment"),
        (
            {"refuters": {"placebo_treatment": {}}},
            "refuters: refits the primary estimator without the sampling",
        ),
        (
            {"standard_errors": "HC1", "estimators": ["lin_interacted", "regression_adjustment"]},
            "standard_errors: HC1 needs an OLS fit; weighted, 'lin_interacted'",
        ),
    ],
)
def test_a_weighted_study_that_would_run_something_unweighted_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        weighted(**changes)


def test_a_custom_estimator_without_weights_in_its_contract_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "examples"))
    text = SHIPPED.read_text().replace(
        "primary_estimator: regression_adjustment\nestimators: [difference_in_means, regression_adjustment, ipw, aipw]",
        'custom_estimators: {cuped: "team_estimators.cuped:estimate"}\nprimary_estimator: cuped\n'
        "estimators: [cuped, difference_in_means]\nweights: w",
    )
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(
        StudyConfigError,
        match=r"weights: estimator 'cuped' \(custom_estimators\) receives no sampling weights",
    ):
        load_study(path)
