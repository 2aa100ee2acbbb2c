"""The ``guardrails:`` key of a study file: its load rules, its hashes, and the definitions it yields.

Each guardrail becomes a study of its own (``<study>__<outcome>``) over the primary's batches; the
key unset leaves both hashes as they were; a clash with a column of the study, a bad key or a name
taken by another study file is an error naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.guardrail_report import guardrail_posterior
from orchestration.definitions import build_definitions
from orchestration.jobs import study_job_name
from orchestration.study_folder import scan_study_folder
from resources.guardrails import derive_guardrail_studies
from resources.study import StudyConfig, StudyConfigError, load_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"
REFUNDS = "  - {outcome: refunded, outcome_type: binary, desired_direction: decrease, margin: 0.02}\n"
LATENCY = (
    "  - {outcome: latency_ms, outcome_type: continuous, outcome_unit: ms, desired_direction: decrease}\n"
)


def written(tmp_path: Path, *guardrails: str, name: str = "ab_checkout", file: str = "x.yaml") -> Path:
    """The A/B example with a ``guardrails:`` list appended (its name changed to ``name``)."""
    text = (STUDIES / "ab_checkout.yaml").read_text().replace("name: ab_checkout", f"name: {name}")
    text = text.replace("landing_folder: ab_checkout", f"landing_folder: {name}")
    if guardrails:
        text += "guardrails:\n" + "".join(guardrails)
    path = tmp_path / file
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudyConfigError) as raised:
        load_study(path)
    return str(raised.value).splitlines()


def test_each_guardrail_is_a_study_of_its_own_over_the_primary_batches(tmp_path: Path) -> None:
    study = load_study(written(tmp_path, REFUNDS, LATENCY))
    refunds, latency = derive_guardrail_studies(study)
    assert (refunds.name, latency.name) == ("ab_checkout__refunded", "ab_checkout__latency_ms")
    for derived, outcome in ((refunds, "refunded"), (latency, "latency_ms")):
        assert isinstance(derived, StudyConfig)
        assert derived.outcome == outcome and derived.desired_direction == "decrease"
        assert derived.guardrails == ()
        same = ("landing_folder", "cadence", "start_date", "covariates", "design", "estimators", "thresholds")
        assert all(getattr(derived, k) == getattr(study, k) for k in same)
        assert derived.primary_estimator == study.primary_estimator and derived.seed == study.seed
        assert derived.causal_graph is not None and (("treatment", outcome) in derived.causal_graph.edges)
        assert derived.estimand_card is not None and outcome in derived.estimand_card.outcome
    assert (refunds.outcome_type, refunds.outcome_unit) == ("binary", None)
    assert (latency.outcome_type, latency.outcome_unit) == ("continuous", "ms")
    # Derived from the current fields: a copy under another name derives its own names.
    assert [g.name for g in derive_guardrail_studies(study.model_copy(update={"name": "other"}))] == [
        "other__refunded",
        "other__latency_ms",
    ]


def test_the_key_unset_or_empty_keeps_both_hashes(tmp_path: Path) -> None:
    shipped = load_study(STUDIES / "ab_checkout.yaml")
    assert shipped.guardrails == ()
    empty = tmp_path / "empty.yaml"
    empty.write_text((STUDIES / "ab_checkout.yaml").read_text() + "guardrails: []\n")
    emptied = load_study(empty)
    assert emptied.batch_rules_hash == shipped.batch_rules_hash == "83ad6f820b5e4572"
    assert emptied.config_hash == shipped.config_hash


def test_a_guardrail_changes_the_batch_rules_but_its_margin_and_direction_do_not(tmp_path: Path) -> None:
    base = load_study(written(tmp_path, REFUNDS))
    assert base.batch_rules_hash != load_study(STUDIES / "ab_checkout.yaml").batch_rules_hash
    wider = load_study(written(tmp_path, REFUNDS.replace("margin: 0.02", "margin: 0.05"), file="y.yaml"))
    assert wider.batch_rules_hash == base.batch_rules_hash  # the memo's verdict, not a batch's estimate
    assert wider.config_hash != base.config_hash
    other = load_study(written(tmp_path, REFUNDS.replace("refunded", "returned"), file="z.yaml"))
    assert other.batch_rules_hash != base.batch_rules_hash


def test_a_guardrail_sets_its_own_filter_scale_or_takes_the_primary(tmp_path: Path) -> None:
    own = REFUNDS.replace(
        "margin: 0.02", "margin: 0.02, prior: {mean: 0.0, variance: 0.01}, process_var: 1.0e-6"
    )
    study = load_study(written(tmp_path, own, LATENCY))
    refunds, latency = derive_guardrail_studies(study)
    assert (refunds.prior.mean, refunds.prior.variance, refunds.process_var) == (0.0, 0.01, 1e-6)
    assert (latency.prior, latency.process_var) == (study.prior, study.process_var)
    assert (
        study.batch_rules_hash
        == load_study(written(tmp_path, REFUNDS, LATENCY, file="y.yaml")).batch_rules_hash
    )
    lines = problems(written(tmp_path, REFUNDS.replace("margin: 0.02", "process_var: -1"), file="z.yaml"))
    assert any("guardrails[0].process_var: must be a number >= 0" in line for line in lines), lines


@pytest.mark.parametrize(
    ("guardrail", "expected"),
    [
        (
            REFUNDS.replace("refunded", "outcome"),
            "guardrails[0].outcome: column 'outcome' is already the study's outcome",
        ),
        (
            REFUNDS.replace("refunded", "x"),
            "guardrails[0].outcome: column 'x' is already the study's covariate",
        ),
        (REFUNDS.replace("refunded", "treatment"), "column 'treatment' is already the study's treatment"),
        (REFUNDS.replace("refunded", "unit_id"), "column 'unit_id' is already the study's unit_id"),
        (
            REFUNDS.replace(", desired_direction: decrease", ""),
            "guardrails[0].desired_direction: is required",
        ),
        (
            REFUNDS.replace("desired_direction: decrease", "desired_direction: down"),
            "guardrails[0].desired_direction: must be one of",
        ),
        (REFUNDS.replace("margin: 0.02", "margin: -0.1"), "guardrails[0].margin: must be >= 0"),
        (
            REFUNDS.replace("margin: 0.02", "margni: 0.02"),
            "guardrails[0].margni: unknown key; did you mean 'margin'?",
        ),
        (
            REFUNDS.replace("binary", "binary, outcome_unit: USD"),
            "guardrails[0]: outcome_unit: a binary outcome",
        ),
        (REFUNDS.replace("refunded", "a_very_long_guardrail_column_name"), "(at most 40 characters)"),
        (REFUNDS.replace("refunded", "bad-name"), "guardrails[0].outcome: must be a safe column name"),
    ],
)
def test_a_bad_guardrail_is_a_load_error_naming_the_file_and_key(
    tmp_path: Path, guardrail: str, expected: str
) -> None:
    lines = problems(written(tmp_path, guardrail))
    assert any(line.startswith(f"{tmp_path / 'x.yaml'}: ") and expected in line for line in lines), lines


def test_a_variable_of_the_causal_graph_cannot_be_a_guardrail(tmp_path: Path) -> None:
    path = written(tmp_path, REFUNDS)
    text = path.read_text().replace(
        "    x: precision\n", "    x: precision\n    refunded: negative_control\n"
    )
    path.write_text(text + "refuters: {negative_control_outcome: {}}\n")
    lines = problems(path)
    assert any("guardrails[0].outcome: column 'refunded' is already the study's" in line for line in lines), (
        lines
    )


def test_the_same_guardrail_twice_is_an_error(tmp_path: Path) -> None:
    lines = problems(written(tmp_path, REFUNDS, REFUNDS.replace("refunded", "Refunded")))
    assert any("guardrails[1].outcome: column 'Refunded' is already guardrails[0]" in line for line in lines)


def test_a_study_file_named_like_another_study_guardrail_is_broken_the_other_runs(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    written(folder, REFUNDS, file="a.yaml")
    written(folder, name="ab_checkout__refunded", file="b.yaml")
    scanned = scan_study_folder(folder)
    assert [s.name for s in scanned.studies] == ["ab_checkout"]
    assert len(scanned.broken) == 1
    assert "name: study 'ab_checkout__refunded' is already defined in" in scanned.broken[0].error


def test_definitions_run_the_guardrail_in_the_primary_job_and_the_memo_after_it(tmp_path: Path) -> None:
    study = load_study(written(tmp_path, REFUNDS))
    defs = build_definitions(studies=[study], data_dir=tmp_path / "data")
    graph = defs.resolve_asset_graph()
    guard = "ab_checkout__refunded"
    for asset in ("raw_batch", "covariate_table", "batch_effect", "effect_posterior", "posterior_report"):
        assert graph.has(dg.AssetKey([guard, asset]))
    report = graph.get(dg.AssetKey(["ab_checkout", "posterior_report"]))
    assert dg.AssetKey([guard, "effect_posterior"]) in report.parent_keys
    job = defs.resolve_job_def(study_job_name(study))
    assert dg.AssetKey([guard, "raw_batch"]) in job.asset_layer.executable_asset_keys
    # No landing sensor, job or schedule of its own: the primary's runs carry it.
    assert f"{guard}_landing_sensor" not in {sensor.name for sensor in defs.sensors or []}
    assert f"{guard}_batch_job" not in {job.name for job in defs.jobs or []}


def test_the_report_reads_a_guardrail_from_its_last_stored_step(tmp_path: Path) -> None:
    spec = load_study(written(tmp_path, REFUNDS)).guardrails[0]
    steps = pd.DataFrame(
        {
            "batch": ["2025-01-01", "2025-02-01", "2025-03-01"],
            "excluded": [False, True, False],
            "posterior_mean": [0.01, 0.01, 0.004],
            "posterior_var": [0.0004, 0.00045, 0.0001],
        }
    )
    posterior = guardrail_posterior(spec, "ab_checkout__refunded", steps)
    assert (posterior.mean, posterior.sd) == (0.004, pytest.approx(0.01, abs=1e-15))
    assert (posterior.n_used, posterior.n_batches, posterior.margin) == (2, 3, 0.02)
    assert (posterior.desired_direction, posterior.outcome_type) == ("decrease", "binary")
    none = guardrail_posterior(spec, "ab_checkout__refunded", steps.assign(excluded=True))
    assert (none.mean, none.sd, none.n_used) == (None, None, 0)
    assert guardrail_posterior(spec, "x", pd.DataFrame()).n_batches == 0
