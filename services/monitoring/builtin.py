"""The built-in alert rules, each a pure condition over ClusterHealth, with thresholds from the flags."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from dockyard.services.monitoring.health import ClusterHealth
from dockyard.services.monitoring.rules import Finding, Rule


@dataclass(frozen=True)
class Thresholds:
    """The knobs of the built-in rules (seconds, counts, fractions); the defaults suit a real cluster."""

    node_not_ready_for: float = 60.0
    heartbeat_grace: float = 40.0  # silence after which a node counts as not Ready, whatever the log says
    crashloop_restarts: int = 3  # restarts within the window
    crashloop_window: float = 600.0
    pod_pending_for: float = 300.0
    node_capacity_ratio: float = 0.9  # requests over allocatable
    node_capacity_for: float = 300.0
    rollout_stuck_for: float = 600.0
    projection_lag_events: int = 10_000
    projection_lag_for: float = 120.0
    consumer_stalled_for: float = 300.0
    keep_firing_for: float = 60.0


def node_not_ready(heartbeat_grace: float):
    # The heartbeats too, not only the log's Ready condition: with the controller down, nobody
    # would mark a silent node, and it would never alert.
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        for node in health.nodes:
            if node.ready != "True":
                yield Finding({"node": node.name, "status": node.ready.lower()}, 1.0)
            elif _silent(health, node.name, now) > heartbeat_grace:
                yield Finding({"node": node.name, "status": "unknown"}, 1.0)
    return condition


def _silent(health: ClusterHealth, node: str, now: dt.datetime) -> float:
    """Seconds since the node's last heartbeat (0 when nobody watches the heartbeats)."""
    last = health.heartbeats.get(node, health.watching_since)
    return (now - last).total_seconds() if last is not None else 0.0


def pod_crash_looping(restarts: int, window: float):
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        since = now - dt.timedelta(seconds=window)
        for pod in health.pods:
            recent = sum(1 for t in pod.restart_times if since <= t <= now)
            if recent >= restarts:
                yield Finding({"namespace": pod.namespace, "pod": pod.name}, float(recent))
    return condition


def pod_pending_too_long(pending_for: float):
    # The waiting is measured from the pod's creation, so the rule itself needs no `for`.
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        for pod in health.pods:
            if pod.phase == "Pending" and pod.created_at is not None:
                waited = (now - pod.created_at).total_seconds()
                if waited >= pending_for:
                    yield Finding({"namespace": pod.namespace, "pod": pod.name}, waited)
    return condition


def node_capacity_high(ratio: float):
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        for node in health.nodes:
            for resource, allocated, allocatable in (("cpu", node.cpu_allocated, node.cpu_allocatable),
                                                     ("memory", node.memory_allocated, node.memory_allocatable)):
                if allocatable > 0 and allocated / allocatable > ratio:
                    yield Finding({"node": node.name, "resource": resource}, allocated / allocatable)
    return condition


def deployment_rollout_stuck(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
    for deployment in health.deployments:
        behind = deployment.replicas - min(deployment.updated, deployment.available)
        if deployment.progressing == "False" or behind > 0:
            yield Finding({"namespace": deployment.namespace, "deployment": deployment.name}, float(max(behind, 0)))


def projection_lag_high(events: int):
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        for projection, lag in health.projection_lag.items():
            if lag > events:
                yield Finding({"projection": projection}, float(lag))
    return condition


def consumer_stalled(stalled_for: float):
    # Pending work and no progress: the stall is measured from the last progress, so no `for`.
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        for consumer in health.consumers:
            if consumer.pending > 0 and consumer.last_progress is not None:
                still = (now - consumer.last_progress).total_seconds()
                if still >= stalled_for:
                    yield Finding({"consumer": consumer.name}, float(consumer.pending))
    return condition


def builtin_rules(t: Thresholds = Thresholds()) -> tuple[Rule, ...]:
    keep = t.keep_firing_for
    return (
        Rule("NodeNotReady", node_not_ready(t.heartbeat_grace), t.node_not_ready_for, keep, "critical",
             annotations={"summary": "Node {{ $labels.node }} is not Ready ({{ $labels.status }})."}),
        Rule("PodCrashLooping", pod_crash_looping(t.crashloop_restarts, t.crashloop_window), 0.0, keep, "warning",
             annotations={"summary": "Pod {{ $labels.namespace }}/{{ $labels.pod }} restarted {{ $value }} times"
                                     f" in {t.crashloop_window:g}s."}),
        Rule("PodPendingTooLong", pod_pending_too_long(t.pod_pending_for), 0.0, keep, "warning",
             annotations={"summary": "Pod {{ $labels.namespace }}/{{ $labels.pod }} has been Pending"
                                     " for {{ $value }}s."}),
        Rule("NodeCapacityHigh", node_capacity_high(t.node_capacity_ratio), t.node_capacity_for, keep, "warning",
             annotations={"summary": "Node {{ $labels.node }} has {{ $value }} of its {{ $labels.resource }}"
                                     " requested."}),
        Rule("DeploymentRolloutStuck", deployment_rollout_stuck, t.rollout_stuck_for, keep, "warning",
             annotations={"summary": "Deployment {{ $labels.namespace }}/{{ $labels.deployment }} is"
                                     " {{ $value }} replicas short of its rollout."}),
        Rule("ProjectionLagHigh", projection_lag_high(t.projection_lag_events), t.projection_lag_for, keep,
             "warning", annotations={"summary": "Projection {{ $labels.projection }} is {{ $value }} events"
                                                " behind the log."}),
        Rule("ConsumerStalled", consumer_stalled(t.consumer_stalled_for), 0.0, keep, "critical",
             annotations={"summary": "Consumer {{ $labels.consumer }} has {{ $value }} events pending and has not"
                                     " moved for a while."}),
    )
