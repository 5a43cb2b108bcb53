"""Hollow nodes: simulated pods (no processes) on one node, or `dockyard run hollow-nodes --count N` for scale tests."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from collections.abc import Callable

import msgspec

from dockyard.eventlog import EventLog, now_rfc3339
from dockyard.image_reference import canonical_name
from dockyard.schemas.manifests import ContainerImage, ContainerStatus, Pod
from dockyard.service import Health
from dockyard.services.node_agent.agent import NodeAgent
from dockyard.services.node_agent.expansion import port_key
from dockyard.services.node_agent.held_images import DEFAULT_INTERVAL as DEFAULT_IMAGES_INTERVAL
from dockyard.services.node_agent.metrics import CONTAINERS_STARTED, RUNNING_CONTAINERS
from dockyard.services.node_agent.node import ZONE_LABEL, capacity, node_manifest, parse_labels
from dockyard.services.node_agent.usage import DEFAULT_INTERVAL as DEFAULT_USAGE_INTERVAL
from dockyard.services.node_agent.usage import UsageSample, container_requests, hollow_samples, usage_share

NEEDS_DATABASE = False
DRIVER = "hollow"
DEFAULT_START_DELAY = 1.0


class HollowDriver:
    """Pods that become Running and Ready `start_delay` seconds after they are bound."""

    name = DRIVER

    def __init__(self, start_delay: float = DEFAULT_START_DELAY):
        self.start_delay = start_delay
        self.pulled: dict[str, dict[str, ContainerImage]] = {}  # node -> canonical image name -> what it holds
        self._held: dict[str, tuple[ContainerImage, ...]] = {}  # node -> the same, as reported (cached)

    async def prepare(self) -> None:
        pass

    def worker_for(self, pod: Pod, on_change: Callable[[], None]) -> HollowPod:
        self.pull(pod.spec.node_name, pod)
        return HollowPod(pod, on_change, self.start_delay, on_update=lambda new: self.pull(new.spec.node_name, new))

    def pull(self, node: str, pod: Pod) -> None:
        """Starting a pod "pulls" its images: the node holds them from then on (a hollow node never collects)."""
        held = self.pulled.setdefault(node, {})
        for container in pod.spec.containers:
            name = canonical_name(container.image)  # as a runc node names what it pulled
            if name not in held:
                held[name] = ContainerImage(names=(name,), size_bytes=simulated_size(name))
                self._held.pop(node, None)

    def held_images_on(self, node: str) -> tuple[ContainerImage, ...]:
        """What `node` holds; the same tuple until it changes, so the agent's comparison stays cheap."""
        held = self._held.get(node)
        if held is None:
            held = self._held[node] = tuple(self.pulled.get(node, {}).values())
        return held

    async def clean_leftovers(self) -> None:
        pass


def simulated_size(image: str) -> int:
    """A plausible, stable image size: 20 to 520 MiB, chosen by the reference."""
    spread = int.from_bytes(hashlib.blake2b(image.encode(), digest_size=4).digest(), "big") % 501
    return (20 + spread) * 1024 * 1024


class HollowPod:
    def __init__(self, pod: Pod, on_change: Callable[[], None], start_delay: float,
                 on_update: Callable[[Pod], None] = lambda pod: None):
        self.uid = pod.metadata.uid
        self.images = {c.name: c.image for c in pod.spec.containers}
        self.on_update = on_update  # the driver "pulls" the new images
        self.requests = container_requests(pod)
        self.usage_share = usage_share(self.uid)
        self._running_since: float | None = None  # monotonic
        self.on_change = on_change
        self.start_delay = start_delay
        previous = {status.name: status for status in pod.status.container_statuses}
        self.statuses = tuple(self._initial(c.name, {port_key(p): p.host_port for p in c.ports if p.host_port},
                                            previous.get(c.name)) for c in pod.spec.containers)
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    @staticmethod
    def _initial(name: str, host_ports: dict[str, int], previous: ContainerStatus | None) -> ContainerStatus:
        if previous is not None and previous.state == "running":
            return previous  # a restarted agent finds its simulated containers still there
        return ContainerStatus(name=name, state="waiting", reason="ContainerCreating", host_ports=host_ports)

    def start(self) -> None:
        if self.statuses and all(s.state == "running" for s in self.statuses):
            self._count_running(True)
            return
        self._timer = asyncio.get_running_loop().call_later(self.start_delay, self._run)

    def _run(self) -> None:
        now = now_rfc3339()
        self.statuses = tuple(ContainerStatus(name=s.name, state="running", started_at=now, ready=True,
                                              restart_count=s.restart_count, host_ports=s.host_ports)
                              for s in self.statuses)
        CONTAINERS_STARTED.labels(DRIVER).inc(len(self.statuses))
        self._count_running(True)
        self.on_change()

    def update(self, pod: Pod) -> None:
        """Containers given a new image run again at once (a simulated container has nothing to stop)."""
        images = {c.name: c.image for c in pod.spec.containers}
        changed = {name for name, image in images.items() if self.images.get(name, image) != image}
        if not changed:
            return
        self.images = images
        self.on_update(pod)
        if not self._running:
            return  # not started yet: it starts with the new images
        now = now_rfc3339()
        self.statuses = tuple(msgspec.structs.replace(s, started_at=now, restart_count=s.restart_count + 1)
                              if s.name in changed else s for s in self.statuses)
        CONTAINERS_STARTED.labels(DRIVER).inc(len(changed))
        self.on_change()

    def container_samples(self, monotonic: float) -> dict[str, UsageSample]:
        """Synthetic: a stable share of its requests while it runs, split over its containers by their
        requests (at the round's clock, so every round gives the same rate)."""
        if self._running_since is None:
            return {}
        return hollow_samples(self.usage_share, self.requests, monotonic - self._running_since)

    def _count_running(self, running: bool) -> None:
        self._running_since = (self._running_since or time.monotonic()) if running else None
        if running != self._running:
            RUNNING_CONTAINERS.labels(DRIVER).inc(len(self.statuses) if running else -len(self.statuses))
            self._running = running

    def container_statuses(self) -> tuple[ContainerStatus, ...]:
        return self.statuses

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._count_running(False)

    async def detach(self) -> None:
        await self.stop()


# ---------------------------------------------------------------- `dockyard run hollow-nodes`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=10, help="how many hollow nodes (default 10)")
    parser.add_argument("--prefix", default="hollow-", help="node names are PREFIX0, PREFIX1, ...")
    parser.add_argument("--cpu", default="4", help="each node's cpu capacity (default 4)")
    parser.add_argument("--memory", default="8Gi", help="each node's memory capacity (default 8Gi)")
    parser.add_argument("--max-pods", type=int, default=110, help="each node's pod capacity (default 110)")
    parser.add_argument("--zones", type=int, default=3, help=f"node i gets {ZONE_LABEL}=zone-<i %% zones>")
    parser.add_argument("--labels", default="", help="more labels for every node: k=v,k2=v2")
    parser.add_argument("--start-delay", type=float, default=DEFAULT_START_DELAY,
                        help="seconds from bound to Running (default 1)")
    parser.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds between heartbeats")
    parser.add_argument("--images-interval", type=float, default=DEFAULT_IMAGES_INTERVAL,
                        help="seconds between reports of the images nodes hold, for image locality "
                             f"(default {DEFAULT_IMAGES_INTERVAL:g}; 0: none)")
    parser.add_argument("--usage-interval", type=float, default=DEFAULT_USAGE_INTERVAL,
                        help=f"seconds between resource usage reports (default {DEFAULT_USAGE_INTERVAL:g}; 0: none)")


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health,
              args: argparse.Namespace) -> None:
    node_capacity = capacity(args.cpu, args.memory, args.max_pods)
    extra = parse_labels(args.labels)
    zones = max(args.zones, 1)
    nodes = [node_manifest(f"{args.prefix}{i}", node_capacity, {**extra, ZONE_LABEL: f"zone-{i % zones}"})
             for i in range(args.count)]
    log_ = await EventLog.connect(nats_url, name="dockyard-hollow-nodes")
    try:
        agent = NodeAgent(log_, HollowDriver(args.start_delay), nodes, actor="system:hollow-nodes",
                          heartbeat_interval=args.heartbeat_interval, usage_interval=args.usage_interval,
                          images_interval=args.images_interval)
        await agent.run(stop, health)
    finally:
        await log_.close()


if __name__ == "__main__":
    from dockyard.services.runner import main

    main("hollow-nodes")
