"""Image references: one reading of `[host[:port]/]repo[:tag][@digest]`, and the canonical name nodes report (pure)."""

from __future__ import annotations

import msgspec

DEFAULT_REGISTRY = "docker.io"  # where an unqualified reference is pulled from, as Docker reads it
OFFICIAL_NAMESPACE = "library"  # Docker Hub's namespace for one-word repositories (`busybox`)


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


def canonical_repository(ref: ImageRef) -> str:
    """`registry/repository` with Docker's defaults: `busybox` is `docker.io/library/busybox`."""
    registry = ref.registry or DEFAULT_REGISTRY
    repository = ref.repository
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"{OFFICIAL_NAMESPACE}/{repository}"
    return f"{registry}/{repository}"


def canonical_name(image: str) -> str:
    """One spelling per image, as a runc node reports it: `busybox:1.36` is `docker.io/library/busybox:1.36`.

    A digest names the content whatever the tag, so `repo:tag@digest` is `repo@digest` (the name a
    node reports for every image it holds). Something that is not a reference stays as written.
    """
    try:
        ref = parse_reference(image)
    except ValueError:
        return image
    repository = canonical_repository(ref)
    return f"{repository}@{ref.digest}" if ref.digest else f"{repository}:{ref.tag}"
