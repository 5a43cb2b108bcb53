"""The agent's loop: follow the log, run the pods bound to its nodes through a driver, report their status.

One agent serves one node (`node-agent`) or thousands (`hollow-nodes`): the nodes share one
connection, one ClusterView and one status reporter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from dockyard.eventlog import (
    Append,
    EventLog,
    EventLogError,
    EventRecord,
    Metadata,
    now_rfc3339,
    parse_subject,
    subject_for,
)
from dockyard.schemas.events import PodDeleted, PodStatusChanged
from dockyard.schemas.manifests import ContainerStatus, Node, Pod, PodStatus
from dockyard.service import Health
from dockyard.services.node_agent.held_images import DEFAULT_INTERVAL as DEFAULT_IMAGES_INTERVAL
from dockyard.services.node_agent.held_images import ImageReporter, held_images_of
from dockyard.services.node_agent.metrics import POD_STATUS_UPDATES
from dockyard.services.node_agent.registration import NodeRegistration
from dockyard.services.node_agent.status import FINISHED_PHASES, pod_status
from dockyard.services.node_agent.usage import DEFAULT_INTERVAL as DEFAULT_USAGE_INTERVAL
from dockyard.services.node_agent.usage import UsageReporter, worker_samples
from dockyard.view import ClusterView, Key

log = logging.getLogger(__name__)

REPORT_WINDOW = 2000
STOP_WAIT_ON_EXIT = 5.0


class PodWorker(Protocol):
    """One pod on a driver."""

    uid: str

    def start(self) -> None: ...

    def update(self, pod: Pod) -> None:
        """The pod's spec changed in place (only containers' images may): those containers run again."""

    def container_statuses(self) -> tuple[ContainerStatus, ...]: ...

    async def stop(self) -> None:
        """Terminate its containers (the pod was deleted or moved away) and forget it."""

    async def detach(self) -> None:
        """Stop watching, leave the containers running: the agent is exiting and will adopt them."""


class Driver(Protocol):
    name: str

    async def prepare(self) -> None:
        """Before the first sync: find what an earlier agent left."""

    def worker_for(self, pod: Pod, on_change: Callable[[], None]) -> PodWorker: ...

    async def clean_leftovers(self) -> None:
        """After the first sync: stop whatever was found that no pod claimed."""


class NodeAgent:
    """Registers `nodes`, keeps them heartbeating, and keeps a worker for every pod bound to one of them."""

    def __init__(self, log_: EventLog, driver: Driver, nodes: Sequence[Node], *, actor: str,
                 heartbeat_interval: float = 10.0, report_interval: float = 0.05, stop_pods_on_exit: bool = True,
                 usage_interval: float = DEFAULT_USAGE_INTERVAL, images_interval: float = DEFAULT_IMAGES_INTERVAL):
        self.log = log_
        self.driver = driver
        self.view = ClusterView(kinds=("pod", "node"))
        self.names = {node.metadata.name for node in nodes}
        self.meta = Metadata(actor=actor)
        self.registration = NodeRegistration(log_, self.view, nodes, self.meta)
        self.heartbeat_interval = heartbeat_interval
        self.report_interval = report_interval
        self.stop_pods_on_exit = stop_pods_on_exit
        self.usage = UsageReporter(log_, self.names, lambda monotonic: worker_samples(self.workers, self.view.pods, monotonic),
                                   getattr(driver, "node_usage_sample", None), usage_interval)
        held = held_images_of(driver, self.names) if images_interval > 0 else None
        self.images = ImageReporter(log_, self.view, self.names, held, self.meta, images_interval)
        self.workers: dict[Key, PodWorker] = {}
        self.reported: dict[Key, tuple[PodStatus, int]] = {}  # the status we last appended, and its sequence
        self.dirty: set[Key] = set()
        self._dirty_event = asyncio.Event()
        self._stopping: set[asyncio.Task] = set()
        self._synced = False

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event, health: Health) -> None:
        await self.log.heartbeats()  # the bucket exists before the first put
        follow = asyncio.create_task(self.view.follow(self.log, stop, self.on_records), name="follow")
        caught_up = asyncio.create_task(self.view.caught_up.wait())
        await asyncio.wait({follow, caught_up, asyncio.create_task(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if follow.done():
            follow.result()  # it failed before catching up: say why
        if stop.is_set():
            caught_up.cancel()
            return
        await self.registration.register()
        log.info("registered %d node(s); %d pod(s) in the log", len(self.names), len(self.view.pods))
        await self.driver.prepare()
        self.sync_all()
        self._synced = True
        leftovers = asyncio.create_task(self.driver.clean_leftovers(), name="leftovers")
        tasks = [follow, leftovers,
                 asyncio.create_task(self.registration.keep_alive(stop, self.heartbeat_interval), name="heartbeat"),
                 asyncio.create_task(self.report_statuses(stop), name="reporter")]
        if self.usage.interval > 0:
            tasks.append(asyncio.create_task(self.usage.run(stop), name="usage"))
        if self.images.interval > 0:
            tasks.append(asyncio.create_task(self.images.run(stop), name="images"))
        health.ready = True
        try:
            await self._until_stopped(stop, tasks)
        finally:
            health.ready = False
            await self._shut_down(tasks)

    @staticmethod
    async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task]) -> None:
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set() and not all(t.done() for t in tasks):
                done, _ = await asyncio.wait({stopper, *[t for t in tasks if not t.done()]},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper and not task.cancelled() and task.exception() is not None:
                        raise task.exception()
        finally:
            stopper.cancel()

    async def _shut_down(self, tasks: list[asyncio.Task]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        workers, self.workers = list(self.workers.values()), {}
        if self.stop_pods_on_exit:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        else:
            await asyncio.gather(*(w.detach() for w in workers), return_exceptions=True)
        if self._stopping:  # pods being terminated: a next agent finishes what is cut short here
            await asyncio.wait(self._stopping, timeout=STOP_WAIT_ON_EXIT)
            for task in self._stopping:
                task.cancel()

    # ------------------------------------------------------------ which pods run here

    async def on_records(self, records: list[EventRecord]) -> None:
        if not self._synced:
            return
        touched: dict[Key, bool] = {}  # pod -> deleted within this batch
        for record in records:
            kind, namespace, name = parse_subject(record.subject)
            if kind != "pod":
                continue
            key = (namespace, name)
            touched[key] = touched.get(key, False) or isinstance(record.event, PodDeleted)
            if isinstance(record.event, PodStatusChanged) and record.actor != self.meta.actor:
                self.mark(key)  # someone else wrote its status: ours may need saying again
        for key, deleted in touched.items():
            self.sync(key, deleted)

    def sync_all(self) -> None:
        for key in list(self.view.pods):
            self.sync(key)

    def sync(self, key: Key, deleted: bool = False) -> None:
        """Start the pod if it is bound here and not running; stop it if it no longer is."""
        pod = self.view.pods.get(key)
        wanted = pod is not None and pod.spec.node_name in self.names
        worker = self.workers.get(key)
        if worker is not None and (deleted or not wanted or worker.uid != pod.metadata.uid):
            self._stop_worker(key)
            worker = None
        elif worker is not None:
            worker.update(pod)
        if wanted and worker is None and pod.status.phase not in FINISHED_PHASES:
            worker = self.driver.worker_for(pod, lambda: self.mark(key))
            self.workers[key] = worker
            worker.start()
            self.mark(key)

    def _stop_worker(self, key: Key) -> None:
        worker = self.workers.pop(key)
        self.reported.pop(key, None)
        task = asyncio.create_task(worker.stop(), name=f"stop {key[0]}/{key[1]}")
        self._stopping.add(task)
        task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task) -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stopping a pod failed: %s", task.exception())

    # ------------------------------------------------------------ status

    def mark(self, key: Key) -> None:
        self.dirty.add(key)
        self._dirty_event.set()

    async def report_statuses(self, stop: asyncio.Event) -> None:
        """Append the status of pods that changed; a burst within `report_interval` is one append each."""
        while not stop.is_set():
            await self._dirty_event.wait()
            await asyncio.sleep(self.report_interval)
            self._dirty_event.clear()
            keys, self.dirty = self.dirty, set()
            try:
                await self._report(keys)
            except Exception as exc:  # the log is unreachable: keep the changes for the next round
                log.warning("reporting pod status failed: %s", exc)
                self.dirty |= keys
                self._dirty_event.set()
                await asyncio.sleep(1.0)

    def _status_to_report(self, key: Key, now: str) -> PodStatus | None:
        worker, pod = self.workers.get(key), self.view.pods.get(key)
        if worker is None or pod is None or pod.metadata.uid != worker.uid:
            return None
        last = self.reported.get(key)
        status = pod_status(worker.container_statuses(), last[0] if last else pod.status, now,
                            pod.spec.restart_policy)
        if last is None:
            if status == pod.status:
                self.reported[key] = (status, self.view.pod_seq.get(key, 0))
                return None
            return status
        if status != last[0]:
            return status
        # Unchanged since we said it; say it again only if someone else has since said otherwise.
        seen_ours = self.view.pod_seq.get(key, 0) >= last[1]
        return status if seen_ours and pod.status != status else None

    async def _report(self, keys: set[Key]) -> None:
        now = now_rfc3339()
        pending = [(key, status) for key in keys if (status := self._status_to_report(key, now)) is not None]
        for start in range(0, len(pending), REPORT_WINDOW):
            chunk = pending[start:start + REPORT_WINDOW]
            appends = [Append(subject=subject_for("pod", *key), event=PodStatusChanged(status=status))
                       for key, status in chunk]
            results = await self.log.append_many(appends, self.meta)
            for (key, status), result in zip(chunk, results):
                if isinstance(result, EventLogError):
                    log.warning("status of pod %s/%s not appended: %s", *key, result)
                    self.mark(key)
                elif key in self.workers:
                    self.reported[key] = (status, result)
                    POD_STATUS_UPDATES.inc()
