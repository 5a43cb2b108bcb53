"""Filter: a pod's nodeSelector: every key must be a label of the node with that value."""

from __future__ import annotations

from dockyard.schemas.events import NodeRegistered, NodeUpdated
from dockyard.selectors import matches
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodeSelector"
STATIC = True
REQUEUE_ON = (NodeRegistered.type_name(), NodeUpdated.type_name())

SELECTOR_MISMATCH = "node selector mismatch"


def relevant(pod: PodRequest) -> bool:
    return bool(pod.node_selector)


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    return None if matches(node.labels, pod.node_selector) else SELECTOR_MISMATCH
