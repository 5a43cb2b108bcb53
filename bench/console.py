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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dockyard.servers import NatsServer, PostgresServer, free_port  # noqa: E402


def say(text: str = "") -> None:
    print(text, flush=True)


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


async def timed_filter(app, pilot, text: str) -> float:
    started = time.perf_counter()
    app.apply_filter(text)
    await pilot.pause()
    return time.perf_counter() - started


async def flood(nats_url: str, count: int, rate: int) -> float:
    """Append PodStatusChanged events for the bench's pods at `rate` a second; the seconds it took."""
    from dockyard.eventlog import Append, EventLog, subject_for
    from dockyard.schemas.events import PodStatusChanged
    from dockyard.schemas.manifests import PodStatus

    log = await EventLog.connect(nats_url, name="bench-console-flood")
    window = max(1, rate // 10)
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
    return time.perf_counter() - started


async def drive(nats_url: str, database_url: str, pods: int, rate: int, seconds: float) -> None:
    import functools

    from dockyard.tui.app import ConsoleApp
    from dockyard.tui.client import ConsoleClient

    started = time.perf_counter()
    app = ConsoleApp(client_factory=functools.partial(ConsoleClient.connect, nats_url, database_url))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.table.row_count == 0:
            await pilot.pause(0.02)
        say(f"first view (first page drawn): {time.perf_counter() - started:.2f} s")
        while not app.loaded.is_set():
            await pilot.pause(0.02)
        say(f"all {len(app.stores['Pod'].objects):,} pods listed and the view redrawn: "
            f"{time.perf_counter() - started:.2f} s")
        say(f"table rows built: {app.table.row_count} (one page)")

        texts = ("web-0123", "", "-l app=app7", "", "99$", "")
        redraws = [await timed_filter(app, pilot, text) for text in texts]
        for text, took in zip(texts, redraws):
            say(f"  filter {text or '(cleared)'!r}: {took * 1000:.0f} ms")
        say(f"key press to redrawn filtered view: median {statistics.median(redraws) * 1000:.0f} ms, "
            f"max {max(redraws) * 1000:.0f} ms")
        started_sort = time.perf_counter()
        app.action_sort()
        await pilot.pause()
        say(f"sort by a column over {pods:,} pods: {(time.perf_counter() - started_sort) * 1000:.0f} ms")

        absorbed = 0
        original = app.absorb

        def counting(batch):
            nonlocal absorbed
            absorbed += len(batch)
            original(batch)

        app.absorb = counting
        total = int(rate * seconds)
        # the sender is a process of its own, so its work does not count against the console's loop
        sender = asyncio.create_task(asyncio.create_subprocess_exec(
            sys.executable, __file__, "--flood", nats_url, "--count", str(total), "--rate", str(rate),
            stdout=asyncio.subprocess.PIPE))
        sender_proc = await sender
        sender = asyncio.create_task(sender_proc.communicate())
        during = []
        flood_started = time.perf_counter()
        while not sender.done():
            during.append(await timed_filter(app, pilot, "web-00" if len(during) % 2 else ""))
            await pilot.pause(0.2)
        sent_seconds = float(sender.result()[0].decode().strip() or "nan")
        while absorbed < total and time.perf_counter() - flood_started < seconds * 4:
            await pilot.pause(0.05)
        absorbed_seconds = time.perf_counter() - flood_started
        say(f"events appended: {total:,} at {total / sent_seconds:,.0f} events/s")
        say(f"events absorbed by the pods view: {absorbed:,} in {absorbed_seconds:.2f} s "
            f"({absorbed / absorbed_seconds:,.0f} events/s)")
        if during:
            say(f"filter redraw during the flood: median {statistics.median(during) * 1000:.0f} ms, "
                f"max {max(during) * 1000:.0f} ms ({len(during)} redraws)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(asyncio.run(flood(args.flood, args.count, args.rate)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="dy-bc-"))
    nats = NatsServer(tmp / "nats")
    pg = PostgresServer(tmp / "pg", fast_unsafe=True)
    api = None
    try:
        nats.start()
        pg.start()
        from dockyard.db import migrate
        from dockyard.eventlog import EventLog

        database_url = pg.url("dockyard")
        migrate(database_url)

        async def streams():
            log = await EventLog.connect(nats.url)
            await log.ensure_streams()
            await log.close()

        asyncio.run(streams())
        say(f"pods written to the read model: {args.pods:,} in {fill_read_model(database_url, args.pods):.2f} s")
        api = start_api(nats.url, database_url, tmp)
        asyncio.run(drive(nats.url, database_url, args.pods, args.rate, args.seconds))
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        pg.stop()
        nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
