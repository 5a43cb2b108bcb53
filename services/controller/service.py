"""The controller's I/O loop: feeds `reconcile_deployment` and node lifecycle from the log and the heartbeats."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid

import msgspec
from prometheus_client import Counter, Gauge

from dockyard.eventlog import Append, EventLog, EventRecord, Metadata, now_rfc3339, parse_subject, subject_for
from dockyard.lease import Lease
from dockyard.schemas.events import (
    DeploymentRevisionRecorded,
    DeploymentStatusChanged,
    NodeStatusChanged,
    PodDeleted,
)
from dockyard.schemas.manifests import Condition, Deployment, Node
from dockyard.service import Health
from dockyard.services.api.decide import decide_apply
from dockyard.services.controller.reconcile import (
    OWNER_ANNOTATION,
    CreatePod,
    DeletePod,
    RecordRevision,
    Revision,
    SetStatus,
    owned_by,
    reconcile_deployment,
    same_status,
)
from dockyard.services.registry_indexer.pinning import TagDigests
from dockyard.view import ClusterView

log = logging.getLogger(__name__)

NEEDS_DATABASE = False
ACTIONS = Counter("dockyard_controller_actions_total", "Actions the controller took", ["action"])
NOT_READY = Gauge("dockyard_controller_nodes_not_ready", "Nodes whose heartbeat is lost")

_replace = msgspec.structs.replace
META = Metadata(actor="system:controller")


def add_arguments(parser) -> None:
    parser.add_argument("--node-grace", type=float, default=40.0,
                        help="seconds without a heartbeat before a node is NotReady")
    parser.add_argument("--eviction-timeout", type=float, default=300.0,
                        help="seconds a node may stay NotReady before its pods are evicted")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between time-driven reconciles")


def _ready_condition(node: Node) -> Condition | None:
    return next((c for c in node.status.conditions if c.type == "Ready"), None)


def _parse(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def with_ready(node: Node, status: str, reason: str, message: str, now: str):
    condition = Condition(type="Ready", status=status, reason=reason, message=message, last_transition_time=now)
    others = tuple(c for c in node.status.conditions if c.type != "Ready")
    return _replace(node.status, conditions=(condition, *others))


class Controller:
    def __init__(self, log_: EventLog, args):
        self.log = log_
        self.view = ClusterView()
        self.revisions: dict[tuple[str, str], list[Revision]] = {}
        self.images = TagDigests()  # the registry index, for pinning tags at each new revision
        self.awaiting: dict[tuple[str, str], int] = {}  # deployment -> seq its last actions must reach
        self.node_grace = args.node_grace
        self.eviction_timeout = args.eviction_timeout
        self.tick = args.tick
        self.last_heartbeat: dict[str, float] = {}
        self.started = time.monotonic()
        self.lease = Lease(log_, "controller")
        self._wake = asyncio.Event()

    async def on_records(self, records: list[EventRecord]) -> None:
        for record in records:
            if isinstance(record.event, DeploymentRevisionRecorded):
                key = parse_subject(record.subject)[1:]
                self.revisions.setdefault(key, []).append(Revision(
                    revision=record.event.revision, template_hash=record.event.template_hash,
                    template=record.event.template))
            else:
                self.images.evolve(record.event)  # an indexed image may unblock an ImageNotFound deployment
        self._wake.set()

    async def watch_heartbeats(self, stop: asyncio.Event) -> None:
        kv = await self.log.heartbeats()
        watcher = await kv.watchall()
        while not stop.is_set():
            try:
                entry = await watcher.updates(timeout=1.0)
            except Exception:  # nats-py raises a timeout when nothing changed
                continue
            if entry is not None and entry.key:
                self.last_heartbeat[entry.key] = time.monotonic()
        await watcher.stop()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self.view.caught_up.is_set() or not self.lease.held.is_set():
                continue
            try:
                await self.reconcile_all()
            except Exception:
                log.exception("reconcile round failed; next round retries")

    async def reconcile_all(self) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        appends: list[tuple[tuple[str, str] | None, Append]] = []
        appends += self.node_lifecycle(now)
        pods_by_owner: dict[tuple[str, str], list] = {}
        for key, pod in self.view.pods.items():
            owner = pod.metadata.annotations.get(OWNER_ANNOTATION)
            if owner:
                pods_by_owner.setdefault((pod.metadata.namespace, owner), []).append(pod)
        for key, deployment in list(self.view.deployments.items()):
            if self.awaiting.get(key, 0) > self.view.position:
                continue  # our last actions have not come back through the log yet
            pods = [p for p in pods_by_owner.get(key, []) if owned_by(p, deployment)]
            actions = reconcile_deployment(deployment, pods, self.revisions.get(key, []), now, self.images)
            appends += [(key, a) for a in self.to_appends(deployment, actions, now)]
        for owner_key, pods in pods_by_owner.items():
            if owner_key not in self.view.deployments:  # the deployment is gone: so are its pods
                appends += [(None, self._delete(p.metadata.namespace, p.metadata.name, "OwnerDeleted"))
                            for p in pods]
        await self.commit(appends)

    def _delete(self, namespace: str, name: str, reason: str) -> Append:
        seq = self.view.pod_seq.get((namespace, name))
        return Append(subject=subject_for("pod", namespace, name), event=PodDeleted(reason=reason),
                      expected_seq=seq, msg_id=f"delete-{namespace}-{name}-{seq}")

    def to_appends(self, deployment: Deployment, actions, now: dt.datetime) -> list[Append]:
        ns, name = deployment.metadata.namespace, deployment.metadata.name
        appends = []
        for action in actions:
            if isinstance(action, CreatePod):
                _, event = decide_apply(None, action.pod, now=now_rfc3339(), new_uid=str(uuid.uuid4()))
                appends.append(Append(subject=subject_for("pod", ns, action.pod.metadata.name), event=event,
                                      expected_seq=0))
            elif isinstance(action, DeletePod):
                appends.append(self._delete(action.namespace, action.name, action.reason))
            elif isinstance(action, RecordRevision):
                event = DeploymentRevisionRecorded(revision=action.revision, template_hash=action.template_hash,
                                                   template=action.template)
                appends.append(Append(subject=subject_for("deployment", ns, name), event=event,
                                      msg_id=f"rev-{deployment.metadata.uid}-{action.revision}"))
            elif isinstance(action, SetStatus) and not same_status(action.status, deployment.status):
                appends.append(Append(subject=subject_for("deployment", ns, name),
                                      event=DeploymentStatusChanged(status=action.status)))
        return appends

    def node_lifecycle(self, now: dt.datetime) -> list[tuple[None, Append]]:
        appends = []
        stamp = now_rfc3339()
        for name, node in self.view.nodes.items():
            ready = _ready_condition(node)
            seen = self.last_heartbeat.get(name, self.started)
            silent = time.monotonic() - seen
            subject = subject_for("node", "", name)
            if ready is not None and ready.status == "True" and silent > self.node_grace:
                status = with_ready(node, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", stamp)
                appends.append((None, Append(subject=subject, event=NodeStatusChanged(status=status))))
            elif ready is not None and ready.reason == "NodeStatusUnknown" and silent < self.node_grace:
                status = with_ready(node, "True", "KubeletReady", "heartbeats resumed", stamp)
                appends.append((None, Append(subject=subject, event=NodeStatusChanged(status=status))))
            elif ready is not None and ready.status != "True":
                since = _parse(ready.last_transition_time)
                if since is not None and (now - since).total_seconds() > self.eviction_timeout:
                    appends += [(None, self._delete(ns, pod_name, "Evicted"))
                                for (ns, pod_name), pod in self.view.pods.items() if pod.spec.node_name == name]
        NOT_READY.set(sum(1 for n in self.view.nodes.values()
                          if (_ready_condition(n) or Condition(type="Ready", status="Unknown")).status != "True"))
        return appends

    async def commit(self, appends: list[tuple[tuple[str, str] | None, Append]]) -> None:
        if not appends:
            return
        results = await self.log.append_many([a for _, a in appends], META)
        for (key, append), result in zip(appends, results):
            ACTIONS.labels(append.event.type_name()).inc()
            if isinstance(result, int):
                if key is not None:
                    self.awaiting[key] = max(self.awaiting.get(key, 0), result)
            else:
                log.info("%s on %s not applied (%s); next round decides again", append.event.type_name(),
                         append.subject, result)


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    log_ = await EventLog.connect(nats_url, name="dockyard-controller")
    await log_.ensure_streams()
    controller = Controller(log_, args)
    tasks = [
        asyncio.create_task(controller.view.follow(log_, stop, controller.on_records)),
        asyncio.create_task(controller.watch_heartbeats(stop)),
        asyncio.create_task(controller.lease.keep(stop)),
        asyncio.create_task(controller.run(stop)),
    ]
    caught_up = asyncio.create_task(controller.view.caught_up.wait())
    await asyncio.wait([caught_up, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    health.ready = True
    log.info("controller caught up at seq %s", controller.view.position)
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    await log_.close()
