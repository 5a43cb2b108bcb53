"""Resource usage: samples of pods and nodes, turned into NodeUsage and put in the dy_usage KV every few seconds.

A sample is cumulative CPU time plus resident memory; two samples a window apart give the
average CPU rate over the window (cpu_millis), as the kubelet's summary API does. Drivers
provide the samples: `PodWorker.usage_sample(monotonic)` (optional) per pod, and optionally
`Driver.node_usage_sample()` for the whole machine (without it a node's figures are the sum
of its pods', as for hollow nodes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable

import msgspec

from dockyard.eventlog import USAGE_BUCKET, EventLog, now_rfc3339
from dockyard.schemas.manifests import Pod
from dockyard.schemas.quantity import cpu_millis, memory_bytes
from dockyard.schemas.usage import NodeUsage, PodUsage, usage_encoder

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# A hollow pod without requests uses a share of these (Kubernetes' non-zero defaults for scoring).
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024


class UsageSample(msgspec.Struct, frozen=True):
    cpu_seconds: float  # cumulative CPU time
    memory_bytes: int  # resident now


# ---------------------------------------------------------------- pure arithmetic


def cpu_rate_millis(before: UsageSample | None, after: UsageSample, window_seconds: float) -> int:
    """Average CPU over the window in millicores; 0 without an earlier sample (or after a restart reset it)."""
    if before is None or window_seconds <= 0:
        return 0
    used = after.cpu_seconds - before.cpu_seconds
    return max(0, round(used / window_seconds * 1000))


def usage_share(uid: str) -> float:
    """The stable share (25-90 %) of its requests a hollow pod uses, seeded from its uid so figures replay."""
    return 0.25 + 0.65 * (int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)


def synthetic_sample(share: float, cpu_request_millis: int, memory_request_bytes: int,
                     running_seconds: float) -> UsageSample:
    """A hollow pod's usage: `share` of its requests (of the defaults where it requests nothing)."""
    cpu = cpu_request_millis or DEFAULT_CPU_MILLIS
    memory = memory_request_bytes or DEFAULT_MEMORY_BYTES
    return UsageSample(cpu_seconds=share * cpu / 1000 * max(running_seconds, 0.0), memory_bytes=int(share * memory))


def pod_requests(pod: Pod) -> tuple[int, int]:
    """(cpu millicores, memory bytes) the pod's containers request."""
    cpu = memory = 0
    for container in pod.spec.containers:
        requests = container.resources.requests
        cpu += cpu_millis(requests["cpu"]) if "cpu" in requests else 0
        memory += memory_bytes(requests["memory"]) if "memory" in requests else 0
    return cpu, memory


# ---------------------------------------------------------------- /proc


def process_group_samples(proc: str = "/proc") -> dict[int, UsageSample]:
    """utime+stime and RSS of every process group on the machine, summed over its live processes (one scan)."""
    groups: dict[int, tuple[int, int]] = {}  # pgid -> (ticks, pages)
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:  # it exited while we looked
            continue
        # After the command name (in parentheses, possibly with spaces): state is field 3, pgrp 5,
        # utime 14, stime 15, rss 24 (proc(5)); index = field - 3.
        fields = stat[stat.rfind(")") + 2:].split()
        try:
            pgid, ticks, pages = int(fields[2]), int(fields[11]) + int(fields[12]), int(fields[21])
        except (IndexError, ValueError):
            continue
        before = groups.get(pgid, (0, 0))
        groups[pgid] = (before[0] + ticks, before[1] + pages)
    return {pgid: UsageSample(cpu_seconds=ticks / CLOCK_TICKS, memory_bytes=pages * PAGE_SIZE)
            for pgid, (ticks, pages) in groups.items()}


class ProcessGroupTable:
    """Process groups' samples from one scan of /proc shared by every container sampled in a round:
    a round asks for each container in turn, and the scan reads every process on the machine."""

    def __init__(self, proc: str = "/proc", max_age_seconds: float = 1.0):
        self.proc = proc
        self.max_age_seconds = max_age_seconds  # well under a round's interval, over a round's length
        self._groups: dict[int, UsageSample] = {}
        self._at: float | None = None

    def sample(self, pgid: int, monotonic: float) -> UsageSample | None:
        if self._at is None or not 0 <= monotonic - self._at < self.max_age_seconds:
            self._groups, self._at = process_group_samples(self.proc), monotonic
        return self._groups.get(pgid)


def machine_sample(proc: str = "/proc") -> UsageSample:
    """The machine's busy CPU time (all CPUs, idle and iowait excluded) and memory in use (total - available)."""
    with open(f"{proc}/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    meminfo = {}
    with open(f"{proc}/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            meminfo[key] = int(rest.split()[0]) * 1024
    used = meminfo.get("MemTotal", 0) - meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    return UsageSample(cpu_seconds=busy / CLOCK_TICKS, memory_bytes=used)


# ---------------------------------------------------------------- the loop

# (node name, namespace, pod name, uid) -> the worker's sample, or None.
PodSamples = Iterable[tuple[str, str, str, str, UsageSample | None]]


class UsageReporter:
    """Samples pods (and the machine) every `interval` seconds and puts each node's NodeUsage in dy_usage."""

    def __init__(self, log_: EventLog, nodes: Iterable[str], pod_samples: Callable[[float], PodSamples],
                 node_sample: Callable[[], UsageSample | None] | None = None, interval: float = DEFAULT_INTERVAL):
        self.log = log_
        self.nodes = sorted(nodes)
        self.pod_samples = pod_samples
        self.node_sample = node_sample
        self.interval = interval
        self._pods: dict[str, UsageSample] = {}  # uid -> last sample
        self._node: UsageSample | None = None
        self._at: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await self.log.usage()  # the bucket exists before the first put
        while not stop.is_set():
            try:
                await self.report()
            except Exception as exc:  # usage is best effort: the next round may fare better
                log.warning("reporting usage failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def report(self) -> list[NodeUsage]:
        # Off the agent's loop: sampling reads /proc and cgroup files (samplers only read the workers' state).
        usages = await asyncio.to_thread(self.sample, time.monotonic(), now_rfc3339())
        futures = [await self.log.js.publish_async(f"$KV.{USAGE_BUCKET}.{u.node}", usage_encoder.encode(u))
                   for u in usages]
        await asyncio.gather(*futures)
        return usages

    def sample(self, monotonic: float, timestamp: str) -> list[NodeUsage]:
        """One round: every node's usage since the last round (CPU 0 on the first)."""
        window = monotonic - self._at if self._at is not None else 0.0
        pods: dict[str, list[PodUsage]] = {node: [] for node in self.nodes}
        seen: dict[str, UsageSample] = {}
        for node, namespace, name, uid, now in self.pod_samples(monotonic):
            if now is None or node not in pods:
                continue
            seen[uid] = now
            pods[node].append(PodUsage(namespace=namespace, name=name, memory_bytes=now.memory_bytes,
                                       cpu_millis=cpu_rate_millis(self._pods.get(uid), now, window)))
        machine = self.node_sample() if self.node_sample else None
        machine_cpu = cpu_rate_millis(self._node, machine, window) if machine else 0
        self._pods, self._node, self._at = seen, machine, monotonic
        return [node_usage(node, timestamp, window, tuple(pods[node]), machine, machine_cpu) for node in self.nodes]


def node_usage(node: str, timestamp: str, window: float, pods: tuple[PodUsage, ...],
               machine: UsageSample | None, machine_cpu_millis: int) -> NodeUsage:
    """A node's figures: the machine's where measured, else the sum of its pods'."""
    pods = tuple(sorted(pods, key=lambda p: (p.namespace, p.name)))
    if machine is not None:
        cpu, memory = machine_cpu_millis, machine.memory_bytes
    else:
        cpu, memory = sum(p.cpu_millis for p in pods), sum(p.memory_bytes for p in pods)
    return NodeUsage(node=node, timestamp=timestamp, window_seconds=round(window, 3), cpu_millis=cpu,
                     memory_bytes=memory, pods=pods)


def worker_samples(workers: dict, pods: dict, monotonic: float) -> PodSamples:
    """Each running pod's sample at the round's clock, from workers that can give one (`usage_sample` is
    optional for a driver)."""
    for key, worker in list(workers.items()):
        sample = getattr(worker, "usage_sample", None)
        pod = pods.get(key)
        if sample is not None and pod is not None:
            yield pod.spec.node_name, key[0], key[1], worker.uid, sample(monotonic)
