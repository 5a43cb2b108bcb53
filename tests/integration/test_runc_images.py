"""The node's image cache against a real registry: pull by digest, pull policies, credentials, GC."""

from __future__ import annotations

import base64
import json

import pytest

from dockyard.services.node_agent.images import (
    ERR_IMAGE_NEVER_PULL,
    ERR_IMAGE_PULL,
    ImageCache,
    ImageError,
    RegistryAccess,
)
from tests.registry_fixtures import registry_factory  # noqa: F401
from tests.runc_fixtures import busybox_images  # noqa: F401


@pytest.fixture
def registry(registry_factory, busybox_images):  # noqa: F811
    server = registry_factory()
    busybox_images.push("1.0", server, "busybox:1.0")
    busybox_images.push("2.0", server, "busybox:2.0")
    return server


def cache_for(tmp_path, registry, **options) -> ImageCache:
    return ImageCache(tmp_path / "cache", RegistryAccess(insecure=frozenset({registry.address})), **options)


async def test_pulls_by_digest_into_one_store_and_reports_what_it_holds(tmp_path, registry):
    cache = cache_for(tmp_path, registry)
    first = await cache.ensure(f"{registry.address}/busybox:1.0")
    second = await cache.ensure(f"{registry.address}/busybox:2.0")
    assert first != second and cache.has(first) and cache.has(second)
    # The two share their layer: one copy of it in the store.
    layers = {layer["digest"] for digest in (first, second) for layer in cache.manifest(digest)["layers"]}
    assert len(layers) == 1
    assert cache.image_config(second)["config"]["Env"][-1] == "VERSION=2"
    held = {image.names[0]: image for image in cache.held_images()}
    assert set(held) == {f"{registry.address}/busybox@{first}", f"{registry.address}/busybox@{second}"}
    assert f"{registry.address}/busybox:1.0" in held[f"{registry.address}/busybox@{first}"].names
    assert all(image.size_bytes > 500_000 for image in held.values())  # busybox is in there
    assert await cache.ensure(f"{registry.address}/busybox@{first}") == first


async def test_pull_policies(tmp_path, registry, busybox_images):  # noqa: F811
    cache = cache_for(tmp_path, registry)
    image = f"{registry.address}/busybox:1.0"
    with pytest.raises(ImageError) as never:
        await cache.ensure(image, "Never")
    assert never.value.reason == ERR_IMAGE_NEVER_PULL
    digest = await cache.ensure(image, "IfNotPresent")
    assert await cache.ensure(image, "Never") == digest

    busybox_images.push("2.0", registry, "busybox:1.0")  # the tag moves
    assert await cache.ensure(image, "IfNotPresent") == digest  # what is here is used
    moved = await cache.ensure(image, "Always")
    assert moved != digest and cache.has(moved)
    with pytest.raises(ImageError) as bad:
        await cache.ensure(image, "Sometimes")
    assert "imagePullPolicy" in str(bad.value)


async def test_a_missing_image_and_a_registry_asking_for_credentials(tmp_path, registry_factory,  # noqa: F811
                                                                     busybox_images):  # noqa: F811
    locked = registry_factory(users={"ann": "s3cret"})
    import subprocess

    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds=ann:s3cret",
                    f"oci:{busybox_images.layout}:1.0", f"docker://{locked.address}/private/busybox:1.0"],
                   check=True, capture_output=True, timeout=60)
    anonymous = cache_for(tmp_path / "a", locked)
    with pytest.raises(ImageError) as refused:
        await anonymous.ensure(f"{locked.address}/private/busybox:1.0")
    assert refused.value.reason == ERR_IMAGE_PULL
    with pytest.raises(ImageError):
        await anonymous.ensure(f"{locked.address}/private/nothing:1.0")

    access = RegistryAccess(credentials={locked.address: "ann:s3cret"}, insecure=frozenset({locked.address}))
    cache = ImageCache(tmp_path / "b", access)
    assert cache.has(await cache.ensure(f"{locked.address}/private/busybox:1.0"))

    auth = tmp_path / "auth.json"  # as `docker login` writes it
    auth.write_text(json.dumps({"auths": {locked.address: {"auth": base64.b64encode(b"ann:s3cret").decode()}}}))
    from_file = ImageCache(tmp_path / "c", RegistryAccess(auth_file=str(auth), insecure=frozenset({locked.address})))
    assert from_file.has(await from_file.ensure(f"{locked.address}/private/busybox:1.0"))


async def test_gc_removes_unused_images_oldest_first_above_the_budget(tmp_path, registry):
    cache = cache_for(tmp_path, registry, budget_bytes=0)
    old = await cache.ensure(f"{registry.address}/busybox:1.0")
    new = await cache.ensure(f"{registry.address}/busybox:2.0")
    assert await cache.collect_garbage(in_use={new}) == [old]
    assert not cache.has(old) and cache.has(new)
    kept = cache.manifest(new)
    blobs = {p.name for p in (cache.blobs / "sha256").iterdir()}
    assert {kept["config"]["digest"][7:], kept["layers"][0]["digest"][7:], new[7:]} <= blobs
    assert old[7:] not in blobs
    assert await cache.collect_garbage(in_use=set()) == [new]
    assert list((cache.blobs / "sha256").iterdir()) == []
