"""The scheduler's Prometheus metrics, named after Kubernetes' scheduler metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PENDING_PODS = Gauge("dockyard_scheduler_pending_pods",
                     "Pods waiting for a node, by queue (active, backoff, unschedulable).", ["queue"])
SCHEDULE_ATTEMPTS = Counter("dockyard_scheduler_schedule_attempts_total",
                            "Attempts to schedule a pod, by result (scheduled, unschedulable, error: its binding"
                            " conflicted or failed and it is decided again).", ["result"])
ATTEMPT_DURATION = Histogram("dockyard_scheduler_scheduling_attempt_duration_seconds",
                             "One pod's attempt: its decision plus writing its node's binding batch.",
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CYCLE_PODS = Histogram("dockyard_scheduler_cycle_pods", "Pods decided per scheduling cycle.",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000))

RESULTS = ("scheduled", "unschedulable", "error")
for _result in RESULTS:
    SCHEDULE_ATTEMPTS.labels(_result)
