"""Filter: the pod's cpu and memory requests and one more pod fit in what the node has left."""

from __future__ import annotations

from dockyard.schemas.events import NodeRegistered, NodeStatusChanged, NodeUpdated, PodDeleted, PodStatusChanged
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodeResourcesFit"
STATIC = False
# More room: a new or resized node, a deleted or finished pod.
REQUEUE_ON = (NodeRegistered.type_name(), NodeUpdated.type_name(), NodeStatusChanged.type_name(),
              PodDeleted.type_name(), PodStatusChanged.type_name())

INSUFFICIENT_CPU = "insufficient cpu"
INSUFFICIENT_MEMORY = "insufficient memory"
TOO_MANY_PODS = "too many pods"


def relevant(pod: PodRequest) -> bool:
    return True  # the pod count always applies


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    if node.pod_count >= node.pods_allocatable:
        return TOO_MANY_PODS
    if pod.cpu_millis and node.cpu_requested + pod.cpu_millis > node.cpu_allocatable:
        return INSUFFICIENT_CPU
    if pod.memory_bytes and node.memory_requested + pod.memory_bytes > node.memory_allocatable:
        return INSUFFICIENT_MEMORY
    return None
