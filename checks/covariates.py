"""The covariate validator: every row rule of a batch, what breaking one costs, and its verdicts.

This module alone decides what a bad row costs (docs/DECISIONS.md, items 23 and 31): a row that
breaks a row rule is quarantined with its column and rule, and the batch is excluded only when the
quarantined share exceeds ``thresholds.max_quarantine_share`` (the ``schema`` check, ERROR). The
row rules, each checked in one place:

- reading rules, found by the one reader (``checks/typed_batch.py``): a missing value, a value
  that is no number, a treatment that is not 0 or 1, a duplicated unit id, a NUL byte, a field
  beyond the header, an N-of-1 day that is no date;
- value rules, checked by pandera (``covariate_schema``) on the rows the reader passed: an outcome
  or covariate that is not finite, an outcome out of the study's range (or not 0/1 when binary),
  an unknown categorical level, a sampling weight (``weights:``) that is not finite or not > 0.

The rules of the file as a whole (readable, required columns present, both arms present) are the
quality suite's (``checks/quality.py``); where a file breaks one, the schema check is not assessed.
The covariate table is the valid typed rows, with only the study's pre-treatment columns.

Example
-------
>>> result = validate_batch(raw, study, batch="2025-01-01")  # doctest: +SKIP
>>> result.verdicts["schema"][0].value  # the quarantined share  # doctest: +SKIP
0.0025
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa

from assimilate.design.plan import ONE_SUBJECT
from assimilate.diagnostics import Verdict, sample_ratio_mismatch
from assimilate.diagnostics.batch_refutations import refuter_columns
from checks.post_treatment import post_treatment_verdict
from checks.results import ERROR, Verdicts, naming_batch, not_assessed
from checks.typed_batch import TypedBatch, type_batch
from resources.raw_columns import text_frame
from resources.study import StudyConfig

QUARANTINE_COLUMNS = ["row_index", "column", "rule", "value", "record_json"]
PROPERTIES = ("schema", "post_treatment_exclusion", "sample_ratio_mismatch")
# The reader's text columns (ids, labels, levels) hold a str in every row it passes, by construction
# (checks/typed_batch.py). Declared as pandera's ``str``, each row's type would be checked again in
# Python (about 0.5 s a column at 1e6 rows); declared as object columns, only their dtype is.
TEXT = object


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

    def rows_by_rule(self) -> pd.DataFrame:
        """Quarantined rows per (column, rule): a row that breaks two rules counts under each."""
        counts = self.quarantine.groupby(["column", "rule"], sort=True)["row_index"].nunique()
        return counts.rename("rows").reset_index()


def covariate_schema(study: StudyConfig) -> pa.DataFrameSchema:
    """The pandera schema of a study's covariate table: its columns, types and value rules.

    The reading rules (missing, treatment 0/1, unique ids) are the reader's: rows that break one
    never reach pandera, so they are not repeated here.
    """
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
        study.unit_id: pa.Column(TEXT, nullable=False),
        study.treatment: pa.Column("int64", nullable=False),
        study.outcome: pa.Column(float, outcome_checks, nullable=False),
    }
    for name in (*study.covariates, *study.instruments, *refuter_columns(study)):
        columns[name] = pa.Column(float, finite, nullable=False)
    if study.cluster is not None:
        columns[study.cluster] = pa.Column(TEXT, nullable=False)
    for name in study.did_columns:  # a did study's cohort column (batch labels) or its 0/1 group
        group = name == getattr(study.design, "group", None)
        rule = [finite, pa.Check.isin([0.0, 1.0], error="group must be 0 or 1")]
        columns[name] = pa.Column(float, rule, nullable=False) if group else pa.Column(TEXT, nullable=False)
    if study.weights is not None:  # a sampling weight counts units of the population: finite, > 0
        positive = pa.Check.gt(0.0, error=f"sampling weight {study.weights!r} must be > 0")
        columns[study.weights] = pa.Column(float, [finite, positive], nullable=False)
    for name, levels in study.categorical.items():
        columns[name] = pa.Column(
            TEXT, pa.Check.isin(list(levels), error=f"level must be one of {list(levels)}"), nullable=False
        )
    return pa.DataFrameSchema(columns, strict=True, ordered=False)


def split_valid_rows(raw: pd.DataFrame, study: StudyConfig, *, typed: TypedBatch | None = None) -> SplitBatch:
    """Validate a raw batch against the study's row rules; quarantine failing rows.

    Reads ``type_batch(raw, study)`` (pass it as ``typed`` if the caller has it): a row that breaks
    a reading rule there is quarantined with it; pandera judges the other rows, once. Columns not
    needed by the study (including post-treatment ones) never reach the valid table.
    """
    typed = type_batch(raw, study) if typed is None else typed
    if typed.missing_columns:
        return SplitBatch(
            _empty_valid(study), _empty_quarantine(), typed.missing_columns, typed.missing_reason
        )
    schema = covariate_schema(study)
    readable = ~typed.frame.index.isin(typed.problems["row_index"])
    candidates = (  # without a reading problem, the typed columns themselves: .loc would copy them
        pd.DataFrame({c: typed.frame[c] for c in schema.columns}, copy=False)
        if readable.all()
        else typed.frame.loc[readable, list(schema.columns)]
    )
    # Every remaining treatment is 0 or 1. Neither this nor pandera copies the other columns.
    candidates = candidates.astype({study.treatment: "int64"}, copy=False)
    problems = [typed.problems]
    try:
        schema.validate(candidates, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        rules = cases["check"].astype(str).replace({"not_nullable": "value must not be missing"})
        problems.append(
            pd.DataFrame(
                {"row_index": cases["index"].astype(np.int64), "column": cases["column"], "rule": rules}
            )
        )
    finally:
        # pandera caches an accessor on the frame that refers back to it: a cycle, so the batch's
        # columns (gigabytes at 1e7 rows) would stay until the cyclic collector runs, into the next step.
        candidates.__dict__.pop("pandera", None)
    quarantine = _quarantine_table(raw, pd.concat(problems, ignore_index=True))
    if len(quarantine):
        candidates = candidates.loc[~candidates.index.isin(quarantine["row_index"])]
    candidates.insert(0, "row_index", candidates.index.to_numpy(np.int64))  # a column, no copy of the rest
    return SplitBatch(candidates.set_axis(pd.RangeIndex(len(candidates)), copy=False), quarantine, ())


def _quarantine_table(raw: pd.DataFrame, problems: pd.DataFrame) -> pd.DataFrame:
    if problems.empty:
        return _empty_quarantine()
    table = problems.drop_duplicates(["row_index", "column", "rule"]).astype({"column": str, "rule": str})
    delivered = text_frame(raw.loc[table["row_index"].unique()])  # each cell's text as delivered
    table["value"] = [delivered.at[i, c] for i, c in zip(table["row_index"], table["column"], strict=True)]
    records = delivered.to_dict(orient="index")
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


def schema_verdict(study: StudyConfig, split: SplitBatch, n_rows: int, *, batch: str) -> Verdict:
    """The quarantined share of the batch's rows stays at most ``max_quarantine_share``.

    Not assessed for a file without rows or without a required column: the quality suite fails
    that file, so the batch is excluded once, by the check that owns the rule.
    """
    limit = study.thresholds.max_quarantine_share
    rule = f"quarantined share <= {limit}"
    if split.missing_columns or not n_rows:
        lacks = (
            f"the required columns {list(split.missing_columns)}" if split.missing_columns else "data rows"
        )
        reason = (
            f"batch {batch}: the file lacks {lacks}, so no row is judged (the data-quality check fails it)"
        )
        return Verdict.undefined("schema", threshold=limit, rule=rule, reason=reason)
    share = split.quarantined_rows / n_rows
    reason = f"batch {batch}: {split.quarantined_rows} of {n_rows} rows quarantined"
    counts = split.rows_by_rule()
    if len(counts):
        reason += ": " + "; ".join(f"{r.column}: {r.rule} ({r.rows} rows)" for r in counts.itertuples())
    return Verdict.evaluate(
        "schema", value=share, threshold=limit, rule=rule, passed=share <= limit, reason=reason
    )


def srm_verdict(study: StudyConfig, valid: pd.DataFrame) -> Verdict:
    """The designed treatment split against the valid rows' (randomized, multi-unit studies only)."""
    if study.single_subject:
        rule = f"p-value >= {study.thresholds.srm_alpha}"
        return Verdict.undefined("sample_ratio_mismatch", threshold=None, rule=rule, reason=ONE_SUBJECT)
    if study.design.kind != "randomized" or valid.empty:
        reason = (
            "observational design: no designed split"
            if study.design.kind != "randomized"
            else "no valid rows"
        )
        return Verdict.undefined(
            "sample_ratio_mismatch",
            threshold=study.thresholds.srm_alpha,
            rule=f"p-value >= {study.thresholds.srm_alpha}",
            reason=reason,
        )
    n_treated = int(valid[study.treatment].sum())
    report = sample_ratio_mismatch(
        n_treated,
        len(valid) - n_treated,
        expected_treated_share=study.design.treated_share,
        alpha=study.thresholds.srm_alpha,
        min_units=study.thresholds.srm_min_units,
        rule=study.thresholds.gate_rule,
        looks=study.batches_per_year,
        family_alpha=study.thresholds.srm_false_alarm_per_year,
    )
    return report.verdict


def srm_description(study: StudyConfig) -> str:
    """The study's SRM rule in words, for the check's description."""
    if study.single_subject:
        return ONE_SUBJECT
    if study.design.kind != "randomized":
        return "not assessed: an observational design has no designed split"
    if study.thresholds.gate_rule == "fixed":
        return f"chi-square test of the designed treatment split at srm_alpha = {study.thresholds.srm_alpha}"
    rate = study.thresholds.srm_false_alarm_per_year
    return (
        f"exact binomial test of the designed treatment split; a healthy study fails some batch "
        f"with probability {rate:g} a year ({study.batches_per_year} looks)"
    )


@dataclass(frozen=True)
class CovariateValidation:
    """What the covariate table stores and shows for one batch.

    ``verdicts``: property -> (verdict, severity), each reason naming the batch; ``metadata``: the
    materialization's; ``check_metadata``: property -> extra entries of its check result (the
    schema check's rows, quarantined rows and rows per rule).
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    verdicts: Verdicts
    metadata: dict[str, Any]
    check_metadata: dict[str, dict[str, Any]]


def validate_batch(raw: pd.DataFrame, study: StudyConfig, *, batch: str) -> CovariateValidation:
    """Type the raw batch once, split its rows, and judge schema, post-treatment columns and SRM."""
    typed = type_batch(raw, study)  # the reader the quality suite and the post-treatment check share
    split = split_valid_rows(raw, study, typed=typed)
    verdicts = {
        "schema": schema_verdict(study, split, len(raw), batch=batch),
        "post_treatment_exclusion": post_treatment_verdict(study, typed.frame, batch=batch),
        "sample_ratio_mismatch": srm_verdict(study, split.valid),
    }
    judged = {prop: (naming_batch(verdict, batch), ERROR) for prop, verdict in verdicts.items()}
    by_rule = split.rows_by_rule()
    metadata = {
        "valid_rows": len(split.valid),
        "quarantined_rows": split.quarantined_rows,
        "missing_columns": ", ".join(split.missing_columns) or "none",
        "dagster/row_count": len(split.valid),
        **not_assessed("covariate_table", judged),
    }
    schema = {
        "rows": len(raw),
        "quarantined_rows": split.quarantined_rows,
        "quarantined_share": judged["schema"][0].value if judged["schema"][0].value is not None else "n/a",
        "max_quarantine_share": study.thresholds.max_quarantine_share,
        "quarantined_by_rule": dg.MetadataValue.md(
            by_rule.to_markdown(index=False) if len(by_rule) else "none"
        ),
    }
    return CovariateValidation(split.valid, split.quarantine, judged, metadata, {"schema": schema})
