"""The node agent's Prometheus metrics (no pod names in labels: their number is unbounded)."""

from prometheus_client import Counter, Gauge

CONTAINERS_STARTED = Counter("dockyard_node_agent_containers_started_total",
                             "Containers started, first starts and restarts", ["driver"])
CONTAINER_RESTARTS = Counter("dockyard_node_agent_container_restarts_total",
                             "Containers started again after their previous run ended", ["driver"])
CONTAINERS_ADOPTED = Counter("dockyard_node_agent_containers_adopted_total",
                             "Running processes taken over from an earlier agent")
PROBE_FAILURES = Counter("dockyard_node_agent_probe_failures_total",
                         "Probe attempts that failed", ["probe", "handler"])
RUNNING_CONTAINERS = Gauge("dockyard_node_agent_running_containers",
                           "Containers running now", ["driver"])
POD_STATUS_UPDATES = Counter("dockyard_node_agent_pod_status_updates_total",
                             "PodStatusChanged events appended")
LOG_LINES = Counter("dockyard_node_agent_log_lines_total", "Container log lines published", ["stream"])
HEARTBEATS = Counter("dockyard_node_agent_heartbeats_total", "Heartbeats written to the KV bucket")
