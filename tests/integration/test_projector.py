"""The projector against real NATS and PostgreSQL: exactly-once through a SIGKILL, rebuild and swap."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import msgspec
import pytest
from sqlalchemy import create_engine, text

from dockyard.eventlog import Append, kind_filter, parse_subject, subject_for
from dockyard.schemas.events import (
    CommandRecorded,
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentStatusChanged,
    ObjectRef,
    PodCreated,
    PodScheduled,
    PodStatusChanged,
)
from dockyard.schemas.manifests import DeploymentStatus, PodStatus
from dockyard.services.projector.admin import rebuild
from dockyard.state import evolve
from tests.builders import make_deployment, make_pod

PODS = 1500


def workload() -> list[Append]:
    """Creates, schedules, status changes, deletions and command records, interleaved."""
    appends: list[Append] = []
    for i in range(PODS):
        pod = subject_for("pod", "default", f"p{i}")
        appends.append(Append(subject=pod, event=PodCreated(pod=make_pod(f"p{i}"))))
        appends.append(Append(subject=pod, event=PodScheduled(node_name=f"n{i % 7}")))
        appends.append(Append(subject=pod, event=PodStatusChanged(status=PodStatus(phase="Running"))))
        appends.append(Append(subject=subject_for("command", "", f"c{i}"), event=CommandRecorded(
            command_id=f"c{i}", verb="apply", object=ObjectRef(kind="Pod", namespace="default", name=f"p{i}"),
            actor="t", result="created", summary="created", time="2026-11-26T00:00:00Z")))
    for i in range(0, PODS, 10):
        appends.append(Append(subject=subject_for("pod", "default", f"p{i}"), event=PodStatusChanged(
            status=PodStatus(phase="Succeeded"))))
    for i in range(50):
        deployment = subject_for("deployment", "prod", f"d{i}")
        appends.append(Append(subject=deployment, event=DeploymentCreated(deployment=make_deployment(f"d{i}", "prod"))))
        appends.append(Append(subject=deployment, event=DeploymentStatusChanged(status=DeploymentStatus(replicas=i))))
        if i % 5 == 0:
            appends.append(Append(subject=deployment, event=DeploymentDeleted()))
    return appends


async def append_all(log, appends, window: int = 2000) -> None:
    for start in range(0, len(appends), window):
        results = await log.append_many(appends[start:start + window])
        assert all(isinstance(r, int) for r in results)


async def replay(log, kind: str) -> dict[tuple[str, str], object]:
    state: dict[tuple[str, str], object] = {}
    async for record in log.read(kind_filter(kind)):
        key = parse_subject(record.subject)[1:]
        state[key] = evolve(state.get(key), record)
    return {key: obj for key, obj in state.items() if obj is not None}


def checksum(rows) -> str:
    digest = hashlib.sha256()
    for row in sorted(msgspec.json.encode(row, order="sorted") for row in rows):
        digest.update(row)
    return digest.hexdigest()


def table_rows(url: str, table: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT namespace, name, resource_version, object::text FROM {table}")).all()
    engine.dispose()
    return [(ns, name, rv, msgspec.json.decode(obj)) for ns, name, rv, obj in rows]


def expected_rows(state) -> list[tuple]:
    return [(ns, name, int(obj.metadata.resource_version), msgspec.to_builtins(obj)) for (ns, name), obj in state.items()]


def position(url: str, name: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text("SELECT position FROM projection_checkpoints WHERE name = :n"), {"n": name}).scalar()
    engine.dispose()
    return value or 0


def wait_for_position(url: str, name: str, target: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while position(url, name) < target:
        assert time.monotonic() < deadline, f"{name} stuck at {position(url, name)} < {target}"
        time.sleep(0.05)


def count(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    engine.dispose()
    return value


async def test_sigkill_mid_stream_applies_every_event_exactly_once(eventlog, services, database_url):
    appends = workload()
    projector = services("projector")
    await append_all(eventlog, appends)
    last = await eventlog.last_stream_seq()

    kills = 0
    for _ in range(3):  # kill it repeatedly while it is part-way through
        while position(database_url, "pods") < (kills + 1) * 800:
            await asyncio.sleep(0.005)
        projector.kill()
        kills += 1
        projector = services("projector")

    pod_last = max(i for i, a in enumerate(appends, start=1) if a.subject.startswith("dy.evt.pod."))
    wait_for_position(database_url, "pods", pod_last)
    wait_for_position(database_url, "commands", max(
        i for i, a in enumerate(appends, start=1) if a.subject.startswith("dy.evt.command.")))
    wait_for_position(database_url, "deployments", last)

    pods, deployments = await replay(eventlog, "pod"), await replay(eventlog, "deployment")
    assert count(database_url, "pods") == len(pods) == PODS
    assert checksum(table_rows(database_url, "pods")) == checksum(expected_rows(pods))
    assert count(database_url, "deployments") == len(deployments) == 40
    assert checksum(table_rows(database_url, "deployments")) == checksum(expected_rows(deployments))
    assert count(database_url, "commands") == PODS


async def test_rebuild_swaps_in_a_fresh_table_while_the_live_one_keeps_answering(
    eventlog, services, database_url, nats_server
):
    services("projector")
    await append_all(eventlog, workload())
    last = await eventlog.last_stream_seq()
    wait_for_position(database_url, "deployments", last)
    before = checksum(table_rows(database_url, "pods"))
    engine = create_engine(database_url)
    with engine.begin() as conn:  # vandalise the live table: the rebuild must restore it
        conn.execute(text("DELETE FROM pods WHERE name LIKE 'p1%'"))
    assert checksum(table_rows(database_url, "pods")) != before

    stop = asyncio.Event()

    async def keep_querying() -> int:
        answered = 0
        while not stop.is_set():
            await asyncio.to_thread(count, database_url, "pods")
            answered += 1
        return answered

    queries = asyncio.create_task(keep_querying())
    writer = asyncio.create_task(append_all(eventlog, [
        Append(subject=subject_for("pod", "late", f"x{i}"), event=PodCreated(pod=make_pod(f"x{i}", "late")))
        for i in range(300)
    ], window=50))
    assert await rebuild(nats_server.url, database_url, "pods") == 0
    await writer
    stop.set()
    assert await queries > 0
    wait_for_position(database_url, "pods", await eventlog.last_stream_seq())

    pods = await replay(eventlog, "pod")
    assert len(pods) == PODS + 300
    assert checksum(table_rows(database_url, "pods")) == checksum(expected_rows(pods))
    engine.dispose()
