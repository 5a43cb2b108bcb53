"""The scheduler service: follows the log, decides pending pods in batched cycles, writes their bindings.

A cycle pops up to `--batch-size` pods, decides each against one snapshot that grows with
the cycle's own placements, then writes them in atomic batches, each node's PodsBound with
its pods' PodScheduled (see binder). The next cycle is decided while the previous one is
written: its snapshot counts the placements not yet acknowledged, and its batches expect
the sequences those writes got.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

import msgspec

from dockyard.eventlog import MAX_BATCH, EventLog, EventLogError, EventRecord, Metadata, parse_subject
from dockyard.lease import Lease
from dockyard.metrics import APPEND_RETRIES
from dockyard.schemas.events import PodDeleted, PodStatusChanged, PodUpdated
from dockyard.service import Health
from dockyard.services.scheduler.binder import (
    MAX_PODS_PER_NODE_BATCH,
    BatchResult,
    NodeBatch,
    Placement,
    bind,
    pack,
    report_unschedulable,
)
from dockyard.services.scheduler.cache import FINISHED_PHASES, SchedulerCache, is_pending
from dockyard.services.scheduler.framework import (
    DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE,
    DEFAULT_PROFILE,
    Decision,
    Profile,
    schedule_pod,
)
from dockyard.services.scheduler.metrics import ATTEMPT_DURATION, CYCLE_PODS, PENDING_PODS, SCHEDULE_ATTEMPTS
from dockyard.services.scheduler.queue import PARKED_RETRY, SchedulingQueue
from dockyard.services.scheduler.snapshot import Key, PodRequest, Snapshot
from dockyard.view import ClusterView

log = logging.getLogger(__name__)

NEEDS_DATABASE = False
DEFAULT_BATCH_SIZE = 1000
IDLE_WAKE = 0.5  # seconds between looks at backoff and parked pods when nothing happens
YIELD_EVERY = 50  # decisions between letting the event loop write and read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"most pods decided per cycle (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--percentage-of-nodes-to-score", type=float, default=DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE,
                        help="stop filtering once this share of nodes (at least 100) is feasible; 0: as Kubernetes "
                             f"adapts it, 100: all (default {DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE:g})")
    parser.add_argument("--max-batch-events", type=int, default=MAX_BATCH,
                        help="most events per atomic binding batch, several nodes' bindings each; a conflict on "
                             f"one node refuses its whole batch (default and most: {MAX_BATCH})")
    parser.add_argument("--leader-elect", action="store_true",
                        help="schedule only while holding the 'scheduler' lease; other instances stand by. Without "
                             "it every instance schedules: still safe (bindings expect sequences), but they race")
    parser.add_argument("--parked-retry", type=float, default=PARKED_RETRY,
                        help="seconds before an unschedulable pod is retried without an event "
                             f"(default {PARKED_RETRY:g})")


class Cycle(msgspec.Struct, kw_only=True):
    """One cycle's decisions, by outcome, and the snapshot they ended with."""

    snapshot: Snapshot
    placements: dict[str, list[Placement]]  # node -> pods placed there
    unschedulable: list[tuple[Decision, int]]  # decisions to report, with the pod's sequence when read


class Scheduler:
    def __init__(self, log_: EventLog, view: ClusterView, profile: Profile = DEFAULT_PROFILE,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_batch_events: int = MAX_BATCH,
                 queue: SchedulingQueue | None = None, clock: Callable[[], float] = time.monotonic,
                 leading: asyncio.Event | None = None):
        self.log = log_
        self.view = view
        self.profile = profile
        self.batch_size = batch_size
        self.max_batch_events = max_batch_events
        self.queue = queue or SchedulingQueue()
        self.cache = SchedulerCache(view)
        self.clock = clock
        # Which instance wrote a binding: the audit trail's "who" when several schedulers run.
        self.meta = Metadata(actor=f"system:scheduler:{socket.gethostname()}-{os.getpid()}")
        self.leading = leading  # set while this instance may schedule; None: always
        self.wake = asyncio.Event()
        self.deciding: set[Key] = set()
        self.reported: dict[Key, str] = {}  # the last PodUnschedulable message written per pod

    # ------------------------------------------------------------ following the log

    async def on_records(self, records: list[EventRecord]) -> None:
        """The view's listener: track pending pods, wake parked ones an event could help."""
        # An assumption the view has read is moot; kept, it would hide a pod re-created under its name.
        self.cache.prune()
        types = set()
        for record in records:
            types.add(record.type)
            if record.type.startswith("pod."):
                self._track_pod(record)
        self.queue.on_events(types, self.clock())
        self.queue.admit(self.clock(), self.view.position)
        if self.queue.has_active:
            self.wake.set()

    def _track_pod(self, record: EventRecord) -> None:
        _, namespace, name = parse_subject(record.subject)
        key = (namespace, name)
        pod = self.view.pods.get(key)
        if record.type in (PodUpdated.type_name(), PodDeleted.type_name()):
            self.cache.forget(key)
        if (pod is not None and record.type == PodStatusChanged.type_name() and pod.spec.node_name
                and pod.status.phase in FINISHED_PHASES):
            self.view.release_finished(key)
        if not is_pending(pod):
            self.queue.remove(key)
            self.reported.pop(key, None)
        elif key in self.deciding or key in self.cache.assumed:
            return
        elif record.type == PodUpdated.type_name():
            self.queue.activate(key)
        else:
            self.queue.add(key)

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until `stop`; the view must have caught up."""
        for key, pod in self.view.pods.items():
            if is_pending(pod):
                self.queue.add(key)
        writing: asyncio.Task | None = None
        while not stop.is_set():
            self.queue.admit(self.clock(), self.view.position)
            self._count_pending()
            if not self.queue.has_active or (self.leading is not None and not self.leading.is_set()):
                await self._idle()
                continue
            cycle = await self._decide()
            if writing is not None:
                await writing  # the sequences this cycle's batches expect come from its acks
            # Planned now, before the next cycle prunes what the view has caught up with.
            writing = asyncio.create_task(self._write(*self._plan(cycle)))
        if writing is not None:
            await writing

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), IDLE_WAKE)
        except asyncio.TimeoutError:
            pass
        self.wake.clear()

    def _count_pending(self) -> None:
        for queue, size in self.queue.sizes().items():
            PENDING_PODS.labels(queue).set(size)

    # ------------------------------------------------------------ deciding

    async def _decide(self) -> Cycle:
        self.cache.prune()
        keys = self.queue.pop(self.batch_size)
        self.deciding.update(keys)
        try:
            pods = self._requests(keys)
            cycle = Cycle(snapshot=self.cache.snapshot({request.group for request, _ in pods if request.group}),
                          placements={}, unschedulable=[])
            for index, (request, read_at) in enumerate(pods):
                self._decide_pod(request, read_at, cycle)
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let the previous cycle's batches go out and acks come in
            CYCLE_PODS.observe(len(pods))
            return cycle
        finally:
            self.deciding.difference_update(keys)
            for key in keys:  # neither placed nor parked (its node's batch was full, or deciding failed)
                if key not in self.queue and key not in self.cache.assumed and is_pending(self.view.pods.get(key)):
                    self.queue.add(key)

    def _requests(self, keys: list[Key]) -> list[tuple[PodRequest, int]]:
        """The popped pods still pending, parsed, each with the sequence it was read at."""
        pods = []
        for key in keys:
            pod = self.view.pods.get(key)
            if is_pending(pod) and key not in self.cache.assumed:
                pods.append((self.cache.request_of(key, pod), self.view.pod_seq.get(key, 0)))
            else:
                self.queue.remove(key)
        return pods

    def _decide_pod(self, request: PodRequest, read_at: int, cycle: Cycle) -> None:
        started = time.perf_counter()
        decision = schedule_pod(request, cycle.snapshot, self.profile)
        took = time.perf_counter() - started
        if decision.node is None:
            self._park(decision, read_at, took, cycle)
        elif len(cycle.placements.get(decision.node, ())) < MAX_PODS_PER_NODE_BATCH:
            cycle.snapshot = cycle.snapshot.place(request, decision.node)
            self.cache.assume(request, decision.node)
            cycle.placements.setdefault(decision.node, []).append(
                Placement(decision=decision, pod_seq=read_at, decided_in=took))

    def _park(self, decision: Decision, read_at: int, took: float, cycle: Cycle) -> None:
        key = decision.pod.key
        self.queue.park(key, decision.requeue_on, self.clock())
        SCHEDULE_ATTEMPTS.labels("unschedulable").inc()
        ATTEMPT_DURATION.observe(took)
        if decision.message != self.reported.get(key, self._recorded_message(key)):
            cycle.unschedulable.append((decision, read_at))

    def _recorded_message(self, key: Key) -> str:
        pod = self.view.pods.get(key)
        for condition in pod.status.conditions if pod is not None else ():
            if condition.type == "PodScheduled" and condition.status == "False":
                return condition.message
        return ""

    # ------------------------------------------------------------ writing

    def _plan(self, cycle: Cycle) -> tuple[list[tuple[NodeBatch, ...]], list[tuple[Decision, int]]]:
        """The atomic batches to write and the unschedulable pods to report, with the sequences to expect."""
        cache = self.cache
        node_batches = [
            NodeBatch(node=node, expected_seq=cache.node_expected_seq(cycle.snapshot.nodes[node]),
                      placements=tuple(placed),
                      pod_expected=tuple(cache.pod_expected_seq(p.decision.pod.key, p.pod_seq) for p in placed))
            for node, placed in cycle.placements.items()]
        unschedulable = [(d, cache.pod_expected_seq(d.pod.key, read_at)) for d, read_at in cycle.unschedulable]
        return pack(node_batches, self.max_batch_events), unschedulable

    async def _write(self, packed: list[tuple[NodeBatch, ...]], unschedulable: list[tuple[Decision, int]]) -> None:
        *results, reported = await asyncio.gather(*(self._bind_timed(nodes) for nodes in packed),
                                                  report_unschedulable(self.log, unschedulable, self.meta))
        conflicts: list[Key] = []
        for took, result in results:
            if result.bound_seqs:
                self._bound(result, took)
                continue
            for batch in result.nodes:
                keys = [p.decision.pod.key for p in batch.placements]
                self.cache.unassume(keys)
                conflicts.extend(keys)
            if result.conflict:
                APPEND_RETRIES.inc()
            if result.error:
                log.warning("a binding batch failed: %s", result.error)
        SCHEDULE_ATTEMPTS.labels("error").inc(len(conflicts))
        for (decision, _), seq in zip(unschedulable, reported):
            if isinstance(seq, int):
                self.cache.written_pod[decision.pod.key] = seq
                self.reported[decision.pod.key] = decision.message
        if conflicts:
            await self._retry_after_view(conflicts)

    async def _bind_timed(self, nodes: tuple[NodeBatch, ...]) -> tuple[float, BatchResult]:
        started = time.perf_counter()
        result = await bind(self.log, nodes, self.meta)
        return time.perf_counter() - started, result

    def _bound(self, result: BatchResult, took: float) -> None:
        for batch, bound_seq in zip(result.nodes, result.bound_seqs):
            keys = [p.decision.pod.key for p in batch.placements]
            self.cache.confirm(keys, batch.node, bound_seq, result.last_seq)
            for key, placement in zip(keys, batch.placements):
                self.queue.remove(key)
                self.reported.pop(key, None)
                ATTEMPT_DURATION.observe(placement.decided_in + took)
            SCHEDULE_ATTEMPTS.labels("scheduled").inc(len(keys))

    async def _retry_after_view(self, keys: list[Key]) -> None:
        """Another writer moved these pods' node or the pods themselves: decide again once the view has read it."""
        try:
            position = await self.log.last_stream_seq()
        except (EventLogError, asyncio.TimeoutError, OSError) as exc:
            log.warning("could not read the stream's position (%s); retrying conflicts after the view moves", exc)
            position = self.view.position + 1
        self.queue.wait_for_view(keys, position)
        log.info("%d pods conflicted with other writers; retrying after seq %d", len(keys), position)


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health,
              args: argparse.Namespace | None = None) -> None:
    log_ = await EventLog.connect(nats_url, name="dockyard-scheduler")
    await log_.ensure_streams()
    view = ClusterView()
    profile = Profile(percentage_of_nodes_to_score=getattr(args, "percentage_of_nodes_to_score",
                                                           DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE))
    lease = Lease(log_, "scheduler") if getattr(args, "leader_elect", False) else None
    scheduler = Scheduler(log_, view, profile, batch_size=getattr(args, "batch_size", DEFAULT_BATCH_SIZE),
                          max_batch_events=min(getattr(args, "max_batch_events", MAX_BATCH), MAX_BATCH),
                          queue=SchedulingQueue(parked_retry=getattr(args, "parked_retry", PARKED_RETRY)),
                          leading=lease.held if lease is not None else None)
    following = asyncio.create_task(view.follow(log_, stop, scheduler.on_records))
    background = [following] + ([asyncio.create_task(lease.keep(stop))] if lease is not None else [])
    try:
        if await _caught_up(view, following, stop):
            health.ready = True
            log.info("caught up at seq %s: %d nodes, %d pods", view.position, len(view.nodes), len(view.pods))
            scheduling = asyncio.create_task(scheduler.run(stop))
            await asyncio.wait([scheduling, following], return_when=asyncio.FIRST_COMPLETED)
            stop.set()  # either ending ends both
            await asyncio.gather(scheduling, *background)
    finally:
        health.ready = False
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await log_.close()


async def _caught_up(view: ClusterView, following: asyncio.Task, stop: asyncio.Event) -> bool:
    """True once the view has caught up; False on stop; the view's error if following it failed."""
    waiters = [asyncio.create_task(view.caught_up.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait([*waiters, following], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if following.done():
        following.result()
        return False
    return view.caught_up.is_set() and not stop.is_set()
