"""ClusterHealth from the monitoring service's view of the log, its tally, and the consumers' info."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.services.monitoring.health import ClusterHealth, ConsumerHealth, DeploymentHealth, NodeHealth, PodHealth
from dockyard.services.monitoring.tally import LogTally, parse_time
from dockyard.services.scheduler.snapshot import node_info
from dockyard.view import ClusterView

FINISHED = ("Succeeded", "Failed")
PROJECTOR_PREFIX = "dy-projector-"  # the projector's durable consumers: dy-projector-<projection>


def _status_of(conditions, kind: str, default: str) -> str:
    return next((c.status for c in conditions if c.type == kind), default)


def node_health(node: Node, allocated: tuple[int, int]) -> NodeHealth:
    offer = node_info(node)
    return NodeHealth(name=node.metadata.name, ready=_status_of(node.status.conditions, "Ready", "Unknown"),
                      unschedulable=node.spec.unschedulable, cpu_allocatable=offer.cpu_allocatable,
                      memory_allocatable=offer.memory_allocatable, cpu_allocated=allocated[0],
                      memory_allocated=allocated[1])


def pod_health(pod: Pod, tally: LogTally) -> PodHealth:
    key = (pod.metadata.namespace, pod.metadata.name)
    phase = pod.status.phase
    # Only a pending pod's age matters to a rule: spare parsing 50,000 timestamps.
    created = parse_time(pod.metadata.creation_timestamp) if phase == "Pending" else None
    return PodHealth(namespace=key[0], name=key[1], phase=phase, node=pod.spec.node_name, created_at=created,
                     container_restarts=tuple((c.name, c.restart_count) for c in pod.status.container_statuses),
                     restart_times=tuple(tally.restart_times.get(key, ())))


def deployment_health(deployment: Deployment) -> DeploymentHealth:
    status = deployment.status
    return DeploymentHealth(namespace=deployment.metadata.namespace, name=deployment.metadata.name,
                            replicas=deployment.spec.replicas, updated=status.updated_replicas,
                            available=status.available_replicas,
                            progressing=_status_of(status.conditions, "Progressing", "Unknown"),
                            available_status=_status_of(status.conditions, "Available", "Unknown"))


def allocated_by_node(view: ClusterView) -> dict[str, tuple[int, int]]:
    """Requests of the pods bound to each node that still hold them (not deleted, not finished)."""
    allocated = {}
    for node, bindings in view.bindings.items():
        cpu = memory = 0
        for key, binding in bindings.items():
            pod = view.pods.get(key)
            if pod is not None and pod.status.phase not in FINISHED:
                cpu += binding.cpu_millis
                memory += binding.memory_bytes
        allocated[node] = (cpu, memory)
    return allocated


class PodHealthCache:
    """Each pod's PodHealth, rebuilt only for pods the log changed.

    The view replaces a pod's object on every event about it (and the tally's restart times
    change only with such an event), so an unchanged object means an unchanged PodHealth.
    """

    def __init__(self) -> None:
        self._by_pod: dict[tuple[str, str], tuple[Pod, PodHealth]] = {}

    def of(self, view: ClusterView, tally: LogTally) -> tuple[PodHealth, ...]:
        fresh = {}
        for key, pod in view.pods.items():
            known = self._by_pod.get(key)
            fresh[key] = known if known is not None and known[0] is pod else (pod, pod_health(pod, tally))
        self._by_pod = fresh
        return tuple(health for _, health in fresh.values())


def cluster_health(view: ClusterView, tally: LogTally, consumers: tuple[ConsumerHealth, ...],
                   alerts_firing: Mapping[tuple[str, str], int],
                   pods_cache: PodHealthCache | None = None) -> ClusterHealth:
    allocated = allocated_by_node(view)
    pods = pods_cache.of(view, tally) if pods_cache else tuple(pod_health(pod, tally) for pod in view.pods.values())
    pending = sum(1 for pod in pods if pod.phase == "Pending" and not pod.node)
    lag = {c.name[len(PROJECTOR_PREFIX):]: c.pending + c.ack_pending
           for c in consumers if c.name.startswith(PROJECTOR_PREFIX)}
    return ClusterHealth(
        nodes=tuple(node_health(node, allocated.get(name, (0, 0))) for name, node in sorted(view.nodes.items())),
        pods=pods,
        deployments=tuple(deployment_health(d) for d in view.deployments.values()),
        projection_lag=lag,
        consumers=consumers,
        scheduler=tally.figures(pending),
        alerts_firing=dict(alerts_firing),
    )
