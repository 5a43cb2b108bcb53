"""Filter: a node's NoSchedule and NoExecute taints keep off every pod that does not tolerate them."""

from __future__ import annotations

from collections.abc import Iterable

from dockyard.schemas.events import NodeRegistered, NodeUpdated
from dockyard.schemas.manifests import Taint, Toleration
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "TaintToleration"
STATIC = True
REQUEUE_ON = (NodeRegistered.type_name(), NodeUpdated.type_name())

UNTOLERATED_TAINT = "untolerated taint {taint}"  # "untolerated taint dedicated=gpu"

# PreferNoSchedule only steers scoring in Kubernetes; it never keeps a pod off.
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' rule: an empty key with Exists tolerates every taint; an empty effect, every effect."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return bool(toleration.key) and toleration.value == taint.value


def tolerated(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def describe(taint: Taint) -> str:
    return f"{taint.key}={taint.value}" if taint.value else taint.key


def relevant(pod: PodRequest) -> bool:
    return True


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    for taint in node.taints:
        if taint.effect in BLOCKING_EFFECTS and not tolerated(pod.tolerations, taint):
            return UNTOLERATED_TAINT.format(taint=describe(taint))
    return None
