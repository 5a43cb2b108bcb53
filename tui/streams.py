"""Rows of the live streams (events, the command record) and the dashboard's figures: pure functions."""

from __future__ import annotations

from collections import Counter, deque

from dockyard import audit
from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.events import CommandRecorded
from dockyard.tui.rows import ResourceRows

EVENT_HEADERS = ["SEQ", "TIME", "TYPE", "OBJECT", "ACTOR"]
AUDIT_HEADERS = ["SEQ", "TIME", "ACTOR", "VERB", "OBJECT", "RESULT", "SUMMARY"]


def _clock(time: str) -> str:
    return time[11:19] if len(time) >= 19 else time


def event_row(record: EventRecord) -> list[str]:
    try:
        kind, namespace, name = parse_subject(record.subject)
        obj = "/".join(part for part in (kind, namespace, name) if part)
    except ValueError:
        obj = record.subject
    return [str(record.seq), _clock(record.time), record.type, obj, record.actor]


def audit_row(record: EventRecord) -> list[str] | None:
    if not isinstance(record.event, CommandRecorded):
        return None
    entry = audit.entry_of(record.seq, record.event)
    return [str(entry.seq), _clock(entry.time), entry.actor, entry.verb, audit.object_name(entry),
            entry.result, entry.summary]


class RateMeter:
    """Events per second over the last few seconds; the clock is passed in."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self.stamps: deque[tuple[float, int]] = deque()

    def add(self, now: float, count: int) -> None:
        self.stamps.append((now, count))
        while self.stamps and self.stamps[0][0] < now - self.window:
            self.stamps.popleft()

    def rate(self, now: float) -> float:
        while self.stamps and self.stamps[0][0] < now - self.window:
            self.stamps.popleft()
        return sum(count for _, count in self.stamps) / self.window


def dashboard(pods: ResourceRows, deployments: ResourceRows, nodes: ResourceRows,
              events_per_second: float, lag: int | None, connected: bool = True, firing: int = 0) -> str:
    """The dashboard's lines: nodes ready of total, pods by phase, rollouts, firing alerts, event rate, lag."""
    ready = sum(1 for cells in nodes.cells.values() if cells[nodes.headers.index("STATUS")].startswith("Ready"))
    phases: Counter[str] = Counter()
    for phase, count in pods.phases.items():  # no phase yet reads as Pending, as kubectl shows it
        phases[phase or "Pending"] += count
    phases = +phases  # drop the phases no pod is in any more
    rolling = 0
    for obj in deployments.objects.values():
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        wanted = spec.get("replicas", 1)
        if status.get("updatedReplicas", 0) < wanted or status.get("availableReplicas", 0) < wanted:
            rolling += 1
    phase_text = " ".join(f"{phase}:{count}" for phase, count in sorted(phases.items())) or "none"
    lag_text = "n/a" if lag is None else str(lag)
    link = "" if connected else "  [DISCONNECTED]"
    return (f"Nodes {ready}/{len(nodes.objects)} ready  Pods {len(pods.objects)} ({phase_text})  "
            f"Deploy {len(deployments.objects)} ({rolling} rolling)  Alerts {firing} firing  "
            f"Events {events_per_second:.1f}/s  Lag {lag_text}{link}")
