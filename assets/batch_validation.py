"""Reading a landed batch file and splitting its rows into valid and quarantined ones.

No Dagster here: the assets call these functions, and tests call them directly. A raw batch is kept
as text, exactly as delivered; the covariate table is the pandera-validated typed subset with only
the study's pre-treatment columns. Every rejected row goes to quarantine with the column and rule.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from orchestration.study_config import StudyConfig


class BatchFileError(ValueError):
    """A landed file that cannot be read as a table at all."""


QUARANTINE_COLUMNS = ["row_index", "column", "rule", "value", "record_json"]


def read_batch_file(path: Path, *, batch: str) -> pd.DataFrame:
    """Read a CSV or Parquet batch file with every value as text, exactly as delivered."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            text = path.read_bytes().decode("utf-8-sig")
            header = next(csv.reader(io.StringIO(text)), [])
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                raise BatchFileError(f"batch {batch}: file {path.name}: duplicate column names {repeated}")
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
        else:
            raise BatchFileError(f"batch {batch}: file {path.name}: unsupported format {suffix!r}")
    except UnicodeDecodeError as error:
        raise BatchFileError(f"batch {batch}: file {path.name}: not UTF-8 text ({error.reason})") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as error:
        if isinstance(error, BatchFileError):
            raise
        raise BatchFileError(
            f"batch {batch}: file {path.name}: cannot be read as a table: {error}"
        ) from error
    frame.columns = [str(c) for c in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise BatchFileError(f"batch {batch}: file {path.name}: duplicate column names {duplicated}")
    return frame.reset_index(drop=True)


def raw_rows_table(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per delivered row: its index and the record as JSON text."""
    records = raw.to_dict(orient="records")
    return pd.DataFrame(
        {
            "row_index": np.arange(len(raw), dtype=np.int64),
            "record_json": [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records],
        }
    )


def typed_view(raw: pd.DataFrame) -> pd.DataFrame:
    """Columns that parse as numbers become numbers; others stay text (for the quality suite)."""
    typed = {}
    for column in raw.columns:
        numeric = pd.to_numeric(raw[column].replace("", np.nan), errors="coerce")
        parsable = raw[column].eq("") | numeric.notna() | raw[column].str.lower().isin(["nan", "inf", "-inf"])
        typed[column] = numeric if bool(parsable.all()) else raw[column]
    return pd.DataFrame(typed, index=raw.index)


@dataclass(frozen=True)
class SplitBatch:
    """Valid typed rows and quarantined rows of one batch.

    ``missing_columns`` lists required columns absent from the file: then no row is valid.
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    missing_columns: tuple[str, ...]

    @property
    def quarantined_rows(self) -> int:
        """Number of distinct rows that were quarantined."""
        return int(self.quarantine["row_index"].nunique()) if len(self.quarantine) else 0


def required_columns(study: StudyConfig) -> list[str]:
    """Unit id, treatment, outcome and every covariate the study adjusts for."""
    return [study.unit_id, study.treatment, study.outcome, *study.covariates, *study.categorical]


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
        study.unit_id: pa.Column(str, pa.Check.str_length(min_value=1), unique=True, nullable=False),
        study.treatment: pa.Column(
            "int64", pa.Check.isin([0, 1], error="treatment must be 0 or 1"), nullable=False
        ),
        study.outcome: pa.Column(float, outcome_checks, nullable=False),
    }
    for name in study.covariates:
        columns[name] = pa.Column(float, finite, nullable=False)
    for name, levels in study.categorical.items():
        columns[name] = pa.Column(
            str, pa.Check.isin(list(levels), error=f"level must be one of {list(levels)}"), nullable=False
        )
    return pa.DataFrameSchema(columns, strict=True, ordered=False)


_TREATMENT_TEXT = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "true": 1, "false": 0}


def _coerce(raw: pd.DataFrame, study: StudyConfig) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """Typed copy of the required columns, with a quarantine entry for every value that will not parse."""
    problems: list[dict[str, object]] = []
    typed: dict[str, pd.Series] = {}
    for name in [study.outcome, *study.covariates]:
        text = raw[name].str.strip()
        numeric = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        literal_nan = text.str.lower().isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"])
        for index in raw.index[numeric.isna() & (text != "") & ~literal_nan]:
            problems.append({"row_index": index, "column": name, "rule": "value must be a number"})
        typed[name] = numeric.astype(float)
    treatment_text = raw[study.treatment].str.strip().str.lower()
    treatment = treatment_text.map(_TREATMENT_TEXT)
    for index in raw.index[treatment.isna()]:
        problems.append({"row_index": index, "column": study.treatment, "rule": "treatment must be 0 or 1"})
    typed[study.treatment] = treatment.fillna(-1).astype("int64")
    typed[study.unit_id] = raw[study.unit_id].astype(str)
    for name in study.categorical:
        typed[name] = raw[name].astype(str).str.strip()
    return pd.DataFrame(typed, index=raw.index), problems


def split_valid_rows(raw: pd.DataFrame, study: StudyConfig) -> SplitBatch:
    """Validate a raw batch against the study's covariate schema; quarantine failing rows.

    Columns not needed by the study (including post-treatment ones) never reach the valid table.
    A row fails when any of its required values does not parse or breaks a schema rule; duplicated
    unit ids quarantine every row that shares the id.
    """
    missing = tuple(c for c in required_columns(study) if c not in raw.columns)
    if missing:
        return SplitBatch(_empty_valid(study), _empty_quarantine(), missing)
    typed, problems = _coerce(raw, study)
    try:
        covariate_schema(study).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        for case in cases.itertuples(index=False):
            if pd.isna(case.index):
                continue
            rule = "unit id must be unique" if case.check == "field_uniqueness" else str(case.check)
            if case.check == "not_nullable":
                rule = "value must not be missing"
            problems.append({"row_index": int(case.index), "column": str(case.column), "rule": rule})
    quarantine = _quarantine_table(raw, problems)
    bad_rows = set(quarantine["row_index"].tolist())
    valid = typed.loc[[i for i in typed.index if i not in bad_rows], list(covariate_schema(study).columns)]
    valid = valid.reset_index(names="row_index")
    return SplitBatch(valid, quarantine, ())


def _quarantine_table(raw: pd.DataFrame, problems: list[dict[str, object]]) -> pd.DataFrame:
    if not problems:
        return _empty_quarantine()
    table = pd.DataFrame(problems).drop_duplicates(["row_index", "column", "rule"])
    table["row_index"] = table["row_index"].astype(np.int64)
    table["value"] = [str(raw.at[i, c]) for i, c in zip(table["row_index"], table["column"], strict=True)]
    records = raw.to_dict(orient="index")
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
