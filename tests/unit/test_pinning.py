"""Tag -> digest pinning for the controller: which references the index pins, and ImageNotFound."""

from __future__ import annotations

import pytest

from dockyard.schemas.events import ImageDeleted, ImageIndexed, ImageRejected
from dockyard.services.registry_indexer.pinning import IMAGE_NOT_FOUND, Pinned, TagDigests, pin_image, pin_template
from tests.builders import make_deployment

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def index(*entries: tuple[str, str, str, str]) -> TagDigests:
    """(registry, repository, tag, digest) entries; a digest "" records a deleted tag."""
    digests = TagDigests()
    for registry, repository, tag, digest in entries:
        common = {"registry": registry, "repository": repository, "tag": tag}
        digests.evolve(ImageIndexed(**common, digest=digest, media_type="x") if digest else ImageDeleted(**common))
    return digests


ONE = index(("reg:5000", "team/web", "1.0", D1))
TWO = index(("reg:5000", "team/web", "1.0", D1), ("mirror.example", "team/web", "1.0", D2))
GONE = index(("reg:5000", "team/web", "1.0", D1), ("reg:5000", "team/web", "1.0", ""))


@pytest.mark.parametrize("image, digests, pinned, reason", [
    ("reg:5000/team/web:1.0", ONE, f"reg:5000/team/web@{D1}", ""),
    ("team/web:1.0", ONE, f"reg:5000/team/web@{D1}", ""),
    ("reg:5000/team/web:2.0", ONE, "reg:5000/team/web:2.0", IMAGE_NOT_FOUND),
    ("reg:5000/other:1.0", ONE, "reg:5000/other:1.0", IMAGE_NOT_FOUND),
    ("team/web:2.0", ONE, "team/web:2.0", IMAGE_NOT_FOUND),
    ("team/web", ONE, "team/web", IMAGE_NOT_FOUND),
    (f"reg:5000/team/web@{D2}", ONE, f"reg:5000/team/web@{D2}", ""),
    ("docker.io/library/nginx:1.27", ONE, "docker.io/library/nginx:1.27", ""),
    ("nginx:1.27", ONE, "nginx:1.27", ""),
    ("team/web:1.0", TWO, "team/web:1.0", ""),
    ("mirror.example/team/web:1.0", TWO, f"mirror.example/team/web@{D2}", ""),
    ("reg:5000/team/web:1.0", GONE, "reg:5000/team/web:1.0", IMAGE_NOT_FOUND),
    ("team/web:1.0", GONE, "team/web:1.0", IMAGE_NOT_FOUND),
    ("nginx:1.27", TagDigests(), "nginx:1.27", ""),
], ids=["qualified", "unqualified-unambiguous", "missing-tag", "missing-repository", "unqualified-missing-tag",
        "bare-means-latest", "digest-stays", "unindexed-registry", "unindexed-repository", "ambiguous-unpinned",
        "qualified-among-two", "deleted-tag", "deleted-tag-unqualified", "empty-index"])
def test_which_references_are_pinned(image, digests, pinned, reason):
    result = pin_image(image, digests)
    assert (result.image, result.reason) == (pinned, reason)
    if reason:
        assert image in result.message


def test_a_rejected_tag_is_not_pinned():
    digests = index(("reg:5000", "team/web", "1.0", D1))
    digests.evolve(ImageRejected(registry="reg:5000", repository="team/web", tag="1.0", reason="not JSON"))
    assert pin_image("reg:5000/team/web:1.0", digests).reason == IMAGE_NOT_FOUND


def test_a_template_is_pinned_container_by_container_or_names_the_missing_image():
    template = make_deployment(image="reg:5000/team/web:1.0").spec.template
    pinned = pin_template(template, ONE)
    assert [c.image for c in pinned.spec.containers] == [f"reg:5000/team/web@{D1}"]
    assert pinned.metadata == template.metadata

    missing = pin_template(make_deployment(image="reg:5000/team/web:9").spec.template, ONE)
    assert isinstance(missing, Pinned) and missing.reason == IMAGE_NOT_FOUND
    assert "reg:5000/team/web:9" in missing.message

    untouched = make_deployment(image="nginx:1.27").spec.template
    assert pin_template(untouched, ONE) == untouched


def test_an_unqualified_image_is_pinned_with_the_registry_that_holds_it():
    # A bare `app@sha256:...` would be pulled from Docker Hub by a runtime, not from the indexed registry.
    digests = index(("localhost:5000", "app", "v1", D1))
    assert pin_image("app:v1", digests).image == f"localhost:5000/app@{D1}"
