"""Study-file errors a person makes: every line names the file and the key, says the rule, and suggests.

Dates as YAML writes them (unquoted), misspelled keys and values, keys given twice, the N-of-1
section's rules, and columns of the study file that the first landed batch does not have.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from assimilate.simulate import simulate_outreach_batch
from checks.covariates import schema_verdict, split_valid_rows
from checks.quality import run_quality_suite
from checks.typed_batch import type_batch
from orchestration.study_folder import scan_study_folder
from resources.study import StudyConfigError, load_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def edited(tmp_path: Path, name: str, old: str, new: str, *, file: str = "x.yaml") -> Path:
    """The example study file ``name`` with one line of text replaced, as a person edits it."""
    text = (STUDIES / f"{name}.yaml").read_text()
    assert text.count(old) == 1, old
    path = tmp_path / file
    path.write_text(text.replace(old, new))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudyConfigError) as raised:
        load_study(path)
    return str(raised.value).splitlines()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("start_date: 2025-01-01", "start_date: 2026-09-31",
         "start_date: '2026-09-31' is not a valid date (September has 30 days)"),
        ("start_date: 2025-01-01", "start_date: 2025-02-29",
         "start_date: '2025-02-29' is not a valid date (February 2025 has 28 days)"),
        ("start_date: 2025-01-01", "start_date: 2025-13-01",
         "start_date: '2025-13-01' is not a valid date (there is no month 13: months run 1 to 12)"),
        ("start_date: 2025-01-01", "start_date: 2025-1-5",
         "start_date: '2025-1-5' is not a date written YYYY-MM-DD: write 2025-01-05"),
        ("start_date: 2025-01-01", "start_date: next monday",
         "start_date: 'next monday' is not a date: write it as YYYY-MM-DD"),
        ("seed: 20250101", "seed: 20250101\nacknowledged_exclusions: {2025-04-31: late file}",
         "acknowledged_exclusions.2025-04-31: '2025-04-31' is not a valid date (April has 30 days)"),
    ],
)  # fmt: skip
def test_an_unquoted_bad_date_names_the_file_the_key_and_why(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path = edited(tmp_path, "ab_checkout", old, new)
    lines = problems(path)
    assert any(line.startswith(f"{path}: {expected}") for line in lines), lines


def test_a_bad_date_breaks_only_its_file_in_the_studies_folder(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((STUDIES / "retention_outreach.yaml").read_text())
    edited(tmp_path, "ab_checkout", "start_date: 2025-01-01", "start_date: 2026-09-31", file="bad.yaml")
    scanned = scan_study_folder(tmp_path)
    assert [s.name for s in scanned.studies] == ["retention_outreach"]
    assert [f.error for f in scanned.broken] == [
        f"{tmp_path / 'bad.yaml'}: start_date: '2026-09-31' is not a valid date (September has 30 days)"
    ]


def test_a_valid_unquoted_date_still_loads_as_a_date() -> None:
    study = load_study(STUDIES / "ab_checkout.yaml")
    assert study.start_date.isoformat() == "2025-01-01"


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        ("ab_checkout", "covariates: [x]", "covariate: [x]", "covariate: unknown key; did you mean 'covariates'?"),
        ("ab_checkout", "  max_abs_smd: 0.1", "  max_abs_smdd: 0.1",
         "thresholds.max_abs_smdd: unknown key; did you mean 'max_abs_smd'?"),
        ("ab_checkout", "design: {kind: randomized, treated_share: 0.5}",
         "design: {kind: randomized, treated_shar: 0.5}", "design.treated_shar: unknown key; did you mean 'treated_share'?"),
        ("ab_checkout", "backend: {kind: kalman}", "backend: {kind: particle, n_particle: 500}",
         "backend.n_particle: unknown key; did you mean 'n_particles'?"),
        ("ab_checkout", "  unit: visitor", "  units: visitor", "estimand_card.units: unknown key; did you mean 'unit'?"),
        ("ab_checkout", "  max_abs_smd: 0.1", "  smd_limit: 0.1",
         "thresholds.smd_limit: unknown key; the known keys here: max_abs_smd, overlap_eps"),
        ("ab_checkout", "outcome_type: continuous", "outcome_type: continous",
         "outcome_type: must be one of 'continuous' or 'binary' (got 'continous'); did you mean 'continuous'?"),
        ("retention_outreach", "primary_estimator: aipw", "primary_estimator: apiw", "did you mean 'aipw'?"),
    ],
)  # fmt: skip
def test_a_misspelled_key_or_value_gets_a_suggestion(
    tmp_path: Path, name: str, old: str, new: str, expected: str
) -> None:
    path = edited(tmp_path, name, old, new)
    lines = problems(path)
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), lines


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = edited(tmp_path, "ab_checkout", "seed: 20250101", "seed: 20250101\ncovariates: []")
    lines = path.read_text().splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("covariates:"))
    assert problems(path) == [f"{path}: covariates: is given twice (lines {first} and {second}); keep one"]


# --- the N-of-1 section ---------------------------------------------------------------------------

N_OF_1_RULES = [
    ("primary_estimator: n_of_1", "primary_estimator: n_of_1\nestimators: [n_of_1, difference_in_means]",
     "estimators: 'difference_in_means' compares units, but an N-of-1 study follows one subject"),
    ("thresholds:\n", "thresholds:\n  srm_alpha: 0.01\n",
     "thresholds.srm_alpha: the sample-ratio-mismatch check compares randomized units; an N-of-1 study "
     "randomizes blocks of one subject's days, so it does not apply"),
    ("\ntreatment: magnesium", "\nunit_id: patient_id\ntreatment: magnesium",
     "unit_id: an N-of-1 study follows one subject, so each row is one of its days: leave unit_id out or set "
     "it to the day column 'date' (n_of_1.time), not 'patient_id'"),
    ("  washout_days: 2 ", "  washout_days: 7 ",
     "n_of_1.washout_days: must be < block_days (7): a washout of 7 days would drop every day of every block"),
    ("cadence: monthly", "cadence: weekly",
     "cadence: a 'weekly' batch holds 7 day(s), fewer than two treatment blocks of 7 days (n_of_1.block_days)"),
    ("design: {kind: randomized, treated_share: 0.5}", "design: {kind: observational}",
     "design.kind: an N-of-1 study randomizes the order of its treatment blocks: kind must be 'randomized'"),
    ("  time: date ", "  time: magnesium ", "n_of_1.time: column 'magnesium' is the treatment"),
    ("  washout_days: 2 ", "  washout_day: 2 ", "n_of_1.washout_day: unknown key; did you mean 'washout_days'?"),
    ("primary_estimator: n_of_1", "primary_estimator: difference_in_means",
     "n_of_1: applies only to the n_of_1 estimator, which is not in estimators"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "expected"), N_OF_1_RULES, ids=[r[2][:30] for r in N_OF_1_RULES])
def test_each_n_of_1_rule_names_file_key_and_rule(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = edited(tmp_path, "n_of_1_sleep", old, new)
    lines = problems(path)
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), lines


def test_the_n_of_1_estimator_needs_its_section(tmp_path: Path) -> None:
    text = (STUDIES / "n_of_1_sleep.yaml").read_text()
    section = text[text.index("n_of_1:\n") : text.index("estimand_card:")]
    path = tmp_path / "x.yaml"
    path.write_text(text.replace(section, "unit_id: date\n"))
    assert (
        f"{path}: n_of_1: is required by the n_of_1 estimator: time (the day column), washout_days, block_days"
        in problems(path)
    )


def test_every_line_of_a_badly_broken_file_names_the_file_and_a_key(tmp_path: Path) -> None:
    text = (STUDIES / "n_of_1_sleep.yaml").read_text()
    for old, new in [
        ("start_date: 2025-01-01", "start_date: 2025-06-31"),
        ("outcome_type: continuous", "outcome_typ: continuous"),
        ("  washout_days: 2 ", "  washout_days: 9 "),
        ("process_var: 0.0", "process_var: -1"),
    ]:
        text = text.replace(old, new)
    path = tmp_path / "x.yaml"
    path.write_text(text)
    lines = problems(path)
    assert len(lines) == 4, lines  # the cross-field rules wait until every key is valid
    key = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+|\[\d+\])*"
    assert all(re.match(rf"{re.escape(str(path))}: {key}: \S", line) for line in lines), lines


# --- the study file's columns against the first landed batch ----------------------------------


def test_a_misspelled_covariate_fails_the_first_batch_naming_the_key_and_the_closest_column() -> None:
    study = load_study(STUDIES / "retention_outreach.yaml")
    study = study.model_copy(
        update={"covariates": ("company_size", "tenure_month", "usage_score", "prior_tickets", "health_score"),
                "causal_graph": None, "estimand_card": None}
    )  # fmt: skip
    raw = simulate_outreach_batch(200, rng=np.random.default_rng(0)).astype(str)
    split = split_valid_rows(raw, study)
    assert split.missing_columns == ("tenure_month",)
    # A file-level rule: the quality suite fails the batch; the rows are not judged (not assessed).
    assert schema_verdict(study, split, len(raw), batch="2025-01-01").status == "undefined"
    typed = type_batch(raw, study, columns=[study.treatment])  # as raw_batch reads the file
    verdict = run_quality_suite(typed.frame, study, batch="2025-01-01").verdict
    assert verdict.failed
    assert verdict.reason == (
        "batch 2025-01-01: missing required columns ['tenure_month']: covariates: column 'tenure_month' is "
        "not in the file; closest column: "
        "'tenure_months' (check the study file's covariates)"
    )


def test_a_missing_column_with_no_close_one_lists_the_files_columns() -> None:
    study = load_study(STUDIES / "ab_checkout.yaml").model_copy(update={"outcome": "revenue"})
    raw = simulate_outreach_batch(5, rng=np.random.default_rng(0)).astype(str)[["account_id", "outreach"]]
    raw = raw.rename(columns={"account_id": "unit_id", "outreach": "treatment"}).assign(x="1")
    split = split_valid_rows(raw, study)
    assert split.missing_reason == (
        "outcome: column 'revenue' is not in the file; no column is close (the file has 'unit_id', "
        "'treatment', 'x')"
    )
