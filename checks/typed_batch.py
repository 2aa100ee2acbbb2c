"""The one reader: every column of a raw batch gets its type once, for every check.

A raw batch holds every cell as delivered (``resources/raw_records.py``): text, or a column typed
where the type gives back each cell's text (``resources/raw_columns.py``), which reads as that text
would. ``type_batch`` decides
each column's type and finds the values that break a reading rule; the covariate validator
(``checks/covariates.py``, which decides what a broken rule costs), the quality suite (whose only
value rule is "both arms present") and the post-treatment check all read the frame it returns, so
they never disagree on what a value is:

- unit id: text stripped of surrounding white space, never a number (``007`` and ``7`` are two
  ids, ``u1`` and ``u1 `` one); an id held by several rows breaks "unit id must be unique";
- treatment: a number (``1``, ``1.0``, ``1e0``) or a boolean word (``true``/``false`` in any case,
  as Parquet booleans arrive), held as 0.0 or 1.0; any other value keeps its number (or NaN when
  it is none) and breaks "treatment must be 0 or 1";
- outcome and covariates: numbers; a binary outcome also takes the boolean words; ``inf`` is a
  number (pandera says it is not finite);
- categorical columns: stripped text; any other column: numbers when every value parses, else text;
- in every required column, blank and ``nan`` are missing ("value must not be missing");
- a value holding a NUL byte, or a row with more fields than the header, breaks a rule of its own;
- an N-of-1 study's day column (its unit id) holds dates ``YYYY-MM-DD`` ("day must be a date").

A required column the file lacks is named with the study file's key that asks for it and the
file's closest column (``missing_reason``): a misspelled covariate is caught on the first batch.

Example
-------
>>> typed = type_batch(raw, study)  # doctest: +SKIP
>>> typed.frame[study.treatment].tolist()[:3]  # doctest: +SKIP
[0.0, 1.0, 1.0]
>>> typed.problems.columns.tolist()  # doctest: +SKIP
['row_index', 'column', 'rule']
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assimilate.diagnostics.batch_refutations import refuter_columns
from resources.raw_columns import as_text, kind_of
from resources.raw_records import EXTRA_FIELDS
from resources.study import StudyConfig

MISSING = "value must not be missing"
NUMBER = "value must be a number"
BINARY_TREATMENT = "treatment must be 0 or 1"
UNIQUE_ID = "unit id must be unique"
NUL_BYTE = "value must not contain a NUL byte"
EXTRA_FIELD = "the row has more fields than the header"
DAY_DATE = "day must be a date (YYYY-MM-DD)"
FIRST_TREATED = "first treated batch must be a date (YYYY-MM-DD), or empty or never for a never-treated unit"

_BOOLEANS = {"true": 1.0, "false": 0.0}
_NAN_WORDS = {"nan", "+nan", "-nan"}
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() takes in ASCII


@dataclass(frozen=True)
class TypedBatch:
    """A raw batch with each column's type decided, and the values that break a reading rule.

    ``frame`` holds every column of the raw batch but ``EXTRA_FIELDS``, on the raw batch's index;
    ``problems`` one row per (row_index, column, rule); ``missing_columns`` the required columns
    the file lacks, and ``missing_reason`` says which study key names each and the closest column.
    """

    frame: pd.DataFrame
    problems: pd.DataFrame
    missing_columns: tuple[str, ...]
    missing_reason: str = ""


def required_columns(study: StudyConfig) -> list[str]:
    """Unit id, treatment, outcome, every covariate the study adjusts for, its instruments and cluster
    column, and the columns its refuters read (a negative-control outcome)."""
    cluster = [study.cluster] if study.cluster is not None else []
    cluster += [study.weights] if study.weights is not None else []  # sampling weights: as required
    return [
        study.unit_id,
        study.treatment,
        study.outcome,
        *study.model_columns,
        *study.instruments,
        *cluster,
        *refuter_columns(study),
        *study.did_columns,
    ]


def type_batch(
    raw: pd.DataFrame, study: StudyConfig, *, columns: Collection[str] | None = None
) -> TypedBatch:
    """Decide each column's type once (see the module docstring) and list the rule breaks.

    ``columns``: type only these (default: all); the others are passed through as text, with no
    problem looked for (the quality suite reads the treatment only).
    """
    problems: list[tuple[np.ndarray, str, str]] = []

    def breaks(mask: pd.Series, column: str, rule: str) -> None:
        if mask.any():
            problems.append((raw.index[mask.to_numpy()].to_numpy(), column, rule))

    typed: dict[str, pd.Series] = {}
    numeric_roles = {
        study.outcome: study.outcome_type == "binary",
        **dict.fromkeys(study.covariates, False),
        **dict.fromkeys(study.instruments, True),  # an offer or a lottery may be written true/false
        **dict.fromkeys(refuter_columns(study), True),  # a negative-control outcome may be binary
        **dict.fromkeys(_did_group(study), True),  # a did study's 0/1 adopting group
        **({study.weights: False} if study.weights is not None else {}),  # sampling weights: numbers
    }
    chosen = set(raw.columns if columns is None else columns)
    for column in raw.columns:
        text = raw[column]
        if column not in chosen:
            if column != EXTRA_FIELDS:
                typed[column] = text
            continue
        if column == EXTRA_FIELDS:
            breaks(text.ne(""), column, EXTRA_FIELD)
            continue
        breaks(_has_nul(text), column, NUL_BYTE)
        if column == study.treatment:
            values, missing, failed = _numbers(text, booleans=True)
            breaks(missing, column, MISSING)
            breaks(failed | ~(missing | values.isin([0.0, 1.0])), column, BINARY_TREATMENT)
        elif column == getattr(study.design, "cohort_column", None):
            values = _first_treated(as_text(text))
            breaks(values.isna(), column, FIRST_TREATED)
        elif column in numeric_roles:
            values, missing, failed = _numbers(text, booleans=numeric_roles[column])
            breaks(missing, column, MISSING)
            breaks(failed, column, NUMBER)
        elif column in (study.unit_id, study.cluster) or column in study.categorical:
            stripped = _stripped(as_text(text))
            missing = stripped.eq("")
            values = stripped.mask(missing, None)
            breaks(missing, column, MISSING)
            if column == study.unit_id and study.duplicate_units == "reject":
                breaks(stripped.duplicated(keep=False) & ~missing, column, UNIQUE_ID)
            if study.n_of_1 is not None and column == study.n_of_1.time:
                days = pd.to_datetime(stripped.mask(missing), format="%Y-%m-%d", errors="coerce")
                breaks(days.isna() & ~missing, column, DAY_DATE)
        else:
            values = _numbers_if_all_parse(text)
        typed[column] = values
    missing_columns = tuple(c for c in required_columns(study) if c not in raw.columns)
    present = [str(c) for c in raw.columns if c != EXTRA_FIELDS]
    return TypedBatch(
        pd.DataFrame(typed, index=raw.index, copy=False),  # the typed columns, not a consolidated copy
        _problem_table(problems),
        missing_columns,
        missing_columns_reason(study, missing_columns, present),
    )


def _did_group(study: StudyConfig) -> tuple[str, ...]:
    group = getattr(study.design, "group", None)
    return (group,) if group is not None else ()


_NEVER = {"", "never", "nan", "none", "inf"}


def _first_treated(text: pd.Series) -> pd.Series:
    """Batch labels stripped; a never-treated unit's word (empty, ``never``) as ""; anything else NaN."""
    stripped = _stripped(text)
    never = stripped.str.lower().isin(_NEVER)
    dates = pd.to_datetime(stripped.mask(never), format="%Y-%m-%d", errors="coerce")
    return stripped.mask(never, "").where(never | dates.notna())


def missing_columns_reason(study: StudyConfig, missing: Sequence[str], present: Sequence[str]) -> str:
    """One clause per missing column: the study key that names it and the file's closest column.

    >>> missing_columns_reason(study, ["tenure_month"], ["account_id", "tenure_months"])  # doctest: +SKIP
    "covariates: column 'tenure_month' is not in the file; closest column: 'tenure_months' (check the study file's covariates)"
    """
    clauses = []
    for column in missing:
        key = _study_key(study, column)
        closest = [c for c in present if c.lower() == column.lower()]
        closest = closest or difflib.get_close_matches(column, present, n=1, cutoff=0.6)
        clause = f"{key}: column {column!r} is not in the file; "
        if closest:
            clause += f"closest column: {closest[0]!r} (check the study file's {key})"
        else:
            shown = ", ".join(repr(c) for c in present[:12]) + (", ..." if len(present) > 12 else "")
            clause += f"no column is close (the file has {shown or 'no columns'})"
        clauses.append(clause)
    return "; ".join(clauses)


def _study_key(study: StudyConfig, column: str) -> str:
    """The study file's key that asks for ``column`` (the first, when several do)."""
    if study.n_of_1 is not None and column == study.n_of_1.time:
        return "n_of_1.time"
    for key in ("unit_id", "treatment", "outcome", "cluster", "weights"):
        if getattr(study, key) == column:
            return key
    if column in study.instruments:
        return "design.instrument"
    if column in study.did_columns:
        return "design.group" if column == getattr(study.design, "group", None) else "design.first_treated"
    if column in refuter_columns(study):
        return "causal_graph.roles (negative_control of refuters.negative_control_outcome)"
    return "covariates" if column in study.covariates else "categorical"


def _numbers(text: pd.Series, *, booleans: bool) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Numbers (NaN where none), where a value is missing, and where it is not a number.

    Only values that do not parse as delivered are stripped and lower-cased (stripping every value
    costs ~30 ms per 1e5 values and column). A typed column is numbers already (NaN: blank).
    """
    kind = kind_of(text)
    if kind in ("int", "double") or (kind == "bool" and booleans):
        numeric = text.to_numpy(dtype=np.float64)
        nothing = np.zeros(len(text), dtype=bool)
        return (
            pd.Series(numeric, index=text.index),
            pd.Series(np.isnan(numeric), index=text.index),
            pd.Series(nothing, index=text.index),
        )
    text = as_text(text)  # a boolean column where booleans are no numbers: its text True / False
    blank = text.eq("").to_numpy(dtype=bool, copy=True)
    numeric = _exactly(
        text, pd.to_numeric(text.mask(blank), errors="coerce").to_numpy(dtype=float, copy=True)
    )
    retry = np.isnan(numeric) & ~blank
    if retry.any():
        words = text[retry].str.strip().str.lower()
        again = pd.to_numeric(words.mask(words.eq("")), errors="coerce").astype(float)
        if booleans:
            again = again.fillna(words.map(_BOOLEANS).astype(float))
        numeric[retry] = again.to_numpy()
        blank[retry] = (words.eq("") | words.isin(_NAN_WORDS)).to_numpy(dtype=bool)
    failed = np.isnan(numeric) & ~blank
    return (
        pd.Series(numeric, index=text.index),
        pd.Series(blank, index=text.index),
        pd.Series(failed, index=text.index),
    )


def _exactly(text: pd.Series, approximate: np.ndarray) -> np.ndarray:
    """The parsed values again with Python's float(), which rounds correctly (pandas' parser can
    miss the last digit), so a column read as text and one typed at landing hold the same numbers."""
    parsed = ~np.isnan(approximate)
    with contextlib.suppress(TypeError, ValueError):  # a spelling float() refuses: keep pandas'
        approximate[parsed] = text.to_numpy()[parsed].astype(np.float64)
    return approximate


def _numbers_if_all_parse(text: pd.Series) -> pd.Series:
    """A column the study does not name: numbers when every value parses (blank is NaN), else text."""
    if kind_of(text) in ("int", "double"):
        return text.astype(np.float64)
    text = as_text(text)  # a Parquet boolean column is the text True / False here, as it always was
    blank = text.eq("")
    first = text[~blank].iloc[:1]
    if len(first) and pd.to_numeric(first, errors="coerce").isna().all():
        return text  # a text column fails on its first value: skip parsing the whole column
    numeric, _, failed = _numbers(text, booleans=False)
    return text if failed.any() else numeric


def _stripped(text: pd.Series) -> pd.Series:
    """Values stripped of surrounding white space; one scan when none has any (the usual case)."""
    joined = "\x00".join(text.tolist())
    if joined.isascii() and not any(space in joined for space in _ASCII_SPACE):
        return text  # no white space at all: a substring search, faster still
    distinct = pd.unique(text.to_numpy())  # a label column has few: judge each once, not each row
    if all(not isinstance(value, str) or value == value.strip() for value in distinct):
        return text
    return text.str.strip()


def _has_nul(text: pd.Series) -> pd.Series:
    if kind_of(text) != "text" or "\x00" not in "".join(text.tolist()):  # usual: one scan of the column
        return pd.Series(False, index=text.index)
    return text.str.contains("\x00", regex=False)


def _problem_table(problems: list[tuple[np.ndarray, str, str]]) -> pd.DataFrame:
    rows = np.concatenate([r for r, _, _ in problems]) if problems else np.array([], dtype=np.int64)
    return pd.DataFrame(
        {
            "row_index": rows.astype(np.int64),
            "column": np.repeat([c for _, c, _ in problems], [len(r) for r, _, _ in problems]).astype(object),
            "rule": np.repeat([u for _, _, u in problems], [len(r) for r, _, _ in problems]).astype(object),
        }
    )
