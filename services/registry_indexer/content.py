"""What a registry's bytes mean: manifests, indexes and image configs parsed and checked, no I/O."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from dockyard.schemas.events import ImagePlatform

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((*INDEXES, *IMAGE_MANIFESTS))
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the limit Distribution itself puts on a manifest


class Garbage(ValueError):
    """The registry answered something that is not what it claims to be."""


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def check_digest(body: bytes, expected: str) -> str:
    """The body's digest; Garbage if `expected` (a sha256 digest, or '') names other bytes."""
    if expected and not expected.startswith("sha256:"):
        algorithm, _, _ = expected.partition(":")
        if algorithm not in ("sha384", "sha512"):
            raise Garbage(f"unsupported digest algorithm {expected!r}")
        actual = f"{algorithm}:" + hashlib.new(algorithm, body).hexdigest()
    else:
        actual = sha256_digest(body)
    if expected and actual != expected:
        raise Garbage(f"digest mismatch: expected {expected}, content is {actual}")
    return actual


def decode_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        head = body[:40].decode("utf-8", "replace").strip()
        raise Garbage(f"{what} is not JSON ({exc}; starts {head!r})") from None
    if not isinstance(value, dict):
        raise Garbage(f"{what} is not a JSON object")
    return value


def media_type_of(document: dict[str, Any], header: str) -> str:
    media_type = document.get("mediaType") or header.split(";")[0].strip()
    if media_type not in (*IMAGE_MANIFESTS, *INDEXES):
        if "manifests" in document:
            return OCI_INDEX
        if "config" in document and "layers" in document:
            return OCI_MANIFEST
        raise Garbage(f"unsupported manifest media type {media_type!r}")
    return media_type


class Descriptor(msgspec.Struct, frozen=True):
    digest: str
    media_type: str
    size: int
    os: str = ""
    architecture: str = ""
    variant: str = ""


def _descriptor(entry: Any, what: str) -> Descriptor:
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        raise Garbage(f"{what}: a descriptor without a digest")
    platform = entry.get("platform") or {}
    size = entry.get("size", 0)
    return Descriptor(digest=entry["digest"], media_type=str(entry.get("mediaType", "")),
                      size=size if isinstance(size, int) else 0, os=str(platform.get("os", "")),
                      architecture=str(platform.get("architecture", "")), variant=str(platform.get("variant", "")))


def index_entries(document: dict[str, Any], own_digest: str) -> list[Descriptor]:
    """The manifests an index lists; Garbage for one that lists itself or another index."""
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise Garbage("index without a manifests list")
    found = [_descriptor(e, "index") for e in entries]
    for entry in found:
        if entry.digest == own_digest:
            raise Garbage("index lists itself")
        if entry.media_type in INDEXES:
            raise Garbage(f"nested index {entry.digest} is not supported")
    # Attestation manifests (buildx) ride in indexes as platform unknown/unknown: not runnable images.
    return [e for e in found if e.os != "unknown"]


class ImageManifest(msgspec.Struct, frozen=True):
    config: Descriptor
    layers: tuple[Descriptor, ...]


def image_manifest(document: dict[str, Any]) -> ImageManifest:
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise Garbage("image manifest without a layers list")
    return ImageManifest(config=_descriptor(document.get("config"), "config"),
                         layers=tuple(_descriptor(layer, "layer") for layer in layers))


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def platform_of(digest: str, media_type: str, manifest: ImageManifest, config: dict[str, Any],
                hint: Descriptor | None = None) -> ImagePlatform:
    """One platform's summary from its manifest and its image config."""
    run = config.get("config") or {}
    if not isinstance(run, dict):
        run = {}
    labels = run.get("Labels") or {}
    return ImagePlatform(
        digest=digest, media_type=media_type,
        os=str(config.get("os") or (hint.os if hint else "")),
        architecture=str(config.get("architecture") or (hint.architecture if hint else "")),
        variant=str(config.get("variant") or (hint.variant if hint else "")),
        config_digest=manifest.config.digest, layers=len(manifest.layers),
        size=sum(layer.size for layer in manifest.layers),
        env=_strings(run.get("Env")), entrypoint=_strings(run.get("Entrypoint")), cmd=_strings(run.get("Cmd")),
        working_dir=str(run.get("WorkingDir") or ""), user=str(run.get("User") or ""),
        exposed_ports=tuple(sorted(run.get("ExposedPorts") or {})),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        created=str(config.get("created") or ""),
    )
