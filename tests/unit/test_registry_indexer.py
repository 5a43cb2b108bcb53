"""The registry indexer's layers without NATS: parsing and checking content, the client against a lying
registry, auth, pagination, and the events an observation calls for."""

from __future__ import annotations

import json

import pytest

from dockyard.cli import CliError
from dockyard.cli_images import parse_ref
from dockyard.schemas.events import ImageDeleted, ImageIndexed, ImagePlatform, ImageRejected, ImageTagMoved
from dockyard.services.registry_indexer.content import OCI_INDEX, Garbage, check_digest, sha256_digest
from dockyard.services.registry_indexer.distribution import Registry, Resolved, Unreachable
from dockyard.services.registry_indexer.pinning import IMAGE_NOT_FOUND, ImageRef, TagDigests, pin_image
from dockyard.services.registry_indexer.index import (
    RegistryIndex,
    decode_token,
    encode_token,
    image_subject,
)
from tests.registry_fixtures import fake_registry  # noqa: F401 - fixture

REPO = "team/app"


def make_resolved(digest: str = "sha256:" + "1" * 64, arch: str = "amd64") -> Resolved:
    platform = ImagePlatform(digest=digest, os="linux", architecture=arch, layers=1, size=10)
    return Resolved(digest=digest, media_type="application/vnd.oci.image.manifest.v1+json", size=300,
                    platforms=(platform,))


# ---------------------------------------------------------------- subjects


@pytest.mark.parametrize("name", ["team/app", "a.b_c-d/e__f.g", "x_2Ey", "registry.example.com:5000"],
                         ids=["slash", "dots-underscores", "escape-lookalike", "host-port"])
def test_repository_tokens_round_trip_and_make_valid_subjects(name):
    assert decode_token(encode_token(name)) == name
    subject = image_subject("127.0.0.1:5000", name)
    tokens = subject.split(".")
    assert len(tokens) == 5 and not any(c in subject for c in "*> ")


# ---------------------------------------------------------------- events on change only


def test_observations_emit_events_only_when_something_changed():
    index = RegistryIndex("reg:5000")
    first, second = make_resolved("sha256:" + "1" * 64), make_resolved("sha256:" + "2" * 64)

    indexed = index.observe_tag(REPO, "v1", first)
    assert isinstance(indexed, ImageIndexed) and indexed.digest == first.digest
    index.record([indexed])
    assert index.observe_tag(REPO, "v1", first) is None

    moved = index.observe_tag(REPO, "v1", second)
    assert isinstance(moved, ImageTagMoved) and moved.previous_digest == first.digest
    index.record([moved])

    rejected = index.observe_tag(REPO, "v1", "digest mismatch")
    assert isinstance(rejected, ImageRejected)
    index.record([rejected])
    assert index.observe_tag(REPO, "v1", "digest mismatch") is None
    assert isinstance(index.observe_tag(REPO, "v1", first), ImageIndexed)

    deleted = index.observe_tag(REPO, "v1", None)
    assert isinstance(deleted, ImageDeleted)
    index.record([deleted])
    assert index.observe_tag(REPO, "v1", None) is None and index.repositories() == set()


def test_reachability_changes_once_each_way():
    index = RegistryIndex("reg:5000")
    assert index.observe_registry(True) is None
    down = index.observe_registry(False, "refused")
    assert down.type_name() == "registry.unreachable.v1"
    index.record([down])
    assert index.observe_registry(False, "refused again") is None
    assert index.observe_registry(True).type_name() == "registry.recovered.v1"


# ---------------------------------------------------------------- content


def test_digests_are_checked_against_the_content():
    body = b'{"schemaVersion":2}'
    assert check_digest(body, sha256_digest(body)) == sha256_digest(body)
    with pytest.raises(Garbage, match="digest mismatch"):
        check_digest(body, "sha256:" + "0" * 64)


# ---------------------------------------------------------------- the client against a lying registry


async def resolve(fake, tag: str, **options):
    registry = Registry(fake.url, insecure=True, **options)
    try:
        return await registry.resolve(REPO, tag)
    finally:
        await registry.close()


GARBAGE = {
    "truncated manifest": (lambda fake: fake.manifest(REPO, "bad", b'{"schemaVersion": 2, "config": {"dig'),
                           "not JSON"),
    "digest mismatch": (lambda fake: fake.manifest(REPO, "bad", b'{"schemaVersion":2,"layers":[]}',
                                                   digest="sha256:" + "0" * 64), "digest mismatch"),
    "html instead of json": (lambda fake: fake.manifest(REPO, "bad", b"<html><body>Welcome!</body></html>",
                                                        "text/html"), "not JSON"),
    "unknown media type": (lambda fake: fake.manifest(REPO, "bad", b'{"schemaVersion":1,"fsLayers":[]}',
                                                      "application/vnd.docker.distribution.manifest.v1+json"),
                           "unsupported manifest media type"),
}


@pytest.mark.parametrize("build, message", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_is_a_problem_of_the_tag_not_a_crash(fake_registry, build, message):
    fake = fake_registry()
    build(fake)
    with pytest.raises(Garbage, match=message):
        await resolve(fake, "bad")


async def test_an_index_that_lists_itself_is_refused_without_recursing(fake_registry):
    fake = fake_registry()
    # An index's digest is a hash of its own bytes, so one that truly lists itself cannot be built; a
    # registry can still serve one under a digest it names: the indexer must refuse, not loop.
    body_template = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                     "manifests": [{"mediaType": OCI_INDEX, "digest": "sha256:" + "7" * 64, "size": 1}]}
    body = json.dumps(body_template).encode()
    fake.manifest(REPO, "loop", body, OCI_INDEX)
    fake.manifest(REPO, "sha256:" + "7" * 64, body, OCI_INDEX, digest="sha256:" + "7" * 64)
    with pytest.raises(Garbage, match="nested index|lists itself|digest mismatch"):
        await resolve(fake, "loop")
    assert len(fake.requests) < 5


async def test_a_self_listing_index_by_its_own_digest(fake_registry):
    from dockyard.services.registry_indexer.content import index_entries

    own = "sha256:" + "5" * 64
    with pytest.raises(Garbage, match="lists itself"):
        index_entries({"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "digest": own, "size": 1}]}, own)


async def test_an_index_resolves_to_one_platform_per_entry(fake_registry):
    fake = fake_registry()
    amd = fake.image(REPO, "amd", "amd64")
    arm = fake.image(REPO, "arm", "arm64", cmd="ash")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1,
         "platform": {"os": "linux", "architecture": a}} for d, a in ((amd, "amd64"), (arm, "arm64"))]}).encode()
    fake.manifest(REPO, "multi", body, OCI_INDEX)
    resolved = await resolve(fake, "multi")
    assert resolved.media_type == OCI_INDEX and resolved.digest == sha256_digest(body)
    assert [(p.architecture, p.cmd, p.layers, p.size) for p in resolved.platforms] == [
        ("amd64", ("sh",), 1, 1234), ("arm64", ("ash",), 1, 1234)]


async def test_a_config_whose_digest_does_not_match_is_garbage(fake_registry):
    fake = fake_registry()
    fake.image(REPO, "v1")
    config_path = next(p for p in fake.routes if "/blobs/" in p)
    status, headers, _ = fake.routes[config_path]
    fake.routes[config_path] = (status, headers, b'{"os":"linux","architecture":"evil"}')
    with pytest.raises(Garbage, match="digest mismatch"):
        await resolve(fake, "v1")


async def test_a_server_error_or_a_dead_registry_is_unreachable_not_garbage(fake_registry):
    fake = fake_registry()
    fake.routes[f"/v2/{REPO}/manifests/v1"] = (503, {}, b"busy")
    with pytest.raises(Unreachable):
        await resolve(fake, "v1")
    registry = Registry("http://127.0.0.1:1", insecure=True)
    with pytest.raises(Unreachable):
        await registry.ping()
    await registry.close()


async def test_tags_follow_link_pagination_through_a_10000_tag_repository(fake_registry):
    fake = fake_registry()
    names = [f"t{i:05d}" for i in range(10_000)]
    for page in range(10):
        chunk = names[page * 1000:(page + 1) * 1000]
        path = f"/v2/{REPO}/tags/list?n=1000" + (f"&last={names[page * 1000 - 1]}" if page else "")
        headers = {"Content-Type": "application/json"}
        if page < 9:
            headers["Link"] = f'</v2/{REPO}/tags/list?n=1000&last={chunk[-1]}>; rel="next"'
        fake.routes[path] = (200, headers, json.dumps({"name": REPO, "tags": chunk}).encode())
    registry = Registry(fake.url, insecure=True)
    try:
        assert await registry.tags(REPO) == names
    finally:
        await registry.close()


# ---------------------------------------------------------------- auth


async def test_the_bearer_token_flow_with_basic_credentials(fake_registry):
    fake = fake_registry(bearer=True, basic=("robot", "pw"))
    digest = fake.image(REPO, "v1")
    assert (await resolve(fake, "v1", username="robot", password="pw")).digest == digest
    assert any(path.startswith("/token?") and "service=fake" in path for path in fake.requests)
    with pytest.raises(Unreachable, match="401"):
        await resolve(fake, "v1", username="robot", password="wrong")


async def test_basic_auth(fake_registry):
    fake = fake_registry(basic=("robot", "pw"))
    digest = fake.image(REPO, "v1")
    assert (await resolve(fake, "v1", username="robot", password="pw")).digest == digest


# ---------------------------------------------------------------- the CLI's references


@pytest.mark.parametrize("text, expected", [
    ("team/app:v1", ImageRef("team/app", "v1")),
    ("team/app", ImageRef("team/app", "latest")),
    ("localhost:5000/team/app:v2", ImageRef("team/app", "v2", registry="localhost:5000")),
    ("team/app@sha256:abc", ImageRef("team/app", "", "sha256:abc")),
], ids=["tag", "default-tag", "host-port", "digest"])
def test_image_references(text, expected):
    assert parse_ref(text) == expected


def test_an_empty_reference_is_refused():
    with pytest.raises(CliError):
        parse_ref("@sha256:abc")


# ---------------------------------------------------------------- pinning, for the controller


def test_a_tag_is_pinned_to_its_digest_and_an_unknown_image_is_image_not_found():
    digests = TagDigests()
    first, second = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    digests.evolve(ImageIndexed(registry="reg:5000", repository=REPO, tag="v1", digest=first, media_type="x"))
    assert pin_image(f"{REPO}:v1", digests).image == f"reg:5000/{REPO}@{first}"
    assert pin_image(f"reg:5000/{REPO}:v1", digests).image == f"reg:5000/{REPO}@{first}"
    assert pin_image(f"{REPO}@{second}", digests).image == f"{REPO}@{second}"

    digests.evolve(ImageTagMoved(registry="reg:5000", repository=REPO, tag="v1", digest=second,
                                 previous_digest=first, media_type="x"))
    assert pin_image(f"{REPO}:v1", digests).image == f"reg:5000/{REPO}@{second}"

    missing = pin_image(f"{REPO}:v9", digests)
    assert missing.reason == IMAGE_NOT_FOUND and missing.image == f"{REPO}:v9" and "v9" in missing.message
    digests.evolve(ImageDeleted(registry="reg:5000", repository=REPO, tag="v1"))
    assert pin_image(f"{REPO}:v1", digests).reason == IMAGE_NOT_FOUND
