"""Reading a landed batch file and splitting its rows into valid and quarantined ones.

No Dagster here: the assets call these functions, and tests call them directly. A raw batch is kept
as text, exactly as delivered; the covariate table is the pandera-validated typed subset with only
the study's pre-treatment columns. Every rejected row goes to quarantine with the column and rule.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection
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


# What the quality suite's view reads as a number besides parsable text; the covariate table
# (``_LITERAL_NAN``) also strips and accepts the spelled-out forms.
_LITERAL_NUMBERS = ["nan", "inf", "-inf"]


def typed_view(raw: pd.DataFrame, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Columns that parse as numbers become numbers; others stay text (for the quality suite).

    Only ``columns`` (default: all) are considered for parsing; the others are passed through as
    text.
    """
    chosen = raw.columns if columns is None else [c for c in raw.columns if c in set(columns)]
    typed = {column: raw[column] for column in raw.columns}
    for column in chosen:
        numeric = _as_numbers(raw[column])
        if numeric is not None:
            typed[column] = numeric
    return pd.DataFrame(typed, index=raw.index)


def _as_numbers(text: pd.Series) -> pd.Series | None:
    """The column as numbers when every value parses (blank is missing), else None."""
    blank = text.eq("")
    first = text[~blank].iloc[:1]
    if len(first) and not _parses(first):
        return None  # a text column fails on its first value: skip parsing the whole column
    numeric = pd.to_numeric(text.mask(blank), errors="coerce")
    unparsed = numeric.isna() & ~blank
    return numeric if _parses(text[unparsed], numeric[unparsed]) else None


def _parses(text: pd.Series, numeric: pd.Series | None = None) -> bool:
    numeric = pd.to_numeric(text, errors="coerce") if numeric is None else numeric
    return bool((numeric.notna() | text.str.lower().isin(_LITERAL_NUMBERS)).all())


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
    return [study.unit_id, study.treatment, study.outcome, *study.model_columns]


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


_LITERAL_NAN = ["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]
_TREATMENT_TEXT = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "true": 1, "false": 0}


def _coerce(
    raw: pd.DataFrame, study: StudyConfig, parsed: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """Typed copy of the required columns, with a quarantine entry for every value that will not parse.

    Values are stripped of surrounding white space first; only values that do not parse as
    delivered are stripped (stripping every value costs ~30 ms per 1e5 values and column).
    """
    problems: list[dict[str, object]] = []
    typed: dict[str, pd.Series] = {}
    for name in [study.outcome, *study.covariates]:
        known = None if parsed is None or parsed[name].dtype == object else parsed[name]
        numeric, failed = _numbers(raw[name], known)
        for index in raw.index[failed]:
            problems.append({"row_index": index, "column": name, "rule": "value must be a number"})
        typed[name] = numeric
    treatment = raw[study.treatment].map(_TREATMENT_TEXT).astype(float)
    retry = treatment.isna().to_numpy()
    if retry.any():
        treatment[retry] = raw[study.treatment][retry].str.strip().str.lower().map(_TREATMENT_TEXT).to_numpy()
    for index in raw.index[treatment.isna()]:
        problems.append({"row_index": index, "column": study.treatment, "rule": "treatment must be 0 or 1"})
    typed[study.treatment] = treatment.fillna(-1).astype("int64")
    typed[study.unit_id] = raw[study.unit_id].astype(str)
    for name in study.categorical:
        typed[name] = raw[name].astype(str).str.strip()
    return pd.DataFrame(typed, index=raw.index), problems


def _numbers(text: pd.Series, known: pd.Series | None = None) -> tuple[pd.Series, np.ndarray]:
    """Numbers from stripped text (blank is missing) and where a value is not a number.

    ``known``: the column as ``typed_view`` parsed it, if it did (the same first pass).
    """
    first = known if known is not None else pd.to_numeric(text.mask(text.eq("")), errors="coerce")
    numeric = first.astype(float, copy=True)  # filled in below: never write into ``known``
    retry = numeric.isna().to_numpy()
    failed = retry.copy()
    if retry.any():
        stripped = text[retry].str.strip()
        again = pd.to_numeric(stripped.mask(stripped.eq("")), errors="coerce").astype(float)
        numeric[retry] = again.to_numpy()
        literal = stripped.str.lower().isin(_LITERAL_NAN)
        failed[retry] = (again.isna() & stripped.ne("") & ~literal).to_numpy(dtype=bool)
    return numeric, failed


def split_valid_rows(
    raw: pd.DataFrame, study: StudyConfig, *, parsed: pd.DataFrame | None = None
) -> SplitBatch:
    """Validate a raw batch against the study's covariate schema; quarantine failing rows.

    Columns not needed by the study (including post-treatment ones) never reach the valid table.
    A row fails when any of its required values does not parse or breaks a schema rule; duplicated
    unit ids quarantine every row that shares the id. ``parsed``: ``typed_view(raw)`` if the
    caller has it (its number columns are not parsed again).
    """
    missing = tuple(c for c in required_columns(study) if c not in raw.columns)
    if missing:
        return SplitBatch(_empty_valid(study), _empty_quarantine(), missing)
    typed, problems = _coerce(raw, study, parsed)
    schema = covariate_schema(study)
    try:
        schema.validate(typed, lazy=True)
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
    valid = typed.loc[~typed.index.isin(quarantine["row_index"]), list(schema.columns)]
    valid = valid.reset_index(names="row_index")
    return SplitBatch(valid, quarantine, ())


def _quarantine_table(raw: pd.DataFrame, problems: list[dict[str, object]]) -> pd.DataFrame:
    if not problems:
        return _empty_quarantine()
    table = pd.DataFrame(problems).drop_duplicates(["row_index", "column", "rule"])
    table["row_index"] = table["row_index"].astype(np.int64)
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
