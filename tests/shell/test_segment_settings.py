"""A study's effect modifiers and its ``segments:`` key in the shell: validated at load with the key
named, left out of both hashes when unset, and the checks' descriptions and severities as the study says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from checks.results import ERROR, WARN
from checks.segments import has_segments, posterior_level, segment_check_spec
from orchestration.instance import PROJECT_ROOT
from resources.study import StudyConfig, StudyConfigError, load_study

AB = PROJECT_ROOT / "studies" / "ab_checkout.yaml"
OUTREACH = PROJECT_ROOT / "studies" / "retention_outreach.yaml"


def ab_study(**changes: Any) -> StudyConfig:
    data = load_study(AB).model_dump()
    return StudyConfig.model_validate({**data, **changes})


def with_modifier(**changes: Any) -> StudyConfig:
    """ab_checkout with x an effect modifier (its role was precision)."""
    graph = {"edges": [("treatment", "outcome"), ("x", "outcome")], "roles": {"x": "effect_modifier"}}
    return ab_study(causal_graph=graph, **changes)


def test_unset_it_leaves_both_hashes_and_set_it_changes_them() -> None:
    shipped = load_study(AB)
    assert shipped.segments is None and not has_segments(shipped)
    assert shipped.batch_rules_hash == "83ad6f820b5e4572"  # the hash before the key existed
    unset = ab_study(segments=None)
    assert (unset.batch_rules_hash, unset.config_hash) == (shipped.batch_rules_hash, shipped.config_hash)
    plain, binned = with_modifier(), with_modifier(segments={"bins": 3})
    assert plain.segment_settings.bins == 4  # the defaults when the key is unset
    # The bins decide the segments of every batch: a batch rule.
    assert len({plain.batch_rules_hash, binned.batch_rules_hash}) == 2
    assert plain.config_hash != binned.config_hash


def test_the_shipped_outreach_study_has_region_as_its_effect_modifier() -> None:
    study = load_study(OUTREACH)
    assert study.effect_modifiers == ("region",) and has_segments(study)
    settings = study.segment_settings
    assert (settings.multiplicity, settings.level, settings.severity) == ("holm", 0.05, "WARN")
    assert "region" in study.model_columns  # still adjusted for: its edges make it a confounder too


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("segments: {bins: 1}", r"segments\.bins: must be >= 2"),
        ("segments: {multiplicity: bonferroni}", r"segments\.multiplicity: "),
        ("segments: {level: 0}", r"segments\.level: "),
        ("segments: {severity: FATAL}", r"segments\.severity: "),
        ("segments: {bins: 4, colour: red}", r"segments\.colour: "),
        (
            "segments: {edges: {company_size: [50, 20]}}",
            r"segments\.edges\.company_size: must be one or more strictly increasing",
        ),
        ("segments: {edges: {region: [1, 2]}}", r"segments\.edges\.region: 'region' is categorical"),
        (
            "segments: {edges: {tenure_months: [12]}}",
            r"segments\.edges\.tenure_months: 'tenure_months' is not an effect_modifier",
        ),
    ],
)
def test_a_bad_setting_is_a_load_error_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    text = OUTREACH.read_text()
    path.write_text(
        "\n".join(row for row in text.splitlines() if not row.startswith("segments:")) + "\n" + line + "\n"
    )
    with pytest.raises(StudyConfigError, match=message):
        load_study(path)


def test_the_section_without_an_effect_modifier_and_a_modifier_that_is_no_column_are_errors() -> None:
    with pytest.raises(ValueError, match=r"segments: needs at least one causal_graph role effect_modifier"):
        ab_study(segments={"bins": 3})
    graph = {"edges": [("treatment", "outcome")], "roles": {"segment_z": "effect_modifier"}}
    with pytest.raises(
        ValueError, match=r"causal_graph\.roles\.segment_z: an effect modifier must be a covariate"
    ):
        ab_study(causal_graph=graph)


def test_clustered_standard_errors_cannot_have_effect_modifiers_yet() -> None:
    with pytest.raises(ValueError, match=r"cluster or duplicate_units: cluster cannot have effect modifiers"):
        with_modifier(duplicate_units="cluster")


def test_the_checks_state_the_rule_and_never_keep_a_batch_out_at_either_severity() -> None:
    key = dg.AssetKey(["ab_checkout", "segment_posterior"])
    warned, erred = with_modifier(), with_modifier(segments={"severity": "ERROR", "multiplicity": "bh"})
    assert posterior_level(warned) == WARN and posterior_level(erred) == ERROR
    described = segment_check_spec(erred, key, "fused_segment_difference").description or ""
    assert "Benjamini-Hochberg" in described and "severity ERROR (never keeps a batch out)" in described
    assert "the batch still enters the posterior" in described
    assert segment_check_spec(warned, key, "fused_segment_difference").name == (
        "check_segment_posterior_fused_segment_difference"
    )
