"""Score: prefer the node with the most cpu and memory left after the pod (Kubernetes' LeastAllocated)."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

NAME = "LeastAllocated"
WEIGHT = 1


def free_percent(requested: int, allocatable: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) * 100.0 / allocatable


def score_nodes(pod: PodRequest, nodes: Sequence[NodeInfo], snapshot: Snapshot) -> list[float]:
    cpu, memory = pod.scored_cpu, pod.scored_memory
    free = free_percent
    return [(free(n.cpu_scored + cpu, n.cpu_allocatable) + free(n.memory_scored + memory, n.memory_allocatable)) / 2
            for n in nodes]
