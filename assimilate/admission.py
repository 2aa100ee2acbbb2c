"""Which batches the filter observes and why not, and one update of the posterior from them.

A period is admitted only when its batch landed, every ERROR check on it passed (or did not
apply), and the primary estimator gave a finite estimate under the study's current batch rules.
Anything else is a predict-only step with the reason, so time still advances and the posterior
mean does not move: with ``theta_t = theta_{t-1} + w_t``, an excluded batch is ``y_t`` missing.

Admitted batches that share units have correlated estimates: the correlation comes from the
stored per-unit influence values (:func:`admitted_units`), and the always-valid interval of every
period (:func:`always_valid`) is stored beside the posterior steps. A batch estimated before its
influence values were stored shares nothing until it is re-run. :func:`update_posterior` does one
update: the fusion (resumed where the inputs changed) and the interval.

Example
-------
>>> import pandas as pd
>>> files = pd.DataFrame({"partition_key": ["2025-01-01", "2025-03-01"]})
>>> effects = pd.DataFrame({"partition_key": ["2025-01-01", "2025-03-01"], "is_primary": [True, True],
...                         "estimate": [0.5, 0.6], "std_error": [0.1, 0.1], "error": ["", ""]})
>>> observed = observations(["2025-01-01", "2025-02-01", "2025-03-01"], files, effects, pd.DataFrame())
>>> observed["exclusion_reason"].tolist()
['', 'no batch landed for this period', '']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from assimilate.filter_settings import FilterSettings
from assimilate.filters import SharedUnits, shared_unit_covariance
from assimilate.filters.shared_units import Batch
from assimilate.incremental import IncrementalUpdate, refilter_from_first_change
from assimilate.sequential import ConfidenceSequence, confidence_sequence
from assimilate.stored_steps import OBSERVATION_COLUMNS


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
    primary: dict[str, dict[Any, Any]] = (
        {
            str(row["partition_key"]): row
            for row in effects[effects["is_primary"].astype(bool)].to_dict("records")
        }
        if not effects.empty
        else {}
    )
    failures = _failed_error_checks(verdicts)
    rows = []
    for batch in ordered[first : last + 1]:
        estimate, std_error, error, rules = np.nan, np.nan, "no estimate recorded", None
        stored = primary.get(batch)
        if stored is not None:
            estimate = float(stored["estimate"])
            std_error = float(stored["std_error"])
            error = str(stored["error"] or "")
            rules = stored.get("batch_rules")
        if batch not in landed:
            reason = "no batch landed for this period"
        elif batch_rules is not None and stored is not None and rules != batch_rules:
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
    for row in failed.sort_values(["partition_key", "check_name"]).to_dict("records"):
        name, reason = str(row["check_name"]), row["reason"]
        result.setdefault(str(row["partition_key"]), []).append(f"{name} ({reason})" if reason else name)
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


def unit_batches(
    influence: pd.DataFrame, labels: Sequence[str], used: Sequence[bool] | None = None
) -> list[Batch]:
    """Per label, its stored (unit ids, influence values), or None (not used, or no values stored).

    ``influence`` holds the stored rows (``partition_key``, ``unit_id``, ``influence``).
    """
    groups = dict(tuple(influence.groupby("partition_key", sort=False))) if not influence.empty else {}
    flags = [True] * len(labels) if used is None else list(used)
    batches: list[Batch] = []
    for label, flag in zip(labels, flags, strict=True):
        rows = groups.get(label)
        if not flag or rows is None or rows.empty:
            batches.append(None)
        else:
            batches.append((rows["unit_id"].to_numpy(), rows["influence"].to_numpy(dtype=float)))
    return batches


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
    columns: dict[str, Any] = dict(zip(ALWAYS_VALID_COLUMNS, values, strict=True))
    return steps.assign(**columns)


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


# -- one update of the posterior ------------------------------------------------------------------


@dataclass(frozen=True)
class PosteriorUpdate:
    """The filter's update, the units the admitted batches share, and the always-valid interval."""

    update: IncrementalUpdate
    shared: SharedUnits | None
    correlation: np.ndarray | None
    sequence: ConfidenceSequence | None
    steps: pd.DataFrame

    def correlation_table(self) -> pd.DataFrame:
        """The stored form of :attr:`correlation` (:func:`correlation_table`)."""
        return correlation_table(self.correlation, self.update.steps["batch"].astype(str).tolist())


def update_posterior(
    observed: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    influence: pd.DataFrame,
    settings: FilterSettings,
    planned_looks: int,
) -> PosteriorUpdate:
    """Fuse the admitted batches (with their correlation when they share units), add the always-valid interval.

    The one filter pass of a posterior update: :func:`~assimilate.incremental.refilter_from_first_change`.

    Parameters
    ----------
    observed : DataFrame
        :func:`observations` of every period.
    previous : DataFrame or None
        The steps the last update stored (resumed from where the observations changed).
    influence : DataFrame
        Stored per-unit influence values (``partition_key``, ``unit_id``, ``influence``).
    settings : FilterSettings
        The study's filter (:meth:`FilterSettings.from_plan`).
    planned_looks : int
        The horizon the always-valid interval is tuned for (a study's looks at its cadence).

    Returns
    -------
    PosteriorUpdate
        ``steps``: the filter's steps with the always-valid interval beside them.
    """
    shared = admitted_units(observed, influence)
    correlation = error_correlation(shared)
    update = refilter_from_first_change(observed, previous, settings, correlation=correlation)
    if observed.empty:
        return PosteriorUpdate(update, shared, correlation, None, update.steps)
    sequence = always_valid(observed, correlation, alpha=settings.alpha, planned_looks=planned_looks)
    return PosteriorUpdate(update, shared, correlation, sequence, with_always_valid(update.steps, sequence))
