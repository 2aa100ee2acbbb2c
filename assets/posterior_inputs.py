"""The filter's observation for every period: the primary estimate, or why there is none.

A period is admitted only when its batch landed, every ERROR check on it passed (or did not
apply), and the primary estimator gave a finite estimate. Anything else is a predict-only step
with the reason, so time still advances and the posterior mean does not move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

OBSERVATION_COLUMNS = ["batch", "estimate", "std_error", "excluded", "exclusion_reason"]


def observations(
    partition_keys: Sequence[str],
    files: pd.DataFrame,
    effects: pd.DataFrame,
    verdicts: pd.DataFrame,
) -> pd.DataFrame:
    """One row per period from the first to the last landed batch.

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
    """
    landed = set(files["partition_key"]) if not files.empty else set()
    if not landed:
        return pd.DataFrame(columns=OBSERVATION_COLUMNS)
    ordered = list(partition_keys)
    last = max(ordered.index(k) for k in landed if k in ordered)
    first = min(ordered.index(k) for k in landed if k in ordered)
    primary = (
        effects[effects["is_primary"].astype(bool)].set_index("partition_key") if not effects.empty else None
    )
    failures = _failed_error_checks(verdicts)
    rows = []
    for batch in ordered[first : last + 1]:
        estimate, std_error, error = np.nan, np.nan, "no estimate recorded"
        if primary is not None and batch in primary.index:
            estimate = float(primary.at[batch, "estimate"])
            std_error = float(primary.at[batch, "std_error"])
            error = str(primary.at[batch, "error"] or "")
        if batch not in landed:
            reason = "no batch landed for this period"
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
