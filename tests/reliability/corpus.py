"""A generated corpus of malformed and hostile batch files, each with the outcome it must have.

Every case is one day of a daily study (`corpus_study`): the baseline batch lands on 2025-01-01,
case k on the k-th day after. Outcomes:

- ``excluded``: the batch never moves the posterior; the named check fails and its reason names
  the batch (and the column, where one is at fault). A file-level fault (unreadable, a required
  column missing, one arm only) fails ``raw_batch_data_quality``; bad rows cost their rows, and
  only a quarantined share above the study's bound fails ``covariate_table_schema`` (decision 31);
- ``admitted``: the batch is used (extra columns, a few quarantined rows, a large batch ...);
- ``unmapped``: the sensor leaves the file alone, requests no run and logs why.

``TRAPS`` are landing-folder entries that try to make the pipeline read a file from outside the
folder (symlinks out, ``..`` in a name or a symlink target, directories named like batches).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from resources.study import StudyConfig

START = date(2025, 1, 1)


def corpus_study() -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "corpus",
            "landing_folder": "corpus",
            "cadence": "daily",
            "start_date": START.isoformat(),
            "unit_id": "unit_id",
            "treatment": "treatment",
            "outcome": "outcome",
            "outcome_type": "continuous",
            "design": {"kind": "randomized", "treated_share": 0.5},
            "covariates": ["x"],
            "categorical": {"segment": ["a", "b"]},
            "post_treatment": ["engagement"],
            "primary_estimator": "regression_adjustment",
            "estimators": ["difference_in_means", "regression_adjustment", "ipw", "aipw"],
            "prior": {"mean": 0.0, "variance": 1.0},
            "process_var": 0.0001,
            "seed": 7,
        }
    )


def good_frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = np.tile([0, 1], n // 2 + 1)[:n]
    rng.shuffle(d)
    x = rng.standard_normal(n)
    y = 0.5 * d + 0.3 * x + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "unit_id": [f"u{seed}-{i}" for i in range(n)],
            "x": x,
            "segment": rng.choice(["a", "b"], n),
            "treatment": d,
            "outcome": y,
            "engagement": 1.2 * d + rng.standard_normal(n),
        }
    )


def csv(frame: pd.DataFrame, **options: object) -> bytes:
    return frame.to_csv(index=False, **options).encode("utf-8")  # type: ignore[arg-type]


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the kind of fault, for the reliability figures
    content: Callable[[int], bytes]
    outcome: str  # excluded | admitted | unmapped
    check: str = ""  # a failing check the exclusion names
    mentions: tuple[str, ...] = ()  # words the failing verdict's reason (unmapped: the log line) must contain
    quarantined: tuple[str, ...] = field(default=())  # columns with quarantined rows
    suffix: str = "csv"
    file_name: str | None = None  # for unmapped cases: the file's own name
    rule: str = ""  # words the failing verdict's stored rule must contain
    quarantine_rule: str = ""  # words every quarantined row's rule must contain
    quarantined_rows: tuple[int, ...] | None = None  # exactly these rows are quarantined (None: not pinned)


def _edit(seed: int, change: Callable[[pd.DataFrame], pd.DataFrame]) -> bytes:
    return csv(change(good_frame(seed)))


def _set(column: str, rows: list[int], value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[rows, column] = value
        return frame

    return change


READABLE = "the file is a readable, non-empty table"
EXTRA_FIELDS = "(extra fields)"  # the raw column of values beyond the header (resources/raw_records.py)
COLUMNS_PRESENT = "required columns present"
SUITE = "every expectation of the quality suite holds"
SHARE_RULE = "quarantined share <= 0.05"
ESTIMABLE = "the primary estimator returns a finite estimate and a positive standard error"
BINARY = "treatment must be 0 or 1"
MISSING = "value must not be missing"
UNIQUE = "unit id must be unique"
SQL_VALUE = "'); DROP TABLE corpus.raw_rows; --"
HOSTILE_COLUMNS = ('quote"col', "semi;colon", "DROP TABLE raw_rows; --", "select", "ünïcödé ✓", "x" * 10_000)


def _lines(seed: int, change: Callable[[list[str]], list[str]], n: int = 400) -> bytes:
    """A good batch's CSV lines (the header first), edited as text."""
    return ("\n".join(change(csv(good_frame(seed, n=n)).decode().splitlines())) + "\n").encode()


def _extra_field(lines: list[str]) -> list[str]:
    return [line + ",zzz" if index == 201 else line for index, line in enumerate(lines)]  # data row 200


def _text_treatment(zero: str, one: str) -> Callable[[int], bytes]:
    return lambda s: csv(good_frame(s).assign(treatment=lambda f: f["treatment"].map({0: zero, 1: one})))


def _ids(ids: Callable[[pd.DataFrame], list[str]]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.assign(unit_id=ids(frame))


def _treatments(values: dict[int, object]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({"treatment": object})
        for row, value in values.items():
            frame.loc[row, "treatment"] = value
        return frame

    return change


def _hostile_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{name: value for value, name in enumerate(HOSTILE_COLUMNS, start=1)})


CASES: list[Case] = [
    Case(
        "empty_file",
        "unreadable file",
        lambda s: b"",
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
        rule=READABLE,
    ),
    Case(
        "header_only",
        "unreadable file",
        lambda s: b"unit_id,x,segment,treatment,outcome\n",
        "excluded",
        "raw_batch_data_quality",
        ("no data rows",),
        rule=READABLE,
    ),
    Case(
        "truncated_parquet",
        "unreadable file",
        lambda s: parquet(good_frame(s))[:300],
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
        suffix="parquet",
        rule=READABLE,
    ),
    Case(
        "corrupt_parquet",
        "unreadable file",
        lambda s: b"PAR1" + bytes(range(256)) * 4,
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
        suffix="parquet",
        rule=READABLE,
    ),
    Case(
        "wrong_delimiter",
        "format",
        lambda s: csv(good_frame(s), sep=";"),
        "excluded",
        "raw_batch_data_quality",
        ("missing required columns", "treatment"),
        rule=COLUMNS_PRESENT,
    ),
    Case(
        "latin1_encoding",
        "format",
        lambda s: good_frame(s).assign(segment="a", note="café").to_csv(index=False).encode("latin-1"),
        "excluded",
        "raw_batch_data_quality",
        ("not UTF-8",),
        rule=READABLE,
    ),
    Case(
        "duplicate_header",
        "format",
        lambda s: b"unit_id,x,x,segment,treatment,outcome\n1,2,3,a,0,1\n",
        "excluded",
        "raw_batch_data_quality",
        ("duplicate column",),
        rule=READABLE,
    ),
    Case("utf8_bom", "format", lambda s: b"\xef\xbb\xbf" + csv(good_frame(s)), "admitted"),
    Case(
        "missing_treatment",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="treatment")),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        rule=COLUMNS_PRESENT,
    ),
    Case(
        "missing_outcome",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="outcome")),
        "excluded",
        "raw_batch_data_quality",
        ("outcome",),
        rule=COLUMNS_PRESENT,
    ),
    Case(
        "missing_covariate",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="x")),
        "excluded",
        "raw_batch_data_quality",
        ("'x'",),
        rule=COLUMNS_PRESENT,
    ),
    Case(
        "extra_columns", "extra column", lambda s: csv(good_frame(s).assign(extra1=1, extra2="z")), "admitted"
    ),
    Case("hostile_column_names", "hostile names", lambda s: csv(_hostile_columns(good_frame(s))), "admitted"),
    Case(
        "strings_in_covariate_few",
        "wrong dtype",
        lambda s: _edit(s, _set("x", [3, 7], "abc")),
        "admitted",
        quarantined=("x",),
        quarantine_rule="value must be a number",
        quarantined_rows=(3, 7),
    ),
    Case(
        "strings_in_outcome_many",
        "wrong dtype",
        lambda s: _edit(s, _set("outcome", list(range(0, 400, 2)), "n/a")),
        "excluded",
        "covariate_table_schema",
        ("quarantined",),
        quarantined=("outcome",),
        rule=SHARE_RULE,
        quarantine_rule="value must be a number",
        quarantined_rows=tuple(range(0, 400, 2)),
    ),
    Case(
        "treatment_two",
        "non-binary treatment",
        lambda s: _edit(s, _set("treatment", [5, 9], 2)),
        "admitted",
        quarantined=("treatment",),
        quarantine_rule=BINARY,
        quarantined_rows=(5, 9),
    ),
    Case(
        "treatment_minus_one",
        "non-binary treatment",
        lambda s: _edit(s, _set("treatment", [4], -1)),
        "admitted",
        quarantined=("treatment",),
        quarantine_rule=BINARY,
        quarantined_rows=(4,),
    ),
    Case(
        "treatment_yes_no",
        "non-binary treatment",
        lambda s: csv(good_frame(s).assign(treatment=lambda f: f["treatment"].map({0: "no", 1: "yes"}))),
        "excluded",
        "raw_batch_data_quality",  # no row reads an arm (a file-level rule); every row is quarantined too
        ("treatment: no row reads 0, 1",),
        quarantined=("treatment",),
        rule=SUITE,
        quarantine_rule=BINARY,
        quarantined_rows=tuple(range(400)),
    ),
    Case(
        "nan_in_treatment",
        "missing value",
        lambda s: _edit(s, _set("treatment", [1, 2], "")),
        "admitted",
        quarantined=("treatment",),
        quarantine_rule=MISSING,
        quarantined_rows=(1, 2),
    ),
    Case(
        "inf_in_outcome",
        "non-finite value",
        lambda s: _edit(s, _set("outcome", [10], "inf")),
        "admitted",
        quarantined=("outcome",),
        quarantine_rule="value must be finite",
        quarantined_rows=(10,),
    ),
    Case(
        "nan_in_covariate",
        "missing value",
        lambda s: _edit(s, _set("x", [11, 12], "")),
        "admitted",
        quarantined=("x",),
        quarantine_rule="value must not be missing",
        quarantined_rows=(11, 12),
    ),
    Case(
        "all_treated",
        "one arm",
        lambda s: csv(good_frame(s).assign(treatment=1)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        rule=SUITE,
    ),
    Case(
        "all_control",
        "one arm",
        lambda s: csv(good_frame(s).assign(treatment=0)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        rule=SUITE,
    ),
    Case(
        "single_row",
        "too small",
        lambda s: csv(good_frame(s).head(1)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        rule=SUITE,
    ),
    Case(
        "duplicate_unit_ids",
        "duplicate ids",
        lambda s: _edit(s, _set("unit_id", [0, 1, 2], "same")),
        "admitted",
        quarantined=("unit_id",),
        quarantine_rule=UNIQUE,
        quarantined_rows=(0, 1, 2),
    ),
    Case(
        "duplicate_unit_ids_in_many_rows",
        "duplicate ids",
        lambda s: _edit(s, _set("unit_id", list(range(40)), "same")),
        "excluded",
        "covariate_table_schema",  # issue 12: the row rule's share, once (before: the quality suite too)
        ("40 of 400 rows quarantined", "unit_id: unit id must be unique (40 rows)"),
        quarantined=("unit_id",),
        rule=SHARE_RULE,
        quarantine_rule=UNIQUE,
        quarantined_rows=tuple(range(40)),
    ),
    Case(
        "perfect_separation",
        "separation",
        lambda s: csv(
            good_frame(s).assign(
                x=lambda f: np.where(f["treatment"] == 1, 1.0, -1.0) + 0.01 * np.arange(len(f)) / len(f)
            )
        ),
        "excluded",
        "propensity_model_overlap",
        ("separation", "'x'"),
        rule="outside [0.05, 0.95]",
    ),
    Case(
        "zero_variance_covariate",
        "zero variance",
        lambda s: csv(good_frame(s).assign(x=1.0)),
        "excluded",
        "batch_effect_estimation",
        ("'x'",),
        rule=ESTIMABLE,
    ),
    Case(
        "constant_outcome",
        "constant outcome",
        lambda s: csv(good_frame(s).assign(outcome=3.0)),
        "excluded",
        "batch_effect_estimation",
        ("outcome",),
        rule=ESTIMABLE,
    ),
    Case("extreme_outlier", "outlier", lambda s: _edit(s, _set("outcome", [0], 1e12)), "admitted"),
    Case(
        "post_treatment_as_covariate",
        "post-treatment column",
        lambda s: csv(good_frame(s).assign(x=lambda f: f["engagement"] * 2.0 + 1.0)),
        "excluded",
        "covariate_table_post_treatment_exclusion",
        ("'x'", "engagement"),
        rule="derives from a post-treatment column",
    ),
    Case(
        "unknown_category_level",
        "unknown level",
        lambda s: _edit(s, _set("segment", [6, 8], "zzz")),
        "admitted",
        quarantined=("segment",),
        quarantine_rule="level must be one of ['a', 'b']",
        quarantined_rows=(6, 8),
    ),
    Case(
        "srm_broken_split",
        "sample-ratio mismatch",
        lambda s: csv(
            good_frame(s, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
        ),
        "excluded",
        "covariate_table_sample_ratio_mismatch",
        ("treated share",),
        rule="exact binomial p-value >= 2.75e-05",
    ),
    Case("hundred_times_larger", "large batch", lambda s: csv(good_frame(s, n=40_000)), "admitted"),
    Case(
        "nan_in_outcome",
        "non-finite value",
        lambda s: _edit(s, _set("outcome", [13, 14], "NaN")),
        "admitted",
        quarantined=("outcome",),
        quarantined_rows=(13, 14),
        quarantine_rule="value must not be missing",
    ),
    Case(
        "inf_in_treatment",
        "non-finite value",
        lambda s: _edit(s, _set("treatment", [15], "inf")),
        "admitted",
        quarantined=("treatment",),
        quarantined_rows=(15,),
        quarantine_rule=BINARY,
    ),
    Case(
        "inf_in_covariate",
        "non-finite value",
        lambda s: _edit(s, _set("x", [16, 17], "-inf")),
        "admitted",
        quarantined=("x",),
        quarantined_rows=(16, 17),
        quarantine_rule="value must be finite",
    ),
    Case(
        "sql_in_values",
        "hostile names",
        lambda s: _edit(s, _set("unit_id", [0, 1], [SQL_VALUE, SQL_VALUE + "2"])),
        "admitted",
    ),
    # Findings of issue 10 (one reader for every check; ../shared/RELIABILITY_FINDINGS.md).
    Case(
        "stray_quote_in_a_large_header",  # M2: crashed the run with "_csv.Error: field larger than ..."
        "format",
        lambda s: csv(good_frame(s, n=5000)).replace(b"unit_id,x", b'unit_id,"x', 1),
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read", "never closes"),
        rule=READABLE,
    ),
    Case(
        "trailing_delimiter_on_every_row",  # M3: every value moved one column left, unit ids lost
        "format",
        lambda s: _lines(s, lambda lines: lines[:1] + [line + "," for line in lines[1:]]),
        "admitted",
    ),
    Case(
        "trailing_delimiter_on_every_line",
        "format",
        lambda s: _lines(s, lambda lines: [line + "," for line in lines]),
        "admitted",
    ),
    Case(
        "extra_field_in_one_row",  # L1: the whole file was unreadable
        "ragged row",
        lambda s: _lines(s, _extra_field),
        "admitted",
        quarantined=(EXTRA_FIELDS,),
        quarantine_rule="the row has more fields than the header",
        quarantined_rows=(200,),
    ),
    Case(
        "nul_bytes_in_values",  # L2: values were cut at the NUL and admitted
        "NUL bytes",
        lambda s: _edit(s, lambda f: _set("segment", [5], "a\x00")(_set("unit_id", [3], "u\x00null")(f))),
        "admitted",
        quarantined=("unit_id", "segment"),
        quarantine_rule="value must not contain a NUL byte",
        quarantined_rows=(3, 5),
    ),
    Case(
        "ids_differing_only_by_spaces",  # L3: counted as two units
        "duplicate ids",
        lambda s: _edit(s, _ids(lambda f: [f["unit_id"][0], f"{f['unit_id'][0]} ", *f["unit_id"][2:]])),
        "admitted",
        quarantined=("unit_id",),
        quarantine_rule=UNIQUE,
        quarantined_rows=(0, 1),
    ),
    Case(
        "int64_ids_and_one_blank",  # M4: float64 collapsed the ids, excluded as duplicates
        "64-bit ids",
        lambda s: _edit(
            s, _ids(lambda f: [str(1_800_000_000_000_000_000 + i) for i in range(len(f) - 1)] + [""])
        ),
        "admitted",
        quarantined=("unit_id",),
        quarantine_rule=MISSING,
        quarantined_rows=(399,),
    ),
    Case(
        "zero_padded_ids",  # M4: 007 and 7 excluded as duplicates by the suite only
        "64-bit ids",
        lambda s: _edit(s, _ids(lambda f: ["007", "7", *(str(100 + i) for i in range(len(f) - 2))])),
        "admitted",
    ),
    Case(
        "parquet_bool_treatment",  # M4: excluded by the suite, all rows valid in pandera
        "bool treatment",
        lambda s: parquet(good_frame(s).assign(treatment=lambda f: f["treatment"].astype(bool))),
        "admitted",
        suffix="parquet",
    ),
    Case("treatment_true_false_text", "bool treatment", _text_treatment("FALSE", "TRUE"), "admitted"),
    Case("treatment_1e0_0e0", "bool treatment", _text_treatment("0e0", "1e0"), "admitted"),
    Case(
        "one_invalid_and_two_blank_treatments",  # issue 12: one -1 excluded, two blanks did not
        "non-binary treatment",
        lambda s: _edit(s, _treatments({4: -1, 1: "", 2: ""})),
        "admitted",
        quarantined=("treatment",),
        quarantine_rule=BINARY,
        quarantined_rows=(1, 2, 4),
    ),
    Case(
        "treatment_invalid_in_many_rows",
        "non-binary treatment",
        lambda s: _edit(s, _treatments(dict.fromkeys(range(40), -1))),
        "excluded",
        "covariate_table_schema",  # issue 12: the row rule's share, once (before: the quality suite too)
        ("40 of 400 rows quarantined", "treatment: treatment must be 0 or 1 (40 rows)"),
        quarantined=("treatment",),
        rule=SHARE_RULE,
        quarantine_rule=BINARY,
        quarantined_rows=tuple(range(40)),
    ),
    Case(
        "no_partition_name",
        "unmapped name",
        lambda s: csv(good_frame(s)),
        "unmapped",
        file_name="notes.csv",
        mentions=("name does not match YYYY-MM-DD.csv",),
    ),
    Case(
        "impossible_date",
        "unmapped name",
        lambda s: csv(good_frame(s)),
        "unmapped",
        file_name="2025-13-45.csv",
        mentions=("is not a calendar date",),
    ),
]


@dataclass(frozen=True)
class Trap:
    """A landing-folder entry that points (or pretends to point) outside the folder.

    ``make(folder, outside, name, key)`` creates the entry ``name`` for partition ``key`` in the
    landing ``folder``; ``outside/batch.csv``, beside the landing root, is the batch it tries to
    smuggle in. ``logged`` is what the sensor's log line must say (None: a hidden name, ignored
    without a line so that writers can land files atomically as ``.name.tmp``).
    """

    name: str
    entry: Callable[[str], str]  # partition key -> the entry's name in the landing folder
    make: Callable[[Path, Path, str, str], None]
    logged: str | None


def _symlink_absolute(folder: Path, outside: Path, name: str, key: str) -> None:
    (folder / name).symlink_to(outside / "batch.csv")


def _symlink_dot_dot(folder: Path, outside: Path, name: str, key: str) -> None:
    (folder / "sub").mkdir(exist_ok=True)  # sub/../../.. : a relative target through a nested folder
    (folder / name).symlink_to(Path("sub", "..", os.path.relpath(outside / "batch.csv", folder)))


def _symlink_to_parent(folder: Path, outside: Path, name: str, key: str) -> None:
    (folder / name).symlink_to("..", target_is_directory=True)


def _plain_file(folder: Path, outside: Path, name: str, key: str) -> None:
    (folder / name).write_bytes((outside / "batch.csv").read_bytes())


def _directory(folder: Path, outside: Path, name: str, key: str) -> None:
    (folder / name).mkdir()
    (folder / name / f"{key}.csv").write_bytes((outside / "batch.csv").read_bytes())


TRAPS: list[Trap] = [
    Trap(
        "symlink_out_absolute", lambda k: f"{k}.csv", _symlink_absolute, "resolves outside the landing folder"
    ),
    Trap(
        "symlink_out_via_dot_dot",
        lambda k: f"{k}.csv",
        _symlink_dot_dot,
        "resolves outside the landing folder",
    ),
    Trap("symlink_to_the_parent_folder", lambda k: f"{k}.csv", _symlink_to_parent, "resolves outside"),
    Trap("dot_dot_inside_the_name", lambda k: f"{k}..csv", _plain_file, "name contains '..'"),
    Trap("dot_dot_directory_holding_a_batch", lambda k: f"x..%2F..%2F{k}", _directory, "name contains '..'"),
    Trap("directory_named_like_a_batch", lambda k: f"{k}.csv", _directory, "not a regular file"),
    Trap("url_encoded_traversal", lambda k: f"%2E%2E%2F{k}.csv", _plain_file, "name does not match"),
    Trap("hidden_dot_dot_name", lambda k: f"..{k}.csv", _plain_file, None),
]


def day(index: int) -> date:
    return START + timedelta(days=index)
