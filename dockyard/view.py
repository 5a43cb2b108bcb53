"""An in-memory view of the cluster, folded from the log: what the scheduler, controller and agents decide on.

Each service keeps its own view (services never call each other); the view replays the
log from the start, says when it has caught up, then follows, telling a listener what changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.eventlog import H_TYPE, STREAM, EventLog, EventRecord, MalformedEvent, parse_subject, record_from
from dockyard.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    HANDLER_SECONDS,
    OK,
    SKIPPED,
    count_handled,
    service_name,
)
from dockyard.schemas.events import NodeImagesReported, PodBinding, PodsBound
from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.state import HeldImages, evolve, with_held_images

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name); namespace "" for nodes
Listener = Callable[[list[EventRecord]], Awaitable[None]]


class ClusterView:
    """Deployments, pods and nodes by key, plus what each node has bound, as of `position`."""

    def __init__(self, kinds: tuple[str, ...] = ("deployment", "pod", "node")):
        self.kinds = kinds
        self.deployments: dict[Key, Deployment] = {}
        self.pods: dict[Key, Pod] = {}
        self.nodes: dict[str, Node] = {}
        self.node_seq: dict[str, int] = {}  # last stream sequence on each node's subject
        self.pod_seq: dict[Key, int] = {}
        self.bindings: dict[str, dict[Key, PodBinding]] = {}  # node -> pods the scheduler placed there
        # Kept apart from the nodes (the reports' own aggregate): a report read before its node's
        # registration is joined on as soon as the node is there; a deregistration forgets it.
        self.node_images: HeldImages = {}
        self.position = 0
        self.caught_up = asyncio.Event()
        self._tables = {"deployment": self.deployments, "pod": self.pods}

    def apply(self, record: EventRecord) -> None:
        """Fold one event into the view."""
        kind, namespace, name = parse_subject(record.subject)
        self.position = record.seq
        if kind == "nodeimages":
            self._held_images_reported(name, record)
            return
        if kind == "node":
            self.node_seq[name] = record.seq
            if isinstance(record.event, PodsBound):
                placed = self.bindings.setdefault(name, {})
                for binding in record.event.pods:
                    placed[(binding.namespace, binding.name)] = binding
                return
            node = evolve(self.nodes.get(name), record)
            if node is None:
                self.nodes.pop(name, None)
                self.bindings.pop(name, None)
                self.node_images.pop(name, None)  # a node of that name reports what it holds anew
            else:
                self.nodes[name] = with_held_images(node, self.node_images)
            return
        table = self._tables.get(kind)
        if table is None:
            return
        key = (namespace, name)
        if kind == "pod":
            self.pod_seq[key] = record.seq
        before = table.get(key)
        after = evolve(before, record)
        if after is None:
            table.pop(key, None)
            if kind == "pod":
                self.pod_seq.pop(key, None)
                self._release(key, before)
        else:
            table[key] = after

    def _held_images_reported(self, name: str, record: EventRecord) -> None:
        if not isinstance(record.event, NodeImagesReported):
            return
        self.node_images[name] = record.event.images
        node = self.nodes.get(name)
        if node is not None:
            self.nodes[name] = with_held_images(node, self.node_images)

    def _release(self, key: Key, pod: Pod | None) -> None:
        """A deleted pod gives its node's resources back."""
        if pod is not None and pod.spec.node_name:
            self.bindings.get(pod.spec.node_name, {}).pop(key, None)

    def release_finished(self, key: Key) -> None:
        """A pod that ended (Succeeded/Failed, never restarted) no longer holds resources."""
        pod = self.pods.get(key)
        self._release(key, pod)

    async def follow(self, log_: EventLog, stop: asyncio.Event, listener: Listener | None = None,
                     start_seq: int = 1, batch_window: float = 0.005, consumer: str = "") -> None:
        """Replay from `start_seq`, set `caught_up` at the tail, then keep following until `stop`.

        Records reach the listener in small batches (whatever arrived within `batch_window`),
        so a burst of events becomes one decision round, not thousands. `consumer` names the
        view in the metrics (default: the service's name).
        """
        consumer = consumer or service_name()
        # An ordered consumer acknowledges nothing; say so rather than leave the series missing.
        CONSUMER_ACK_PENDING.labels(consumer).set(0)
        queue: asyncio.Queue = asyncio.Queue(maxsize=50_000)

        async def enqueue(msg) -> None:
            await queue.put(msg)

        subject = f"dy.evt.{self.kinds[0]}.>" if len(self.kinds) == 1 else "dy.evt.>"
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
        sub = await log_.js.subscribe(subject, cb=enqueue, ordered_consumer=True, config=config, stream=STREAM)
        info = await sub.consumer_info()
        if info.num_pending == 0 and queue.empty():
            self.caught_up.set()  # nothing to replay
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                msgs = [getter.result()]
                await asyncio.sleep(batch_window)
                while not queue.empty() and len(msgs) < 5000:
                    msgs.append(queue.get_nowait())
                started = time.perf_counter()
                records = self._records(msgs, consumer)
                for record in records:
                    self.apply(record)
                pending = msgs[-1].metadata.num_pending
                CONSUMER_PENDING.labels(consumer).set(pending)
                if not self.caught_up.is_set() and pending == 0:
                    self.caught_up.set()
                if listener and records:
                    await listener(records)
                HANDLER_SECONDS.labels(consumer).observe(time.perf_counter() - started)
                count_handled(consumer, (r.type for r in records), OK)
        finally:
            await sub.unsubscribe()

    @staticmethod
    def _records(msgs, consumer: str) -> list[EventRecord]:
        records = []
        for msg in msgs:
            try:
                records.append(record_from(msg.metadata.sequence.stream, msg.subject, msg.headers, msg.data))
            except MalformedEvent as exc:
                count_handled(consumer, [(msg.headers or {}).get(H_TYPE, "")], SKIPPED)
                log.warning("skipping malformed event at seq %s: %s", msg.metadata.sequence.stream, exc)
        return records


def to_dict(obj: msgspec.Struct) -> dict:
    return msgspec.to_builtins(obj)
