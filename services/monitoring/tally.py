"""What the monitoring service counts from the log beside the view: scheduling attempts and times, restarts."""

from __future__ import annotations

import bisect
import datetime as dt
from collections import deque
from collections.abc import Iterable

from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.events import PodCreated, PodDeleted, PodScheduled, PodStatusChanged, PodUnschedulable
from dockyard.services.monitoring.health import SchedulerFigures

# Created -> scheduled spans milliseconds on an idle cluster and minutes behind a backlog.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RESTARTS_KEPT = 20  # per pod: more than any crash-loop threshold needs

Key = tuple[str, str]


def parse_time(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return None


def rfc3339(when: dt.datetime) -> str:
    """As the log and Alertmanager write times: UTC, milliseconds, `Z`."""
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogTally:
    """Counts folded from pod events, with the events' own timestamps (never the clock of the reader)."""

    def __init__(self) -> None:
        self.attempts = {"scheduled": 0, "unschedulable": 0, "error": 0}
        self.bucket_counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.created: dict[Key, dt.datetime] = {}  # pods not scheduled yet
        self.restart_totals: dict[Key, int] = {}  # pods that restarted at least once
        self.restart_times: dict[Key, deque[dt.datetime]] = {}

    def observe(self, record: EventRecord) -> None:
        event = record.event
        if not isinstance(event, (PodCreated, PodScheduled, PodUnschedulable, PodStatusChanged, PodDeleted)):
            return
        key = parse_subject(record.subject)[1:]
        if isinstance(event, PodCreated):
            if when := parse_time(record.time):
                self.created[key] = when
        elif isinstance(event, PodScheduled):
            self.attempts["scheduled"] += 1
            created, scheduled = self.created.pop(key, None), parse_time(record.time)
            if created and scheduled:
                self._observe_duration(max(0.0, (scheduled - created).total_seconds()))
        elif isinstance(event, PodUnschedulable):
            self.attempts["unschedulable"] += 1
        elif isinstance(event, PodStatusChanged):
            self._observe_restarts(key, sum(c.restart_count for c in event.status.container_statuses), record.time)
        else:
            self.forget_pods((key,))

    def forget_pods(self, keys: Iterable[Key]) -> None:
        """Drop what is kept per pod for pods that are gone, so a cluster with churn does not grow the maps."""
        for key in keys:
            self.created.pop(key, None)
            self.restart_totals.pop(key, None)
            self.restart_times.pop(key, None)

    def _observe_duration(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def _observe_restarts(self, key: Key, total: int, time: str) -> None:
        before = self.restart_totals.get(key, 0)
        if total <= before:
            return
        self.restart_totals[key] = total
        when = parse_time(time)
        if when is not None:
            times = self.restart_times.setdefault(key, deque(maxlen=RESTARTS_KEPT))
            times.extend([when] * min(total - before, RESTARTS_KEPT))

    def figures(self, pending: int) -> SchedulerFigures:
        cumulative, buckets = 0, []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.bucket_counts):
            cumulative += count
            buckets.append((bound, cumulative))
        return SchedulerFigures(pending=pending, attempts=dict(self.attempts), duration_buckets=tuple(buckets),
                                duration_sum=self.duration_sum, duration_count=cumulative)
