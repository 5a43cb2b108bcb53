"""Held images as their own aggregate, against real NATS and PostgreSQL: a report never refuses a binding,
the scheduler binds a stream of pods without a conflict while nodes report, and the nodes read model shows them."""

from __future__ import annotations

import asyncio
import urllib.request

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from dockyard.db import async_engine
from dockyard.eventlog import Append, ConcurrencyConflict, Metadata, subject_for
from dockyard.schemas.events import (
    NodeDeregistered,
    NodeImagesReported,
    NodeRegistered,
    NodeStatusChanged,
    PodBinding,
    PodCreated,
    PodsBound,
)
from dockyard.schemas.manifests import ContainerImage, Node
from dockyard.services.node_agent.held_images import ImageReporter
from dockyard.services.node_agent.hollow import HollowDriver
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.services.projector.admin import rebuild, status_rows
from dockyard.view import ClusterView
from tests.builders import make_pod
from tests.integration.test_cli import dockyard, ok
from tests.integration.test_projector import wait_for_position
from tests.polling import eventually

_replace = msgspec.structs.replace

NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)


def pod_with_image(name: str, image: str, node: str = ""):
    pod = make_pod(name)
    containers = tuple(_replace(c, image=image) for c in pod.spec.containers)
    return _replace(pod, spec=_replace(pod.spec, containers=containers, node_name=node))


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(exposition) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


async def test_a_binding_read_before_an_image_report_still_lands(eventlog):
    """The race the old shape lost, made to happen: read the node, a report lands, then bind."""
    node = node_manifest("n1", capacity("4", "8Gi", 110))
    subject = subject_for("node", "", "n1")
    await eventlog.append(subject, NodeRegistered(node=node), expected_seq=0)
    view, stop = ClusterView(), asyncio.Event()
    following = asyncio.create_task(view.follow(eventlog, stop))
    try:
        await asyncio.wait_for(view.caught_up.wait(), 30)
        read_at = view.node_seq["n1"]  # what the scheduler's decision expects

        driver = HollowDriver()
        driver.worker_for(pod_with_image("seed", "nginx:1.27", "n1"), lambda: None)
        reporter = ImageReporter(eventlog, view, ("n1",), driver.held_images_on, Metadata(actor="test"))
        await reporter.report()
        (report,) = await eventlog.read_aggregate(subject_for("nodeimages", "", "n1"))
        assert report.event.images == driver.held_images_on("n1")

        binding = PodBinding(namespace="default", name="p", uid="u1", cpu_millis=100, memory_bytes=1 << 20)
        bound = await eventlog.append(subject, PodsBound(pods=(binding,)), expected_seq=read_at)
        assert bound > report.seq

        # The shape it replaces: a status append in between refuses the next binding read before it.
        stale = await eventlog.append(subject, NodeStatusChanged(status=_replace(node.status, images=NGINX)))
        with pytest.raises(ConcurrencyConflict):
            await eventlog.append(subject, PodsBound(pods=(binding,)), expected_seq=bound)

        async def read_back():
            return view.position >= stale

        await eventually(read_back, what="the view to read the status")
        assert view.nodes["n1"].status.images == report.event.images  # the report wins over the status's copy
    finally:
        stop.set()
        await following


async def test_the_scheduler_binds_a_stream_of_pods_without_a_conflict_while_nodes_report(services, eventlog):
    scheduler = services("scheduler")
    services("hollow-nodes", "--count", "4", "--heartbeat-interval", "0.5", "--start-delay", "0.05",
             "--images-interval", "0.2")
    waves, per_wave = 8, 25
    for wave in range(waves):  # every pod a new image: every node's held set changes as pods start
        results = await eventlog.append_many([
            Append(subject=subject_for("pod", "default", name), expected_seq=0,
                   event=PodCreated(pod=pod_with_image(name, f"reg:5000/app{wave}-{i}:1")))
            for i in range(per_wave) for name in [f"w{wave}-{i}"]])
        assert all(isinstance(r, int) for r in results)
        total = (wave + 1) * per_wave

        async def scheduled(total=total):
            return metric(scheduler.port, "dockyard_scheduler_decisions_total", result="scheduled") >= total

        await eventually(scheduled, what=f"wave {wave} to be bound")

    async def reported():
        held = [await eventlog.read_aggregate(subject_for("nodeimages", "", f"hollow-{i}")) for i in range(4)]
        return sum(len(records) for records in held) >= 4 and held

    reports = await eventually(reported, what="the nodes to report what they pulled")
    assert all(isinstance(r.event, NodeImagesReported) for records in reports for r in records)
    # Reports land on their own subjects: no binding of the scheduler's was refused, none decided twice.
    assert metric(scheduler.port, "dockyard_append_conflicts_total") == 0
    assert metric(scheduler.port, "dockyard_scheduler_decisions_total", result="error") == 0
    assert metric(scheduler.port, "dockyard_scheduler_decisions_total", result="scheduled") == waves * per_wave


def node_rows(url: str) -> dict[str, Node]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, object::text FROM nodes")).all()
    engine.dispose()
    return {name: msgspec.json.decode(obj, type=Node) for name, obj in rows}


async def test_the_nodes_read_model_joins_each_nodes_last_report(eventlog, stack_env, database_url, nats_server):
    n1, n2, n3 = (subject_for("node", "", n) for n in ("n1", "n2", "n3"))
    images = {n: subject_for("nodeimages", "", n) for n in ("n1", "n2", "n3")}
    node = node_manifest("n1", capacity("4", "8Gi", 110))
    history = [
        Append(subject=images["n1"], event=NodeImagesReported(node_name="n1", images=REDIS)),  # before it registers
        Append(subject=n1, event=NodeRegistered(node=node)),
        Append(subject=n2, event=NodeRegistered(node=node_manifest("n2", capacity("4", "8Gi", 110)))),
        Append(subject=n2, event=NodeStatusChanged(status=_replace(node.status, images=NGINX))),  # an older log
        Append(subject=images["n1"], event=NodeImagesReported(node_name="n1", images=NGINX)),
        Append(subject=n1, event=NodeStatusChanged(status=_replace(node.status, images=REDIS))),  # a stale copy
        Append(subject=images["n3"], event=NodeImagesReported(node_name="n3", images=REDIS)),
        Append(subject=n3, event=NodeRegistered(node=node_manifest("n3", capacity("4", "8Gi", 110)))),
        Append(subject=n3, event=NodeDeregistered()),
    ]
    for append in history:  # one at a time: the order is the test
        await eventlog.append(append.subject, append.event)
    wait_for_position(database_url, "nodes", await eventlog.last_stream_seq())

    expected = {"n1": NGINX, "n2": NGINX}
    assert {name: n.status.images for name, n in node_rows(database_url).items()} == expected
    shown = ok(dockyard(stack_env, "get", "node", "n1", "-o", "yaml"))
    assert "docker.io/library/nginx:1.27" in shown and "docker.io/library/redis:7" not in shown

    await eventlog.append(n3, NodeRegistered(node=node_manifest("n3", capacity("4", "8Gi", 110))))
    wait_for_position(database_url, "nodes", await eventlog.last_stream_seq())
    expected["n3"] = ()  # its deregistration forgot its report, as the views forget it: its agent reports anew
    assert {name: n.status.images for name, n in node_rows(database_url).items()} == expected

    before = node_rows(database_url)
    assert await rebuild(nats_server.url, database_url, "nodes") == 0  # reads both subjects from sequence 1
    assert node_rows(database_url) == before
    engine = async_engine(database_url, pool_size=1)
    try:
        lag = {row[0]: row[3] for row in await status_rows(eventlog, engine)}
    finally:
        await engine.dispose()
    assert lag["nodes"] == "0"  # counted over both subjects
