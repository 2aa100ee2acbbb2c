"""The adversarial corpus through the real pipeline: clear verdicts, nothing lost, posterior clean."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.common import VERDICT_TABLES, verdict_table
from tests.pipeline_support import Project, write_batch
from tests.reliability.corpus import CASES, Case, corpus_study, day, good_frame

STUDY = "corpus"
TABLES = [
    "raw_files",
    "raw_rows",
    "covariates",
    "quarantine",
    "propensity_coefficients",
    "propensity_scores",
    "outcome_coefficients",
    "outcome_predictions",
    "batch_effects",
    "balance",
    *[verdict_table(asset) for asset in VERDICT_TABLES],
]


@dataclass
class CorpusRun:
    project: Project
    paths: dict[str, Path]
    hashes: dict[str, str]
    baseline_before: dict[str, pd.DataFrame]
    runs: int

    def baseline_now(self) -> dict[str, pd.DataFrame]:
        return _partition_tables(self.project, day(0).isoformat())


def _partition_tables(project: Project, key: str) -> dict[str, pd.DataFrame]:
    store = project.warehouse
    return {
        table: store.read_table(STUDY, table, partition_key=key).reset_index(drop=True) for table in TABLES
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def case_file_name(index: int, case: Case) -> str:
    return case.file_name or f"{day(index + 1).isoformat()}.{case.suffix}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    root = tmp_path_factory.mktemp("corpus")
    project = Project(data=root / "data", studies=[corpus_study()], instance=dg.DagsterInstance.ephemeral())
    folder = project.landing(STUDY)
    write_batch(folder, day(0).isoformat(), good_frame(1000))
    assert [r.success for r in project.tick()] == [True]
    before = _partition_tables(project, day(0).isoformat())
    outside = root / "outside.csv"
    write_batch(root, "outside", good_frame(2000))
    (folder / f"{day(len(CASES) + 5).isoformat()}.csv").symlink_to(outside)
    paths = {}
    for index, case in enumerate(CASES):
        path = folder / case_file_name(index, case)
        path.write_bytes(case.content(index + 1))
        paths[case.name] = path
    hashes = {name: _sha(path) for name, path in paths.items()}
    results = project.tick()
    assert all(r.success for r in results), "a batch crashed its run instead of failing a check"
    return CorpusRun(project, paths, hashes, before, len(results))


def _steps(corpus: CorpusRun) -> pd.DataFrame:
    return corpus.project.steps(STUDY).set_index("batch")


def _verdicts(corpus: CorpusRun, key: str) -> pd.DataFrame:
    store = corpus.project.warehouse
    return pd.concat([store.read_table(STUDY, verdict_table(a), partition_key=key) for a in VERDICT_TABLES])


def test_the_corpus_has_at_least_30_cases_and_each_mapped_file_ran_once(corpus: CorpusRun) -> None:
    assert len(CASES) >= 30
    mapped = [c for c in CASES if c.outcome != "unmapped"]
    assert corpus.runs == len(mapped)


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[c.name for c in CASES])
def test_case_has_its_expected_outcome(corpus: CorpusRun, index: int, case: Case) -> None:
    path = corpus.paths[case.name]
    assert path.exists() and _sha(path) == corpus.hashes[case.name], "the raw file must stay untouched"
    key = day(index + 1).isoformat()
    steps = _steps(corpus)
    if case.outcome == "unmapped":
        assert key not in steps.index or case.file_name is not None
        files = corpus.project.warehouse.read_table(STUDY, "raw_files")
        assert path.name not in set(files.get("file_name", []))
        return
    row = steps.loc[key]
    previous = steps.iloc[steps.index.get_loc(key) - 1]
    if case.outcome == "excluded":
        assert bool(row["excluded"])
        assert f"check_{case.check}" in row["exclusion_reason"]
        assert row["posterior_mean"] == previous["posterior_mean"], "an excluded batch moved the posterior"
        verdicts = _verdicts(corpus, key)
        failing = verdicts[(verdicts["check_name"] == f"check_{case.check}") & (verdicts["status"] == "fail")]
        assert len(failing) == 1
        reason = failing.iloc[0]["reason"]
        assert key in reason, f"the reason must name the batch: {reason}"
        for word in case.mentions:
            assert word in reason, f"{word!r} not in {reason!r}"
    else:
        assert not bool(row["excluded"]), row["exclusion_reason"]
    if case.quarantined:
        quarantine = corpus.project.warehouse.read_table(STUDY, "quarantine", partition_key=key)
        assert set(case.quarantined) <= set(quarantine["column"])
        assert quarantine["rule"].str.len().min() > 0 and quarantine["record_json"].str.len().min() > 0


def test_a_symlink_out_of_the_landing_folder_is_left_alone(corpus: CorpusRun) -> None:
    key = day(len(CASES) + 5).isoformat()
    assert key not in _steps(corpus).index
    assert corpus.project.warehouse.read_table(STUDY, "raw_files", partition_key=key).empty


def test_nothing_else_in_the_warehouse_changed(corpus: CorpusRun) -> None:
    now = corpus.baseline_now()
    for table, frame in corpus.baseline_before.items():
        pd.testing.assert_frame_equal(now[table], frame, check_exact=True, obj=table)


def test_the_posterior_is_finite_and_only_admitted_batches_moved_it(corpus: CorpusRun) -> None:
    steps = corpus.project.steps(STUDY)
    assert steps["posterior_mean"].notna().all() and (steps["posterior_var"] > 0).all()
    moved = steps["posterior_mean"].diff().fillna(1.0) != 0
    assert (moved == ~steps["excluded"]).all()
