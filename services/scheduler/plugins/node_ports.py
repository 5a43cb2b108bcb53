"""Filter: a host port the pod asks for must be free on the node."""

from __future__ import annotations

from dockyard.schemas.events import NodeRegistered, PodDeleted, PodStatusChanged
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodePorts"
STATIC = False
# A deleted or finished pod gives its host ports back.
REQUEUE_ON = (NodeRegistered.type_name(), PodDeleted.type_name(), PodStatusChanged.type_name())

PORT_CONFLICT = "host port conflict"


def relevant(pod: PodRequest) -> bool:
    return bool(pod.host_ports)


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    return PORT_CONFLICT if node.host_ports.intersection(pod.host_ports) else None
