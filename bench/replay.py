"""History at scale: rebuilding every projection, `get pods --at`, export and import, with servers of its own.

    .venv/bin/python bench/replay.py [--events N] [--quick]

Starts nats-server (JetStream's default lazy fsync: the figures here are reads) and PostgreSQL
(default durability) in a temporary directory on free 127.0.0.1 ports, fills the log with a busy
cluster's history, and prints figures, one a line, each with its unit:

1. the machine;
2. the fill: N events appended with `append_many` in windows;
3. `dockyard get pods -A --at T`, T the time of the event in the middle of the history, run as
   users run it (a process of its own), first with no snapshot (a fold from the first event);
4. rebuilding every projection: the projector (`python -m dockyard.services.projector`, a process
   of its own) started on an empty database, all four projections from sequence 1, until each
   reaches the last event of its kind; it takes snapshots on the way, as it does in production;
5. `get pods --at T` again, now from the nearest snapshot; one pod's `get --at`; a `diff`;
6. export and import rates through `dockyard.transfer`, when that module is there;
7. peak memory of the bench, the projector and the `get --at` process.

Goals: rebuild under 60 s, `get --at` under 5 s, export and import 50,000 events/s or more, for
1,000,000 events. Figures, not assertions: each goal is printed next to the figure it applies to.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.eventlog and tests.builders; `dockyard` comes from the install

import msgspec  # noqa: E402

from bench.eventlog import (  # noqa: E402
    CLEANUP,
    run_guarded,
    start_projector,
    stop_process,
    PENDING,
    RUNNING,
    checkpoints,
    command,
    cpu_model,
    filesystem_of,
    fmt_rate,
    mib,
    nats_version,
    node_event,
    pod,
    postgres_facts,
    ram_kib,
    rate,
    say,
    start_nats,
    vm_hwm_kib,
)
from dockyard.eventlog import Append, EventLog, Metadata, parse_subject, subject_for  # noqa: E402
from dockyard.schemas.events import (  # noqa: E402
    DeploymentCreated,
    DeploymentStatusChanged,
    DeploymentUpdated,
    PodCreated,
    PodDeleted,
    PodScheduled,
    PodStatusChanged,
)
from dockyard.schemas.manifests import DeploymentStatus  # noqa: E402
from dockyard.servers import PostgresServer, free_port  # noqa: E402
from dockyard.timetravel import SNAPSHOT_EVERY, event_time, load_snapshot, position_at  # noqa: E402
from tests.builders import make_deployment  # noqa: E402

GOAL_REBUILD = 60.0  # seconds, for 1,000,000 events
GOAL_GET_AT = 5.0  # seconds
GOAL_TRANSFER = 50_000  # events/s
WINDOW = 5000  # append_many window
NODES = 50
NAMESPACES = ("prod", "staging", "batch", "default")
WAVE = 500  # pods created together, as a scale-up or a rollout creates them
LIVE_WAVES = 20  # waves alive at once (about 10,000 pods); older ones are replaced
SUMMARY: list[str] = []
_replace = msgspec.structs.replace


def goal(value: float, target: float, below: bool = True) -> str:
    met = value < target if below else value >= target
    unit = "s" if below else "events/s"
    return f"(goal {'under' if below else 'at least'} {target:,.0f} {unit}: {'met' if met else 'NOT met'})"


# ---------------------------------------------------------------- a busy cluster's history


def _deployment(index: int):
    return f"web{index}", NAMESPACES[index % len(NAMESPACES)]


def _scaled(index: int, replicas: int) -> list[Append]:
    name, namespace = _deployment(index)
    subject = subject_for("deployment", namespace, name)
    return [
        Append(subject=subject_for("command", "", f"scale-{index}-{replicas}"),
               event=command(index, name, namespace)),
        Append(subject=subject, event=DeploymentUpdated(deployment=make_deployment(name, namespace,
                                                                                   replicas=replicas))),
        Append(subject=subject, event=DeploymentStatusChanged(status=DeploymentStatus(
            observed_generation=2, replicas=replicas, updated_replicas=replicas, ready_replicas=replicas,
            available_replicas=replicas))),
    ]


def _wave(number: int, deployments: int) -> Iterator[Append]:
    """One wave of pods: created, scheduled, starting, running; the wave LIVE_WAVES before replaced."""
    def pods_of(wave: int) -> list[tuple[str, str, int]]:
        out = []
        for i in range(wave * WAVE, (wave + 1) * WAVE):
            name, namespace = _deployment(i % deployments)
            out.append((subject_for("pod", namespace, f"{name}-{i:07d}"), namespace, i))
        return out

    fresh = pods_of(number)
    for subject, namespace, i in fresh:
        yield Append(subject=subject, event=PodCreated(pod=pod(namespace, parse_subject(subject)[2], i)))
    for subject, _, i in fresh:
        yield Append(subject=subject, event=PodScheduled(node_name=f"n{i % NODES}"))
    for subject, _, _ in fresh:
        yield Append(subject=subject, event=PodStatusChanged(status=PENDING))
    for subject, _, i in fresh:
        yield Append(subject=subject, event=PodStatusChanged(status=RUNNING[f"n{i % NODES}"]))
    if number >= LIVE_WAVES:
        for subject, _, _ in pods_of(number - LIVE_WAVES):
            yield Append(subject=subject, event=PodDeleted(reason="Replaced"))
    for index in (number % deployments, (number * 7 + 3) % deployments):
        yield from _scaled(index, 3 + number % 5)


def cluster_history() -> Iterator[Append]:
    """Nodes, deployments applied (with their command records) and scaled, and waves of pods, endlessly."""
    for i in range(NODES):
        yield Append(subject=subject_for("node", "", f"n{i}"), event=node_event(i))
    deployments = 200
    for index in range(deployments):
        name, namespace = _deployment(index)
        subject = subject_for("deployment", namespace, name)
        yield Append(subject=subject_for("command", "", f"apply-{index}"), event=command(index, name, namespace))
        yield Append(subject=subject, event=DeploymentCreated(deployment=make_deployment(name, namespace)))
    number = 0
    while True:
        yield from _wave(number, deployments)
        number += 1


def kind_of(subject: str) -> str:
    return subject.split(".", 3)[2]


class Filled(msgspec.Struct):
    seconds: float
    last_of: dict[str, int]  # kind -> its last event's sequence
    middle_pod: str  # the subject of the last pod created before the middle of the history


async def fill(url: str, total: int) -> Filled:
    """Append `total` events: the time it took, and where things are in the history."""
    log = await EventLog.connect(url, name="dockyard-bench-fill")
    last_of: dict[str, int] = {}
    middle_pod = ""
    try:
        await log.ensure_streams()
        history = islice(cluster_history(), total)
        started = time.perf_counter()
        seq = 0
        while window := list(islice(history, WINDOW)):
            results = await log.append_many(window, Metadata(actor="controller"))
            bad = [r for r in results if not isinstance(r, int)]
            if bad:
                raise RuntimeError(f"filling the log failed: {bad[0]}")
            for append in window:
                seq += 1
                last_of[kind_of(append.subject)] = seq
                if seq <= total // 2 and isinstance(append.event, PodCreated):
                    middle_pod = append.subject
        elapsed = time.perf_counter() - started
        if await log.last_stream_seq() != total:
            raise RuntimeError(f"the stream holds {await log.last_stream_seq()} events, expected {total}")
        return Filled(elapsed, last_of, middle_pod)
    finally:
        await log.close()


# ---------------------------------------------------------------- the CLI, timed as users run it


class Run(msgspec.Struct):
    seconds: float
    lines: int
    peak_kib: int
    stderr: str


def dockyard(env: dict[str, str], *args: str) -> Run:
    """Run `dockyard ARGS` to completion: wall time, lines printed, the process's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-P", "-m", "dockyard", *args], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage, not every child's so far
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        printed, said = out.read(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"dockyard {' '.join(args)} failed ({proc.returncode}): {said[-2000:]}")
    return Run(seconds, printed.count(b"\n"), int(usage.ru_maxrss), said.strip())


async def _middle(url: str, seq: int) -> tuple[str, int]:
    """The time of the event at `seq`, and the sequence `--at` that time resolves to."""
    log = await EventLog.connect(url, name="dockyard-bench")
    try:
        when = await event_time(log, seq)
        return when.isoformat(), await position_at(log, when)
    finally:
        await log.close()


async def _snapshot_before(database_url: str, seq: int) -> tuple[int, int]:
    from dockyard.db import async_engine

    engine = async_engine(database_url, pool_size=1)
    try:
        position, objects = await load_snapshot(engine, "Pod", seq)
        return position, len(objects)
    finally:
        await engine.dispose()


def get_at(env: dict[str, str], when: str, label: str, judged: bool) -> Run:
    """`get pods -A --at` as users run it; the goal applies to the snapshot path (snapshots are the design)."""
    run = dockyard(env, "get", "pods", "-A", "--at", when)
    verdict = goal(run.seconds, GOAL_GET_AT) if judged else "(for comparison)"
    say(f"  get pods -A --at (middle of history), {label}: {run.seconds:,.2f} s {verdict}"
        f"  [{max(run.lines - 1, 0):,} pods listed]")
    return run


# ---------------------------------------------------------------- rebuild: the projector from scratch


class Rebuilt(msgspec.Struct):
    seconds: float
    peak_kib: int
    snapshots: int
    snapshot_seconds: float  # summed over the projections, which snapshot concurrently


def snapshot_metrics(port: int) -> tuple[int, float]:
    """Snapshots the projector took and the seconds they took, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    count = total = 0.0
    for line in lines:
        if line.startswith("dockyard_projector_snapshot_duration_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("dockyard_projector_snapshot_duration_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
    return int(count), total


def rebuild_all(tmp: Path, env: dict[str, str], pg: PostgresServer, targets: dict[str, int],
                snapshot_every: int, timeout: float) -> Rebuilt:
    """Start the projector on an empty database and wait for every projection to reach its target."""
    import psycopg

    port = free_port()
    log_path = tmp / "projector.log"
    proc = start_projector(env, log_path, port, "--snapshot-every", str(snapshot_every))
    conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/dockyard", autocommit=True)
    CLEANUP.append(conn.close)
    started = time.perf_counter()
    peak = 0
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the projector exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        positions = checkpoints(conn)
        if all(positions.get(name, 0) >= target for name, target in targets.items()):
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"rebuild did not finish within {timeout:,.0f} s: {positions} of {targets}")
        peak = max(peak, vm_hwm_kib(proc.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    peak = max(peak, vm_hwm_kib(proc.pid))
    snapshots, snapshot_seconds = snapshot_metrics(port)
    stop_process(proc)
    return Rebuilt(elapsed, peak, snapshots, snapshot_seconds)


# ---------------------------------------------------------------- export and import


async def transfer_rates(tmp: Path, source_url: str, total: int) -> None:
    if importlib.util.find_spec("dockyard.transfer") is None:
        say("  export/import: not available")
        SUMMARY.append("export/import: not available")
        return
    from dockyard import transfer

    path = tmp / "events.jsonl"
    log = await EventLog.connect(source_url, name="dockyard-bench-export")
    try:
        started = time.perf_counter()
        with open(path, "wb") as out:
            exported = await transfer.export_events(log, out)
        seconds = time.perf_counter() - started
    finally:
        await log.close()
    export_rate = rate(exported, seconds)
    say(f"  export: {fmt_rate(export_rate)} {goal(export_rate, GOAL_TRANSFER, below=False)}"
        f"  [{exported:,} events, {path.stat().st_size / 2**20:,.0f} MiB of JSON Lines in {seconds:,.2f} s]")

    fresh = start_nats(tmp, "nats-import", False)
    log = await EventLog.connect(fresh.url, name="dockyard-bench-import")
    try:
        await transfer.ensure_fresh(log, force=False)
        started = time.perf_counter()
        with open(path, "rb") as lines:
            imported = await transfer.import_events(log, lines)
        seconds = time.perf_counter() - started
        stored = await log.last_stream_seq()
    finally:
        await log.close()
        fresh.stop()
    import_rate = rate(imported, seconds)
    say(f"  import into a fresh nats-server: {fmt_rate(import_rate)} {goal(import_rate, GOAL_TRANSFER, below=False)}"
        f"  [{imported:,} events in {seconds:,.2f} s; the new stream holds {stored:,} of {total:,}]")
    SUMMARY.append(f"export: {fmt_rate(export_rate)}, import: {fmt_rate(import_rate)} "
                   f"{goal(min(export_rate, import_rate), GOAL_TRANSFER, below=False)}")


# ---------------------------------------------------------------- main


def machine(tmp: Path, pg: PostgresServer) -> None:
    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"python: {platform.python_implementation()} {platform.python_version()}")
    say(f"nats-server: {nats_version()} (lazy fsync)")
    version, settings = postgres_facts(pg)
    say(f"postgresql: {version}")
    say(f"postgresql durability: {settings}")
    say(f"temp dir: {tmp} ({filesystem_of(tmp)})")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    SUMMARY.append(f"machine: {cpu_model()} x {os.cpu_count()} cores, {mib(ram_kib())} RAM, "
                   f"Python {platform.python_version()}")


def run(args: argparse.Namespace, tmp: Path) -> None:
    total = args.events or (50_000 if args.quick else 1_000_000)
    snapshot_every = args.snapshot_every or min(SNAPSHOT_EVERY, max(1000, total // 20))
    pg = PostgresServer(tmp / "pg")
    CLEANUP.append(pg.stop)
    pg.start()
    machine(tmp, pg)
    say(f"run: {total:,} events{', --quick' if args.quick else ''}; snapshots every {snapshot_every:,} sequences")

    say()
    say("== the history")
    nats = start_nats(tmp, "nats", False)
    filled = asyncio.run(fill(nats.url, total))
    targets, seconds = filled.last_of, filled.seconds
    say(f"  filled: {total:,} events in {seconds:,.2f} s ({fmt_rate(rate(total, seconds))}, append_many in windows"
        f" of {WINDOW:,}); {NODES} nodes, 200 deployments, pods in waves of {WAVE} with {LIVE_WAVES * WAVE:,}"
        f" alive, scale commands")

    from dockyard.db import migrate

    database_url = pg.url("dockyard")
    migrate(database_url)
    env = dict(os.environ, DOCKYARD_NATS_URL=nats.url, DOCKYARD_DATABASE_URL=database_url,
               DOCKYARD_LOG_LEVEL=os.environ.get("DOCKYARD_LOG_LEVEL", "WARNING"))
    when, resolved = asyncio.run(_middle(nats.url, total // 2))

    say()
    say("== get pods --at, before any snapshot (a fold from the first event)")
    say(f"  --at {when}: seq {resolved:,} of {total:,}")
    cold = get_at(env, when, "no snapshot", judged=False)
    say(f"  peak RSS of that process: {mib(cold.peak_kib)}")

    say()
    say("== rebuild every projection: the projector from scratch on an empty database (all four at once)")
    projections = {"deployments": targets.get("deployment", 0), "pods": targets.get("pod", 0),
                   "nodes": targets.get("node", 0), "commands": targets.get("command", 0)}
    rebuilt = rebuild_all(tmp, env, pg, projections, snapshot_every, timeout=900.0)
    seconds, projector_peak = rebuilt.seconds, rebuilt.peak_kib
    say(f"  rebuild all projections: {seconds:,.1f} s {goal(seconds, GOAL_REBUILD)}"
        f"  [{fmt_rate(rate(total, seconds))}, from process start, snapshots included]")
    say(f"  snapshots taken on the way: {rebuilt.snapshots:,}, {rebuilt.snapshot_seconds:,.1f} s in all"
        f" (in their batches' transactions)")
    say(f"  projector peak RSS: {mib(projector_peak)}")
    SUMMARY.append(f"rebuild all projections (projector from scratch): {seconds:,.1f} s "
                   f"{goal(seconds, GOAL_REBUILD)}")

    say()
    say("== get pods --at, from the nearest snapshot")
    position, count = asyncio.run(_snapshot_before(database_url, resolved))
    say(f"  nearest snapshot: seq {position:,} ({count:,} pods); {resolved - position:,} sequences to fold")
    warm = get_at(env, when, "from a snapshot", judged=True)
    say(f"  peak RSS of that process: {mib(warm.peak_kib)}")
    SUMMARY.append(f"get pods --at (middle): {warm.seconds:,.2f} s from a snapshot {goal(warm.seconds, GOAL_GET_AT)},"
                   f" {cold.seconds:,.2f} s without")
    _, namespace, name = parse_subject(filled.middle_pod)
    one = dockyard(env, "get", "pod", name, "-n", namespace, "--at", when, "-o", "name")
    say(f"  get pod {name} --at (one aggregate): {one.seconds:,.2f} s")
    start = max(0, resolved - snapshot_every // 2)
    diffed = dockyard(env, "diff", "pods", "--from-seq", str(start), "--to-seq", str(resolved))
    say(f"  diff pods over {resolved - start:,} sequences: {diffed.seconds:,.2f} s  [{diffed.stderr}]")

    say()
    say("== export and import")
    try:
        asyncio.run(transfer_rates(tmp, nats.url, total))
    except Exception as exc:  # another module's API: report, do not lose the figures above
        say(f"  export/import: failed: {exc.__class__.__name__}: {exc}")
        SUMMARY.append(f"export/import: failed ({exc.__class__.__name__})")

    say()
    say("== memory")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    say(f"  bench process peak RSS: {mib(peak)}")
    SUMMARY.append(f"peak RSS: bench {mib(peak)}, projector {mib(projector_peak)}, "
                   f"get --at {mib(max(cold.peak_kib, warm.peak_kib))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=0, help="events in the log (default 1,000,000; 50,000 quick)")
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help=f"the projector's snapshot interval (default {SNAPSHOT_EVERY:,}, or events/20 if fewer)")
    return run_guarded(run, parser.parse_args(), "dy-replay-", SUMMARY)


if __name__ == "__main__":
    sys.exit(main())
