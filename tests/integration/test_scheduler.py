"""The scheduler as deployed (a process of its own) against a real nats-server, checked from the log."""

from __future__ import annotations

import asyncio
import collections
import socket
import time

import msgspec
import pytest

from dockyard.eventlog import Append, EventLog, kind_filter, parse_subject, subject_for
from dockyard.schemas.events import (
    NodeRegistered,
    NodeStatusChanged,
    PodCreated,
    PodsBound,
    PodScheduled,
    PodUnschedulable,
)
from dockyard.schemas.manifests import Pod
from dockyard.schemas.quantity import cpu_millis
from dockyard.services.scheduler.explain import explain
from tests.conftest import ServiceProcess
from tests.unit.test_scheduler_plugins import make_node, make_pod, taint
from tests.polling import eventually


@pytest.fixture
def schedulers(nats_server, eventlog, tmp_path):
    """Start scheduler processes against this test's stream (the scheduler needs only NATS)."""
    started: list[ServiceProcess] = []

    def start(*args: str) -> ServiceProcess:
        service = ServiceProcess("scheduler", nats_server.url, "", tmp_path, args)
        service.log_path = tmp_path / f"scheduler-{len(started)}.log"
        started.append(service.start())
        return service

    yield start
    for service in started:
        service.stop()


async def register_node(log: EventLog, name: str, **fields) -> None:
    """A node as its agent registers it: NodeRegistered, then its status (Ready, allocatable)."""
    node = make_node(name, **fields)
    subject = subject_for("node", "", name)
    registered = NodeRegistered(node=msgspec.structs.replace(node, status=type(node.status)()))
    await log.append_batch([Append(subject=subject, event=registered, expected_seq=0),
                            Append(subject=subject, event=NodeStatusChanged(status=node.status))])


async def create_pods(log: EventLog, pods: list[Pod]) -> None:
    appends = [Append(subject=subject_for("pod", p.metadata.namespace, p.metadata.name), event=PodCreated(pod=p),
                      expected_seq=0) for p in pods]
    for start in range(0, len(appends), 1000):
        results = await log.append_many(appends[start:start + 1000])
        assert all(isinstance(r, int) for r in results), results


async def all_records(log: EventLog, kind: str):
    return [r async for r in log.read(kind_filter(kind))]


async def pod_history(log: EventLog, name: str):
    return await log.read_aggregate(subject_for("pod", "default", name))


def last_of(records, kind):
    return next((r.event for r in reversed(records) if isinstance(r.event, kind)), None)


async def test_pending_pods_are_bound_and_explained(eventlog, schedulers):
    for i in range(3):
        await register_node(eventlog, f"n{i}", cpu="2")
    await register_node(eventlog, "gpu", cpu="64", taints=[taint("dedicated", "gpu")])
    schedulers()
    await create_pods(eventlog, [make_pod(f"web-{i}", cpu="500m", deployment="web") for i in range(9)])

    async def bound():
        pods = [r for r in await all_records(eventlog, "pod") if isinstance(r.event, PodScheduled)]
        return pods if len(pods) == 9 else None

    scheduled = await eventually(bound)
    assert scheduled, "not every pod was bound"
    per_node = collections.Counter(r.event.node_name for r in scheduled)
    assert set(per_node) == {"n0", "n1", "n2"} and max(per_node.values()) <= 4
    lines = explain(await pod_history(eventlog, "web-0"))
    assert lines[1].startswith("Scheduled on n")
    assert "Filtered out: 1 by TaintToleration" in lines
    assert "Top candidates:" in lines


async def test_a_pod_that_cannot_fit_waits_with_the_reason_then_goes_to_a_new_node(eventlog, schedulers):
    await register_node(eventlog, "small-0", cpu="1")
    await register_node(eventlog, "small-1", cpu="1")
    await register_node(eventlog, "gpu", cpu="64", taints=[taint("dedicated", "gpu")])
    schedulers()
    await create_pods(eventlog, [make_pod("big", cpu="4")])

    async def reason():
        return last_of(await pod_history(eventlog, "big"), PodUnschedulable)

    unschedulable = await eventually(reason, timeout=30)
    assert unschedulable is not None, "no PodUnschedulable for a pod that fits nowhere"
    assert unschedulable.message == "0/3 nodes fit: 2 insufficient cpu, 1 untolerated taint dedicated=gpu"
    assert explain(await pod_history(eventlog, "big"))[1] == f"Pending: {unschedulable.message}"
    await register_node(eventlog, "small-2", cpu="1")  # wakes it: same answer, more nodes
    await asyncio.sleep(2.0)
    history = await pod_history(eventlog, "big")
    assert last_of(history, PodScheduled) is None
    reasons = [r.event.message for r in history if isinstance(r.event, PodUnschedulable)]
    assert reasons[-1] == "0/4 nodes fit: 3 insufficient cpu, 1 untolerated taint dedicated=gpu"
    assert len(reasons) == len(set(reasons)), "the same reason written twice"

    registered = time.monotonic()
    await register_node(eventlog, "large", cpu="8")

    async def placed():
        return last_of(await pod_history(eventlog, "big"), PodScheduled)

    scheduled = await eventually(placed, timeout=30, interval=0.05)
    assert scheduled is not None and scheduled.node_name == "large"
    # Woken by the node's registration (after at most the first retry's 1 s backoff), not by a periodic retry.
    assert time.monotonic() - registered < 5


async def test_two_schedulers_never_overcommit_a_node_nor_bind_a_pod_twice(eventlog, schedulers):
    nodes, pods, node_cpu, pod_cpu = 200, 2000, "2", "250m"
    fit = nodes * (cpu_millis(node_cpu) // cpu_millis(pod_cpu))  # 1,600 fit; 400 never can
    for start in range(0, nodes, 50):
        await asyncio.gather(*(register_node(eventlog, f"node-{i:03d}", cpu=node_cpu, pods=110)
                               for i in range(start, start + 50)))
    schedulers()
    schedulers()
    for wave in range(0, pods, 100):  # in waves, so both schedulers keep deciding on the same nodes and pods
        await create_pods(eventlog, [make_pod(f"p-{i:04d}", cpu=pod_cpu, memory="64Mi", deployment=f"d{i % 7}")
                                     for i in range(wave, wave + 100)])
        await asyncio.sleep(0.05)

    async def settled():
        records = await all_records(eventlog, "pod")
        scheduled = {r.subject for r in records if isinstance(r.event, PodScheduled)}
        unschedulable = {r.subject for r in records if isinstance(r.event, PodUnschedulable)} - scheduled
        return records if len(scheduled) >= fit and len(unschedulable) >= pods - fit else None

    pod_records = await eventually(settled, timeout=180, interval=1.0)
    assert pod_records, "the schedulers did not place every pod that fits"
    await asyncio.sleep(2.0)  # anything still in flight lands now, and would show below
    pod_records = await all_records(eventlog, "pod")
    node_records = await all_records(eventlog, "node")

    times_scheduled = collections.Counter(r.subject for r in pod_records if isinstance(r.event, PodScheduled))
    assert max(times_scheduled.values()) == 1, "a pod was bound twice"
    assert len(times_scheduled) == fit

    cpu_on = collections.Counter()
    pods_on = collections.Counter()
    bound_to: dict[tuple[str, str], str] = {}
    for record in node_records:
        if isinstance(record.event, PodsBound):
            node = parse_subject(record.subject)[2]
            for binding in record.event.pods:
                assert (binding.namespace, binding.name) not in bound_to, "a pod in two PodsBound"
                bound_to[(binding.namespace, binding.name)] = node
                cpu_on[node] += binding.cpu_millis
                pods_on[node] += 1
    assert max(cpu_on.values()) <= cpu_millis(node_cpu), "a node is over its allocatable cpu"
    assert sum(pods_on.values()) == fit
    for record in pod_records:
        if isinstance(record.event, PodScheduled):
            _, namespace, name = parse_subject(record.subject)
            assert bound_to[(namespace, name)] == record.event.node_name


async def test_with_leader_election_one_scheduler_acts_and_a_standby_takes_over(eventlog, schedulers):
    for i in range(10):
        await register_node(eventlog, f"n{i}", cpu="8")
    first, second = schedulers("--leader-elect"), schedulers("--leader-elect")

    async def bound_by(prefix: str, count: int):
        records = [r for r in await all_records(eventlog, "pod")
                   if isinstance(r.event, PodScheduled) and parse_subject(r.subject)[2].startswith(prefix)]
        return collections.Counter(r.actor for r in records) if len(records) >= count else None

    await create_pods(eventlog, [make_pod(f"a-{i}", cpu="100m") for i in range(100)])
    actors = await eventually(lambda: bound_by("a-", 100), timeout=30)
    assert actors and len(actors) == 1, f"bound by {actors}: one leader expected"
    leader, standby = (first, second) if list(actors) == [actor_of(first)] else (second, first)
    assert list(actors) == [actor_of(leader)]

    leader.stop()  # releases the lease on its way out
    await create_pods(eventlog, [make_pod(f"b-{i}", cpu="100m") for i in range(100)])
    actors = await eventually(lambda: bound_by("b-", 100), timeout=30)
    assert actors and list(actors) == [actor_of(standby)]


def actor_of(scheduler: ServiceProcess) -> str:
    return f"system:scheduler:{socket.gethostname()}-{scheduler.proc.pid}"
