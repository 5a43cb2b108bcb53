"""Image locality end to end: hollow nodes report the images they pulled, and the scheduler sends pods there."""

from __future__ import annotations


from dockyard.client import ApiClient
from dockyard.eventlog import subject_for
from dockyard.schemas.events import PodScheduled
from dockyard.services.node_agent.hollow import simulated_size
from dockyard.state import fold
from tests.builders import pod_manifest
from tests.polling import eventually


def big_image() -> str:
    """A reference the hollow driver sizes near its largest, so holding it outweighs the other scores."""
    return next(ref for i in range(10_000) if simulated_size(ref := f"reg:5000/big{i}:1.0") >= 480 * 2**20)


def pod(name: str, image: str, **spec) -> dict:
    manifest = pod_manifest(name, **spec)
    manifest["spec"]["containers"][0].update(image=image, resources={"requests": {"cpu": "10m", "memory": "16Mi"}})
    return manifest


async def current(eventlog, kind: str, name: str, namespace: str = ""):
    return fold(await eventlog.read_aggregate(subject_for(kind, namespace, name)))


async def held_by(eventlog, node: str):
    """What `node` last reported holding, on its own `nodeimages` subject."""
    reports = await eventlog.read_aggregate(subject_for("nodeimages", "", node))
    return reports[-1].event.images if reports else ()


async def test_pods_go_to_the_node_that_holds_their_image(stack_env, services, eventlog, nats_server):
    services("scheduler")
    services("hollow-nodes", "--count", "4", "--heartbeat-interval", "0.5", "--start-delay", "0.1",
             "--images-interval", "1")
    image = big_image()
    client = await ApiClient.connect(nats_server.url)
    try:
        await client.apply(pod("seed", image, nodeName="hollow-2"))  # bound by hand: hollow-2 pulls the image

        async def reported():
            return any(image in i.names for i in await held_by(eventlog, "hollow-2"))

        await eventually(reported, what="hollow-2 to report the image")
        for other in ("hollow-0", "hollow-1", "hollow-3"):
            assert await held_by(eventlog, other) == ()

        names = [f"app-{i}" for i in range(3)]
        for name in names:
            await client.apply(pod(name, image))

        async def placed():
            pods = [await current(eventlog, "pod", name, "default") for name in names]
            return [p.spec.node_name for p in pods] if all(p and p.spec.node_name for p in pods) else None

        assert await eventually(placed, what="the pods to be scheduled") == ["hollow-2"] * 3
        scheduled = [r.event for r in await eventlog.read_aggregate(subject_for("pod", "default", names[0]))
                     if isinstance(r.event, PodScheduled)]
        best = scheduled[-1].candidates[0]
        assert best.node == "hollow-2" and best.plugins["ImageLocality"] > 0  # the score that decided it
    finally:
        await client.close()
