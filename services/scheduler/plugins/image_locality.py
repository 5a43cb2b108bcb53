"""Score: prefer nodes that already hold the pod's images (Kubernetes' ImageLocality).

A node scores the summed size of the pod's images it holds (from the images its agent reports
in NodeStatus.images), each scaled by the share of nodes holding that image, so that one node
with a common image does not draw every pod (Kubernetes' "spread" factor); the sum is clamped
between 23 MiB and 1,000 MiB per container and mapped onto 0..100. Pure: reads the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

NAME = "ImageLocality"
WEIGHT = 1
# A score never rejects a node, so no event needs to requeue a pod on its account.
REQUEUE_ON: tuple[str, ...] = ()

MIB = 1024 * 1024
MIN_THRESHOLD = 23 * MIB  # below this, pulling is cheap enough not to matter
MAX_CONTAINER_THRESHOLD = 1000 * MIB  # above this, holding more earns nothing more, per container


def score_nodes(pod: PodRequest, nodes: Sequence[NodeInfo], snapshot: Snapshot) -> list[float]:
    if not pod.images or not snapshot.image_nodes:
        return [0.0] * len(nodes)  # no node holds anything: no opinion
    total_nodes = len(snapshot.nodes)
    spread = {image: snapshot.image_nodes.get(image, 0) / total_nodes for image in set(pod.images)}
    maximum = MAX_CONTAINER_THRESHOLD * len(pod.images)
    return [scaled(sum(node.images.get(image, 0) * spread[image] for image in pod.images), maximum)
            for node in nodes]


def scaled(size: float, maximum: float) -> float:
    """Kubernetes' calculatePriority: the clamped size onto 0..100."""
    clamped = min(max(size, MIN_THRESHOLD), maximum)
    return 100.0 * (clamped - MIN_THRESHOLD) / (maximum - MIN_THRESHOLD)
