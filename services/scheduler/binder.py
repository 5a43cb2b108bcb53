"""Writing a cycle's decisions: each node's PodsBound then its pods' PodScheduled, in atomic batches.

Every PodsBound expects the node's subject where the decision read it, every PodScheduled
the pod's, so a binding lands only if nothing moved under it: two schedulers never
overcommit a node, and a pod is never bound twice.

Several nodes share one atomic batch. On this kind of machine the server syncs each atomic
batch to disk before acknowledging it (about 4 ms, one batch at a time per stream: some
180 batches/s), so one batch per node would cap a 1,000-node cluster near 180 pods/s;
packed up to the server's 1,000 events, a batch carries hundreds of pods. The price: a
conflict on any node of a batch refuses the whole batch, and its pods are decided again.
"""

from __future__ import annotations

import logging

import msgspec
import nats.errors

from dockyard.eventlog import MAX_BATCH, Append, ConcurrencyConflict, EventLog, EventLogError, Metadata, subject_for
from dockyard.schemas.events import PodsBound, PodScheduled, PodUnschedulable
from dockyard.services.scheduler.framework import Decision

log = logging.getLogger(__name__)

# What an append can fail with besides a refusal: the outcome is unknown, the view will tell.
WRITE_ERRORS = (EventLogError, nats.errors.Error, TimeoutError, OSError)

MAX_PODS_PER_NODE_BATCH = MAX_BATCH - 1  # a node's PodsBound and its pods' PodScheduled share one batch


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """A decision to write, with the pod's sequence it was read at."""

    decision: Decision
    pod_seq: int
    decided_in: float  # seconds the decision took (for the attempt histogram)


class NodeBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One node's placements of a cycle, with the sequences their subjects must be at."""

    node: str
    expected_seq: int
    placements: tuple[Placement, ...]
    pod_expected: tuple[int, ...]

    @property
    def size(self) -> int:
        return 1 + len(self.placements)

    def appends(self) -> list[Append]:
        bound = PodsBound(pods=tuple(p.decision.pod.binding() for p in self.placements))
        appends = [Append(subject=subject_for("node", "", self.node), event=bound, expected_seq=self.expected_seq)]
        for placement, expected in zip(self.placements, self.pod_expected):
            pod = placement.decision.pod
            appends.append(Append(subject=subject_for("pod", pod.namespace, pod.name),
                                  event=pod_scheduled(placement.decision), expected_seq=expected))
        return appends


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one atomic batch: every node's PodsBound sequence, or why none landed."""

    nodes: tuple[NodeBatch, ...]
    bound_seqs: tuple[int, ...] = ()  # per node, its PodsBound's sequence; empty if refused
    last_seq: int = 0
    conflict: bool = False
    error: str = ""


def pod_scheduled(decision: Decision) -> PodScheduled:
    return PodScheduled(node_name=decision.node or "", total_nodes=decision.total_nodes,
                        filtered=decision.filtered, candidates=decision.candidates)


def pod_unschedulable(decision: Decision) -> PodUnschedulable:
    return PodUnschedulable(message=decision.message, total_nodes=decision.total_nodes, filtered=decision.filtered)


def pack(node_batches: list[NodeBatch], max_events: int = MAX_BATCH) -> list[tuple[NodeBatch, ...]]:
    """Node batches grouped into atomic batches of at most `max_events` events, a node never split."""
    packed: list[tuple[NodeBatch, ...]] = []
    current: list[NodeBatch] = []
    size = 0
    for batch in node_batches:
        if current and size + batch.size > max_events:
            packed.append(tuple(current))
            current, size = [], 0
        current.append(batch)
        size += batch.size
    if current:
        packed.append(tuple(current))
    return packed


async def bind(log: EventLog, nodes: tuple[NodeBatch, ...], meta: Metadata) -> BatchResult:
    """Write the nodes' bindings as one atomic batch."""
    appends = [append for batch in nodes for append in batch.appends()]
    try:
        seqs = await log.append_batch(appends, meta)
    except ConcurrencyConflict:
        return BatchResult(nodes=nodes, conflict=True)
    except WRITE_ERRORS as exc:
        return BatchResult(nodes=nodes, error=f"{type(exc).__name__}: {exc}")
    bound_seqs, offset = [], 0
    for batch in nodes:
        bound_seqs.append(seqs[offset])
        offset += batch.size
    return BatchResult(nodes=nodes, bound_seqs=tuple(bound_seqs), last_seq=seqs[-1])


async def report_unschedulable(log: EventLog, decisions: list[tuple[Decision, int]],
                               meta: Metadata) -> list[int | EventLogError]:
    """PodUnschedulable for each (decision, expected pod sequence), pipelined; refused ones are left
    (the pod changed: whatever changed it requeues it)."""
    appends = [Append(subject=subject_for("pod", d.pod.namespace, d.pod.name), event=pod_unschedulable(d),
                      expected_seq=expected) for d, expected in decisions]
    if not appends:
        return []
    try:
        return await log.append_many(appends, meta)
    except WRITE_ERRORS as exc:
        log.warning("reporting %d unschedulable pods failed: %s", len(appends), exc)
        return [EventLogError(str(exc))] * len(appends)
