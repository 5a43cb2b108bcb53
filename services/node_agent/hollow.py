"""Hollow nodes: simulated pods (no processes) on one node, or `dockyard run hollow-nodes --count N` for scale tests."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from dockyard.eventlog import EventLog, now_rfc3339
from dockyard.schemas.manifests import ContainerStatus, Pod
from dockyard.service import Health
from dockyard.services.node_agent.agent import NodeAgent
from dockyard.services.node_agent.expansion import port_key
from dockyard.services.node_agent.metrics import CONTAINERS_STARTED, RUNNING_CONTAINERS
from dockyard.services.node_agent.node import ZONE_LABEL, capacity, node_manifest, parse_labels

NEEDS_DATABASE = False
DRIVER = "hollow"
DEFAULT_START_DELAY = 1.0


class HollowDriver:
    """Pods that become Running and Ready `start_delay` seconds after they are bound."""

    name = DRIVER

    def __init__(self, start_delay: float = DEFAULT_START_DELAY):
        self.start_delay = start_delay

    async def prepare(self) -> None:
        pass

    def worker_for(self, pod: Pod, on_change: Callable[[], None]) -> HollowPod:
        return HollowPod(pod, on_change, self.start_delay)

    async def clean_leftovers(self) -> None:
        pass


class HollowPod:
    def __init__(self, pod: Pod, on_change: Callable[[], None], start_delay: float):
        self.uid = pod.metadata.uid
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

    def _count_running(self, running: bool) -> None:
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
                          heartbeat_interval=args.heartbeat_interval)
        await agent.run(stop, health)
    finally:
        await log_.close()


if __name__ == "__main__":
    from dockyard.services.runner import main

    main("hollow-nodes")
