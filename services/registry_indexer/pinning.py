"""Tag -> digest pinning from the index, for the controller (pure: no I/O).

The controller folds image events into a `TagDigests` (it already folds the log) and calls
`pin_template` when it records a revision: `repo:tag` becomes `repo@sha256:...`, and an image the
index does not hold is `ImageNotFound` instead of pods that crash-loop on a pull.

Only what the index is responsible for is pinned: a reference naming a registry the index holds,
or an unqualified one whose repository exactly one indexed registry holds. Anything else (an
image from a registry nobody indexes) runs as written, as it did before there was an index.
"""

from __future__ import annotations

import msgspec

from dockyard.image_reference import ImageRef, parse_reference
from dockyard.schemas.base import Event
from dockyard.schemas.events import ImageDeleted, ImageIndexed, ImageRejected, ImageTagMoved
from dockyard.schemas.manifests import PodTemplateSpec

IMAGE_NOT_FOUND = "ImageNotFound"


_IMAGE_EVENTS = (ImageIndexed, ImageTagMoved, ImageDeleted, ImageRejected)


class TagDigests:
    """(registry, repository, tag) -> digest, folded from image events; and which registries hold which repositories."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, str, str], str] = {}
        self.holders: dict[str, set[str]] = {}  # repository -> registries the index has seen it in
        self.registries: set[str] = set()  # every registry the index has seen

    def evolve(self, event: Event) -> None:
        if not isinstance(event, _IMAGE_EVENTS):
            return
        # A repository stays known after its tags go: a deleted tag is ImageNotFound, not "not ours".
        self.holders.setdefault(event.repository, set()).add(event.registry)
        self.registries.add(event.registry)
        key = (event.registry, event.repository, event.tag)
        if isinstance(event, (ImageIndexed, ImageTagMoved)):
            self.digests[key] = event.digest
        else:
            self.digests.pop(key, None)

    def registry_of(self, ref: ImageRef) -> str:
        """The indexed registry responsible for `ref`, or "" when the index has no say over it."""
        if ref.registry:
            return ref.registry if ref.registry in self.registries else ""
        holders = self.holders.get(ref.repository, set())
        return next(iter(holders)) if len(holders) == 1 else ""  # unqualified and ambiguous: no say

    def digest_of(self, registry: str, ref: ImageRef) -> str:
        return self.digests.get((registry, ref.repository, ref.tag), "")


class Pinned(msgspec.Struct, frozen=True):
    image: str  # what the revision should run: `repo@sha256:...`, or the image unchanged
    reason: str = ""  # IMAGE_NOT_FOUND when the index does not hold it
    message: str = ""


def pin_image(image: str, index: TagDigests) -> Pinned:
    """`repo:tag` -> `repo@digest` from the index; a digest reference, or one the index has no say over, stays."""
    try:
        ref = parse_reference(image)
    except ValueError:
        return Pinned(image=image)  # no repository to look up: the index has no say, the runtime reports it
    registry = index.registry_of(ref)
    if ref.digest or not registry:
        return Pinned(image=image)
    digest = index.digest_of(registry, ref)
    if not digest:
        message = f"image {image} is not in registry {registry} (repository {ref.repository}, tag {ref.tag})"
        return Pinned(image=image, reason=IMAGE_NOT_FOUND, message=message)
    # Named in full even when written unqualified: a runtime would read a bare `repo@digest` as Docker Hub's.
    return Pinned(image=f"{registry}/{ref.repository}@{digest}")


def pin_template(template: PodTemplateSpec, index: TagDigests) -> PodTemplateSpec | Pinned:
    """The template with every container's image pinned, or the first image the index does not hold."""
    containers = []
    for container in template.spec.containers:
        pinned = pin_image(container.image, index)
        if pinned.reason:
            return pinned
        containers.append(container if pinned.image == container.image
                          else msgspec.structs.replace(container, image=pinned.image))
    spec = msgspec.structs.replace(template.spec, containers=tuple(containers))
    return msgspec.structs.replace(template, spec=spec)
