"""A study's own estimators are imported when it loads; a target that fails is a load error naming it.

The team modules are written to tmp_path and put on sys.path for the test, as a team's installed
package would be; the CUPED example comes from examples/ the same way.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from checks.returning_units import batch_returning_units
from orchestration.study_folder import scan_study_folder
from resources.study import StudyConfigError, load_study

ROOT = Path(__file__).resolve().parents[2]
STUDY = (ROOT / "studies" / "ab_checkout.yaml").read_text()
TEAM = """
def estimate(data, *, treatment, outcome, covariates, estimand, rng):
    raise NotImplementedError

def no_rng(data, *, treatment, outcome, covariates, estimand):
    raise NotImplementedError

NOT_A_FUNCTION = 3
"""


@pytest.fixture(autouse=True)
def team_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "modules"
    package.mkdir()
    (package / "team_ce_module.py").write_text(TEAM)
    (package / "team_ce_broken.py").write_text("raise RuntimeError('no licence server')\n")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.delitem(sys.modules, "team_ce_module", raising=False)


def study_with(tmp_path: Path, target: str, *, name: str = "cuped", primary: str | None = None) -> Path:
    text = STUDY.replace(
        "primary_estimator: regression_adjustment\nestimators: [difference_in_means, regression_adjustment, ipw, aipw]",
        f'custom_estimators: {{{name}: "{target}"}}\nprimary_estimator: {primary or name}\n'
        f"estimators: [{primary or name}, difference_in_means]",
    )
    assert "custom_estimators" in text
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def test_a_custom_estimator_is_imported_when_the_study_loads(tmp_path: Path) -> None:
    study = load_study(study_with(tmp_path, "team_estimators.cuped:estimate"))
    assert study.primary_estimator == "cuped"
    assert study.custom_functions["cuped"].__module__ == "team_estimators.cuped"
    copied = study.model_copy(update={"seed": 1})  # the pipeline's copies keep the functions
    assert copied.custom_functions == study.custom_functions


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("team_ce_missing.mod:estimate",
         "custom_estimators.cuped: 'team_ce_missing.mod:estimate' cannot be imported: ModuleNotFoundError: "
         "No module named 'team_ce_missing'"),
        ("team_ce_broken:estimate",
         "custom_estimators.cuped: 'team_ce_broken:estimate' cannot be imported: RuntimeError: no licence server"),
        ("team_ce_module:estimat",
         "custom_estimators.cuped: 'team_ce_module:estimat' names nothing: module 'team_ce_module' has no "
         "attribute 'estimat'"),
        ("team_ce_module:NOT_A_FUNCTION",
         "custom_estimators.cuped: 'team_ce_module:NOT_A_FUNCTION' is a int, not a function"),
        ("team_ce_module:no_rng",
         "custom_estimators.cuped: 'team_ce_module:no_rng' does not accept the keyword(s) 'rng'; the contract is"),
        ("team_ce_module", 'custom_estimators.cuped: must be a function as "package.module:function"'),
    ],
)  # fmt: skip
def test_a_target_that_fails_is_a_load_error_naming_the_key_the_target_and_why(
    tmp_path: Path, target: str, expected: str
) -> None:
    path = study_with(tmp_path, target)
    with pytest.raises(StudyConfigError) as raised:
        load_study(path)
    assert any(line.startswith(f"{path}: {expected}") for line in str(raised.value).splitlines()), (
        raised.value
    )


def test_a_custom_name_may_not_shadow_a_built_in(tmp_path: Path) -> None:
    path = study_with(tmp_path, "team_ce_module:estimate", name="aipw", primary="difference_in_means")
    with pytest.raises(
        StudyConfigError, match=r"custom_estimators\.aipw: 'aipw' is a built-in estimator's name"
    ):
        load_study(path)


def test_a_broken_custom_estimator_breaks_only_its_study(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    study_with(tmp_path, "team_ce_missing:estimate").rename(folder / "broken.yaml")
    (folder / "good.yaml").write_text((ROOT / "studies" / "retention_outreach.yaml").read_text())
    scanned = scan_study_folder(folder)
    assert [s.name for s in scanned.studies] == ["retention_outreach"]
    assert "custom_estimators.cuped: 'team_ce_missing:estimate' cannot be imported" in scanned.broken[0].error


def test_the_batch_rules_hash_includes_the_custom_estimators_and_keeps_the_others(tmp_path: Path) -> None:
    # The hashes the example studies had before custom estimators existed (their batches are not re-run).
    assert load_study(ROOT / "studies" / "ab_checkout.yaml").batch_rules_hash == "83ad6f820b5e4572"
    # (retention_outreach's changed when the example gained refuters and segments: its batches re-run.)
    assert load_study(ROOT / "studies" / "n_of_1_sleep.yaml").batch_rules_hash == "0d2a3ad86121060f"
    cuped = load_study(study_with(tmp_path, "team_estimators.cuped:estimate"))
    same_function = load_study(
        study_with(tmp_path, "team_ce_module:estimate", name="cuped", primary="cuped")
    ).batch_rules_hash
    assert cuped.batch_rules_hash != same_function  # another target: another rule for every batch


def test_returning_units_say_why_a_custom_estimate_without_influence_values_is_not_assessed(
    tmp_path: Path,
) -> None:
    study = load_study(study_with(tmp_path, "team_estimators.cuped:estimate"))
    empty = pd.DataFrame({"row_index": [], "unit_id": [], "influence": []})
    verdict, _ = batch_returning_units(study, empty, empty, "2025-01-01")
    assert verdict.status == "undefined"
    assert verdict.reason.startswith(
        "batch 2025-01-01: not assessed: the custom estimator 'cuped' gave no per-unit influence values"
    )


def test_the_config_hash_of_a_study_without_custom_estimators_leaves_the_key_out() -> None:
    study = load_study(ROOT / "studies" / "ab_checkout.yaml")
    data = study.model_dump(mode="json")
    assert data.pop("custom_estimators") == {}
    # The other optional sections, left out the same way when unset.
    assert [data.pop(key) for key in ("refuters", "segments", "calibration_audit", "weights")] == [None] * 4
    assert data.pop("guardrails") == []
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert study.config_hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # The audit's hash as before any optional section existed.
    assert study.config_hash == "04d78adff5574e0fe47bcc6a4ac8b622d99c6d6705a2f07d76187ead0b5156c4"
