"""Landing reconciliation: what runs make the materialized batches equal the landing folder.

The folder is the truth. For each partition the *wanted* content is its file's sha256 under the
study's current batch rules (None when no file maps to it: a withdrawal); the *materialized*
content is what the newest ``raw_batch`` materialization read, under the rules of its run (None
when it withdrew the batch, or never ran). A partition whose two differ gets a run, whatever
happened before: a new, changed, reverted or restored file, a file that was away when its run read
it, a run that failed, a study file edited since. So every landed content reaches the posterior,
judged under today's rules, and only once: a partition that matches needs nothing.

Pure planning, no Dagster: ``plan`` takes the wanted contents, a lookup of the materialized ones
and of run statuses, and the previous state (what was confirmed, what is pending), and returns the
requests to make, the partitions given up on, and the next state (the sensor's cursor). A failing
run is retried up to ``max_attempts`` times per content, then given up (one alert) until the file
changes. Every request has a fresh run key, so Dagster's once-per-key rule never drops a request.

Example
-------
>>> wanted = {"2025-01-01": "aa", "2025-02-01": None}
>>> result = plan(wanted, ReconcileState(), materialized=lambda p: "aa" if p == "2025-01-01" else None,
...               run_status=lambda key: "missing", now=0.0, new_key=lambda p, sha: f"{p}:{sha}")
>>> result.requests, result.state.confirmed
((), {'2025-01-01': 'aa', '2025-02-01': None})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

RunStatus = Literal["missing", "in_progress", "success", "failure"]
MAX_ATTEMPTS = 3
# A requested run the instance has not shown after this long is taken as lost (a daemon restart
# between the tick and the launch); the partition is judged again.
LOST_AFTER_S = 600.0


@dataclass(frozen=True)
class Attempt:
    """The run requested for a partition's content, and how many runs that content has had.

    A content is an opaque token: the sensor makes it from the file's sha256 and the study's batch
    rules, so a change of either needs a run.
    """

    content: str | None
    run_key: str
    number: int
    requested_at: float
    gave_up: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "run_key": self.run_key,
            "number": self.number,
            "requested_at": self.requested_at,
            "gave_up": self.gave_up,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            content=data["content"],
            run_key=str(data["run_key"]),
            number=int(data["number"]),
            requested_at=float(data["requested_at"]),
            gave_up=bool(data.get("gave_up", False)),
        )


@dataclass(frozen=True)
class ReconcileState:
    """What the sensor remembers: partitions confirmed equal to the folder, and pending attempts."""

    confirmed: dict[str, str | None] = field(default_factory=dict)
    attempts: dict[str, Attempt] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "confirmed": dict(sorted(self.confirmed.items())),
            "attempts": {p: a.to_dict() for p, a in sorted(self.attempts.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconcileState:
        return cls(
            confirmed={str(p): s for p, s in data.get("confirmed", {}).items()},
            attempts={str(p): Attempt.from_dict(a) for p, a in data.get("attempts", {}).items()},
        )


@dataclass(frozen=True)
class Request:
    """One run to request: make ``partition_key`` hold ``content`` (None: withdraw it)."""

    partition_key: str
    content: str | None
    run_key: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Plan:
    requests: tuple[Request, ...]
    gave_up: tuple[Attempt, ...]  # newly given up, with their partitions in ``gave_up_keys``
    gave_up_keys: tuple[str, ...]
    state: ReconcileState


def plan(
    wanted: Mapping[str, str | None],
    state: ReconcileState,
    *,
    materialized: Callable[[str], str | None],
    run_status: Callable[[str], RunStatus],
    now: float,
    new_key: Callable[[str, str | None], str],
    undecided: frozenset[str] = frozenset(),
    max_attempts: int = MAX_ATTEMPTS,
) -> Plan:
    """The runs that make every partition's materialized content equal to its wanted content.

    Parameters
    ----------
    wanted
        Partition key -> the content wanted there now (a token of its file), or None for no file.
        Partitions only in ``state`` count as None (their file is gone).
    state
        The previous plan's state (``ReconcileState()`` on the first tick).
    materialized
        Partition key -> the content its newest ``raw_batch`` materialization holds (None:
        withdrawn or never materialized). Called only for partitions that are not confirmed.
    run_status
        Run key -> the run's status ("missing" when the instance has no run with that key yet).
    now
        Seconds (any clock), to tell a lost request from a pending one.
    new_key
        Makes a fresh run key for (partition, content).
    undecided
        Partitions whose file is there but cannot be judged this tick (two files map to it, it is
        still being written): left as they are.
    """
    confirmed = dict(state.confirmed)
    attempts = dict(state.attempts)
    requests: list[Request] = []
    gave_up: list[Attempt] = []
    gave_up_keys: list[str] = []
    for partition in sorted(set(wanted) | set(confirmed) | set(attempts)):
        if partition in undecided:
            continue
        want = wanted.get(partition)
        attempt = attempts.get(partition)
        if attempt is None and partition in confirmed and confirmed[partition] == want:
            continue
        same_content = attempt is not None and attempt.content == want
        status: RunStatus | None = None
        if same_content and attempt is not None and not attempt.gave_up:
            status = run_status(attempt.run_key)
            waiting = status == "in_progress" or (
                status == "missing" and now - attempt.requested_at < LOST_AFTER_S
            )
            if waiting:
                continue
        # A failed run may have stored the raw file before it failed: it still did not land the batch.
        if status != "failure" and materialized(partition) == want:
            confirmed[partition] = want
            attempts.pop(partition, None)
            continue
        confirmed.pop(partition, None)
        if same_content and attempt is not None:
            if attempt.gave_up:
                continue
            if attempt.number >= max_attempts:
                attempts[partition] = replace(attempt, gave_up=True)
                gave_up.append(attempt)
                gave_up_keys.append(partition)
                continue
            number = attempt.number + 1
            reason = f"attempt {number}: the last run ({status or 'lost'}) did not land it"
        else:
            number, reason = 1, _why(want, state.confirmed.get(partition, "unknown"))
        key = new_key(partition, want)
        requests.append(Request(partition, want, key, number, reason))
        attempts[partition] = Attempt(want, key, number, now)
    next_state = ReconcileState(confirmed, attempts)
    return Plan(tuple(requests), tuple(gave_up), tuple(gave_up_keys), next_state)


def _why(want: str | None, before: str | None) -> str:
    if want is None:
        return "its file was removed: withdraw the batch"
    if before == "unknown":
        return "not materialized as it is now"
    return "changed (its file, or the study's batch rules)" if before is not None else "file landed again"
