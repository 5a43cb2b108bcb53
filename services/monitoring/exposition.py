"""Cluster-state metrics (kube-state-metrics' names, `dockyard_` prefix) as samples and as Prometheus text.

With 50,000 pods these are some 300,000 samples; prometheus_client's formatter takes seconds for
that many, so the families are plain tuples and the text is written here, one %-template a family.
Label values are names the api validated (DNS-1123) or constants; the few that are not (alert
labels, consumer names) are escaped when their family is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.services.monitoring.health import ClusterHealth, PodHealth

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
CONDITION_STATUSES = (("true", "True"), ("false", "False"), ("unknown", "Unknown"))
RESULTS = ("scheduled", "unschedulable", "error")

Row = tuple  # the label values in `label_names` order, then the value


@dataclass(slots=True)
class Family:
    """The samples of one name; `metric` is the name HELP and TYPE go under (a histogram's base name)."""

    name: str
    kind: str
    help: str
    label_names: tuple[str, ...]
    rows: list[Row]
    metric: str = ""
    text: list[str] | None = None  # its lines already rendered (pods': see PodLines), instead of rows

    def __post_init__(self) -> None:
        self.metric = self.metric or self.name

    def template(self) -> str:
        """The %-template of one row: the label values, then the value."""
        labels = ",".join(f'{label}="%s"' for label in self.label_names)
        return f"{self.name}{{{labels}}} %s\n" if labels else f"{self.name} %s\n"


def _status_rows(key: tuple[str, ...], status: str) -> list[Row]:
    return [(*key, name, 1 if status == value else 0) for name, value in CONDITION_STATUSES]


def node_families(health: ClusterHealth) -> list[Family]:
    conditions, allocatable, allocated, unschedulable = [], [], [], []
    for node in health.nodes:
        conditions += _status_rows((node.name, "Ready"), node.ready)
        allocatable += [(node.name, "cpu", "core", node.cpu_allocatable / 1000),
                        (node.name, "memory", "byte", node.memory_allocatable)]
        allocated += [(node.name, "cpu", "core", node.cpu_allocated / 1000),
                      (node.name, "memory", "byte", node.memory_allocated)]
        unschedulable.append((node.name, 1 if node.unschedulable else 0))
    resource = ("node", "resource", "unit")
    return [
        Family("dockyard_node_status_condition", "gauge", "The node's conditions, one series per status.",
               ("node", "condition", "status"), conditions),
        Family("dockyard_node_status_allocatable", "gauge", "What the node offers to pods.", resource, allocatable),
        Family("dockyard_node_status_allocated", "gauge", "The requests of the pods bound to the node.",
               resource, allocated),
        Family("dockyard_node_spec_unschedulable", "gauge", "Whether the node is cordoned.", ("node",),
               unschedulable),
    ]


def pod_rows(pod: PodHealth) -> tuple[list[Row], list[Row]]:
    """One pod's rows of the phase family and of the restarts family."""
    namespace, name, current = pod.namespace, pod.name, pod.phase
    return ([(namespace, name, phase, 1 if current == phase else 0) for phase in PHASES],
            [(namespace, name, container, count) for container, count in pod.container_restarts])


def _pod_phase(rows: list[Row], text: list[str] | None = None) -> Family:
    return Family("dockyard_pod_status_phase", "gauge", "The pod's phase, one series per phase.",
                  ("namespace", "pod", "phase"), rows, text=text)


def _pod_restarts(rows: list[Row], text: list[str] | None = None) -> Family:
    return Family("dockyard_pod_container_status_restarts_total", "counter", "Restarts of the pod's container.",
                  ("namespace", "pod", "container"), rows, text=text)


class PodLines:
    """Each pod's rendered lines, kept while its PodHealth is the same object.

    Most of the text is pods', and between two scrapes few pods change: their PodHealth is rebuilt
    (see snapshot.PodHealthCache), the others' lines are reused.
    """

    def __init__(self) -> None:
        self._by_pod: dict[tuple[str, str], tuple[PodHealth, str, str]] = {}

    def families(self, pods: Iterable[PodHealth]) -> list[Family]:
        phase_template, restarts_template = _pod_phase([]).template(), _pod_restarts([]).template()
        fresh, phases, restarts = {}, [], []
        for pod in pods:
            key = (pod.namespace, pod.name)
            lines = self._by_pod.get(key)
            if lines is None or lines[0] is not pod:
                phase_rows, restart_rows = pod_rows(pod)
                lines = (pod, "".join([phase_template % row for row in phase_rows]),
                         "".join([restarts_template % row for row in restart_rows]))
            fresh[key] = lines
            phases.append(lines[1])
            restarts.append(lines[2])
        self._by_pod = fresh
        return [_pod_phase([], phases), _pod_restarts([], restarts)]


def pod_families(health: ClusterHealth, lines: PodLines | None = None) -> list[Family]:
    if lines is not None:
        return lines.families(health.pods)
    phases, restarts = [], []
    for pod in health.pods:
        phase_rows, restart_rows = pod_rows(pod)
        phases += phase_rows
        restarts += restart_rows
    return [_pod_phase(phases), _pod_restarts(restarts)]


def deployment_families(health: ClusterHealth) -> list[Family]:
    spec, available, updated, conditions = [], [], [], []
    for deployment in health.deployments:
        key = (deployment.namespace, deployment.name)
        spec.append((*key, deployment.replicas))
        available.append((*key, deployment.available))
        updated.append((*key, deployment.updated))
        conditions += _status_rows((*key, "Available"), deployment.available_status)
        conditions += _status_rows((*key, "Progressing"), deployment.progressing)
    labels = ("namespace", "deployment")
    return [
        Family("dockyard_deployment_spec_replicas", "gauge", "Desired pods of the deployment.", labels, spec),
        Family("dockyard_deployment_status_replicas_available", "gauge", "Available pods of the deployment.",
               labels, available),
        Family("dockyard_deployment_status_replicas_updated", "gauge", "Pods of the deployment's current template.",
               labels, updated),
        Family("dockyard_deployment_status_condition", "gauge", "The deployment's conditions, one series per status.",
               ("namespace", "deployment", "condition", "status"), conditions),
    ]


def scheduler_families(health: ClusterHealth) -> list[Family]:
    figures = health.scheduler
    base = "dockyard_scheduler_scheduling_attempt_duration_seconds"
    help_ = "From a pod's creation to its binding, as the log's timestamps tell."
    buckets = [(_bound(le), count) for le, count in figures.duration_buckets]
    return [
        Family("dockyard_scheduler_pending_pods", "gauge", "Pods not bound to a node yet.", (),
               [(figures.pending,)]),
        Family("dockyard_scheduler_schedule_attempts_total", "counter",
               "Scheduling decisions in the log, by result.", ("result",),
               [(result, figures.attempts.get(result, 0)) for result in RESULTS]),
        Family(f"{base}_bucket", "histogram", help_, ("le",), buckets, metric=base),
        Family(f"{base}_sum", "histogram", help_, (), [(figures.duration_sum,)], metric=base),
        Family(f"{base}_count", "histogram", help_, (), [(figures.duration_count,)], metric=base),
    ]


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))


def health_families(health: ClusterHealth) -> list[Family]:
    return [
        Family("dockyard_projection_lag_events", "gauge", "Events in the log a projection has not applied yet.",
               ("projection",), [(_escape(name), lag) for name, lag in sorted(health.projection_lag.items())]),
        Family("dockyard_alerts_firing", "gauge", "Firing alerts by name and severity.", ("alertname", "severity"),
               [(name, _escape(severity), count)
                for (name, severity), count in sorted(health.alerts_firing.items())]),
    ]


def cluster_families(health: ClusterHealth, pod_lines: PodLines | None = None) -> list[Family]:
    """Every cluster-state family, in a stable order; with `pod_lines`, pods' come rendered (for `render`)."""
    return [*node_families(health), *pod_families(health, pod_lines), *deployment_families(health),
            *scheduler_families(health), *health_families(health)]


# ---------------------------------------------------------------- text format


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


CHUNK_ROWS = 20_000  # rows (or pods' lines) joined at once: bounds the text held before it becomes bytes


def render(families: Iterable[Family]) -> list[bytes]:
    """The families in Prometheus' text format (0.0.4), as chunks to send one after the other."""
    chunks: list[bytes] = []
    described = ""
    for family in families:
        if family.metric != described:
            chunks.append(f"# HELP {family.metric} {family.help}\n# TYPE {family.metric} {family.kind}\n".encode())
            described = family.metric
        if family.text is not None:
            text = family.text
            chunks += ["".join(text[start:start + CHUNK_ROWS]).encode() for start in range(0, len(text), CHUNK_ROWS)]
            continue
        template, rows = family.template(), family.rows
        for start in range(0, len(rows), CHUNK_ROWS):
            chunks.append("".join([template % row for row in rows[start:start + CHUNK_ROWS]]).encode())
    return chunks
