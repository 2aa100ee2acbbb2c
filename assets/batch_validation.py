"""Reading a landed batch file and splitting its rows into valid and quarantined ones.

No Dagster here: the assets call these functions, and tests call them directly. A raw batch is kept
as text, exactly as delivered; ``type_batch`` (``assets/typed_batch.py``) decides each column's
type once for every check; the covariate table is the pandera-validated typed subset with only the
study's pre-treatment columns. Every rejected row goes to quarantine with the column and rule.

A CSV row is read field by field under the header's names: a value beyond the header's last column
is kept in the ``EXTRA_FIELDS`` column (its row is quarantined), and an empty one is dropped (a
delimiter at the end of every line is a common export artefact); a NUL byte stays in its value.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from assets.typed_batch import EXTRA_FIELDS, TypedBatch, type_batch
from resources.study import StudyConfig


class BatchFileError(ValueError):
    """A landed file that cannot be read as a table at all."""


QUARANTINE_COLUMNS = ["row_index", "column", "rule", "value", "record_json"]


def read_batch_file(path: Path, *, batch: str, content: bytes | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch file with every value as text, exactly as delivered.

    ``content``: the file's bytes when the caller has read them (then what is parsed is what was
    hashed).
    """
    where = f"batch {batch}: file {path.name}"
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes() if content is None else content
        if suffix == ".csv":
            frame = _read_csv(data.decode("utf-8-sig"), where)
        elif suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(data))
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
            frame.columns = [str(c) for c in frame.columns]
        else:
            raise BatchFileError(f"{where}: unsupported format {suffix!r}")
    except UnicodeDecodeError as error:
        raise BatchFileError(f"{where}: not UTF-8 text ({error.reason})") from error
    except BatchFileError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, OSError, ValueError) as error:
        hint = " (a quote opens a field that never closes)" if "EOF inside string" in str(error) else ""
        raise BatchFileError(f"{where}: cannot be read as a table: {error}{hint}") from error
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise BatchFileError(f"{where}: duplicate column names {duplicated}")
    return frame.reset_index(drop=True)


_LONG_ROW = re.compile(r"expected \d+ fields, saw (\d+)")


def _read_csv(text: str, where: str) -> pd.DataFrame:
    """Every record's fields under the header's names (the pandas C parser, no field size limit)."""
    stand_in = ""
    if "\x00" in text:  # the C parser ends a value at a NUL byte: parse a stand-in, put NUL back
        stand_in = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
        text = text.replace("\x00", stand_in)
    options = {"header": None, "dtype": str, "keep_default_na": False, "na_filter": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        fields = pd.read_csv(io.StringIO(text), on_bad_lines="warn", **options)  # type: ignore[call-overload]
    width = fields.shape[1]  # the header's fields
    skipped = [str(w.message) for w in caught if issubclass(w.category, pd.errors.ParserWarning)]
    longest = [int(n) for message in skipped for n in _LONG_ROW.findall(message)]
    if skipped and not longest:  # never lose the skipped rows silently
        raise BatchFileError(f"{where}: cannot be read as a table: {skipped[0].strip()}")
    if longest:  # rows with more fields than the header: read again, wide enough for every row
        fields = pd.read_csv(io.StringIO(text), names=range(max(longest)), index_col=False, **options)  # type: ignore[call-overload]
    header = [str(name) for name in fields.iloc[0, :width]]
    frame = fields.iloc[1:, :width].set_axis(header, axis=1)
    extra = fields.iloc[1:, width:]
    if extra.ne("").to_numpy().any():
        if EXTRA_FIELDS in header:
            raise BatchFileError(
                f"{where}: rows have more fields than the header, and a column is named {EXTRA_FIELDS!r}"
            )
        frame[EXTRA_FIELDS] = [_extra_json(row) for row in extra.itertuples(index=False)]
    if header and header.count("") == 1 and header[-1] == "" and not frame[""].ne("").any():
        frame = frame.drop(columns=[""])  # the header's own delimiter at the end of its line
    if stand_in:
        frame = frame.apply(lambda column: column.str.replace(stand_in, "\x00", regex=False))
        frame.columns = [name.replace(stand_in, "\x00") for name in frame.columns]
    return frame


def _extra_json(values: tuple[str, ...]) -> str:
    """A row's values beyond the header as a JSON list, up to its last non-empty one ('' if none)."""
    kept = list(values)
    while kept and kept[-1] == "":
        kept.pop()
    return json.dumps(kept, ensure_ascii=False) if kept else ""


@dataclass(frozen=True)
class SplitBatch:
    """Valid typed rows and quarantined rows of one batch.

    ``missing_columns`` lists required columns absent from the file: then no row is valid;
    ``missing_reason`` names the study key of each and the file's closest column.
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    missing_columns: tuple[str, ...]
    missing_reason: str = ""

    @property
    def quarantined_rows(self) -> int:
        """Number of distinct rows that were quarantined."""
        return int(self.quarantine["row_index"].nunique()) if len(self.quarantine) else 0


def covariate_schema(study: StudyConfig) -> pa.DataFrameSchema:
    """The pandera schema of a study's covariate table (typed, pre-treatment columns only)."""
    finite = pa.Check(lambda s: np.isfinite(s.astype(float)), error="value must be finite")
    outcome_checks = [finite]
    low, high = study.outcome_range
    if low is not None:
        outcome_checks.append(pa.Check.ge(low, error=f"outcome must be >= {low}"))
    if high is not None:
        outcome_checks.append(pa.Check.le(high, error=f"outcome must be <= {high}"))
    if study.outcome_type == "binary":
        outcome_checks.append(pa.Check.isin([0.0, 1.0], error="binary outcome must be 0 or 1"))
    columns = {
        study.unit_id: pa.Column(
            str, pa.Check.str_length(min_value=1), unique=study.duplicate_units == "reject", nullable=False
        ),
        study.treatment: pa.Column(
            "int64", pa.Check.isin([0, 1], error="treatment must be 0 or 1"), nullable=False
        ),
        study.outcome: pa.Column(float, outcome_checks, nullable=False),
    }
    for name in study.covariates:
        columns[name] = pa.Column(float, finite, nullable=False)
    if study.cluster is not None:
        columns[study.cluster] = pa.Column(str, pa.Check.str_length(min_value=1), nullable=False)
    for name, levels in study.categorical.items():
        columns[name] = pa.Column(
            str, pa.Check.isin(list(levels), error=f"level must be one of {list(levels)}"), nullable=False
        )
    return pa.DataFrameSchema(columns, strict=True, ordered=False)


def split_valid_rows(raw: pd.DataFrame, study: StudyConfig, *, typed: TypedBatch | None = None) -> SplitBatch:
    """Validate a raw batch against the study's covariate schema; quarantine failing rows.

    Reads ``type_batch(raw, study)`` (pass it as ``typed`` if the caller has it): a row that breaks
    a reading rule there is quarantined with it; pandera judges the other rows. Columns not needed
    by the study (including post-treatment ones) never reach the valid table.
    """
    typed = type_batch(raw, study) if typed is None else typed
    if typed.missing_columns:
        return SplitBatch(
            _empty_valid(study), _empty_quarantine(), typed.missing_columns, typed.missing_reason
        )
    schema = covariate_schema(study)
    candidates = typed.frame.loc[~typed.frame.index.isin(typed.problems["row_index"]), list(schema.columns)]
    candidates = candidates.astype({study.treatment: "int64"})  # every remaining treatment is 0 or 1
    problems = [typed.problems]
    try:
        schema.validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        rules = (
            cases["check"]
            .astype(str)
            .replace(
                {"field_uniqueness": "unit id must be unique", "not_nullable": "value must not be missing"}
            )
        )
        problems.append(
            pd.DataFrame(
                {"row_index": cases["index"].astype(np.int64), "column": cases["column"], "rule": rules}
            )
        )
    quarantine = _quarantine_table(raw, pd.concat(problems, ignore_index=True))
    valid = candidates.loc[~candidates.index.isin(quarantine["row_index"])]
    return SplitBatch(valid.reset_index(names="row_index"), quarantine, ())


def _quarantine_table(raw: pd.DataFrame, problems: pd.DataFrame) -> pd.DataFrame:
    if problems.empty:
        return _empty_quarantine()
    table = problems.drop_duplicates(["row_index", "column", "rule"]).astype({"column": str, "rule": str})
    table["value"] = [str(raw.at[i, c]) for i, c in zip(table["row_index"], table["column"], strict=True)]
    records = raw.loc[table["row_index"].unique()].to_dict(orient="index")
    table["record_json"] = [
        json.dumps(records[i], ensure_ascii=False, sort_keys=True) for i in table["row_index"]
    ]
    return table.sort_values(["row_index", "column", "rule"]).reset_index(drop=True)[QUARANTINE_COLUMNS]


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c == "row_index" else str) for c in QUARANTINE_COLUMNS}
    )


def _empty_valid(study: StudyConfig) -> pd.DataFrame:
    return pd.DataFrame(columns=["row_index", *covariate_schema(study).columns])
