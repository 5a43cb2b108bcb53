"""`dockyard logs` picks the pod's current incarnation and container instance, on a real stack (process driver)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time

import msgspec
import pytest
import yaml

from dockyard.eventlog import legacy_logs_subject, logs_subject, subject_for
from dockyard.schemas.events import PodCreated, PodDeleted, PodStatusChanged
from dockyard.schemas.manifests import ContainerStatus, PodStatus
from dockyard.services.node_agent.logs import LogPublisher, print_logs
from tests.builders import make_pod
from tests.integration.test_pods_run import FAST_AGENT, dockyard, ok

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(services, nats_server, database_url, tmp_path):
    """The api, projector, scheduler and one process-driver node; the CLI's environment."""
    services("projector")
    services("api")
    services("scheduler")
    services("node-agent", "--name", "n1", "--state-dir", str(tmp_path / "n1"), *FAST_AGENT)
    return dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)


def pod(name: str, script: str, restart_policy: str = "Always", **env: str) -> dict:
    container = {"name": "main", "command": ["sh", "-c", script],
                 "env": [{"name": key, "value": value} for key, value in env.items()],
                 "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": 1,
                     "containers": [container]}}


async def cli(env, *args: str, stdin: bytes | None = None):
    return await asyncio.to_thread(dockyard, env, *args, stdin=stdin)


async def apply(env, manifest: dict) -> None:
    ok(await cli(env, "apply", "-f", "-", stdin=yaml.safe_dump(manifest).encode()))


async def eventually(check, timeout: float = 60.0, interval: float = 0.3, what: str = "condition"):
    """Poll an async check returning (done, what it saw) until done; fail with what it saw last."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = await check()
        if done:
            return seen
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {seen!r})"
        await asyncio.sleep(interval)


def logs_are(env, name: str, expected: str, *flags: str):
    """A check: `dockyard logs NAME FLAGS` prints exactly `expected`."""
    async def run():
        result = await cli(env, "logs", name, *flags)
        seen = result.stdout.decode() + result.stderr.decode()
        return result.returncode == 0 and seen == expected, seen

    return run


@contextlib.asynccontextmanager
async def following(eventlog, name: str, **options):
    """`dockyard logs -f NAME` run in-process; what it has printed so far."""
    out = io.StringIO()
    follower = asyncio.create_task(print_logs(eventlog, "default", name, follow=True, out=out, **options))
    try:
        yield out
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower  # its consumer gone before the connection closes


def printed(out: io.StringIO, expected: str):
    """A check: a follower has printed exactly `expected` so far."""
    async def check():
        return out.getvalue() == expected, out.getvalue()

    return check


async def test_a_recreated_pod_shows_only_its_own_lines_and_a_deleted_one_its_last(stack):
    await apply(stack, pod("again", "echo first life; exec sleep 1000"))
    await eventually(logs_are(stack, "again", "first life\n"), what="the first pod's line")

    ok(await cli(stack, "delete", "pod", "again"))
    # Deleted: not found, as kubectl says; its last incarnation's lines are kept for --deleted.
    await eventually(logs_are(stack, "again", "first life\n", "--deleted"), what="the deleted pod's line")
    refused = await cli(stack, "logs", "again")
    assert refused.returncode == 1 and refused.stderr.decode() == (
        'error: pods "again" not found; it was deleted, its logs are kept: dockyard logs again --deleted\n')

    await apply(stack, pod("again", "echo second life; exec sleep 1000"))
    # The new pod's line, and never its namesake's above it.
    await eventually(logs_are(stack, "again", "second life\n"), what="only the re-created pod's line")
    assert ok(await cli(stack, "logs", "again", "--tail", "5", "--timestamps")).split(" ", 1)[1] == "second life\n"


async def test_a_restarted_container_shows_its_current_run_and_the_previous_with_p(stack, eventlog, tmp_path):
    gate, ran = tmp_path / "go", tmp_path / "ran"
    # First run: say so, wait for the gate, fail (restartPolicy Always restarts it). Second run: stay up.
    script = ('if [ -f "$RAN" ]; then echo second run; exec sleep 1000; fi; touch "$RAN"; echo first run; '
              'while [ ! -f "$GATE" ]; do sleep 0.1; done; echo last words; exit 1')
    await apply(stack, pod("crash", script, GATE=str(gate), RAN=str(ran)))
    await eventually(logs_are(stack, "crash", "first run\n"), what="the first run's line")
    refused = await cli(stack, "logs", "crash", "-p")
    assert refused.returncode != 0  # no restart yet, so nothing before this run
    assert 'previous terminated container "main" in pod "crash" not found' in refused.stderr.decode()

    async with following(eventlog, "crash") as followed:  # from the first run, on into the second
        await eventually(printed(followed, "first run\n"), what="the follower's first line")
        gate.touch()
        await eventually(logs_are(stack, "crash", "second run\n"), what="the current run's line only")
        await eventually(logs_are(stack, "crash", "first run\nlast words\n", "-p"), what="the previous run")
        await eventually(logs_are(stack, "crash", "last words\n", "--previous", "--tail", "1"),
                         what="the previous run's tail")
        await eventually(printed(followed, "first run\nlast words\nsecond run\n"),
                         what="the follower to reach the second run")
    async with following(eventlog, "crash") as followed:  # from the current run: nothing of the one before
        await eventually(printed(followed, "second run\n"), what="the current run, followed")


async def test_previous_of_a_container_that_never_restarted_is_refused(stack):
    await apply(stack, pod("steady", "echo up; exec sleep 1000"))
    await eventually(logs_are(stack, "steady", "up\n"), what="its line")
    refused = await cli(stack, "logs", "steady", "--previous")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr.decode()
    assert 'previous terminated container "main" in pod "steady" not found' in refused.stderr.decode()


async def test_lines_from_before_uids_show_only_for_a_pod_that_is_gone(eventlog):
    publisher = LogPublisher(eventlog)
    for name in ("gone", "live", "forgotten"):
        assert await publisher.publish(legacy_logs_subject("default", name, "main"), "stdout", [b"old line"])
    pod = make_pod("gone", containers=[{"name": "main", "command": ["true"]}])
    for name, events in (("gone", [PodCreated(pod=pod), PodDeleted()]), ("live", [PodCreated(pod=pod)])):
        for event in events:
            await eventlog.append(subject_for("pod", "default", name), event)

    async def logs_of(name: str, **options) -> str:
        out = io.StringIO()
        assert await print_logs(eventlog, "default", name, out=out, **options) == 0
        return out.getvalue()

    assert await logs_of("gone", deleted=True) == "old line\n"  # deleted, nothing newer: its old lines
    assert await logs_of("forgotten", deleted=True) == "old line\n"  # no history at all: the same
    assert await logs_of("live") == ""  # a live pod's old lines may be a namesake's
    with pytest.raises(ValueError, match='previous terminated container "main" in pod "gone" not found'):
        await logs_of("gone", previous=True, deleted=True)
    with pytest.raises(ValueError, match='pods "gone" not found; it was deleted'):
        await logs_of("gone")
    with pytest.raises(ValueError, match='pods "nowhere" not found'):
        await logs_of("nowhere")


@pytest.mark.parametrize("tail", [0, 1, 7, 100, 150, 1000])
async def test_tail_reads_the_last_lines_of_one_instance_among_others(eventlog, tail):
    pod = make_pod("busy", containers=[{"name": "main", "command": ["true"]}])
    pod = msgspec.structs.replace(pod, metadata=msgspec.structs.replace(pod.metadata, uid="u-2"))
    status = PodStatus(phase="Running", container_statuses=(ContainerStatus(name="main", restart_count=1),))
    subject = subject_for("pod", "default", "busy")
    await eventlog.append(subject, PodCreated(pod=pod))
    await eventlog.append(subject, PodStatusChanged(status=status))
    publisher = LogPublisher(eventlog)
    for chunk in range(0, 150, 10):  # interleaved: its two runs and a namesake's lines
        for uid, instance in (("u-2", 1), ("u-2", 0), ("u-1", 1)):
            lines = [f"{uid} run {instance} line {n}".encode() for n in range(chunk, chunk + 10)]
            assert await publisher.publish(logs_subject("default", "busy", uid, "main", instance), "stdout", lines)

    def last_lines(instance: int) -> str:
        return "".join(f"u-2 run {instance} line {n}\n" for n in range(max(150 - tail, 0), 150))

    for previous, instance in ((False, 1), (True, 0)):
        out = io.StringIO()
        assert await print_logs(eventlog, "default", "busy", tail=tail, previous=previous, out=out) == 0
        assert out.getvalue() == last_lines(instance)
    async with following(eventlog, "busy", tail=tail) as followed:  # nothing more is shipped: a fixed point
        await eventually(printed(followed, last_lines(1)), what="the followed tail")
