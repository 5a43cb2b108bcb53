"""The in-memory cluster view follows the log: replay, catch-up, then live changes."""

from __future__ import annotations

import asyncio

from dockyard.eventlog import subject_for
from dockyard.schemas.events import NodeRegistered, PodBinding, PodCreated, PodDeleted, PodsBound, PodScheduled
from dockyard.schemas.manifests import Node, NodeSpec, ObjectMeta
from dockyard.view import ClusterView
from tests.builders import make_pod


async def test_view_replays_then_follows(eventlog):
    node = Node(metadata=ObjectMeta(name="n1"), spec=NodeSpec(capacity={"cpu": "4"}))
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node))
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    await eventlog.append(subject_for("node", "", "n1"), PodsBound(pods=(
        PodBinding(namespace="default", name="a", uid="u", cpu_millis=250),)))
    await eventlog.append(subject_for("pod", "default", "a"), PodScheduled(node_name="n1"))

    view, stop, seen = ClusterView(), asyncio.Event(), []

    async def listener(records):
        seen.extend(r.type for r in records)

    task = asyncio.create_task(view.follow(eventlog, stop, listener))
    await asyncio.wait_for(view.caught_up.wait(), 10)
    assert view.pods[("default", "a")].spec.node_name == "n1"
    assert view.bindings["n1"][("default", "a")].cpu_millis == 250
    assert view.node_seq["n1"] == 3 and view.position == 4

    await eventlog.append(subject_for("pod", "default", "a"), PodDeleted())
    for _ in range(200):
        if ("default", "a") not in view.pods:
            break
        await asyncio.sleep(0.01)
    assert ("default", "a") not in view.pods and view.bindings["n1"] == {}
    assert seen[-1] == "pod.deleted.v1"
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_an_empty_log_is_caught_up_at_once(eventlog):
    view, stop = ClusterView(), asyncio.Event()
    task = asyncio.create_task(view.follow(eventlog, stop))
    await asyncio.wait_for(view.caught_up.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
