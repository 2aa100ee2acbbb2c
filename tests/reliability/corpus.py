"""A generated corpus of malformed and hostile batch files, each with the outcome it must have.

Every case is one day of a daily study (`corpus_study`): the baseline batch lands on 2025-01-01,
case k on the k-th day after. Outcomes:

- ``excluded``: the batch never moves the posterior; the named check fails and its reason names
  the batch (and the column, where one is at fault);
- ``admitted``: the batch is used (extra columns, a few quarantined rows, a large batch ...);
- ``unmapped``: the sensor leaves the file alone and requests no run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from orchestration.study_config import StudyConfig

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
    mentions: tuple[str, ...] = ()  # words the failing verdict's reason must contain
    quarantined: tuple[str, ...] = field(default=())  # columns with quarantined rows
    suffix: str = "csv"
    file_name: str | None = None  # for unmapped cases: the file's own name


def _edit(seed: int, change: Callable[[pd.DataFrame], pd.DataFrame]) -> bytes:
    return csv(change(good_frame(seed)))


def _set(column: str, rows: list[int], value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[rows, column] = value
        return frame

    return change


def _hostile_columns(frame: pd.DataFrame) -> pd.DataFrame:
    extra = {
        'quote"col': 1,
        "semi;colon": 2,
        "DROP TABLE raw_rows; --": 3,
        "select": 4,
        "ünïcödé ✓": 5,
        "x" * 10_000: 6,
    }
    return frame.assign(**extra)


CASES: list[Case] = [
    Case(
        "empty_file",
        "unreadable file",
        lambda s: b"",
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
    ),
    Case(
        "header_only",
        "unreadable file",
        lambda s: b"unit_id,x,segment,treatment,outcome\n",
        "excluded",
        "raw_batch_data_quality",
        ("no data rows",),
    ),
    Case(
        "truncated_parquet",
        "unreadable file",
        lambda s: parquet(good_frame(s))[:300],
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
        suffix="parquet",
    ),
    Case(
        "corrupt_parquet",
        "unreadable file",
        lambda s: b"PAR1" + bytes(range(256)) * 4,
        "excluded",
        "raw_batch_data_quality",
        ("cannot be read",),
        suffix="parquet",
    ),
    Case(
        "wrong_delimiter",
        "format",
        lambda s: csv(good_frame(s), sep=";"),
        "excluded",
        "covariate_table_schema",
        ("missing required columns", "treatment"),
    ),
    Case(
        "latin1_encoding",
        "format",
        lambda s: good_frame(s).assign(segment="a", note="café").to_csv(index=False).encode("latin-1"),
        "excluded",
        "raw_batch_data_quality",
        ("not UTF-8",),
    ),
    Case(
        "duplicate_header",
        "format",
        lambda s: b"unit_id,x,x,segment,treatment,outcome\n1,2,3,a,0,1\n",
        "excluded",
        "raw_batch_data_quality",
        ("duplicate column",),
    ),
    Case("utf8_bom", "format", lambda s: b"\xef\xbb\xbf" + csv(good_frame(s)), "admitted"),
    Case(
        "missing_treatment",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="treatment")),
        "excluded",
        "covariate_table_schema",
        ("treatment",),
    ),
    Case(
        "missing_outcome",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="outcome")),
        "excluded",
        "covariate_table_schema",
        ("outcome",),
    ),
    Case(
        "missing_covariate",
        "missing column",
        lambda s: csv(good_frame(s).drop(columns="x")),
        "excluded",
        "covariate_table_schema",
        ("'x'",),
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
    ),
    Case(
        "strings_in_outcome_many",
        "wrong dtype",
        lambda s: _edit(s, _set("outcome", list(range(0, 400, 2)), "n/a")),
        "excluded",
        "covariate_table_schema",
        ("quarantined",),
        quarantined=("outcome",),
    ),
    Case(
        "treatment_two",
        "non-binary treatment",
        lambda s: _edit(s, _set("treatment", [5, 9], 2)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        quarantined=("treatment",),
    ),
    Case(
        "treatment_minus_one",
        "non-binary treatment",
        lambda s: _edit(s, _set("treatment", [4], -1)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        quarantined=("treatment",),
    ),
    Case(
        "treatment_yes_no",
        "non-binary treatment",
        lambda s: csv(good_frame(s).assign(treatment=lambda f: f["treatment"].map({0: "no", 1: "yes"}))),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
        quarantined=("treatment",),
    ),
    Case(
        "nan_in_treatment",
        "missing value",
        lambda s: _edit(s, _set("treatment", [1, 2], "")),
        "admitted",
        quarantined=("treatment",),
    ),
    Case(
        "inf_in_outcome",
        "non-finite value",
        lambda s: _edit(s, _set("outcome", [10], "inf")),
        "admitted",
        quarantined=("outcome",),
    ),
    Case(
        "nan_in_covariate",
        "missing value",
        lambda s: _edit(s, _set("x", [11, 12], "")),
        "admitted",
        quarantined=("x",),
    ),
    Case(
        "all_treated",
        "one arm",
        lambda s: csv(good_frame(s).assign(treatment=1)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
    ),
    Case(
        "all_control",
        "one arm",
        lambda s: csv(good_frame(s).assign(treatment=0)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
    ),
    Case(
        "single_row",
        "too small",
        lambda s: csv(good_frame(s).head(1)),
        "excluded",
        "raw_batch_data_quality",
        ("treatment",),
    ),
    Case(
        "duplicate_unit_ids",
        "duplicate ids",
        lambda s: _edit(s, _set("unit_id", [0, 1, 2], "same")),
        "excluded",
        "raw_batch_data_quality",
        ("unit_id",),
        quarantined=("unit_id",),
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
    ),
    Case(
        "zero_variance_covariate",
        "zero variance",
        lambda s: csv(good_frame(s).assign(x=1.0)),
        "excluded",
        "batch_effect_estimation",
        ("'x'",),
    ),
    Case(
        "constant_outcome",
        "constant outcome",
        lambda s: csv(good_frame(s).assign(outcome=3.0)),
        "excluded",
        "batch_effect_estimation",
        ("outcome",),
    ),
    Case("extreme_outlier", "outlier", lambda s: _edit(s, _set("outcome", [0], 1e12)), "admitted"),
    Case(
        "post_treatment_as_covariate",
        "post-treatment column",
        lambda s: csv(good_frame(s).assign(x=lambda f: f["engagement"] * 2.0 + 1.0)),
        "excluded",
        "covariate_table_post_treatment_exclusion",
        ("'x'", "engagement"),
    ),
    Case(
        "unknown_category_level",
        "unknown level",
        lambda s: _edit(s, _set("segment", [6, 8], "zzz")),
        "admitted",
        quarantined=("segment",),
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
    ),
    Case("hundred_times_larger", "large batch", lambda s: csv(good_frame(s, n=40_000)), "admitted"),
    Case(
        "no_partition_name", "unmapped name", lambda s: csv(good_frame(s)), "unmapped", file_name="notes.csv"
    ),
    Case(
        "impossible_date",
        "unmapped name",
        lambda s: csv(good_frame(s)),
        "unmapped",
        file_name="2025-13-45.csv",
    ),
    Case(
        "dot_dot_name",
        "path traversal",
        lambda s: csv(good_frame(s)),
        "unmapped",
        file_name="..2025-01-05.csv",
    ),
]


def day(index: int) -> date:
    return START + timedelta(days=index)
