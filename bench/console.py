"""The console at scale: 100,000 pods in the read model, measured through the real api.

    .venv/bin/python bench/console.py [--pods N] [--rate EVENTS_PER_S] [--seconds S]

Starts nats-server and PostgreSQL in a temporary directory, writes N pod rows straight into the
`pods` read model (as the projector would leave them), starts the api service, then drives the
console headless (`App.run_test`) and prints one figure a line with its unit:
time from start to the first view; a key press (a filter typed) to the redrawn filtered view;
and, while PodStatusChanged events are appended at the given rate, the events absorbed per second
and the filter redraw time meanwhile. Goals: first view < 2 s, redraw < 100 ms, 5,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.eventlog's machine helpers; `dockyard` comes from the install

from bench.eventlog import (  # noqa: E402
    CLEANUP,
    cpu_model,
    mib,
    nats_version,
    ram_kib,
    run_guarded,
    say,
    start_database,
    start_nats,
)
from dockyard.servers import free_port  # noqa: E402

GOAL_FIRST_VIEW = 2.0  # seconds
GOAL_REDRAW = 0.100  # seconds
SUMMARY: list[str] = []


def versus(value: float, goal: float, unit: str, below: bool = True) -> str:
    met = value < goal if below else value >= goal
    return f"(goal {'<' if below else '>='} {goal:g} {unit}: {'met' if met else 'NOT met'})"


def pod_object(i: int) -> dict:
    name = f"web-{i:06d}"
    return {"apiVersion": "dockyard.io/v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{i}", "labels": {"app": f"app{i % 50}"},
                         "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "0"},
            "spec": {"nodeName": f"node-{i % 500}", "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": "Running"}}


def fill_read_model(database_url: str, count: int) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor().copy("COPY pods (namespace, name, uid, generation, resource_version, labels, object, "
                                "created_at, updated_at, node_name, phase) FROM STDIN") as copy:
            for i in range(count):
                obj = pod_object(i)
                copy.write_row(("default", obj["metadata"]["name"], f"uid-{i}", 1, 0,
                                json.dumps(obj["metadata"]["labels"]), json.dumps(obj),
                                "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", obj["spec"]["nodeName"], "Running"))
    return time.perf_counter() - started


def start_api(nats_url: str, database_url: str, tmp: Path) -> subprocess.Popen:
    port = free_port()
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_url, DOCKYARD_DATABASE_URL=database_url,
               DOCKYARD_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "run", "api", "--metrics-port", str(port)],
                            env=env, stdout=open(tmp / "api.log", "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("api did not become ready")


async def drawn(app) -> None:
    """Until the screen has drawn what changed: Textual runs after-refresh callbacks once it has written
    the frame. (`pilot.pause()` waits instead until the whole process has been idle for 20 ms, which during
    a flood of events it never is: it measured the flood, up to its 1 s cap, not the redraw.)"""
    done = asyncio.Event()
    app.screen.call_after_refresh(done.set)
    await done.wait()


async def timed_filter(app, text: str) -> float:
    """From what Enter in the filter prompt does to the filtered page on the screen."""
    started = time.perf_counter()
    app.apply_filter(text)
    await drawn(app)
    return time.perf_counter() - started


async def flood(nats_url: str, count: int, rate: int) -> tuple[float, float]:
    """Append PodStatusChanged events for the bench's pods at `rate` a second; when it began (time.time(),
    comparable across the bench's processes) and the seconds it took."""
    from dockyard.eventlog import Append, EventLog, subject_for
    from dockyard.schemas.events import PodStatusChanged
    from dockyard.schemas.manifests import PodStatus

    log = await EventLog.connect(nats_url, name="bench-console-flood")
    window = max(1, rate // 10)
    began = time.time()
    started = time.perf_counter()
    sent = 0
    try:
        while sent < count:
            phase = "Succeeded" if (sent // 1000) % 2 else "Running"
            appends = [Append(subject=subject_for("pod", "default", f"web-{(sent + j) * 7919 % 100_000:06d}"),
                              event=PodStatusChanged(status=PodStatus(phase=phase))) for j in range(window)]
            await log.append_many(appends)
            sent += window
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await log.close()
    return began, time.perf_counter() - started


async def drive(nats_url: str, database_url: str, pods: int, rate: int, seconds: float) -> None:
    import functools

    from dockyard.tui.app import ConsoleApp
    from dockyard.tui.client import ConsoleClient

    started = time.perf_counter()
    app = ConsoleApp(client_factory=functools.partial(ConsoleClient.connect, nats_url, database_url))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.table.row_count == 0:
            await pilot.pause(0.02)
        first_view = time.perf_counter() - started
        say(f"first view (first page drawn): {first_view:.2f} s {versus(first_view, GOAL_FIRST_VIEW, 's')}")
        SUMMARY.append(f"first view: {first_view:.2f} s")
        while not app.loaded.is_set():
            await pilot.pause(0.02)
        say(f"all {len(app.stores['Pod'].objects):,} pods listed and the view redrawn: "
            f"{time.perf_counter() - started:.2f} s")
        say(f"table rows built: {app.table.row_count} (one page)")

        texts = ("web-0123", "", "-l app=app7", "", "99$", "")
        redraws = [await timed_filter(app, text) for text in texts]
        for text, took in zip(texts, redraws):
            say(f"  filter {text or '(cleared)'!r}: {took * 1000:.0f} ms")
        median = statistics.median(redraws)
        say(f"key press to redrawn filtered view: median {median * 1000:.0f} ms, "
            f"max {max(redraws) * 1000:.0f} ms {versus(median * 1000, GOAL_REDRAW * 1000, 'ms')}")
        SUMMARY.append(f"key press to redraw: median {median * 1000:.0f} ms, max {max(redraws) * 1000:.0f} ms")
        started_sort = time.perf_counter()
        app.action_sort()
        await drawn(app)
        say(f"sort by a column over {pods:,} pods: {(time.perf_counter() - started_sort) * 1000:.0f} ms")

        absorbed, last_absorbed = 0, 0.0
        original = app.absorb

        def counting(batch):
            nonlocal absorbed, last_absorbed
            absorbed += len(batch)
            original(batch)
            last_absorbed = time.time()

        app.absorb = counting
        total = int(rate * seconds)
        # the sender is a process of its own, so its work does not count against the console's loop
        sender = asyncio.create_task(asyncio.create_subprocess_exec(
            sys.executable, __file__, "--flood", nats_url, "--count", str(total), "--rate", str(rate),
            stdout=asyncio.subprocess.PIPE))
        sender_proc = await sender
        sender = asyncio.create_task(sender_proc.communicate())
        during = []
        cpu_before = time.process_time()
        flood_started = time.perf_counter()
        while not sender.done():
            during.append(await timed_filter(app, "web-00" if len(during) % 2 else ""))
            await pilot.pause(0.2)
        began, sent_seconds = (float(x) for x in sender.result()[0].decode().split())
        while absorbed < total and time.perf_counter() - flood_started < seconds * 4:
            await pilot.pause(0.05)
        cpu_seconds = time.process_time() - cpu_before
        absorbed_seconds = last_absorbed - began  # from the first append to the last event folded and drawn
        say(f"events appended: {total:,} at {total / sent_seconds:,.0f} events/s")
        absorbed_rate = absorbed / absorbed_seconds
        say(f"events absorbed by the pods view: {absorbed:,} in {absorbed_seconds:.2f} s "
            f"({absorbed_rate:,.0f} events/s), the last {(last_absorbed - began - sent_seconds) * 1000:.0f} ms "
            f"after the last append")
        SUMMARY.append(f"events absorbed: {absorbed_rate:,.0f} events/s ({rate:,} events/s offered)")
        # CPU time does not grow when other work shares the machine, unlike the wall-clock figures
        say(f"console CPU during the flood: {cpu_seconds:.2f} s, {cpu_seconds / max(absorbed, 1) * 1e6:.0f} µs "
            f"an event (reading, folding, drawing and the redraws measured)")
        SUMMARY.append(f"console CPU: {cpu_seconds / max(absorbed, 1) * 1e6:.0f} µs an event")
        if during:
            median = statistics.median(during)
            say(f"filter redraw during the flood: median {median * 1000:.0f} ms, "
                f"max {max(during) * 1000:.0f} ms ({len(during)} redraws) "
                f"{versus(median * 1000, GOAL_REDRAW * 1000, 'ms')}")
            SUMMARY.append(f"redraw during the flood: median {median * 1000:.0f} ms, max {max(during) * 1000:.0f} ms")


def run(args: argparse.Namespace, tmp: Path) -> None:
    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"python: {platform.python_implementation()} {platform.python_version()}")
    say(f"nats-server: {nats_version()}")
    say(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews the figures)")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    SUMMARY.append(f"machine: {cpu_model()} x {os.cpu_count()} cores, {mib(ram_kib())} RAM, "
                   f"Python {platform.python_version()}")
    say()
    say(f"== the console over {args.pods:,} pods")
    nats = start_nats(tmp)
    database_url = start_database(tmp)
    from dockyard.eventlog import EventLog

    async def streams():
        log = await EventLog.connect(nats.url)
        await log.ensure_streams()
        await log.close()

    asyncio.run(streams())
    say(f"pods written to the read model: {args.pods:,} in {fill_read_model(database_url, args.pods):.2f} s")
    api = start_api(nats.url, database_url, tmp)
    CLEANUP.append(lambda: (api.terminate(), api.wait(10)))
    asyncio.run(drive(nats.url, database_url, args.pods, args.rate, args.seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(*asyncio.run(flood(args.flood, args.count, args.rate)))
        return 0
    return run_guarded(run, args, "dy-bc-", SUMMARY)


if __name__ == "__main__":
    sys.exit(main())
