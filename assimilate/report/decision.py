"""The memo's two rules, stated once: when its status is provisional, and what it recommends.

**Status.** ``no evidence`` while no batch has updated the posterior. ``provisional`` while any of
these holds, and ``pass`` otherwise:

1. the latest batch was excluded (it failed an ERROR check, or gave no estimate) and no analyst
   has acknowledged it;
2. more than ``max_unacknowledged_share`` (default 10%) of the batches so far were excluded and
   are not acknowledged;
3. a check of the posterior itself failed (latest innovation, drift, calibration, particle ESS).

An acknowledgement (batch -> reason, from the study file) says an analyst has looked at the
exclusion and accepts that the batch stays out: the batch is still named, with its reason and the
acknowledgement, but no longer holds the status back. A check that failed on a batch the posterior
still used (a warning) is named in the memo and does not change the status.

**Decision.** Act only when the status is ``pass`` and the always-valid interval excludes 0 in the
desired direction (``act``); the opposite direction gives ``do not adopt``; without a desired
direction, ``act on the sign``. An interval that includes 0 is ``inconclusive``, whatever the
posterior's credible interval says; a provisional status gives ``fix first``, no evidence
``no decision``. The status can only hold a decision back, never create one.

Example
-------
>>> decide(status="pass", lower=0.02, upper=0.30, desired_direction="increase")
'act'
>>> decide(status="pass", lower=-0.01, upper=0.30, desired_direction="increase")
'inconclusive'
>>> decide(status="provisional", lower=0.02, upper=0.30, desired_direction="increase")
'fix first'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from assimilate._validation import check_choice

Direction = Literal["increase", "decrease"]
MemoStatus = Literal["pass", "provisional", "no evidence"]
Decision = Literal["act", "do not adopt", "act on the sign", "inconclusive", "fix first", "no decision"]
MEMO_STATUSES: tuple[MemoStatus, ...] = ("pass", "provisional", "no evidence")
DEFAULT_MAX_UNACKNOWLEDGED_SHARE = 0.1
"""Default share of batches that may stay excluded without acknowledgement before the memo is provisional."""


def decide(
    *, status: MemoStatus, lower: float, upper: float, desired_direction: Direction | None
) -> Decision:
    """The memo's recommendation from its status and the always-valid interval.

    Parameters
    ----------
    status : {"pass", "provisional", "no evidence"}
        The memo's status (see the module docstring for the rule).
    lower, upper : float
        The always-valid interval at the latest look (``-inf``/``inf`` when unbounded).
    desired_direction : {"increase", "decrease"} or None
        Which change of the outcome is wanted; None leaves the judgement to the reader.

    Returns
    -------
    str
        One of ``act``, ``do not adopt``, ``act on the sign``, ``inconclusive``, ``fix first``,
        ``no decision``.
    """
    check_choice("status", status, MEMO_STATUSES)
    if desired_direction is not None:
        check_choice("desired_direction", desired_direction, ("increase", "decrease"))
    if status == "no evidence":
        return "no decision"
    if status == "provisional":
        return "fix first"
    if not (lower > 0.0 or upper < 0.0):  # NaN bounds compare False: inconclusive
        return "inconclusive"
    sign: Direction = "increase" if lower > 0.0 else "decrease"
    if desired_direction is None:
        return "act on the sign"
    return "act" if sign == desired_direction else "do not adopt"


def check_share(share: float) -> float:
    """Return ``share`` as a float if it lies in [0, 1)."""
    value = float(share)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"max_unacknowledged_share must lie in [0, 1), got {share!r}")
    return value


def provisional_reasons(
    *,
    batches: Sequence[str],
    latest: str,
    excluded: Mapping[str, Sequence[str]],
    acknowledged: Mapping[str, str],
    failed_posterior_checks: Sequence[str],
    max_unacknowledged_share: float = DEFAULT_MAX_UNACKNOWLEDGED_SHARE,
) -> tuple[str, ...]:
    """Why the status is provisional, one clause per rule that holds (empty: not provisional).

    Parameters
    ----------
    batches : sequence of str
        Every batch so far, in time order.
    latest : str
        The latest batch.
    excluded : mapping of str to sequence of str
        Excluded batches with the failed checks or reason (the memo states the reasons once, in its
        list of batches; the clauses only name the batch).
    acknowledged : mapping of str to str
        Acknowledged exclusions, batch -> the analyst's reason.
    failed_posterior_checks : sequence of str
        Names (or titles) of the posterior's own checks that failed.
    max_unacknowledged_share : float
        Largest share of batches that may be excluded without acknowledgement.

    Returns
    -------
    tuple of str
        Clauses such as ``"the latest batch 2025-03 was excluded and is not acknowledged"``.
    """
    limit = check_share(max_unacknowledged_share)
    reasons = []
    if latest in excluded and latest not in acknowledged:
        reasons.append(f"the latest batch {latest} was excluded and is not acknowledged")
    open_batches = [b for b in batches if b in excluded and b not in acknowledged]
    if batches and len(open_batches) / len(batches) > limit:
        reasons.append(
            f"{len(open_batches)} of {len(batches)} batches ({len(open_batches) / len(batches):.0%}) were "
            f"excluded without acknowledgement, more than the {limit:.0%} allowed"
        )
    reasons += [f"the check of the posterior '{name}' failed" for name in failed_posterior_checks]
    return tuple(reasons)
