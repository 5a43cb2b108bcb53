"""The scheduler's own Prometheus metrics: its queue and its decisions.

The cluster-wide scheduling figures in kube-scheduler's names (`dockyard_scheduler_pending_pods`,
`_schedule_attempts_total`, `_scheduling_attempt_duration_seconds`: created -> bound, from the log)
come from the monitoring service; these say how this scheduler instance works, so they have their own names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PENDING_PODS = Gauge("dockyard_scheduler_queue_pods",
                     "Pods waiting for a node, by queue (active, backoff, unschedulable).", ["queue"])
SCHEDULE_ATTEMPTS = Counter("dockyard_scheduler_decisions_total",
                            "Decisions on a pod, by result (scheduled, unschedulable, error: its binding"
                            " conflicted or failed and it is decided again).", ["result"])
ATTEMPT_DURATION = Histogram("dockyard_scheduler_decision_duration_seconds",
                             "One pod's attempt: its decision plus writing its node's binding batch.",
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CYCLE_PODS = Histogram("dockyard_scheduler_cycle_pods", "Pods decided per scheduling cycle.",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000))

RESULTS = ("scheduled", "unschedulable", "error")
for _result in RESULTS:
    SCHEDULE_ATTEMPTS.labels(_result)
