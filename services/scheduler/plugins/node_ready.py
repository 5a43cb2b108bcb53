"""Filter: only nodes whose Ready condition is True take pods."""

from __future__ import annotations

from dockyard.schemas.events import NodeRegistered, NodeStatusChanged
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodeReady"
STATIC = True
REQUEUE_ON = (NodeRegistered.type_name(), NodeStatusChanged.type_name())

NOT_READY = "not ready"


def relevant(pod: PodRequest) -> bool:
    return True


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    return None if node.ready else NOT_READY
