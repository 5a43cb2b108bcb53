"""Image references and tag -> digest pinning from the index, for the controller (pure: no I/O).

The controller can fold image events into a `TagDigests` (it already folds the log) and call
`pin_image` when it records a revision: `repo:tag` becomes `repo@sha256:...`, and an image the
index does not hold is `ImageNotFound` instead of pods that crash-loop on a pull.
"""

from __future__ import annotations

import msgspec

from dockyard.schemas.base import Event
from dockyard.schemas.events import ImageDeleted, ImageIndexed, ImageRejected, ImageTagMoved

IMAGE_NOT_FOUND = "ImageNotFound"


class ImageRef(msgspec.Struct, frozen=True):
    repository: str
    tag: str = ""
    digest: str = ""
    registry: str = ""  # host[:port] when the reference names one


def parse_reference(ref: str) -> ImageRef:
    """`[host[:port]/]repo[:tag][@digest]`; a bare `repo` means `repo:latest`. ValueError if empty."""
    name, _, digest = ref.partition("@")
    colon, slash = name.rfind(":"), name.rfind("/")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    registry = ""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    if not name:
        raise ValueError(f"{ref!r} is not an image reference (REPO:TAG or REPO@DIGEST)")
    return ImageRef(repository=name, tag=tag or ("" if digest else "latest"), digest=digest, registry=registry)


class TagDigests:
    """(registry, repository, tag) -> digest, folded from image events."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, str, str], str] = {}

    def evolve(self, event: Event) -> None:
        if isinstance(event, (ImageIndexed, ImageTagMoved)):
            self.digests[(event.registry, event.repository, event.tag)] = event.digest
        elif isinstance(event, (ImageDeleted, ImageRejected)):
            self.digests.pop((event.registry, event.repository, event.tag), None)

    def digest_of(self, ref: ImageRef) -> str:
        if ref.registry:
            return self.digests.get((ref.registry, ref.repository, ref.tag), "")
        found = {d for (_, repo, tag), d in self.digests.items() if repo == ref.repository and tag == ref.tag}
        return found.pop() if len(found) == 1 else ""  # unqualified and ambiguous: pin nothing


class Pinned(msgspec.Struct, frozen=True):
    image: str  # what the revision should run: `repo@sha256:...`, or the image unchanged
    reason: str = ""  # IMAGE_NOT_FOUND when the index does not hold it
    message: str = ""


def pin_image(image: str, index: TagDigests) -> Pinned:
    """`repo:tag` -> `repo@digest` from the index; a digest reference stays as it is."""
    try:
        ref = parse_reference(image)
    except ValueError as exc:
        return Pinned(image=image, reason=IMAGE_NOT_FOUND, message=str(exc))
    if ref.digest:
        return Pinned(image=image)
    digest = index.digest_of(ref)
    if not digest:
        message = f"image {image} is not in the registry index (repository {ref.repository}, tag {ref.tag})"
        return Pinned(image=image, reason=IMAGE_NOT_FOUND, message=message)
    host = f"{ref.registry}/" if ref.registry else ""
    return Pinned(image=f"{host}{ref.repository}@{digest}")
