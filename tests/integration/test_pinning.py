"""Tag -> digest pinning end to end: a real registry, the indexer, the controller, the scheduler and hollow nodes."""

from __future__ import annotations


import yaml

from dockyard.client import ApiClient
from dockyard.servers import free_port
from tests.builders import deployment_manifest
from tests.integration.test_cli import dockyard, ok
from tests.integration.test_registry_indexer import of, start_indexer, wait_for_event
from tests.registry_fixtures import registry_factory, test_images  # noqa: F401 - fixtures
from tests.polling import eventually

REPO = "team/app"


def images_of(pods: list[dict]) -> set[str]:
    return {c["image"] for p in pods for c in p["spec"]["containers"]}


async def pods_of(client: ApiClient, deployment: str) -> list[dict]:
    pods, _ = await client.list("Pod", "default", f"app={deployment}")
    return pods


async def running(client: ApiClient, deployment: str, count: int, image: str) -> list[dict] | None:
    """The deployment's pods once there are exactly `count`, all Running `image`."""
    pods = await pods_of(client, deployment)
    done = (len(pods) == count and images_of(pods) == {image}
            and all(p.get("status", {}).get("phase") == "Running" for p in pods))
    return pods if done else None


def progressing(deployment: dict) -> dict:
    conditions = deployment.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Progressing"), {})


async def test_tags_pin_to_digests_and_a_missing_image_waits_as_image_not_found(
        stack_env, services, eventlog, nats_server, registry_factory, test_images):
    webhook = free_port()
    registry = registry_factory(webhook_url=f"http://127.0.0.1:{webhook}/notify")
    test_images.push("v1", registry, f"{REPO}:1.0")
    start_indexer(services, registry, webhook)
    services("controller")
    services("scheduler")
    services("hollow-nodes", "--count", "2", "--heartbeat-interval", "0.5", "--start-delay", "0.1")
    await wait_for_event(eventlog, of("image.indexed.v1", "1.0", REPO))
    first, second = test_images.digest("v1"), test_images.digest("v2")
    pinned = lambda digest: f"{registry.address}/{REPO}@{digest}"  # noqa: E731

    client = await ApiClient.connect(nats_server.url)
    try:
        await client.apply(deployment_manifest("web", replicas=2, image=f"{registry.address}/{REPO}:1.0", cpu="10m"))
        await eventually(lambda: running(client, "web", 2, pinned(first)), what="web on the first digest")

        test_images.push("v2", registry, f"{REPO}:1.0")  # the tag now names another image
        await wait_for_event(eventlog, of("image.tag_moved.v1", "1.0", REPO))
        await client.scale("web", "default", 3)  # a pod of the same revision: the digest it was recorded with
        await eventually(lambda: running(client, "web", 3, pinned(first)), what="a third pod on the first digest")

        await client.rollout("restart", "web", "default")
        await eventually(lambda: running(client, "web", 3, pinned(second)), what="web restarted on the new digest")

        missing = f"{registry.address}/{REPO}:2.0"
        await client.apply(deployment_manifest("api", replicas=1, image=missing, cpu="10m"))

        async def stuck():
            condition = progressing(await client.get("Deployment", "api", "default"))
            return condition if condition.get("reason") == "ImageNotFound" else None

        condition = await eventually(stuck, what="api's ImageNotFound condition")
        assert condition["status"] == "False" and missing in condition["message"]
        assert await pods_of(client, "api") == []
        described = ok(dockyard(stack_env, "describe", "deployment", "api"))
        assert "ImageNotFound" in described
        shown = yaml.safe_load(ok(dockyard(stack_env, "get", "deployment", "api", "-o", "yaml")))
        assert progressing(shown)["reason"] == "ImageNotFound" and missing in progressing(shown)["message"]

        test_images.push("v1", registry, f"{REPO}:2.0")  # indexed through the webhook: the deployment recovers
        await eventually(lambda: running(client, "api", 1, pinned(first)), what="api on the pushed image")

        async def recovered():
            return progressing(await client.get("Deployment", "api", "default")).get("reason") != "ImageNotFound"

        await eventually(recovered, what="api's condition to clear")
    finally:
        await client.close()
