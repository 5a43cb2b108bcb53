"""The SDK's subscriptions against a real nats-server: typed, resumable, dead-lettering."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockyard.client import ApiClient
from dockyard.eventlog import DEAD_LETTER_STREAM, H_DEAD_REASON, H_DEAD_SEQ, Append, subject_for
from dockyard.schemas.events import DeploymentStatusChanged, PodCreated, PodScheduled
from dockyard.schemas.manifests import DeploymentStatus
from dockyard.subscribe import DEFAULT_BATCH
from tests.builders import make_pod

SUBSCRIBER = """
import asyncio, sys
from dockyard.client import ApiClient
from dockyard.eventlog import EventLog

async def main(url, out):
    client = ApiClient(await EventLog.connect(url))
    with open(out, "a") as seen:
        async for event in client.events("pod.*", durable="billing", deliver="all", ack_wait=2.0):
            seen.write(f"{event.seq} {event.type}\\n")
            seen.flush()
            await asyncio.sleep(0.002)  # billing takes a moment: the kill lands mid-stream

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def append_all(log, appends: list[Append]) -> list[int]:
    seqs = []
    for start in range(0, len(appends), 1000):
        results = await log.append_many(appends[start:start + 1000])
        assert all(isinstance(r, int) for r in results), results[:3]
        seqs.extend(results)
    return seqs


class Subscriber:
    """The SUBSCRIBER script as a separate process, killable with SIGKILL."""

    def __init__(self, tmp_path: Path, url: str):
        self.script = tmp_path / "subscriber.py"
        self.script.write_text(SUBSCRIBER)
        self.seen = tmp_path / "seen.txt"
        self.url = url
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(self.script), self.url, str(self.seen)])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def lines(self) -> list[tuple[int, str]]:
        if not self.seen.exists():
            return []
        return [(int(seq), kind) for seq, kind in (line.split() for line in self.seen.read_text().splitlines())]

    async def wait_for(self, condition, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.lines()):
            assert self.proc is not None and self.proc.poll() is None, "the subscriber died"
            assert time.monotonic() < deadline, f"subscriber saw {len(self.lines())} events"
            await asyncio.sleep(0.05)


def mixed_events(start: int, count: int) -> list[Append]:
    """Pods created then scheduled, with a deployment's event between them (which pod.* does not ask for)."""
    appends = []
    for i in range(start, start + count):
        subject = subject_for("pod", "default", f"p{i}")
        appends.append(Append(subject=subject, event=PodCreated(pod=make_pod(f"p{i}"))))
        appends.append(Append(subject=subject_for("deployment", "default", "web"),
                              event=DeploymentStatusChanged(status=DeploymentStatus(replicas=i))))
        appends.append(Append(subject=subject, event=PodScheduled(node_name=f"n{i % 3}")))
    return appends


def pod_seqs(appends: list[Append], seqs: list[int]) -> set[int]:
    return {seq for append, seq in zip(appends, seqs) if append.subject.startswith("dy.evt.pod.")}


async def test_a_killed_subscriber_resumes_without_loss_or_gap(eventlog, nats_server, tmp_path):
    first = mixed_events(0, 400)
    expected = pod_seqs(first, await append_all(eventlog, first))
    subscriber = Subscriber(tmp_path, nats_server.url)
    subscriber.start()
    try:
        await subscriber.wait_for(lambda lines: len(lines) >= 300)
        subscriber.kill()
        before_kill = subscriber.lines()
        assert len(before_kill) < len(expected), "the kill should land mid-stream"
        later = mixed_events(400, 200)  # appended while it is down
        expected |= pod_seqs(later, await append_all(eventlog, later))

        subscriber.start()
        await subscriber.wait_for(lambda lines: {seq for seq, _ in lines} >= expected)
    finally:
        subscriber.kill()
    lines = subscriber.lines()
    seen = [seq for seq, _ in lines]
    assert set(seen) == expected  # nothing lost, nothing it did not ask for
    assert all(kind.startswith("pod.") for _, kind in lines)
    # It resumed where it left off: only what was in hand at the kill came twice.
    assert len(seen) - len(expected) <= DEFAULT_BATCH + 1


async def test_typed_events_are_acknowledged_when_the_loop_asks_for_the_next(eventlog):
    client = ApiClient(eventlog)
    appends = mixed_events(0, 5)
    seqs = await append_all(eventlog, appends)
    scheduled = [seq for seq, a in zip(seqs, appends) if isinstance(a.event, PodScheduled)]
    first_run = []
    async with client.events("pod.scheduled.*", durable="explainer", deliver="all") as events:
        async for event in events:
            first_run.append(event)
            if len(first_run) == 3:
                break  # the third is in hand, not acknowledged
    assert all(isinstance(e.event, PodScheduled) for e in first_run)
    assert [e.seq for e in first_run] == scheduled[:3]

    second_run = []
    # Opened again with another ack_wait: the durable consumer is updated in place, keeping its position.
    async with client.events("pod.scheduled.*", durable="explainer", deliver="all", ack_wait=30.0) as events:
        async for event in events:
            second_run.append(event.seq)
            if len(second_run) == 3:
                break
    assert second_run == scheduled[2:5]
    info = await eventlog.js.consumer_info("DY_EVENTS", "explainer")
    assert info.config.ack_wait == 30.0


async def test_a_failing_handlers_events_are_dead_lettered_while_later_events_flow(eventlog):
    client = ApiClient(eventlog)
    poison = subject_for("pod", "default", "p3")
    calls: list[tuple[str, int]] = []

    async def bill(event) -> None:
        calls.append((event.subject, event.seq))
        if event.subject == poison:
            raise RuntimeError("no price for p3")

    stop = asyncio.Event()
    task = asyncio.create_task(client.subscribe("pod.*", durable="billing", handler=bill, max_attempts=3,
                                                backoff=lambda attempt: 0.3, stop=stop, deliver="all"))
    appends = [Append(subject=subject_for("pod", "default", f"p{i}"), event=PodCreated(pod=make_pod(f"p{i}")))
               for i in range(10)]
    seqs = await append_all(eventlog, appends)
    try:
        deadline = time.monotonic() + 30
        while (await eventlog.js.stream_info(DEAD_LETTER_STREAM)).state.messages < 1:
            assert time.monotonic() < deadline, f"nothing dead-lettered; calls {calls}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    poisoned = [i for i, (subject, _) in enumerate(calls) if subject == poison]
    assert len(poisoned) == 3  # three attempts, then given up
    later = [i for i, (subject, _) in enumerate(calls) if subject == subject_for("pod", "default", "p9")]
    assert later and later[0] < poisoned[-1], "p9 must not wait for p3's retries"
    assert {seq for _, seq in calls} == set(seqs)

    dead = await eventlog.js.get_msg(DEAD_LETTER_STREAM, seq=1)
    assert dead.headers[H_DEAD_SEQ] == str(seqs[3])
    assert "RuntimeError: no price for p3 (attempt 3 of 3)" in dead.headers[H_DEAD_REASON]
    assert dead.subject == "dy.dlq.billing"


async def test_an_unknown_starting_point_is_refused(eventlog):
    with pytest.raises(ValueError, match="deliver"):
        async for _ in ApiClient(eventlog).events("pod.*", durable="x", deliver="sometimes"):
            pass
