"""Held images in the past, on real NATS and PostgreSQL: `get nodes --at`, `history node`, `diff`, `-w`, snapshots."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time

import msgspec
import yaml
from sqlalchemy import create_engine, text

from dockyard.db import async_engine
from dockyard.eventlog import Append, subject_for
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported, NodeRegistered, NodeStatusChanged
from dockyard.schemas.manifests import ContainerImage
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.timetravel import objects_at
from tests.integration.test_cli import dockyard, ok
from tests.integration.test_projector import wait_for_position
from tests.integration.test_timetravel import now, pause
from tests.polling import eventually

_replace = msgspec.structs.replace

NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)


def registered(name: str) -> Append:
    return Append(subject=subject_for("node", "", name),
                  event=NodeRegistered(node=node_manifest(name, capacity("4", "8Gi", 110))))


def reported(name: str, images) -> Append:
    return Append(subject=subject_for("nodeimages", "", name), event=NodeImagesReported(node_name=name, images=images))


def shown_images(env, name: str) -> list[str] | None:
    """The images `get node` shows now (from the read model); None while it has no such node yet."""
    result = dockyard(env, "get", "nodes", name, "-o", "json")
    return image_names(json.loads(result.stdout)) if result.returncode == 0 else None


def image_names(node: dict) -> list[str]:
    return [name for image in node["status"].get("images", []) for name in image["names"]]


def nodes_yaml(env, *args: str) -> list[dict]:
    document = yaml.safe_load(ok(dockyard(env, "get", "nodes", *args, "-o", "yaml")))
    return document["items"] if document.get("kind") == "List" else [document]


async def test_get_nodes_at_a_time_shows_the_images_reported_by_then(stack_env, eventlog):
    assert all(isinstance(r, int) for r in await eventlog.append_many([registered("n1"), reported("n1", NGINX)]))
    pause()
    then = now()
    pause()
    (last,) = await eventlog.append_many([reported("n1", REDIS)])

    past = nodes_yaml(stack_env, "--at", then)
    assert [n["metadata"]["name"] for n in past] == ["n1"] and image_names(past[0]) == ["docker.io/library/nginx:1.27"]
    assert image_names(nodes_yaml(stack_env, "n1", "--at", then)[0]) == ["docker.io/library/nginx:1.27"]
    assert image_names(nodes_yaml(stack_env, "n1", "--at-seq", str(last))[0]) == ["docker.io/library/redis:7"]
    assert image_names(nodes_yaml(stack_env, "--at", now())[0]) == ["docker.io/library/redis:7"]

    async def shown_now():  # the present comes from the read model: the projector catches up
        return shown_images(stack_env, "n1") == ["docker.io/library/redis:7"]

    await eventually(shown_now, what="the nodes read model to show the last report")

    entries = json.loads(ok(dockyard(stack_env, "history", "node", "n1", "-o", "json")))
    assert [e["type"] for e in entries] == ["node.registered.v1", "node.images_reported.v1",
                                            "node.images_reported.v1"]
    assert "nginx" in entries[1]["detail"] and "redis" in entries[2]["detail"]
    assert entries[2]["seq"] == last

    changes = json.loads(ok(dockyard(stack_env, "diff", "nodes", "--from", then, "-o", "json")))["changes"]
    assert [(c["change"], c["name"]) for c in changes] == [("changed", "n1")]
    assert {f["path"] for f in changes[0]["fields"]} == {"status.images[0].names", "status.images[0].sizeBytes"}
    described = ok(dockyard(stack_env, "describe", "node", "n1", "--at", then))
    assert "node.images_reported.v1" in described and "redis" not in described


class Watcher:
    """`dockyard get nodes -w -o json` in the background, its printed objects read with a deadline."""

    def __init__(self, env):
        self.process = subprocess.Popen([sys.executable, "-m", "dockyard", "get", "nodes", "-w", "-o", "json"],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def next_object(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n}\n" not in self.buffer:  # printed with an indent: an object ends with "}" alone on a line
            left = deadline - time.monotonic()
            assert left > 0 and self.process.poll() is None, self.buffer
            if self.selector.select(min(left, 1.0)):
                self.buffer += self.process.stdout.read1()
        document, self.buffer = self.buffer.split(b"\n}\n", 1)
        return json.loads(document + b"\n}")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.selector.close()


async def test_watching_a_node_prints_it_again_when_it_reports_images(stack_env, eventlog):
    assert all(isinstance(r, int) for r in await eventlog.append_many([registered("n1"), reported("n1", NGINX)]))

    async def projected():
        return shown_images(stack_env, "n1") == ["docker.io/library/nginx:1.27"]

    # Listed from the read model at a position past the report: the watch follows from there.
    await eventually(projected, what="the nodes read model to show the report")
    watcher = Watcher(stack_env)
    try:
        (listed,) = watcher.next_object()["items"]
        assert image_names(listed) == ["docker.io/library/nginx:1.27"]
        status = node_manifest("n1", capacity("4", "8Gi", 110)).status
        await eventlog.append(subject_for("node", "", "n1"), NodeStatusChanged(status=_replace(status, images=REDIS)))
        # A status's copy of the images loses to the report read before the watch began.
        assert image_names(watcher.next_object()) == ["docker.io/library/nginx:1.27"]
        await eventlog.append(subject_for("nodeimages", "", "n1"), NodeImagesReported(node_name="n1", images=REDIS))
        changed = watcher.next_object()
        assert changed["metadata"]["name"] == "n1" and image_names(changed) == ["docker.io/library/redis:7"]
    finally:
        watcher.stop()


def node_churn() -> list[Append]:
    """Nodes registering, reporting, changing status, leaving and coming back; reports before registrations too."""
    status = node_manifest("n1", capacity("4", "8Gi", 110)).status
    return [
        reported("n2", REDIS), registered("n1"), reported("n1", NGINX),
        Append(subject=subject_for("node", "", "n1"), event=NodeStatusChanged(status=_replace(status, images=REDIS))),
        registered("n2"), registered("n3"),
        Append(subject=subject_for("node", "", "n3"), event=NodeStatusChanged(status=_replace(status, images=NGINX))),
        Append(subject=subject_for("node", "", "n1"), event=NodeDeregistered()),
        reported("n3", ()), reported("n1", REDIS), registered("n1"),
        Append(subject=subject_for("node", "", "n2"), event=NodeStatusChanged(status=status)),
        reported("n2", NGINX + REDIS), reported("n4", NGINX), registered("n4"),
    ]


async def test_a_nodes_snapshot_gives_the_same_images_as_the_log_alone(eventlog, services, database_url):
    services("projector", "--snapshot-every", "3")
    appends = node_churn()
    for start in range(0, len(appends), 2):  # several batches, so several snapshots
        assert all(isinstance(r, int) for r in await eventlog.append_many(appends[start:start + 2]))
        wait_for_position(database_url, "nodes", await eventlog.last_stream_seq())
    last = await eventlog.last_stream_seq()

    engine = create_engine(database_url)
    with engine.connect() as conn:
        positions = [p for (p,) in conn.execute(text("SELECT DISTINCT position FROM snapshots WHERE kind = 'Node'"
                                                     " ORDER BY position"))]
    engine.dispose()
    assert len(positions) >= 3, positions

    engine_ = async_engine(database_url, pool_size=1)
    try:
        for seq in range(0, last + 1):
            assert await objects_at(eventlog, "Node", seq, "", engine_) == await objects_at(eventlog, "Node", seq), seq
        images = {name: obj.status.images for (_, name), obj in (await objects_at(eventlog, "Node", last)).items()}
        assert images == {"n1": REDIS, "n2": NGINX + REDIS, "n3": (), "n4": NGINX}
    finally:
        await engine_.dispose()
