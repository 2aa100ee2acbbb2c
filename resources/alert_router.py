"""The alert router: log first, then deliver within a time budget, re-send on a schedule, give up.

``AlertRouter.queue`` writes the alert to the log and a ``pending`` row per sink; no sink, however
slow or broken, can stop that. ``deliver_due`` then delivers within one time budget per evaluation:
each delivery within its own deadline, never-tried alerts first, a sink that failed once is not
tried again in the same evaluation, and what the budget leaves stays queued for the next one. An
undelivered alert is tried again on a growing schedule (``ResendSchedule``) and finally marked
``gave_up`` in the delivery log. ``send`` is ``queue`` plus an immediate delivery of that alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from resources.alert_log import Alert, DeliveryOutcome, JsonlAlertLog, iso_time
from resources.alert_sinks import AlertSink, DeliveryError, MisconfiguredSink

_MIN_DELIVERY_S = 1.0  # with less budget left, a delivery would fail for want of time: it waits


@dataclass(frozen=True)
class ResendSchedule:
    """When an undelivered alert is tried again at a sink, and when it is given up.

    The first re-send is due at the next evaluation (a blip is usually over by then); after that
    the wait doubles from ``backoff_s`` up to ``backoff_max_s``. After ``rounds`` failed deliveries
    (the first included) the pair is marked ``gave_up``: 8 rounds span about an hour by default.
    """

    rounds: int = 8
    backoff_s: float = 60.0
    backoff_max_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.backoff_s < 0 or self.backoff_max_s < self.backoff_s:
            raise ValueError("rounds must be >= 1 and 0 <= backoff_s <= backoff_max_s")

    def wait_after(self, failures: int) -> float | None:
        """Seconds from failed round ``failures`` (1 = the first) to the next; None: give up."""
        if failures >= self.rounds:
            return None
        return 0.0 if failures == 1 else min(self.backoff_s * 2.0 ** (failures - 2), self.backoff_max_s)


class Budget:
    """The time one evaluation may spend delivering, shared by all its deliveries."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


Work = tuple[Alert, AlertSink, int]  # an alert, a sink, the rounds failed so far


class AlertRouter:
    """Log every alert, then deliver it to its sinks within a budget; sink failures never raise.

    ``routes`` maps a study to its own sinks (``alerts:`` in its study file); other studies use
    ``sinks``. ``clock`` (seconds since the epoch) dates the delivery rows and the re-send schedule.
    """

    def __init__(
        self,
        log: JsonlAlertLog,
        sinks: Sequence[AlertSink] = (),
        *,
        routes: Mapping[str, Sequence[AlertSink]] | None = None,
        schedule: ResendSchedule | None = None,
        budget_s: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for route in (sinks, *(routes or {}).values()):
            names = [s.name for s in route]
            if len(set(names)) != len(names):
                raise ValueError(f"sink names must be unique, got {names}")
        self.log = log
        self.sinks = list(sinks)
        self.routes = {study: list(route) for study, route in (routes or {}).items()}
        self.schedule = schedule or ResendSchedule()
        self.budget_s, self.clock = budget_s, clock

    def sinks_for(self, alert: Alert) -> list[AlertSink]:
        return self.routes.get(alert.study, self.sinks)

    def misconfigured(self) -> list[str]:
        """The reason of each sink whose setting is malformed (each once)."""
        sinks = [*self.sinks, *(s for route in self.routes.values() for s in route)]
        return list(dict.fromkeys(s.reason for s in sinks if isinstance(s, MisconfiguredSink)))

    def queue(self, alert: Alert) -> None:
        """Log ``alert`` and queue it for each of its sinks (no network)."""
        self.log.append(alert)
        at = iso_time(self.clock())
        for sink in self.sinks_for(alert):
            self.log.record_delivery(
                alert.alert_id, DeliveryOutcome(sink.name, sink.target, "pending", 0), at=at
            )

    def send(self, alert: Alert, *, budget: Budget | None = None) -> list[DeliveryOutcome]:
        """Queue ``alert`` and deliver it now within the budget; one outcome per sink."""
        self.queue(alert)
        sinks = self.sinks_for(alert)
        if not sinks:
            return []
        with self.log.delivering() as ours:
            if not ours:
                return [_not_tried(s, "another evaluation is delivering: queued") for s in sinks]
            done = self._deliver([(alert, sink, 0) for sink in sinks], budget or Budget(self.budget_s))
        return [outcome for _, outcome in done]

    def deliver_due(
        self, *, budget: Budget | None = None, studies: Collection[str] | None = None
    ) -> list[tuple[Alert, DeliveryOutcome]]:
        """Deliver every queued alert (of ``studies``) whose time has come, least-failed first."""
        if not self.log.queued():
            return []
        with self.log.delivering() as ours:
            if not ours:
                return []
            now, work = self.clock(), []
            for item in self.log.queued():  # read again under the lock
                if studies is not None and item.alert.study not in studies:
                    continue
                sink = {s.name: s for s in self.sinks_for(item.alert)}.get(item.sink)
                if sink is not None and item.due_at <= now:  # a sink no longer set up keeps its queue
                    work.append((item.alert, sink, item.failures))
            work.sort(key=lambda w: w[2])
            return self._deliver(work, budget or Budget(self.budget_s))

    retry_pending = deliver_due  # the name the sensors used before the schedule existed

    def _deliver(self, work: list[Work], budget: Budget) -> list[tuple[Alert, DeliveryOutcome]]:
        failing: set[int] = set()  # a sink that failed in this evaluation is not tried again in it
        done = []
        for alert, sink, failures in work:
            left = budget.remaining()
            if id(sink) in failing:
                outcome = _not_tried(sink, "the sink failed earlier in this evaluation: queued")
            elif left < _MIN_DELIVERY_S:
                outcome = _not_tried(
                    sink, f"the evaluation's {budget.seconds:g} s delivery budget is spent: queued"
                )
            else:
                outcome = self._attempt(alert, sink, failures, left)
                if outcome.status != "delivered":
                    failing.add(id(sink))
            done.append((alert, outcome))
        return done

    def _attempt(self, alert: Alert, sink: AlertSink, failures: int, within_s: float) -> DeliveryOutcome:
        try:
            outcome = DeliveryOutcome(
                sink.name, sink.target, "delivered", sink.deliver(alert, within_s=within_s)
            )
        except DeliveryError as error:
            wait = self.schedule.wait_after(failures + 1)
            if wait is None:
                reason = f"gave up after {failures + 1} failed deliveries; the last: {error}"
                outcome = DeliveryOutcome(sink.name, sink.target, "gave_up", error.attempts, reason)
            else:
                retry_at = iso_time(self.clock() + wait)
                outcome = DeliveryOutcome(
                    sink.name, sink.target, "failed", error.attempts, str(error), retry_at
                )
        self.log.record_delivery(alert.alert_id, outcome, at=iso_time(self.clock()))
        return outcome


def _not_tried(sink: AlertSink, why: str) -> DeliveryOutcome:
    return DeliveryOutcome(sink.name, sink.target, "pending", 0, f"not tried: {why}")
