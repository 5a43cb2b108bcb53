"""Which pending pods to try next: active, backing off, parked until an event could help, or waiting on the view.

Kubernetes' scheduling queue, without I/O: the clock and the view's position are arguments.
A pod is in at most one place; a pod the queue has never seen is added as active.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

Key = tuple[str, str]

INITIAL_BACKOFF = 1.0  # seconds; doubles per unschedulable attempt (Kubernetes' defaults)
MAX_BACKOFF = 10.0
PARKED_RETRY = 30.0  # a parked pod is retried after this long even if no event woke it


class _Parked(msgspec.Struct, frozen=True):
    requeue_on: frozenset[str]  # event types that may change its answer
    since: float


class SchedulingQueue:
    def __init__(self, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 parked_retry: float = PARKED_RETRY):
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.parked_retry = parked_retry
        self._active: dict[Key, None] = {}  # first in, first out
        self._backoff: dict[Key, float] = {}  # -> when it may be tried again
        self._backoff_due: list[tuple[float, Key]] = []  # a heap over _backoff; stale entries skipped
        self._parked: dict[Key, _Parked] = {}  # in the order they were parked
        self._parked_on: dict[str, dict[Key, None]] = {}  # event type -> parked pods it may help
        self._waiting: dict[Key, int] = {}  # -> the view position to reach first
        self._waiting_due: list[tuple[int, Key]] = []  # a heap over _waiting; stale entries skipped
        self._attempts: dict[Key, int] = {}  # unschedulable attempts so far
        self._last_attempt: dict[Key, float] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._active or key in self._backoff or key in self._parked or key in self._waiting

    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self._parked) + len(self._waiting)

    def sizes(self) -> dict[str, int]:
        """Pending pods by queue, as Kubernetes' pending_pods gauge labels them."""
        return {"active": len(self._active) + len(self._waiting), "backoff": len(self._backoff),
                "unschedulable": len(self._parked)}

    @property
    def has_active(self) -> bool:
        return bool(self._active)

    def add(self, key: Key) -> None:
        """A pending pod: active unless the queue already holds it."""
        if key not in self:
            self._active[key] = None

    def activate(self, key: Key) -> None:
        """Try this pod now, wherever it waits (its spec changed)."""
        self._drop(key)
        self._active[key] = None

    def remove(self, key: Key) -> None:
        """The pod is bound or gone."""
        self._drop(key)
        self._attempts.pop(key, None)
        self._last_attempt.pop(key, None)

    def _drop(self, key: Key) -> None:
        self._active.pop(key, None)
        self._backoff.pop(key, None)
        self._unpark(key)
        self._waiting.pop(key, None)

    def _unpark(self, key: Key) -> _Parked | None:
        parked = self._parked.pop(key, None)
        if parked is not None:
            for event_type in parked.requeue_on:
                self._parked_on[event_type].pop(key, None)
        return parked

    def pop(self, limit: int) -> list[Key]:
        """Up to `limit` active pods, oldest first; they leave the queue until parked or re-added."""
        keys = []
        for key in self._active:
            keys.append(key)
            if len(keys) == limit:
                break
        for key in keys:
            del self._active[key]
        return keys

    def park(self, key: Key, requeue_on: frozenset[str], now: float) -> None:
        """No node fits: wait for an event of one of `requeue_on`, or `parked_retry`."""
        self._drop(key)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        self._last_attempt[key] = now
        self._parked[key] = _Parked(requeue_on, now)
        for event_type in requeue_on:
            self._parked_on.setdefault(event_type, {})[key] = None

    def wait_for_view(self, keys: Iterable[Key], position: int) -> None:
        """The log moved under these pods' decisions: retry once the view has read up to `position`."""
        for key in keys:
            self._drop(key)
            self._waiting[key] = position
            heapq.heappush(self._waiting_due, (position, key))

    def on_events(self, event_types: set[str], now: float) -> None:
        """Parked pods that one of these event types could help move to backoff (or straight to active)."""
        for event_type in event_types:
            for key in list(self._parked_on.get(event_type, ())):
                self._unpark(key)
                ready_at = self._last_attempt.get(key, now) + self.backoff_of(key)
                self._backoff[key] = ready_at
                heapq.heappush(self._backoff_due, (ready_at, key))
        self.admit(now)

    def backoff_of(self, key: Key) -> float:
        attempts = self._attempts.get(key, 1)
        return min(self.initial_backoff * 2 ** max(attempts - 1, 0), self.max_backoff)

    def admit(self, now: float, position: int | None = None) -> None:
        """Move to active what is due: backoff that expired, parked past `parked_retry`, waiting the view passed."""
        while self._backoff_due and self._backoff_due[0][0] <= now:
            ready_at, key = heapq.heappop(self._backoff_due)
            if self._backoff.get(key) == ready_at:
                del self._backoff[key]
                self._active[key] = None
        overdue = []
        for key, parked in self._parked.items():
            if parked.since + self.parked_retry > now:
                break  # parked in order: the rest are more recent
            overdue.append(key)
        for key in overdue:
            self._unpark(key)
            self._active[key] = None
        while position is not None and self._waiting_due and self._waiting_due[0][0] <= position:
            reach, key = heapq.heappop(self._waiting_due)
            if self._waiting.get(key) == reach:
                del self._waiting[key]
                self._active[key] = None
