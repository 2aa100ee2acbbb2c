"""One reader decides each column's type once; one validator decides what a bad row costs.

Findings M2, M3, M4, L1, L2 and L3 of issue 10 (``../shared/RELIABILITY_FINDINGS.md``), on the
reader's functions with the real Great Expectations suite and the real pandera schema; the
adversarial corpus runs the same files through the pipeline. Issue 12: the file is read once, its
rows are typed and validated once, and the quality suite holds the file-level rules only, so a
bad row costs its row and only the quarantined share excludes the batch, once.
"""

from __future__ import annotations

import gc
import hashlib
import json
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

import checks.covariates
from checks.covariates import split_valid_rows, validate_batch
from checks.quality import judge_landed_file, run_quality_suite
from checks.typed_batch import (
    BINARY_TREATMENT,
    EXTRA_FIELD,
    EXTRA_FIELDS,
    MISSING,
    NUL_BYTE,
    UNIQUE_ID,
    type_batch,
)
from resources.raw_columns import (
    columns_from_table,
    delivered_columns,
    raw_rows_table,
    stored_names,
    text_frame,
)
from resources.raw_records import BatchFileError, read_batch_file, read_landed_file
from resources.study import StudyConfig
from tests.reliability.corpus import corpus_study, csv, good_frame, parquet

STUDY = corpus_study()
SHARE = STUDY.thresholds.max_quarantine_share


def landed(tmp_path: Path, content: bytes, suffix: str = "csv") -> pd.DataFrame:
    """The raw batch as ``raw_batch`` reads it, then as ``covariate_table`` rebuilds it from raw_rows."""
    path = tmp_path / f"2025-01-02.{suffix}"
    path.write_bytes(content)
    raw = read_batch_file(path, batch="2025-01-02")
    stored = columns_from_table(raw_rows_table(raw), list(raw.columns), stored_names(raw))
    pd.testing.assert_frame_equal(stored, raw)
    if suffix == "csv":  # typing loses no text
        pd.testing.assert_frame_equal(delivered_columns(text_frame(raw)), raw)
    return raw


def lines(frame: pd.DataFrame) -> list[str]:
    return csv(frame).decode().splitlines()


def text(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def quarantined(raw: pd.DataFrame, study: StudyConfig = STUDY) -> dict[int, set[tuple[str, str]]]:
    """Row index -> its (column, rule) pairs in the covariate table's quarantine."""
    table = split_valid_rows(raw, study).quarantine
    result: dict[int, set[tuple[str, str]]] = {}
    for row in table.itertuples():
        result.setdefault(int(row.row_index), set()).add((row.column, row.rule))
    return result


# M2 ------------------------------------------------------------------------------------------


def test_a_field_longer_than_the_csv_module_limit_is_read(tmp_path: Path) -> None:
    name = "y" * 140_000  # the csv module's field limit is 131,072 characters
    raw = landed(tmp_path, csv(good_frame(1, n=40).assign(**{name: 1})))
    assert name in raw.columns and (text_frame(raw)[name] == "1").all() and len(raw) == 40


def test_a_stray_quote_in_the_header_of_a_large_file_is_a_verdict_naming_the_batch(tmp_path: Path) -> None:
    content = csv(good_frame(2, n=5000)).replace(b"unit_id,x", b'unit_id,"x', 1)
    assert len(content) > 131_072
    with pytest.raises(
        BatchFileError, match=r"^batch 2025-01-02: file 2025-01-02.csv: cannot be read.*never closes"
    ):
        landed(tmp_path, content)


# M3 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header_too", [False, True], ids=["data_rows", "every_line"])
def test_a_trailing_delimiter_shifts_nothing(tmp_path: Path, header_too: bool) -> None:
    frame = good_frame(7)
    rows = lines(frame)
    edited = [rows[0] + ("," if header_too else "")] + [row + "," for row in rows[1:]]
    raw = landed(tmp_path, text(edited))
    pd.testing.assert_frame_equal(raw, landed(tmp_path, csv(frame)))
    assert raw["unit_id"].tolist() == frame["unit_id"].tolist()
    assert len(split_valid_rows(raw, STUDY).valid) == len(frame)


# L1 ------------------------------------------------------------------------------------------


def test_one_row_with_an_extra_field_is_quarantined_alone_and_keeps_every_value(tmp_path: Path) -> None:
    frame = good_frame(8)
    rows = lines(frame)
    rows[201] += ",zzz,"  # data row 200
    raw = landed(tmp_path, text(rows))
    assert len(raw) == len(frame)
    assert text_frame(raw).drop(columns=EXTRA_FIELDS).iloc[200].tolist() == rows[201].split(",")[:6]
    assert raw[EXTRA_FIELDS].tolist() == [""] * 200 + ['["zzz"]'] + [""] * 199
    split = split_valid_rows(raw, STUDY)
    assert quarantined(raw) == {200: {(EXTRA_FIELDS, EXTRA_FIELD)}}
    assert split.quarantine["value"].tolist() == ['["zzz"]'] and len(split.valid) == len(frame) - 1


# L2 ------------------------------------------------------------------------------------------


def test_a_nul_byte_stays_in_its_value_and_quarantines_its_row(tmp_path: Path) -> None:
    frame = good_frame(9)
    frame.loc[3, "unit_id"], frame.loc[5, "segment"] = "u\x00null", "a\x00"
    raw = landed(tmp_path, csv(frame))
    assert raw.at[3, "unit_id"] == "u\x00null" and raw.at[5, "segment"] == "a\x00"
    assert raw_rows_table(raw)["c0_text"][3] == "u\x00null"
    assert quarantined(raw) == {3: {("unit_id", NUL_BYTE)}, 5: {("segment", NUL_BYTE)}}


# L3 and M4: unit ids -------------------------------------------------------------------------


def test_unit_ids_are_text_stripped_of_surrounding_spaces(tmp_path: Path) -> None:
    frame = good_frame(10)
    frame["unit_id"] = [
        "u-0",
        "u-0 ",
        " 007",
        "7",
        *(str(1_800_000_000_000_000_000 + i) for i in range(395)),
        "",
    ]
    raw = landed(tmp_path, csv(frame))
    typed = type_batch(raw, STUDY).frame["unit_id"]
    assert typed[:4].tolist() == ["u-0", "u-0", "007", "7"]
    assert typed[4:399].tolist() == [str(1_800_000_000_000_000_000 + i) for i in range(395)]
    assert typed[399] is None
    assert quarantined(raw) == {
        0: {("unit_id", UNIQUE_ID)},
        1: {("unit_id", UNIQUE_ID)},
        399: {("unit_id", MISSING)},
    }
    valid = split_valid_rows(raw, STUDY).valid
    assert {"007", "7", "1800000000000000394"} <= set(valid["unit_id"]) and len(valid) == 397
    # Two rows sharing an id cost those two rows, never the file: the suite judges no unit id.
    suite = run_quality_suite(type_batch(raw, STUDY).frame, STUDY, batch="b")
    assert suite.verdict.passed, suite.verdict.reason
    assert "unit_id" not in set(suite.expectations.query("expectation != 'expect_column_to_exist'")["column"])


# M4: treatments and outcomes read the same by both -------------------------------------------

SPELLINGS = {
    "integers": ("0", "1"),
    "decimals": ("0.0", "1.0"),
    "exponents": ("0e0", "1e0"),
    "upper_case_booleans": ("FALSE", "TRUE"),
    "booleans": ("false", "true"),
    "padded": (" 0", "1 "),
}


def _spelled(zero: str, one: str) -> bytes:
    return csv(good_frame(11).assign(treatment=lambda f: f["treatment"].map({0: zero, 1: one})))


@pytest.mark.parametrize(
    ("content", "suffix"),
    [pytest.param(_spelled(*v), "csv", id=k) for k, v in SPELLINGS.items()]
    + [
        pytest.param(
            parquet(good_frame(11).assign(treatment=lambda f: f["treatment"].astype(bool))),
            "parquet",
            id="parquet_bool",
        ),
        pytest.param(parquet(good_frame(11).astype({"treatment": "Int64"})), "parquet", id="parquet_Int64"),
    ],
)
def test_every_spelling_of_a_binary_treatment_is_read_the_same_by_both(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    expected = good_frame(11)["treatment"].to_numpy()
    raw = landed(tmp_path, content, suffix)
    typed = type_batch(raw, STUDY)
    np.testing.assert_array_equal(typed.frame["treatment"].to_numpy(), expected.astype(float))
    assert run_quality_suite(typed.frame, STUDY, batch="b").verdict.passed
    split = split_valid_rows(raw, STUDY, typed=typed)
    assert split.quarantined_rows == 0
    np.testing.assert_array_equal(split.valid["treatment"].to_numpy(), expected)


BAD_TREATMENTS = ["-1", "2", "", "yes", "inf", "nan", "0.5"]


@pytest.mark.parametrize("n_bad", [1, 3, 10, 20, 21, 40, 200])
def test_a_bad_treatment_costs_its_row_and_only_the_quarantined_share_excludes_the_batch(
    tmp_path: Path, n_bad: int
) -> None:
    """Bad rows are quarantined one by one; the schema check alone excludes, above 5% (20 of 400)."""
    frame = good_frame(12).astype({"treatment": object})
    rng = np.random.default_rng(n_bad)
    rows = np.sort(rng.choice(len(frame), n_bad, replace=False))
    bad = [BAD_TREATMENTS[i % len(BAD_TREATMENTS)] for i in range(n_bad)]
    frame.loc[rows, "treatment"] = bad
    raw = landed(tmp_path, csv(frame))
    result = validate_batch(raw, STUDY, batch="b")
    assert sorted(set(result.quarantine["row_index"])) == rows.tolist()
    assert {column for pairs in quarantined(raw).values() for column, _ in pairs} == {"treatment"}
    schema = result.verdicts["schema"][0]
    assert schema.value == n_bad / len(frame) and schema.threshold == SHARE
    assert schema.failed == (n_bad > 20)
    n_missing = sum(value in ("", "nan") for value in bad)
    expected = {("treatment", MISSING): n_missing, ("treatment", BINARY_TREATMENT): n_bad - n_missing}
    expected = {rule: count for rule, count in expected.items() if count}
    for (column, rule), count in expected.items():
        assert f"{column}: {rule} ({count} rows)" in schema.reason, schema.reason
    metadata = result.check_metadata["schema"]
    assert metadata["quarantined_rows"] == n_bad and metadata["quarantined_share"] == schema.value
    assert (
        metadata["max_quarantine_share"] == SHARE
        and BINARY_TREATMENT in metadata["quarantined_by_rule"].value
    )
    # The file-level suite never counts rows: the exclusion happens once, in the schema check.
    suite = judge_landed_file(
        read_landed_file(tmp_path / "2025-01-02.csv", batch="b"), STUDY, batch="b", twins=[]
    )
    assert suite.verdict.passed, suite.verdict.reason


def test_the_quality_suite_holds_the_file_level_rules_only(tmp_path: Path) -> None:
    raw = landed(tmp_path, csv(good_frame(16)))
    suite = run_quality_suite(type_batch(raw, STUDY).frame, STUDY, batch="b")
    kinds = suite.expectations.groupby("expectation")["column"].apply(set).to_dict()
    assert kinds == {
        "expect_column_to_exist": {"unit_id", "treatment", "outcome", "x", "segment"},
        "expect_column_distinct_values_to_contain_set": {"treatment"},
    }
    one_arm = landed(tmp_path, csv(good_frame(16).assign(treatment=1).drop(columns="x")))
    verdict = run_quality_suite(type_batch(one_arm, STUDY).frame, STUDY, batch="b").verdict
    assert verdict.failed and verdict.value == 2.0
    assert verdict.reason == (
        "batch b: missing required columns ['x']: covariates: column 'x' is not in the file; "
        "no column is close (the file has 'unit_id', 'segment', 'treatment', 'outcome', 'engagement'); "
        "treatment: no row reads 0 (both arms, 0 and 1, must be present)"
    )
    # Then the rows cannot be judged: the schema check is not assessed, so the file is excluded once.
    schema = validate_batch(one_arm, STUDY, batch="b").verdicts["schema"][0]
    assert schema.status == "undefined" and "['x']" in schema.reason


def test_the_file_is_read_once_and_what_is_parsed_is_what_was_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "2025-01-02.csv"
    path.write_bytes(csv(good_frame(17)))
    reads: list[Path] = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    landed_file = read_landed_file(path, batch="2025-01-02")
    assert reads == [path]
    assert landed_file.sha256 == hashlib.sha256(read_bytes(path)).hexdigest()
    assert landed_file.size_bytes == path.stat().st_size and not landed_file.error
    pd.testing.assert_frame_equal(landed_file.raw, read_batch_file(path, batch="2025-01-02"))
    corrupt = path.with_name("2025-01-03.parquet")
    corrupt.write_bytes(b"PAR1 not a table")
    reads.clear()
    broken = read_landed_file(corrupt, batch="2025-01-03")  # unreadable: a verdict's reason, not a crash
    assert reads == [corrupt] and broken.raw.empty
    assert broken.error.startswith("batch 2025-01-03: file 2025-01-03.parquet: cannot be read as a table")
    assert broken.sha256 == hashlib.sha256(b"PAR1 not a table").hexdigest()


def test_a_batch_is_typed_once_and_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = good_frame(18).astype(str)
    calls = {"type_batch": 0, "validate": 0}
    typing, validating = checks.covariates.type_batch, pa.DataFrameSchema.validate

    def counted_typing(*args: object, **kwargs: object) -> object:
        calls["type_batch"] += 1
        return typing(*args, **kwargs)  # type: ignore[arg-type]

    def counted_validate(self: pa.DataFrameSchema, *args: object, **kwargs: object) -> object:
        calls["validate"] += 1
        return validating(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checks.covariates, "type_batch", counted_typing)
    monkeypatch.setattr(pa.DataFrameSchema, "validate", counted_validate)
    result = validate_batch(raw, STUDY, batch="b")
    assert calls == {"type_batch": 1, "validate": 1}
    assert len(result.valid) == 400 and result.verdicts["schema"][0].passed


def test_a_binary_outcome_reads_booleans_as_the_treatment_does(tmp_path: Path) -> None:
    study = STUDY.model_copy(update={"outcome_type": "binary"})
    frame = good_frame(13).assign(outcome=lambda f: f["outcome"] > 0.2)
    for content, suffix in [
        (parquet(frame), "parquet"),
        (csv(frame.assign(outcome=frame["outcome"].map({True: "TRUE", False: "false"}))), "csv"),
    ]:
        raw = landed(tmp_path, content, suffix)
        split = split_valid_rows(raw, study)
        assert split.quarantined_rows == 0
        np.testing.assert_array_equal(
            split.valid["outcome"].to_numpy(), frame["outcome"].to_numpy(dtype=float)
        )


def test_the_covariate_table_reads_the_stored_rows_as_the_suite_read_the_file(tmp_path: Path) -> None:
    frame = good_frame(14).astype({"x": object, "treatment": object})
    frame.loc[[1, 2], "x"] = [" 1e3 ", "abc"]
    frame.loc[3, "treatment"] = "TRUE"
    raw = landed(tmp_path, csv(frame))
    assert stored_names(raw)[list(raw.columns).index("x")].endswith("_text")  # " 1e3 " keeps its text
    stored = columns_from_table(raw_rows_table(raw), list(raw.columns), stored_names(raw))
    pd.testing.assert_frame_equal(
        type_batch(stored, STUDY).frame, type_batch(text_frame(raw), STUDY).frame, check_exact=True
    )
    assert type_batch(raw, STUDY).frame.at[1, "x"] == 1000.0


def test_the_raw_rows_keep_extra_fields_beyond_the_header(tmp_path: Path) -> None:
    rows = lines(good_frame(15))
    rows[2] += ',"a,b",'
    raw = landed(tmp_path, text(rows))
    record = text_frame(raw).iloc[1]
    assert json.loads(record[EXTRA_FIELDS]) == ["a,b"] and record["unit_id"] == "u15-1"


def test_the_quality_suite_keeps_no_reference_to_the_batch(tmp_path: Path) -> None:
    """GX's engine keeps the batch it validated: released, a 1e7-row batch is not carried into later steps."""
    frame = type_batch(landed(tmp_path, csv(good_frame(16))), STUDY).frame
    alive = weakref.ref(frame)
    assert run_quality_suite(frame, STUDY, batch="b").verdict.passed
    del frame
    gc.collect()
    assert alive() is None


def test_a_validated_batch_is_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    """pandera's accessor refers back to the frame it validated: left as a cycle, a 1e7-row batch's
    columns stay until the cyclic collector runs, well into the next step."""
    raw = landed(tmp_path, csv(good_frame(1237)))
    gc.collect()
    gc.disable()
    try:
        split = split_valid_rows(raw, STUDY)
        rows = len(split.valid)
        assert split.quarantine.empty and rows > 100
        del split
        lingering = [o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) == rows]
        assert [id(f) for f in lingering] == [id(raw)]
    finally:
        gc.enable()


def test_a_batch_read_without_problems_is_split_without_a_copy_of_its_columns(tmp_path: Path) -> None:
    """The valid rows of a clean batch are its typed columns: at 1e7 rows a copy is gigabytes."""
    raw = landed(tmp_path, csv(good_frame(1237)))
    typed = type_batch(raw, STUDY)
    split = split_valid_rows(raw, STUDY, typed=typed)
    assert split.quarantine.empty and len(split.valid) == len(raw)
    numeric = [c for c in split.valid.columns if c != "row_index" and split.valid[c].dtype == np.float64]
    assert numeric and all(np.shares_memory(split.valid[c], typed.frame[c]) for c in numeric)
    pd.testing.assert_frame_equal(
        split.valid.drop(columns="row_index"),
        typed.frame[split.valid.columns[1:]].astype({STUDY.treatment: "int64"}),
    )
