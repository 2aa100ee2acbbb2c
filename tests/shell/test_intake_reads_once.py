"""The covariate table validates the rows raw_batch has just read: the frame the warehouse gives back.

assets/intake.py validates a landed batch's rows in the step that reads them; a run of
covariate_table alone reads them back from ``raw_rows``. The two must give the validator the same
frame (values, dtypes, index), so either path stores the same covariates, quarantine and verdicts:
shown here for every file of the adversarial corpus, on both warehouse backends.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from checks.covariates import validate_batch
from checks.results import verdict_rows
from resources.raw_columns import batch_from_rows, load_raw, raw_rows_table, stored_names
from resources.raw_records import read_landed_file
from resources.warehouse import Warehouse
from tests.backend_support import warehouse_of_param
from tests.reliability.corpus import CASES, corpus_study, day


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return warehouse_of_param(request, tmp_path)


def test_every_corpus_file_validates_alike_read_once_or_read_back(store: Warehouse, tmp_path: Path) -> None:
    study = corpus_study()
    compared = 0
    for index, case in enumerate(CASES, start=1):
        if case.outcome == "unmapped":  # the sensor never reads it
            continue
        batch = day(index).isoformat()
        path = tmp_path / f"{batch}.{case.suffix}"
        path.write_bytes(case.content(index))
        landed = read_landed_file(path, batch=batch)
        rows = raw_rows_table(landed.raw)
        store.replace_partition_tables(study.name, batch, {"raw_files": landed.files_row(), "raw_rows": rows})

        in_step = batch_from_rows(rows, list(landed.raw.columns), stored_names(landed.raw))
        read_back = load_raw(store, study, batch)
        pd.testing.assert_frame_equal(in_step, read_back, check_exact=True, obj=case.name)
        once, again = (
            validate_batch(in_step, study, batch=batch),
            validate_batch(read_back, study, batch=batch),
        )
        for mine, theirs in ((once.valid, again.valid), (once.quarantine, again.quarantine)):
            pd.testing.assert_frame_equal(mine, theirs, check_exact=True, obj=case.name)
        pd.testing.assert_frame_equal(
            verdict_rows("covariate_table", once.verdicts), verdict_rows("covariate_table", again.verdicts)
        )
        compared += 1
    assert compared >= 30, compared
