"""One pod, one snapshot, one decision: filter plugins, then score plugins, with the reasons kept.

Pure: no clock, no I/O, no randomness but what is seeded from the pod, so a decision can
be replayed from the pod and the snapshot it was made against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from types import ModuleType

import msgspec

from dockyard.schemas.events import NodeRegistered, NodeScore
from dockyard.services.scheduler.plugins import (
    balanced_allocation,
    image_locality,
    least_allocated,
    node_affinity,
    node_ports,
    node_ready,
    node_resources_fit,
    node_selector,
    node_unschedulable,
    pod_topology_spread,
    taint_toleration,
)
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

# Cheap, common rejections first: a node is counted under the first filter that rejects it.
FILTERS: tuple[ModuleType, ...] = (node_ready, node_unschedulable, taint_toleration, node_selector,
                                   node_affinity, node_ports, node_resources_fit)
SCORES: tuple[ModuleType, ...] = (least_allocated, balanced_allocation, pod_topology_spread, image_locality)

TOP_CANDIDATES = 3
# Kubernetes' minFeasibleNodesToFind: below this many nodes every node is scored.
MIN_FEASIBLE_NODES = 100
# Kubernetes adapts its default to the cluster (42% of 1,000 nodes); filtering and scoring a
# node costs Python about a microsecond per plugin, so Dockyard stops at 10% (and at least 100).
DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE = 10.0
# Whatever rejected a pod, a new node may take it.
ALWAYS_REQUEUE_ON = frozenset({NodeRegistered.type_name()})


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Which plugins run, and how many feasible nodes are enough to stop filtering and score.

    `percentage_of_nodes_to_score` is Kubernetes' knob: filtering stops once that share of
    the nodes (never fewer than 100) is feasible, walking from a pod-seeded place; 0 picks it
    from the cluster size as Kubernetes does (50% falling to 5% at 5,625 nodes); 100 scores
    every feasible node.
    """

    filters: tuple[ModuleType, ...] = FILTERS
    scores: tuple[ModuleType, ...] = SCORES
    percentage_of_nodes_to_score: float = DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE

    def nodes_to_find(self, total: int) -> int:
        if total < MIN_FEASIBLE_NODES or self.percentage_of_nodes_to_score >= 100:
            return total
        percentage = self.percentage_of_nodes_to_score or max(50 - total / 125, 5)
        return max(int(total * percentage / 100), MIN_FEASIBLE_NODES)


DEFAULT_PROFILE = Profile()


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Where a pod goes (None: nowhere fits) and why."""

    pod: PodRequest
    node: str | None
    total_nodes: int
    filtered: dict[str, int]  # filter plugin -> nodes it removed (of those examined)
    reasons: dict[str, int]  # reason -> nodes rejected for it
    candidates: tuple[NodeScore, ...] = ()  # the best few, best first
    requeue_on: frozenset[str] = frozenset()  # event types that may change an unschedulable answer

    @property
    def message(self) -> str:
        return unschedulable_message(self.total_nodes, self.reasons)


def unschedulable_message(total_nodes: int, reasons: dict[str, int]) -> str:
    """"0/40 nodes fit: 31 insufficient cpu, 9 untolerated taint dedicated=gpu"."""
    if total_nodes == 0:
        return "0/0 nodes fit: no nodes registered"
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return f"0/{total_nodes} nodes fit: " + ", ".join(f"{count} {reason}" for reason, count in ranked)


class _StaticVerdict(msgspec.Struct, frozen=True):
    """Static filters' verdict on every node for one pod shape."""

    passing: tuple[str, ...]
    filtered: dict[str, int]
    reasons: dict[str, int]


def _static_verdict(pod: PodRequest, snapshot: Snapshot, filters: tuple[ModuleType, ...]) -> _StaticVerdict:
    memo_key = (pod.shape, filters)
    verdict = snapshot.static_verdicts.get(memo_key)
    if verdict is None:
        static = [f for f in filters if f.STATIC and f.relevant(pod)]
        passing, filtered, reasons = _run_filters(pod, (snapshot.nodes[n] for n in snapshot.order), static)
        verdict = _StaticVerdict(tuple(node.name for node in passing), filtered, reasons)
        snapshot.static_verdicts[memo_key] = verdict
    return verdict


def _run_filters(pod: PodRequest, nodes: Iterable[NodeInfo], filters: Sequence[ModuleType],
                 enough: int = 0) -> tuple[list[NodeInfo], dict[str, int], dict[str, int]]:
    """The nodes every filter passes (stopping at `enough` of them, if set), and the rejections."""
    passing: list[NodeInfo] = []
    filtered: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for node in nodes:
        for plugin in filters:
            reason = plugin.filter_node(pod, node)
            if reason is not None:
                filtered[plugin.NAME] = filtered.get(plugin.NAME, 0) + 1
                reasons[reason] = reasons.get(reason, 0) + 1
                break
        else:
            passing.append(node)
            if len(passing) == enough:
                break
    return passing, filtered, reasons


def seed_of(pod: PodRequest) -> int:
    """The pod's fixed random number: where its walk over the nodes starts, how it breaks ties."""
    return int.from_bytes(hashlib.blake2b(pod.seed.encode(), digest_size=8).digest(), "big")


def schedule_pod(pod: PodRequest, snapshot: Snapshot, profile: Profile = DEFAULT_PROFILE) -> Decision:
    """Filter the snapshot's nodes for `pod`, score the feasible ones, and choose."""
    total = len(snapshot.order)
    static = _static_verdict(pod, snapshot, profile.filters)
    seed = seed_of(pod)
    # Walk from a pod-seeded place so that, when filtering stops early, pods sample different nodes.
    names = static.passing
    start = seed % len(names) if names else 0
    walk = (snapshot.nodes[n] for n in chain(islice(names, start, None), islice(names, start)))
    dynamic = [f for f in profile.filters if not f.STATIC and f.relevant(pod)]
    feasible, filtered, reasons = _run_filters(pod, walk, dynamic, enough=profile.nodes_to_find(total))
    filtered = _summed(static.filtered, filtered)
    reasons = _summed(static.reasons, reasons)
    if not feasible:
        requeue_on = ALWAYS_REQUEUE_ON.union(*(f.REQUEUE_ON for f in profile.filters if f.NAME in filtered))
        return Decision(pod=pod, node=None, total_nodes=total, filtered=filtered, reasons=reasons,
                        requeue_on=requeue_on)
    candidates = _ranked(pod, feasible, snapshot, profile.scores, seed)
    return Decision(pod=pod, node=candidates[0].node, total_nodes=total, filtered=filtered, reasons=reasons,
                    candidates=candidates)


def _summed(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    if not b:
        return a
    total = dict(a)
    for key, count in b.items():
        total[key] = total.get(key, 0) + count
    return total


def _ranked(pod: PodRequest, nodes: list[NodeInfo], snapshot: Snapshot, scores: tuple[ModuleType, ...],
            seed: int) -> tuple[NodeScore, ...]:
    """The top candidates, best first; among equal best scores the pod's seed picks."""
    per_plugin = [(plugin.NAME, plugin.score_nodes(pod, nodes, snapshot)) for plugin in scores]
    totals = [0.0] * len(nodes)
    for plugin, (_, values) in zip(scores, per_plugin):
        weight = plugin.WEIGHT
        totals = [t + weight * v for t, v in zip(totals, values)]
    ranking = sorted(range(len(nodes)), key=totals.__getitem__, reverse=True)
    best = totals[ranking[0]]
    tied = sorted((i for i in ranking if totals[i] == best), key=lambda i: nodes[i].name)
    chosen = tied[(seed >> 32) % len(tied)]
    others = [i for i in ranking[:TOP_CANDIDATES] if i != chosen][:TOP_CANDIDATES - 1]

    def node_score(i: int) -> NodeScore:
        return NodeScore(node=nodes[i].name, score=round(totals[i], 2),
                         plugins={name: round(values[i], 2) for name, values in per_plugin})

    return tuple(node_score(i) for i in (chosen, *others))
