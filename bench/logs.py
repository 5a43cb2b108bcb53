"""`dockyard logs` on a busy DY_LOGS stream: `--tail` of one container instance among many lines.

    .venv/bin/python bench/logs.py [--lines 100000] [--rounds 5]

Starts nats-server in a temporary directory, records a pod whose container restarted once, and
publishes N lines to each of three subjects, interleaved: its current run, its previous run, and a
deleted namesake's run (3 x N lines). Prints, one figure a line: the machine; the publish rate; then
the time of `--tail 10` (current and `--previous`; median of the rounds), of the whole current run
(what reading to the tail cost when every line had to be read and skipped), and of a follower's first
line with `-f --tail 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.eventlog's machine helpers; `dockyard` comes from the install

import msgspec  # noqa: E402

from bench.eventlog import cpu_model, mib, nats_version, ram_kib, run_guarded, say, start_nats  # noqa: E402
from dockyard.eventlog import EventLog, logs_subject, subject_for  # noqa: E402
from dockyard.schemas.events import PodCreated, PodStatusChanged  # noqa: E402
from dockyard.manifests import validate  # noqa: E402
from dockyard.schemas.manifests import ContainerStatus, PodStatus  # noqa: E402
from dockyard.services.node_agent.logs import LogPublisher, print_logs  # noqa: E402

CHUNK = 1000
POD, UID = "busy", "uid-current"
SUMMARY: list[str] = []


def report(line: str) -> None:
    say(line)
    SUMMARY.append(line)


def busy_pod():
    pod = validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": "default"},
                             "spec": {"containers": [{"name": "main", "command": ["true"]}]}})
    return msgspec.structs.replace(pod, metadata=msgspec.structs.replace(pod.metadata, uid=UID))


async def publish_lines(log: EventLog, lines: int) -> float:
    """3 x `lines` lines, interleaved by chunk; the seconds it took."""
    publisher = LogPublisher(log)
    started = time.perf_counter()
    for first in range(0, lines, CHUNK):
        for uid, instance in ((UID, 1), (UID, 0), ("uid-deleted", 0)):
            chunk = [f"{uid} run {instance} line {n}".encode() for n in range(first, min(first + CHUNK, lines))]
            if not await publisher.publish(logs_subject("default", POD, uid, "main", instance), "stdout", chunk):
                raise RuntimeError("lines not acknowledged")
    return time.perf_counter() - started


async def timed_read(log: EventLog, rounds: int, **options) -> tuple[float, int]:
    """Median seconds of `print_logs` with `options`, and the lines it printed."""
    times, printed = [], 0
    for _ in range(rounds):
        out = io.StringIO()
        started = time.perf_counter()
        await print_logs(log, "default", POD, out=out, **options)
        times.append(time.perf_counter() - started)
        printed = len(out.getvalue().splitlines())
    return statistics.median(times), printed


async def first_followed_line(log: EventLog) -> float:
    out = io.StringIO()
    started = time.perf_counter()
    follower = asyncio.create_task(print_logs(log, "default", POD, follow=True, tail=10, out=out))
    try:
        while not out.getvalue():
            await asyncio.sleep(0.001)
        return time.perf_counter() - started
    finally:
        follower.cancel()
        try:
            await follower
        except asyncio.CancelledError:
            pass


async def measure(url: str, lines: int, rounds: int) -> None:
    log = await EventLog.connect(url)
    try:
        await log.ensure_streams()
        subject = subject_for("pod", "default", POD)
        await log.append(subject, PodCreated(pod=busy_pod()))
        status = PodStatus(phase="Running", container_statuses=(ContainerStatus(name="main", restart_count=1),))
        await log.append(subject, PodStatusChanged(status=status))
        seconds = await publish_lines(log, lines)
        report(f"published: {3 * lines:,} lines in {seconds:,.1f} s ({3 * lines / seconds:,.0f} lines/s)")
        reads = (("--tail 10", rounds, {"tail": 10}), ("--previous --tail 10", rounds, {"tail": 10, "previous": True}),
                 ("whole current run", 1, {}))  # once: it takes seconds
        for label, times, options in reads:
            median, printed = await timed_read(log, times, **options)
            report(f"{label}: {median * 1000:,.1f} ms ({printed:,} lines printed)")
        report(f"-f --tail 10, first line: {await first_followed_line(log) * 1000:,.1f} ms")
    finally:
        await log.close()


def run(args: argparse.Namespace, tmp: Path) -> None:
    say(f"machine: {cpu_model()}, {os.cpu_count()} cores, {mib(ram_kib())} RAM, Python {platform.python_version()}, "
        f"nats-server {nats_version()}")
    say(f"lines: {args.lines:,} per run, 3 runs interleaved; {args.rounds} rounds per read")
    server = start_nats(tmp)
    asyncio.run(measure(server.url, args.lines, args.rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per container run")
    parser.add_argument("--rounds", type=int, default=5)
    return run_guarded(run, parser.parse_args(), "dy-bench-logs-", SUMMARY)


if __name__ == "__main__":
    sys.exit(main())
