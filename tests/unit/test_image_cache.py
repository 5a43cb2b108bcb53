"""The image cache's pure parts: references, pull policies, platform choice, what GC removes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dockyard.services.node_agent.images import (
    ALWAYS,
    ERR_IMAGE_PULL,
    IF_NOT_PRESENT,
    INVALID_IMAGE_NAME,
    CachedImage,
    ImageCache,
    ImageError,
    ImageReference,
    RegistryAccess,
    digest_to_pull,
    effective_pull_policy,
    images_to_collect,
    manifest_for_platform,
    node_platform,
    parse_reference,
    parse_registry_credentials,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("image", "expected"), [
    ("busybox", ImageReference("docker.io", "library/busybox", "latest")),
    ("busybox:1.36", ImageReference("docker.io", "library/busybox", "1.36")),
    ("127.0.0.1:5000/team/app:2.0", ImageReference("127.0.0.1:5000", "team/app", "2.0")),
    ("localhost/app", ImageReference("localhost", "app", "latest")),
    (f"registry.example/app@{DIGEST}", ImageReference("registry.example", "app", "", DIGEST)),
    (f"registry.example/app:1@{DIGEST}", ImageReference("registry.example", "app", "1", DIGEST)),
], ids=["short", "tag", "registry-port", "localhost", "digest", "tag-and-digest"])
def test_references_parse_as_docker_reads_them(image, expected):
    assert parse_reference(image) == expected


@pytest.mark.parametrize(("image", "says"), [
    ("", "empty"), ("App:1", "repository"), ("app:bad tag", "tag"), ("app@sha256:123", "digest"),
], ids=["empty", "uppercase", "tag", "short-digest"])
def test_bad_references_are_refused_naming_the_part(image, says):
    with pytest.raises(ImageError) as error:
        parse_reference(image)
    assert error.value.reason == INVALID_IMAGE_NAME and says in str(error.value)


@pytest.mark.parametrize(("policy", "image", "expected"), [
    ("", "app", ALWAYS), ("", "app:latest", ALWAYS), ("", "app:1", IF_NOT_PRESENT),
    ("", f"app@{DIGEST}", IF_NOT_PRESENT), ("Never", "app", "Never"),
], ids=["no-tag", "latest", "tag", "digest", "explicit"])
def test_the_default_pull_policy_is_kubernetes(policy, image, expected):
    assert effective_pull_policy(policy, parse_reference(image)) == expected


ARM, AMD = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_the_platforms_manifest_is_chosen_from_an_index():
    index = {"manifests": [{"digest": ARM, "platform": {"os": "linux", "architecture": "arm64"}},
                           {"digest": AMD, "platform": {"os": "linux", "architecture": "amd64"}}]}
    assert manifest_for_platform(index, "linux", "amd64") == AMD
    with pytest.raises(ImageError, match="linux/s390x.*linux/amd64, linux/arm64"):
        manifest_for_platform(index, "linux", "s390x")
    assert node_platform("x86_64") == ("linux", "amd64") and node_platform("aarch64") == ("linux", "arm64")


@pytest.mark.parametrize("digest", ["sha256:../../../etc", "sha256:" + "A" * 64, "sha512:" + "a" * 128, "", 7],
                         ids=["path", "uppercase", "other-algorithm", "empty", "not-a-string"])
def test_a_registrys_digest_that_is_not_sha256_hex_is_refused(digest, tmp_path):
    index = {"manifests": [{"digest": digest, "platform": {"os": "linux", "architecture": "amd64"}}]}
    with pytest.raises(ImageError, match="is not sha256: and 64 hex digits") as raised:
        manifest_for_platform(index, "linux", "amd64")
    assert raised.value.reason == ERR_IMAGE_PULL
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageError) as raised:
        cache.layout_of(digest)
    assert raised.value.reason == ERR_IMAGE_PULL
    assert cache.layout_of(DIGEST) == tmp_path / "cache" / "images" / ("a" * 64)


REFERENCE = parse_reference("registry.example/app:1")


@pytest.mark.parametrize("body", [b"[]", b'"index"', b'{"manifests": 3}', b'{"manifests": ["x"]}',
                                  b'{"manifests": [{"platform": {"os": "linux", "architecture": "amd64"}}]}',
                                  b'{"manifests": [{"digest": "x", "platform": "linux"}]}', b"{nope"],
                         ids=["list", "string", "manifests-a-number", "entry-a-string", "entry-without-digest",
                              "platform-a-string", "not-json"])
def test_a_malformed_manifest_from_the_registry_is_an_image_pull_error(body):
    with pytest.raises(ImageError, match="image registry.example/app:1: the registry's manifest is") as raised:
        digest_to_pull(body, REFERENCE, ("linux", "amd64"))
    assert raised.value.reason == ERR_IMAGE_PULL


def test_the_digest_to_pull_is_the_manifests_own_or_the_platforms():
    body = b'{"schemaVersion": 2, "config": {}}'
    assert digest_to_pull(body, REFERENCE, ("linux", "amd64")) == "sha256:" + hashlib.sha256(body).hexdigest()
    index = json.dumps({"manifests": [{"digest": AMD, "platform": {"os": "linux", "architecture": "amd64"}}]})
    assert digest_to_pull(index.encode(), REFERENCE, ("linux", "amd64")) == AMD


def image(digest: str, size: int, last_used: float) -> CachedImage:
    return CachedImage(digest, Path("/nowhere"), size, last_used)


def test_gc_takes_unused_images_oldest_first_until_under_budget():
    images = [image("a", 100, 1.0), image("b", 100, 3.0), image("c", 100, 2.0), image("d", 100, 0.5)]
    assert [i.digest for i in images_to_collect(images, {"d"}, budget_bytes=300)] == ["a"]
    assert [i.digest for i in images_to_collect(images, {"d"}, budget_bytes=100)] == ["a", "c", "b"]
    assert images_to_collect(images, set(), budget_bytes=400) == []
    assert [i.digest for i in images_to_collect(images, {"a", "b", "c", "d"}, budget_bytes=0)] == []


def test_registry_access_flags():
    access = RegistryAccess(credentials=parse_registry_credentials(["reg:5000=ann:pw"]),
                            insecure=frozenset({"reg:5000"}))
    assert access.skopeo_args("reg:5000", "src-") == ["--src-tls-verify=false", "--src-creds=ann:pw"]
    assert access.skopeo_args("other") == []
    with pytest.raises(ValueError, match="--registry-credentials 'reg'"):
        parse_registry_credentials(["reg"])
