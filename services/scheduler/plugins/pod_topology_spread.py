"""Score: spread a deployment's replicas across nodes and across topology.kubernetes.io/zone.

Kubernetes' PodTopologySpread with its system default constraints (hostname maxSkew 3,
zone maxSkew 5, ScheduleAnyway): a node scores by how few replicas already sit on it and
in its zone, each domain weighted by log(domains + 2), normalised so the emptiest scores 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

NAME = "PodTopologySpread"
WEIGHT = 2

HOSTNAME_MAX_SKEW = 3
ZONE_MAX_SKEW = 5


def score_nodes(pod: PodRequest, nodes: Sequence[NodeInfo], snapshot: Snapshot) -> list[float]:
    if not pod.group:
        return [0.0] * len(nodes)  # not a replica of anything: no opinion
    on_node = snapshot.replicas_on_node.get(pod.group, {})
    in_zone = snapshot.replicas_in_zone.get(pod.group, {})
    host_weight = math.log(len(nodes) + 2)
    zones = {n.zone for n in nodes if n.zone}
    zone_weight = math.log(len(zones) + 2)
    raw = []
    for node in nodes:
        score = on_node.get(node.name, 0) * host_weight + (HOSTNAME_MAX_SKEW - 1)
        if zones and node.zone:
            score += in_zone.get(node.zone, 0) * zone_weight + (ZONE_MAX_SKEW - 1)
        raw.append(score)
    return normalised(raw)


def normalised(raw: list[float]) -> list[float]:
    """Fewest replicas scores 100; Kubernetes' `MaxNodeScore * (max + min - s) / max`."""
    if not raw:
        return raw
    high, low = max(raw), min(raw)
    if high == 0:
        return [100.0] * len(raw)
    return [100.0 * (high + low - s) / high for s in raw]
