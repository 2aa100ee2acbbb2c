"""The filter's observation for every period: the primary estimate, or why there is none.

A period is admitted only when its batch landed, every ERROR check on it passed (or did not
apply), and the primary estimator gave a finite estimate. Anything else is a predict-only step
with the reason, so time still advances and the posterior mean does not move.

Admitted batches that share units have correlated estimates: the correlation comes from the
stored per-unit influence values (:func:`admitted_units`), and the always-valid interval of every
period (:func:`always_valid`) is stored beside the posterior steps. A batch estimated before its
influence values were stored shares nothing until it is re-run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from assimilate.filters import SharedUnits, shared_unit_covariance
from assimilate.sequential import ConfidenceSequence, confidence_sequence
from checks.returning_units import unit_batches

OBSERVATION_COLUMNS = ["batch", "estimate", "std_error", "excluded", "exclusion_reason"]


def observations(
    partition_keys: Sequence[str],
    files: pd.DataFrame,
    effects: pd.DataFrame,
    verdicts: pd.DataFrame,
    *,
    batch_rules: str | None = None,
) -> pd.DataFrame:
    """One row per period from the first to the last landed batch of the study's partitions.

    A batch estimated under other batch rules than ``batch_rules`` (the study file was edited and
    its re-run has not happened yet) is excluded with that reason, so the posterior never mixes
    rules; the landing sensor re-runs it.

    Parameters
    ----------
    partition_keys : sequence of str
        Every partition key of the study, in time order.
    files : DataFrame
        ``raw_files`` rows (partition_key, sha256, ...).
    effects : DataFrame
        ``batch_effects`` rows (partition_key, method, is_primary, estimate, std_error, error).
    verdicts : DataFrame
        Verdict rows of every batch asset (partition_key, check_name, severity, status, reason).
    batch_rules : str, optional
        The study's current ``batch_rules_hash``; None accepts any.
    """
    ordered = list(partition_keys)
    # A batch outside today's partitions (the start date moved) is not part of the stream.
    landed = set(files["partition_key"]).intersection(ordered) if not files.empty else set()
    if not landed:
        return pd.DataFrame(columns=OBSERVATION_COLUMNS)
    last = max(ordered.index(k) for k in landed)
    first = min(ordered.index(k) for k in landed)
    primary = (
        effects[effects["is_primary"].astype(bool)].set_index("partition_key") if not effects.empty else None
    )
    failures = _failed_error_checks(verdicts)
    rows = []
    for batch in ordered[first : last + 1]:
        estimate, std_error, error, rules = np.nan, np.nan, "no estimate recorded", None
        if primary is not None and batch in primary.index:
            estimate = float(primary.at[batch, "estimate"])
            std_error = float(primary.at[batch, "std_error"])
            error = str(primary.at[batch, "error"] or "")
            rules = primary.at[batch, "batch_rules"] if "batch_rules" in primary.columns else None
        if batch not in landed:
            reason = "no batch landed for this period"
        elif (
            batch_rules is not None
            and primary is not None
            and batch in primary.index
            and rules != batch_rules
        ):
            reason = "judged under earlier study rules: its re-run under the current file is pending"
        elif batch in failures:
            reason = "failed " + "; ".join(failures[batch])
        elif error:
            reason = f"not estimated: {error}"
        elif not (np.isfinite(estimate) and np.isfinite(std_error) and std_error > 0):
            reason = "primary estimate is not finite"
        else:
            reason = ""
        # An excluded batch keeps its estimate for display; the filter does not use it.
        rows.append(
            {
                "batch": batch,
                "estimate": estimate,
                "std_error": std_error,
                "excluded": bool(reason),
                "exclusion_reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)


def _failed_error_checks(verdicts: pd.DataFrame) -> dict[str, list[str]]:
    if verdicts.empty:
        return {}
    failed = verdicts[(verdicts["status"] == "fail") & (verdicts["severity"] == "ERROR")]
    result: dict[str, list[str]] = {}
    for row in failed.sort_values(["partition_key", "check_name"]).itertuples(index=False):
        result.setdefault(row.partition_key, []).append(
            f"{row.check_name} ({row.reason})" if row.reason else row.check_name
        )
    return result


# -- batches that share units, and the always-valid interval -------------------------------------

ALWAYS_VALID_COLUMNS = [
    "always_valid_estimate",
    "always_valid_lower",
    "always_valid_upper",
    "always_valid_information",
    "always_valid_used",
    "always_valid_rho",
    "always_valid_planned_information",
    "always_valid_correlated",
]
CORRELATION_COLUMNS = ["batch", "earlier_batch", "correlation"]


def admitted_units(observed: pd.DataFrame, influence: pd.DataFrame) -> SharedUnits | None:
    """Units shared by the admitted batches (excluded ones share nothing); None without any batch."""
    if observed.empty:
        return None
    labels = observed["batch"].astype(str).tolist()
    used = (~observed["excluded"].astype(bool)).tolist()
    return shared_unit_covariance(unit_batches(influence, labels, used), labels=labels)


def error_correlation(shared: SharedUnits | None) -> np.ndarray | None:
    """The correlation the fusion conditions on, or None when no admitted batch shares a unit."""
    return None if shared is None or shared.is_disjoint else np.asarray(shared.correlation)


def always_valid(
    observed: pd.DataFrame, correlation: np.ndarray | None, *, alpha: float, planned_looks: int
) -> ConfidenceSequence:
    """The always-valid interval per period over the admitted batches (their covariance when units return)."""
    standard_errors = observed["std_error"].to_numpy(dtype=float)
    covariance = None if correlation is None else correlation * np.outer(standard_errors, standard_errors)
    return confidence_sequence(
        observed["estimate"].to_numpy(dtype=float),
        standard_errors,
        covariance=covariance,
        excluded=observed["excluded"].astype(bool).to_numpy(),
        labels=observed["batch"].astype(str).tolist(),
        alpha=alpha,
        planned_looks=planned_looks,
    )


def with_always_valid(steps: pd.DataFrame, sequence: ConfidenceSequence) -> pd.DataFrame:
    """The posterior steps with the always-valid interval of each period beside them."""
    values = [
        sequence.estimate,
        sequence.lower,
        sequence.upper,
        sequence.information,
        sequence.used,
        sequence.rho,
        sequence.planned_information,
        sequence.correlated,
    ]
    return steps.assign(**dict(zip(ALWAYS_VALID_COLUMNS, values, strict=True)))


def stored_always_valid(steps: pd.DataFrame, *, alpha: float) -> ConfidenceSequence | None:
    """The always-valid sequence stored with the posterior steps (None for steps stored without it)."""
    if steps.empty or not set(ALWAYS_VALID_COLUMNS) <= set(steps.columns):
        return None
    first = steps.iloc[0]
    return ConfidenceSequence(
        "normal_mixture",
        alpha,
        tuple(steps["batch"].astype(str)),
        steps["always_valid_estimate"].to_numpy(dtype=float),
        steps["always_valid_lower"].to_numpy(dtype=float),
        steps["always_valid_upper"].to_numpy(dtype=float),
        steps["always_valid_information"].to_numpy(dtype=float),
        steps["always_valid_used"].to_numpy(dtype=bool),
        float(first["always_valid_rho"]),
        float(first["always_valid_planned_information"]),
        bool(first["always_valid_correlated"]),
    )


def correlation_table(correlation: np.ndarray | None, labels: Sequence[str]) -> pd.DataFrame:
    """The non-zero correlations between batches, one row per pair (no columns when there are none)."""
    if correlation is None:
        return pd.DataFrame()
    later, earlier = np.nonzero(np.tril(correlation, k=-1))
    names = np.asarray(list(labels), dtype=object)
    return pd.DataFrame(
        {"batch": names[later], "earlier_batch": names[earlier], "correlation": correlation[later, earlier]},
        columns=CORRELATION_COLUMNS,
    )


def correlation_from_table(table: pd.DataFrame, labels: Sequence[str]) -> np.ndarray | None:
    """The matrix :func:`correlation_table` stored, for ``labels`` (None when nothing is correlated)."""
    if table.empty:
        return None
    position = {label: i for i, label in enumerate(labels)}
    matrix = np.eye(len(position))
    for row in table.itertuples(index=False):
        if row.batch in position and row.earlier_batch in position:
            i, j = position[row.batch], position[row.earlier_batch]
            matrix[i, j] = matrix[j, i] = row.correlation
    return matrix
