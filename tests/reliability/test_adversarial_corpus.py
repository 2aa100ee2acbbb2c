"""The adversarial corpus through the real pipeline: clear verdicts, nothing lost, posterior clean.

The fixture lands a good baseline batch, then every case of the corpus and every trap at once, and
runs what the landing sensor requests one run at a time, fingerprinting every table of the study
between runs: so each test can say which partitions (and which posterior steps) a run changed.
Everything is read through the warehouse interface, so ``pytest --warehouse=postgres`` runs it on
PostgreSQL (in a database of the module's own: tests/backend_support.py ``module_warehouse``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.common import VERDICT_TABLES, verdict_table
from orchestration.runner import execute_request, tick_landing_sensor
from resources.postgres_tables import ROW_COLUMN
from resources.raw_columns import load_raw, text_frame
from tests.backend_support import back_in_module_warehouse, module_warehouse
from tests.pipeline_support import Project, write_batch
from tests.reliability.corpus import (
    CASES,
    COLUMNS_PRESENT,
    HOSTILE_COLUMNS,
    READABLE,
    SQL_VALUE,
    TRAPS,
    Case,
    Trap,
    corpus_study,
    day,
    good_frame,
)

STUDY = "corpus"
OUTSIDE_SEED = 2000  # the smuggled batch's unit ids are u2000-<i>; none may ever reach the warehouse
# Whole tables, rewritten by every run: posterior_steps is compared row by row (one row per batch);
# the audit trail is keyed by run and only grows.
WHOLE_TABLES = ("posterior_steps",)
NO_BATCH = "no batch landed for this period"
APPEND_ONLY = ("audit_trail",)

Fingerprint = dict[tuple[str, str], str]  # (table, partition key or batch) -> sha256 of its rows


@dataclass
class CorpusRun:
    project: Project
    paths: dict[str, Path]
    hashes: dict[str, str]
    outside: Path
    outside_sha: str
    sensor_log: str
    run_partitions: list[str]
    changed_by_run: dict[str, dict[tuple[str, str], str | None]]  # entry -> its fingerprint before
    baseline: Fingerprint
    final: Fingerprint
    partitioned_tables: list[str]
    audit_before: pd.DataFrame


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def case_file_name(index: int, case: Case) -> str:
    return case.file_name or f"{day(index + 1).isoformat()}.{case.suffix}"


def trap_key(index: int) -> str:
    return day(len(CASES) + 5 + index).isoformat()


def _tables(project: Project) -> dict[str, list[str]]:
    """Every table of the study's schema with its columns."""
    columns = project.warehouse.execute_read(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? "
        "ORDER BY table_name, ordinal_position",
        [STUDY],
    )
    columns = columns[columns["column_name"] != ROW_COLUMN]  # PostgreSQL's hidden insertion order
    return {t: list(c["column_name"]) for t, c in columns.groupby("table_name", sort=True)}


# A row as text, without the raw storage columns another batch added (NULL in this batch's rows):
# a new batch's columns widen raw_rows, which changes no stored value.
RAW_STORAGE = re.compile(r"c\d+_(?:text|int|double|bool)")


def _value_text(value: object) -> str | None:
    """A stored value as text, the same whatever dtype the whole column was read as.

    Reading a whole table, an integer column with a NULL in another partition comes back as floats:
    3 and 3.0 are one stored value (integers, as the corpus stores them, are below 2**53).
    """
    if value is None or (not isinstance(value, (str, bytes)) and bool(pd.isna(value))):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))
    return repr(value)


def _column_text(column: pd.Series) -> pd.Series:
    """``_value_text`` of every value of a column ("null" for NULL), vectorized where the dtype allows."""
    null = column.isna()
    if pd.api.types.is_bool_dtype(column):
        text = column.map({True: "true", False: "false"})
    elif pd.api.types.is_integer_dtype(column):
        text = column.astype(str)
    elif pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        finite = np.where(np.isfinite(values), values, 0.5)
        whole = (np.mod(finite, 1) == 0) & (np.abs(finite) < 2**53)
        ints = np.where(whole, finite, 0).astype(np.int64).astype(str)
        text = pd.Series(np.where(whole, ints, values.astype(str)), index=column.index)
    else:
        text = column.map(_value_text)
    return text.where(~null, "null")


def _row_texts(frame: pd.DataFrame) -> pd.Series:
    """Each row as text: its columns' names and values, but the raw storage columns NULL in it."""
    fields = []
    for name in frame.columns:
        field = chr(31) + json.dumps(str(name)) + ":" + _column_text(frame[name])  # chr(31): unit separator
        if RAW_STORAGE.fullmatch(str(name)):
            field = field.where(frame[name].notna(), "")
        fields.append(field)
    return fields[0].str.cat(fields[1:])


def fingerprint(project: Project) -> Fingerprint:
    """sha256 of every partition's rows (in stored order) of every table; posterior steps per batch.

    Read through the warehouse interface and hashed here, so it means the same on either backend:
    ``read_table`` returns a table's rows in (partition, insertion) order on both.
    """
    prints: Fingerprint = {}
    for table, columns in _tables(project).items():
        if table in APPEND_ONLY:
            continue
        group = "batch" if table in WHOLE_TABLES else "partition_key"
        assert group in columns, f"{table} has no {group} column"
        frame = project.warehouse.read_table(STUDY, table)
        texts = _row_texts(frame).groupby(frame[group].astype(str), sort=False).agg(chr(10).join)
        prints.update({(table, k): hashlib.sha256(t.encode()).hexdigest() for k, t in texts.items()})
    return prints


def test_a_row_reads_as_the_same_text_whatever_dtype_its_column_was_read_as() -> None:
    def text(**columns: list[object]) -> str:
        return str(_row_texts(pd.DataFrame(columns)).iloc[0])

    row = text(partition_key=["k"], n=[3], c3_int=[7], c4_text=[None], flag=[True])
    # The same values read as floats, or as objects, because another partition has NULLs there.
    assert (
        text(
            partition_key=["k", "j"], n=[3.0, None], c3_int=[7.0, 1.5], c4_text=[None, "a"], flag=[True, None]
        )
        == row
    )
    # A raw storage column NULL in this row is left out (another batch added it); other NULLs count.
    assert text(partition_key=["k"], n=[3], c3_int=[7], c4_text=[None], flag=[True], c9_double=[None]) == row
    assert text(partition_key=["k"], n=[3], c3_int=[7], c4_text=[None], flag=[True], note=[None]) != row
    assert text(partition_key=["k"], n=[3], c3_int=[8], c4_text=[None], flag=[True]) != row
    assert text(partition_key=["k"], n=[3], c3_int=[7], c4_text=[""], flag=[True]) != row
    assert text(partition_key=["k"], n=[3], c3_int=[7], c4_text=["null"], flag=[True]) != row
    assert text(partition_key=["k"], n=[3], c3_int=[7], c4_text=[None], flag=[False]) != row
    assert text(partition_key=["k"], n=[3.5], c3_int=[7]) != text(partition_key=["k"], n=[3.25], c3_int=[7])


def _changed(before: Fingerprint, after: Fingerprint) -> dict[tuple[str, str], str | None]:
    return {k: before.get(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@pytest.fixture(scope="module")
def corpus_built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CorpusRun, str | None]]:
    """Built once for the module; on PostgreSQL in a database of its own (the per-test one is another)."""
    with module_warehouse(request) as url:
        built = _run_corpus(tmp_path_factory)
        on_file = (built.project.data / "warehouse.duckdb").exists()
        assert on_file == (url is None), "the corpus ran on another warehouse than --warehouse names"
        yield built, url


@pytest.fixture
def corpus(corpus_built: tuple[CorpusRun, str | None], monkeypatch: pytest.MonkeyPatch) -> CorpusRun:
    built, url = corpus_built
    back_in_module_warehouse(monkeypatch, url)
    return built


def _run_corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    root = tmp_path_factory.mktemp("corpus")
    study = corpus_study()
    project = Project(data=root / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    folder = project.landing(STUDY)
    write_batch(folder, day(0).isoformat(), good_frame(1000))
    assert [r.success for r in project.tick()] == [True]
    baseline = fingerprint(project)
    audit_before = project.warehouse.read_table(STUDY, "audit_trail")
    outside = root / "outside"
    outside.mkdir()
    write_batch(outside, "batch", good_frame(OUTSIDE_SEED))
    paths = {}
    for index, case in enumerate(CASES):
        path = folder / case_file_name(index, case)
        path.write_bytes(case.content(index + 1))
        paths[case.name] = path
    for index, trap in enumerate(TRAPS):
        key = trap_key(index)
        trap.make(folder, outside, trap.entry(key), key)
    hashes = {name: _sha(path) for name, path in paths.items()}
    outside_sha = _sha(outside / "batch.csv")

    # What Project.tick does, with the sensor's log captured and a fingerprint after every run.
    log = io.StringIO()
    with redirect_stderr(log):
        tick = tick_landing_sensor(project.defs, project.instance, study, project.cursors.get(STUDY))
    assert isinstance(tick, dg.SensorResult)
    project.cursors[STUDY] = tick.cursor
    changed_by_run: dict[str, dict[tuple[str, str], str | None]] = {}
    partitions: list[str] = []
    before = baseline
    for request in tick.run_requests or []:
        result = execute_request(project.defs, project.instance, study, request)
        assert result.success, f"batch {request.partition_key} crashed its run instead of failing a check"
        after = fingerprint(project)
        assert request.partition_key is not None
        partitions.append(request.partition_key)
        changed_by_run[request.partition_key] = _changed(before, after)
        before = after
    partitioned = [t for t, c in _tables(project).items() if "partition_key" in c and t not in APPEND_ONLY]
    return CorpusRun(
        project,
        paths,
        hashes,
        outside / "batch.csv",
        outside_sha,
        log.getvalue(),
        partitions,
        changed_by_run,
        baseline,
        before,
        partitioned,
        audit_before,
    )


def _steps(corpus: CorpusRun) -> pd.DataFrame:
    return corpus.project.steps(STUDY).set_index("batch")


def _verdicts(corpus: CorpusRun, key: str) -> pd.DataFrame:
    store = corpus.project.warehouse
    return pd.concat([store.read_table(STUDY, verdict_table(a), partition_key=key) for a in VERDICT_TABLES])


def _log_line(corpus: CorpusRun, name: str) -> str:
    lines = [line for line in corpus.sensor_log.splitlines() if f"file {name!r} left untouched" in line]
    assert len(lines) == 1, f"expected one log line about {name!r}, got {lines}"
    return lines[0]


def _gap_periods(corpus: CorpusRun) -> set[str]:
    """Periods with no batch: the posterior takes a predict-only step for them."""
    steps = _steps(corpus)
    return set(steps.index[steps["exclusion_reason"] == NO_BATCH])


def _run_file_tags(corpus: CorpusRun) -> set[str]:
    return {run.tags.get("assimilate/file", "") for run in corpus.project.instance.get_runs()}


def test_the_corpus_has_at_least_30_cases_and_each_mapped_file_ran_once(corpus: CorpusRun) -> None:
    assert len(CASES) >= 30
    mapped = [day(i + 1).isoformat() for i, c in enumerate(CASES) if c.outcome != "unmapped"]
    assert corpus.run_partitions == mapped


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[c.name for c in CASES])
def test_case_has_its_expected_outcome(corpus: CorpusRun, index: int, case: Case) -> None:
    path = corpus.paths[case.name]
    assert path.exists() and _sha(path) == corpus.hashes[case.name], "the raw file must stay untouched"
    key = day(index + 1).isoformat()
    steps = _steps(corpus)
    if case.outcome == "unmapped":
        assert key not in steps.index or steps.at[key, "exclusion_reason"] == NO_BATCH
        line = _log_line(corpus, path.name)
        for word in case.mentions:
            assert word in line, f"{word!r} not in the sensor's log line {line!r}"
        assert path.name not in _run_file_tags(corpus), "the sensor requested a run for an unmapped file"
        files = corpus.project.warehouse.read_table(STUDY, "raw_files")
        assert path.name not in set(files["file_name"])
        return
    _nothing_lost(corpus, key, case)
    row = steps.loc[key]
    previous = steps.iloc[steps.index.get_loc(key) - 1]
    if case.outcome == "excluded":
        assert bool(row["excluded"])
        assert f"check_{case.check}" in row["exclusion_reason"]
        assert row["posterior_mean"] == previous["posterior_mean"], "an excluded batch moved the posterior"
        verdicts = _verdicts(corpus, key)
        failing = verdicts[(verdicts["check_name"] == f"check_{case.check}") & (verdicts["status"] == "fail")]
        assert len(failing) == 1
        reason, rule = failing.iloc[0]["reason"], failing.iloc[0]["rule"]
        assert reason.startswith(f"batch {key}"), f"the reason must name the batch: {reason}"
        for word in case.mentions:
            assert word in reason, f"{word!r} not in {reason!r}"
        assert case.rule and case.rule in rule, f"the stored rule {rule!r} must say {case.rule!r}"
    else:
        assert not bool(row["excluded"]), row["exclusion_reason"]
        assert row["posterior_mean"] != previous["posterior_mean"], "an admitted batch must be used"
    quarantine = corpus.project.warehouse.read_table(STUDY, "quarantine", partition_key=key)
    assert set(quarantine.get("column", [])) == set(case.quarantined)
    if case.quarantined:
        assert (quarantine["rule"].str.len() > 0).all() and (quarantine["record_json"].str.len() > 0).all()
        assert not case.quarantine_rule or case.quarantine_rule in set(quarantine["rule"]), quarantine
        if case.quarantined_rows is not None:
            assert sorted(set(quarantine["row_index"])) == list(case.quarantined_rows)
    statuses = _verdicts(corpus, key).set_index("check_name")["status"]
    if case.quarantined and case.check != "raw_batch_data_quality":
        # A bad row costs its row: the file-level suite passes, only the schema's share may exclude.
        assert statuses["check_raw_batch_data_quality"] == "pass", statuses
    if case.rule in (READABLE, COLUMNS_PRESENT):
        # Rows that cannot be judged are not judged: the file is excluded once, by data quality.
        assert statuses["check_covariate_table_schema"] == "undefined", statuses


def _delivered_rows(path: Path) -> int | None:
    """Data rows of a file as another reader sees them (None when it cannot be read as a table).

    The csv module, not the pipeline's reader: ragged rows count, blank lines do not.
    """
    try:
        if path.suffix == ".parquet":
            return len(pd.read_parquet(path))
        records = csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")))
        return sum(1 for record in records if record) - 1
    except (ValueError, UnicodeDecodeError, OSError, csv.Error):
        return None


def _nothing_lost(corpus: CorpusRun, key: str, case: Case) -> None:
    """The file is recorded with its hash; every row read is stored, and is valid or quarantined."""
    store, path = corpus.project.warehouse, corpus.paths[case.name]
    files = store.read_table(STUDY, "raw_files", partition_key=key)
    assert files[["file_name", "sha256", "size_bytes"]].to_dict("records") == [
        {"file_name": path.name, "sha256": corpus.hashes[case.name], "size_bytes": path.stat().st_size}
    ]
    n_rows = int(files["n_rows"].iloc[0])
    assert len(store.read_table(STUDY, "raw_rows", partition_key=key)) == n_rows
    unreadable = case.rule == READABLE
    assert n_rows == (0 if unreadable else _delivered_rows(path)), "rows of the file were lost"
    covariates = store.read_table(STUDY, "covariates", partition_key=key)
    quarantine = store.read_table(STUDY, "quarantine", partition_key=key)
    accounted = len(covariates) + (quarantine["row_index"].nunique() if len(quarantine) else 0)
    if case.outcome == "admitted":
        assert n_rows > 0 and accounted == n_rows, f"{n_rows} rows read, {accounted} valid or quarantined"


@pytest.mark.parametrize(("index", "trap"), list(enumerate(TRAPS)), ids=[t.name for t in TRAPS])
def test_entries_leading_out_of_the_landing_folder_are_never_read(
    corpus: CorpusRun, index: int, trap: Trap
) -> None:
    key, name = trap_key(index), trap.entry(trap_key(index))
    steps = _steps(corpus)
    assert key not in steps.index or steps.at[key, "exclusion_reason"] == NO_BATCH
    assert name not in _run_file_tags(corpus)
    stored = {table for table, k in corpus.final if k == key and table != "posterior_steps"}
    assert not stored, f"rows stored for {key} in {stored}"
    if trap.logged is None:
        assert repr(name) not in corpus.sensor_log
    else:
        assert trap.logged in _log_line(corpus, name)


def test_the_smuggled_batch_never_reaches_the_warehouse_and_stays_untouched(corpus: CorpusRun) -> None:
    assert _sha(corpus.outside) == corpus.outside_sha
    rows = corpus.project.warehouse.read_table(STUDY, "raw_rows")
    cells = rows[[c for c in rows.columns if c.endswith("_text")]].stack().astype(str)
    assert len(rows) and len(cells)  # the search below reads a table that has rows
    assert not cells.str.startswith(f"u{OUTSIDE_SEED}-").any()


def test_hostile_names_and_values_are_kept_as_data_never_as_identifiers(corpus: CorpusRun) -> None:
    names = [c.name for c in CASES]
    hostile = day(names.index("hostile_column_names") + 1).isoformat()
    files = corpus.project.warehouse.read_table(STUDY, "raw_files", partition_key=hostile)
    assert set(HOSTILE_COLUMNS) <= set(json.loads(files["columns_json"].iloc[0]))
    record = text_frame(load_raw(corpus.project.warehouse, corpus_study(), hostile)).iloc[0]
    assert {name: record[name] for name in HOSTILE_COLUMNS} == {
        name: str(value) for value, name in enumerate(HOSTILE_COLUMNS, start=1)
    }
    every_column = corpus.project.warehouse.execute_read("SELECT column_name FROM information_schema.columns")
    assert not set(HOSTILE_COLUMNS) & set(every_column["column_name"])
    assert len(_tables(corpus.project)) >= 14, "the injected DROP TABLE must not have dropped anything"
    sql = day(names.index("sql_in_values") + 1).isoformat()
    covariates = corpus.project.warehouse.read_table(STUDY, "covariates", partition_key=sql)
    assert SQL_VALUE in set(covariates["unit_id"])


def test_each_run_changed_only_its_own_partition(corpus: CorpusRun) -> None:
    """A run writes its own batch's rows; elsewhere it may only add predict-only steps for gaps."""
    gaps = _gap_periods(corpus)
    assert len(corpus.changed_by_run) == len(corpus.run_partitions)
    for key, changed in corpus.changed_by_run.items():
        assert ("raw_files", key) in changed and ("posterior_steps", key) in changed
        others = {entry: before for entry, before in changed.items() if entry[1] != key}
        allowed = {
            e: b for e, b in others.items() if e[0] == "posterior_steps" and b is None and e[1] in gaps
        }
        assert others == allowed, f"the run of {key} changed {sorted(set(others) - set(allowed))}"


def test_nothing_else_in_the_warehouse_changed(corpus: CorpusRun) -> None:
    baseline = day(0).isoformat()
    assert ("posterior_steps", baseline) in corpus.baseline
    # Every table holds rows of the baseline batch, but quarantine: it had no invalid row.
    assert {t for t, _ in corpus.baseline} == {*corpus.partitioned_tables, *WHOLE_TABLES} - {"quarantine"}
    assert len(corpus.partitioned_tables) >= 14
    for entry, digest in corpus.baseline.items():
        assert corpus.final.get(entry) == digest, f"{entry} changed"
    touched = {k for _, k in corpus.final} - {k for _, k in corpus.baseline}
    assert set(corpus.run_partitions) <= touched <= set(corpus.run_partitions) | _gap_periods(corpus)
    audit = corpus.project.warehouse.read_table(STUDY, "audit_trail")
    assert len(audit) == 1 + len(corpus.run_partitions), "one audit row per posterior update"
    pd.testing.assert_frame_equal(
        audit[audit["run_id"].isin(corpus.audit_before["run_id"])].reset_index(drop=True),
        corpus.audit_before,
        check_exact=True,
    )


def test_the_posterior_is_finite_and_only_admitted_batches_moved_it(corpus: CorpusRun) -> None:
    steps = corpus.project.steps(STUDY)
    assert steps["posterior_mean"].notna().all() and (steps["posterior_var"] > 0).all()
    moved = steps["posterior_mean"].diff().fillna(1.0) != 0
    assert (moved == ~steps["excluded"]).all()
