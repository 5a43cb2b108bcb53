"""The cluster's health as plain data: what alert rules and the metrics endpoint read, built from the view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NodeHealth:
    name: str
    ready: str  # the Ready condition's status: "True", "False" or "Unknown"
    unschedulable: bool = False
    cpu_allocatable: int = 0  # millicores
    memory_allocatable: int = 0  # bytes
    cpu_allocated: int = 0  # requests of the pods bound there
    memory_allocated: int = 0


@dataclass(frozen=True, slots=True)
class PodHealth:
    namespace: str
    name: str
    phase: str
    node: str = ""
    created_at: dt.datetime | None = None
    container_restarts: tuple[tuple[str, int], ...] = ()  # (container, restarts)
    restart_times: tuple[dt.datetime, ...] = ()  # recent restarts, when the log saw them


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    namespace: str
    name: str
    replicas: int  # desired
    updated: int = 0
    available: int = 0
    progressing: str = "True"  # the Progressing condition's status
    available_status: str = "True"  # the Available condition's status


@dataclass(frozen=True, slots=True)
class ConsumerHealth:
    name: str  # a durable consumer on DY_EVENTS
    pending: int  # events not yet delivered
    ack_pending: int = 0
    last_progress: dt.datetime | None = None  # when its acknowledged position last moved


@dataclass(frozen=True, slots=True)
class SchedulerFigures:
    """What the log tells of the scheduler's work: attempts by result, and created -> scheduled times."""

    pending: int = 0
    attempts: dict[str, int] = field(default_factory=dict)  # scheduled | unschedulable | error
    duration_buckets: tuple[tuple[float, int], ...] = ()  # (upper bound, cumulative count), +Inf last
    duration_sum: float = 0.0
    duration_count: int = 0


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """One moment's state: the input of `rules.evaluate`."""

    nodes: tuple[NodeHealth, ...] = ()
    pods: tuple[PodHealth, ...] = ()
    deployments: tuple[DeploymentHealth, ...] = ()
    projection_lag: dict[str, int] = field(default_factory=dict)  # projection -> events behind
    consumers: tuple[ConsumerHealth, ...] = ()
    scheduler: SchedulerFigures = field(default_factory=SchedulerFigures)
    # When each node's agent last heartbeat (KV bucket), as the monitoring service saw it arrive;
    # a node not heard from since `watching_since` counts from then.
    heartbeats: dict[str, dt.datetime] = field(default_factory=dict)
    watching_since: dt.datetime | None = None
    alerts_firing: dict[tuple[str, str], int] = field(default_factory=dict)  # (alertname, severity) -> count


def heartbeats_kept(heartbeats: dict[str, float], registered: Container[str], now: float,
                    grace: float) -> dict[str, float]:
    """The heartbeats worth remembering: every registered node's, and a deleted node's only until it has
    been silent past the grace. Not dropped at the deletion itself: an agent still running heartbeats on
    (and may register again), and a registered node without an entry would count as silent."""
    return {node: at for node, at in heartbeats.items() if node in registered or now - at <= grace}
