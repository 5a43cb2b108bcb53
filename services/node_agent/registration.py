"""Keeping nodes present: registration, Ready status, and heartbeats into the KV bucket (pipelined, for one node or thousands)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence

from dockyard.eventlog import (
    HEARTBEAT_BUCKET,
    Append,
    ConcurrencyConflict,
    EventLog,
    EventLogError,
    Metadata,
    now_rfc3339,
    parse_subject,
    subject_for,
)
from dockyard.metrics import APPEND_RETRIES
from dockyard.schemas.events import NodeStatusChanged
from dockyard.schemas.manifests import Node
from dockyard.services.api.decide import decide_apply
from dockyard.services.node_agent.metrics import HEARTBEATS
from dockyard.services.node_agent.node import is_ready, merged_with_current, ready_status
from dockyard.state import fold
from dockyard.view import ClusterView

log = logging.getLogger(__name__)

APPEND_WINDOW = 2000
CONFLICT_RETRIES = 10
ACK_TIMEOUT = 10.0


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class NodeRegistration:
    """Registers the agent's nodes, reports them Ready, heartbeats, and re-asserts a node that
    someone marked NotReady or deleted while its agent is alive."""

    def __init__(self, log_: EventLog, view: ClusterView, nodes: Sequence[Node], meta: Metadata):
        self.log = log_
        self.view = view
        self.nodes = {node.metadata.name: node for node in nodes}
        self.meta = meta
        self.appended: dict[str, int] = {}  # node -> the last sequence we appended on its subject

    async def register(self, names: Iterable[str] | None = None) -> None:
        """Register (or update) and report Ready; appends nothing for a node already so."""
        names = list(self.nodes if names is None else names)
        now = now_rfc3339()
        appends = []
        for name in names:
            current = self.view.nodes.get(name)
            _, event = decide_apply(current, merged_with_current(current, self.nodes[name]), now=now,
                                    new_uid=str(uuid.uuid4()))
            if event is not None:
                appends.append(Append(subject=subject_for("node", "", name), event=event,
                                      expected_seq=self.view.node_seq.get(name, 0)))
        await self._append(appends, retry_conflicts=True)
        statuses = []
        for name in names:
            current = self.view.nodes.get(name)
            previous = current.status if current is not None else None
            status = ready_status(self.nodes[name].spec.capacity, previous, now)
            if status != previous:
                statuses.append(Append(subject=subject_for("node", "", name), event=NodeStatusChanged(status=status)))
        await self._append(statuses)

    async def _append(self, appends: list[Append], retry_conflicts: bool = False) -> None:
        for chunk in _chunks(appends, APPEND_WINDOW):
            results = await self.log.append_many(chunk, self.meta, timeout=ACK_TIMEOUT)
            for append, result in zip(chunk, results):
                if isinstance(result, ConcurrencyConflict) and retry_conflicts:
                    APPEND_RETRIES.inc()
                    result = await self._register_again(append.subject)
                if isinstance(result, EventLogError):
                    raise result
                self.appended[parse_subject(append.subject)[2]] = result

    async def _register_again(self, subject: str) -> int | EventLogError:
        """Someone appended to the node meanwhile: re-read it and decide again."""
        name = parse_subject(subject)[2]
        for _ in range(CONFLICT_RETRIES):
            records = await self.log.read_aggregate(subject)
            current = fold(records)
            _, event = decide_apply(current, merged_with_current(current, self.nodes[name]), now=now_rfc3339(),
                                    new_uid=str(uuid.uuid4()))
            if event is None:
                return records[-1].seq
            try:
                return await self.log.append(subject, event, expected_seq=records[-1].seq if records else 0,
                                             meta=self.meta)
            except ConcurrencyConflict:
                continue
        return EventLogError(f"{subject}: kept conflicting, gave up registering")

    def needing_attention(self) -> list[str]:
        """Nodes that, once the view has seen our last append, are missing or not Ready."""
        return [name for name in self.nodes
                if self.view.node_seq.get(name, 0) >= self.appended.get(name, 0)
                and not is_ready(self.view.nodes.get(name))]

    async def heartbeat(self) -> None:
        """One heartbeat for every node, pipelined: a KV put is a publish on `$KV.<bucket>.<key>`."""
        value = now_rfc3339().encode()
        futures = [await self.log.js.publish_async(f"$KV.{HEARTBEAT_BUCKET}.{name}", value) for name in self.nodes]
        done, pending = await asyncio.wait(futures, timeout=ACK_TIMEOUT)
        for future in pending:
            future.cancel()
        ok = sum(1 for f in done if not f.cancelled() and f.exception() is None)
        HEARTBEATS.inc(ok)
        if ok < len(futures):
            log.warning("%d of %d heartbeats not acknowledged", len(futures) - ok, len(futures))

    async def keep_alive(self, stop: asyncio.Event, interval: float) -> None:
        """Heartbeat every `interval` seconds; put back what someone marked NotReady or removed."""
        while not stop.is_set():
            try:
                await self.heartbeat()
                stale = self.needing_attention()
                if stale:
                    log.info("re-registering %d node(s) not Ready in the log: %s", len(stale), ", ".join(stale[:5]))
                    await self.register(stale)
            except Exception as exc:  # a lost round must not end the heartbeats; the next one may pass
                log.warning("heartbeat round failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
