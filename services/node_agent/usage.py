"""Resource usage: samples of pods and nodes, turned into NodeUsage and put in the dy_usage KV every few seconds.

A sample is cumulative CPU time plus resident memory; two samples a window apart give the
average CPU rate over the window (cpu_millis), as the kubelet's summary API does. Drivers
provide the samples, all at the round's clock: `PodWorker.container_samples(monotonic)` per
running container (the pod is their sum), else `PodWorker.usage_sample(monotonic)` per pod
(both optional), and optionally `Driver.node_usage_sample()` for the whole machine (without it
a node's figures are the sum of its pods', as for hollow nodes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import msgspec

from dockyard.eventlog import USAGE_BUCKET, EventLog, now_rfc3339
from dockyard.schemas.manifests import Pod
from dockyard.schemas.quantity import cpu_millis, memory_bytes
from dockyard.schemas.usage import ContainerUsage, NodeUsage, PodUsage, usage_encoder

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


def container_requests(pod: Pod) -> dict[str, tuple[int, int]]:
    """Each container's (cpu millicores, memory bytes) requests, in the pod's order."""
    requests = {}
    for container in pod.spec.containers:
        asked = container.resources.requests
        requests[container.name] = (cpu_millis(asked["cpu"]) if "cpu" in asked else 0,
                                    memory_bytes(asked["memory"]) if "memory" in asked else 0)
    return requests


def pod_requests(pod: Pod) -> tuple[int, int]:
    """(cpu millicores, memory bytes) the pod's containers request."""
    requests = container_requests(pod).values()
    return sum(cpu for cpu, _ in requests), sum(memory for _, memory in requests)


def sum_samples(samples: Iterable[UsageSample]) -> UsageSample | None:
    """The samples added up (a pod from its containers); None when there are none."""
    samples = list(samples)
    if not samples:
        return None
    return UsageSample(cpu_seconds=sum(s.cpu_seconds for s in samples),
                       memory_bytes=sum(s.memory_bytes for s in samples))


def split_by_requests(sample: UsageSample, requests: Mapping[str, tuple[int, int]]) -> dict[str, UsageSample]:
    """A pod's sample shared among its containers in proportion to their requests of each resource
    (evenly where none requests it); memory's rounding goes to the last, so the parts add up exactly."""
    cpu_total = sum(cpu for cpu, _ in requests.values())
    memory_total = sum(memory for _, memory in requests.values())
    parts, memory_left = {}, sample.memory_bytes
    for index, (name, (cpu, memory)) in enumerate(requests.items()):
        cpu_part = cpu / cpu_total if cpu_total else 1 / len(requests)
        memory_part = memory / memory_total if memory_total else 1 / len(requests)
        memory_used = memory_left if index == len(requests) - 1 else int(sample.memory_bytes * memory_part)
        memory_left -= memory_used
        parts[name] = UsageSample(cpu_seconds=sample.cpu_seconds * cpu_part, memory_bytes=memory_used)
    return parts


def hollow_samples(share: float, requests: Mapping[str, tuple[int, int]],
                   running_seconds: float) -> dict[str, UsageSample]:
    """A hollow pod's containers: the pod's synthetic sample split over them by their requests."""
    if not requests:
        return {}
    pod = synthetic_sample(share, sum(cpu for cpu, _ in requests.values()),
                           sum(memory for _, memory in requests.values()), running_seconds)
    return split_by_requests(pod, requests)


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

class PodSample(NamedTuple):
    """One pod's sample in a round, with its running containers' where the driver can tell them apart."""

    node: str
    namespace: str
    name: str
    uid: str
    sample: UsageSample | None
    containers: tuple[tuple[str, UsageSample], ...] = ()


PodSamples = Iterable[PodSample]


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
        self._containers: dict[tuple[str, str], UsageSample] = {}  # (uid, container) -> last sample
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
        seen_containers: dict[tuple[str, str], UsageSample] = {}
        for pod in self.pod_samples(monotonic):
            if pod.sample is None or pod.node not in pods:
                continue
            seen[pod.uid] = pod.sample
            seen_containers.update(((pod.uid, name), now) for name, now in pod.containers)
            pods[pod.node].append(self._pod_usage(pod, window))
        machine = self.node_sample() if self.node_sample else None
        machine_cpu = cpu_rate_millis(self._node, machine, window) if machine else 0
        self._pods, self._containers, self._node, self._at = seen, seen_containers, machine, monotonic
        return [node_usage(node, timestamp, window, tuple(pods[node]), machine, machine_cpu) for node in self.nodes]

    def _pod_usage(self, pod: PodSample, window: float) -> PodUsage:
        """The pod's and its containers' rates over the same window, against their samples of the last round."""
        containers = tuple(
            ContainerUsage(name=name, memory_bytes=now.memory_bytes,
                           cpu_millis=cpu_rate_millis(self._containers.get((pod.uid, name)), now, window))
            for name, now in pod.containers)
        # With containers, the pod's rate is the sum of theirs: a container that restarted or stopped
        # resets its cumulative time, which would take the pod's whole difference to 0.
        cpu = (sum(c.cpu_millis for c in containers) if containers
               else cpu_rate_millis(self._pods.get(pod.uid), pod.sample, window))
        return PodUsage(namespace=pod.namespace, name=pod.name, memory_bytes=pod.sample.memory_bytes,
                        cpu_millis=cpu, containers=containers)


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


def worker_sample(worker, monotonic: float) -> tuple[UsageSample | None, tuple[tuple[str, UsageSample], ...]]:
    """A worker's pod sample and its containers', from one read at the round's clock: with
    `container_samples` the pod is their sum (so the figures agree), else `usage_sample` gives the pod alone."""
    per_container = getattr(worker, "container_samples", None)
    if per_container is not None:
        containers = tuple(per_container(monotonic).items())
        return sum_samples(sample for _, sample in containers), containers
    per_pod = getattr(worker, "usage_sample", None)
    return (per_pod(monotonic) if per_pod is not None else None), ()


def worker_samples(workers: dict, pods: dict, monotonic: float) -> PodSamples:
    """Each running pod's sample at the round's clock, from workers that can give one (sampling is
    optional for a driver)."""
    for key, worker in list(workers.items()):
        pod = pods.get(key)
        if pod is not None:
            sample, containers = worker_sample(worker, monotonic)
            yield PodSample(pod.spec.node_name, key[0], key[1], worker.uid, sample, containers)
