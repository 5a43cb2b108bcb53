"""Filter: a cordoned node takes only pods that tolerate node.kubernetes.io/unschedulable:NoSchedule."""

from __future__ import annotations

from dockyard.schemas.events import NodeRegistered, NodeUpdated
from dockyard.schemas.manifests import Taint
from dockyard.services.scheduler.plugins.taint_toleration import tolerated
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodeUnschedulable"
STATIC = True
REQUEUE_ON = (NodeRegistered.type_name(), NodeUpdated.type_name())

CORDONED = "cordoned"

# Kubernetes lets DaemonSet-like pods onto cordoned nodes through this toleration.
UNSCHEDULABLE_TAINT = Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")


def relevant(pod: PodRequest) -> bool:
    return True


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    if node.unschedulable and not tolerated(pod.tolerations, UNSCHEDULABLE_TAINT):
        return CORDONED
    return None
