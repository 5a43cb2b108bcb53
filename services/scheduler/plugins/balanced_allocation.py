"""Score: prefer the node whose cpu and memory end up equally used (Kubernetes' BalancedAllocation)."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

NAME = "BalancedAllocation"
WEIGHT = 1


def used_fraction(requested: int, allocatable: int) -> float:
    return min(requested / allocatable, 1.0) if allocatable > 0 else 1.0


def score_nodes(pod: PodRequest, nodes: Sequence[NodeInfo], snapshot: Snapshot) -> list[float]:
    # With two resources the standard deviation of the used fractions is half their difference.
    cpu, memory = pod.scored_cpu, pod.scored_memory
    fraction = used_fraction
    return [100.0 - abs(fraction(n.cpu_scored + cpu, n.cpu_allocatable)
                        - fraction(n.memory_scored + memory, n.memory_allocatable)) * 50.0 for n in nodes]
