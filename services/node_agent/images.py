"""The node's image cache: images pulled by digest with skopeo into one content-addressed store, and its GC.

Layout under the cache root:
    blobs/sha256/<hex>          every blob, shared by all images (skopeo's shared blob directory)
    images/<hex>/               one OCI layout per image manifest digest; its `blobs` links to ../../blobs,
                                so umoci can unpack from it; its mtime is when a pod last used it
    tags.json                   reference -> digest, for IfNotPresent and for the names a node reports
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import platform
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.image_reference import DEFAULT_REGISTRY, OFFICIAL_NAMESPACE
from dockyard.schemas.manifests import ContainerImage

log = logging.getLogger(__name__)

REF_NAME = "img"  # the one reference inside each per-image layout
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
PULL_TIMEOUT = 300.0
ALWAYS, IF_NOT_PRESENT, NEVER = "Always", "IfNotPresent", "Never"
PULL_POLICIES = (ALWAYS, IF_NOT_PRESENT, NEVER)

# Container waiting reasons, as kubelet spells them.
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
INVALID_IMAGE_NAME = "InvalidImageName"

_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageError(Exception):
    """An image cannot be had; `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------- pure: references, policies, platforms, GC


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def repo(self) -> str:
        """`registry/repository`, the name images are reported under."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.repo + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def by_digest(self, digest: str) -> str:
        return f"{self.repo}@{digest}"


def parse_reference(image: str) -> ImageReference:
    """`[registry/]repository[:tag][@sha256:...]`, as Docker reads it; raises ImageError(InvalidImageName)."""
    def invalid(why: str) -> ImageError:
        return ImageError(INVALID_IMAGE_NAME, f"image {image!r}: {why}")

    if not image or image != image.strip():
        raise invalid("it is empty or has surrounding spaces")
    rest, _, digest = image.partition("@")
    if digest and not _DIGEST.match(digest):
        raise invalid("the digest must be sha256: and 64 hex digits")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder
    else:
        registry = DEFAULT_REGISTRY
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and not _TAG.match(tag):
        raise invalid(f"tag {tag!r} is not a valid tag")
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"{OFFICIAL_NAMESPACE}/{repository}"
    if not _NAME.match(repository):
        raise invalid(f"repository {repository!r} is not a valid name (lowercase letters, digits, . _ - and /)")
    if not tag and not digest:
        tag = "latest"
    return ImageReference(registry, repository, tag, digest)


def effective_pull_policy(policy: str, reference: ImageReference) -> str:
    """Kubernetes' default: Always for `:latest` (or no tag), IfNotPresent otherwise; raises on a bad value."""
    if policy and policy not in PULL_POLICIES:
        raise ImageError(ERR_IMAGE_PULL, f"imagePullPolicy {policy!r}: must be one of {', '.join(PULL_POLICIES)}")
    if policy:
        return policy
    return ALWAYS if reference.tag == "latest" and not reference.digest else IF_NOT_PRESENT


def node_platform(machine: str | None = None) -> tuple[str, str]:
    """(os, architecture) as OCI spells them, for this machine."""
    machine = (machine or platform.machine()).lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return "linux", arch


def checked_digest(digest: str) -> str:
    """The digest, if it is sha256: and 64 hex digits; raises ImageError(ErrImagePull) otherwise.
    A digest names paths in the cache: one from a registry must not be able to point outside it."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(ERR_IMAGE_PULL, f"digest {digest!r} is not sha256: and 64 hex digits")
    return digest


def manifest_for_platform(index: Mapping, os_: str, arch: str) -> str:
    """The digest of the index's manifest for the node's platform; raises ImageError when there is none."""
    for entry in index.get("manifests", ()):
        plat = entry.get("platform") or {}
        if plat.get("os") == os_ and plat.get("architecture") == arch:
            return checked_digest(entry["digest"])
    offered = sorted(f"{(e.get('platform') or {}).get('os')}/{(e.get('platform') or {}).get('architecture')}"
                     for e in index.get("manifests", ()))
    raise ImageError(ERR_IMAGE_PULL, f"no image for {os_}/{arch} (the index offers {', '.join(offered) or 'none'})")


def digest_to_pull(raw: bytes, reference: ImageReference, platform_: tuple[str, str]) -> str:
    """The digest to pull for the manifest a registry returned (for an index, the platform's manifest);
    raises ImageError(ErrImagePull) for a body that is not a manifest, so a hostile one cannot end the pull loop."""
    try:
        manifest = json.loads(raw)
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            return manifest_for_platform(manifest, *platform_)
    except ValueError:
        raise ImageError(ERR_IMAGE_PULL, f"image {reference}: the registry's manifest is not JSON") from None
    except (AttributeError, KeyError, TypeError) as exc:
        raise ImageError(ERR_IMAGE_PULL, f"image {reference}: the registry's manifest is malformed "
                                         f"({type(exc).__name__}: {exc})") from None
    return reference.digest or "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class CachedImage:
    digest: str
    layout: Path
    size_bytes: int
    last_used: float  # seconds since the epoch
    names: tuple[str, ...] = ()


def images_to_collect(images: Iterable[CachedImage], in_use: set[str], budget_bytes: int) -> list[CachedImage]:
    """The images to delete to get the cache under its budget: unused ones, least recently used first."""
    images = list(images)
    total = sum(i.size_bytes for i in images)
    victims = []
    for image in sorted((i for i in images if i.digest not in in_use), key=lambda i: (i.last_used, i.digest)):
        if total <= budget_bytes:
            break
        victims.append(image)
        total -= image.size_bytes
    return victims


# ---------------------------------------------------------------- the node's registry settings


@dataclass(frozen=True)
class RegistryAccess:
    """Credentials (`host -> user:password`, or a containers-auth.json file such as `docker login` writes)
    and the hosts spoken to over plain HTTP or unverified TLS."""

    credentials: Mapping[str, str] = field(default_factory=dict)
    insecure: frozenset[str] = frozenset()
    auth_file: str = ""

    def skopeo_args(self, registry: str, prefix: str = "") -> list[str]:
        args = [f"--{prefix}authfile={self.auth_file}"] if self.auth_file else []
        if registry in self.insecure or registry.split(":")[0] in self.insecure:
            args.append(f"--{prefix}tls-verify=false")
        creds = self.credentials.get(registry)
        if creds:
            args.append(f"--{prefix}creds={creds}")
        return args


def parse_registry_credentials(values: Iterable[str]) -> dict[str, str]:
    """`host=user:password` each; raises ValueError naming the bad one."""
    credentials = {}
    for value in values:
        host, eq, creds = value.partition("=")
        if not eq or not host or ":" not in creds:
            raise ValueError(f"--registry-credentials {value!r}: expected HOST=USER:PASSWORD")
        credentials[host] = creds
    return credentials


# ---------------------------------------------------------------- the cache


async def _run(*argv: str, timeout: float = PULL_TIMEOUT) -> bytes:
    """Run a tool; its stdout, or ImageError(ErrImagePull) with its stderr."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        raise ImageError(ERR_IMAGE_PULL, f"{argv[0]} {argv[1]} timed out after {timeout:.0f}s") from None
    finally:
        if proc.returncode is None:  # timed out, or the pod went away while pulling
            proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip().splitlines()
        raise ImageError(ERR_IMAGE_PULL, text[-1] if text else f"{argv[0]} failed ({proc.returncode})")
    return out


class ImageCache:
    """Pulls images by digest for the node's platform; verifies them; collects the unused ones over budget."""

    def __init__(self, root: Path, access: RegistryAccess = RegistryAccess(), budget_bytes: int = 10 << 30,
                 platform_: tuple[str, str] | None = None):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.images = self.root / "images"
        self.access = access
        self.budget_bytes = budget_bytes
        self.platform = platform_ or node_platform()
        self._lock = asyncio.Lock()  # one writer of the store at a time: pulls and GC
        self.images.mkdir(parents=True, exist_ok=True)
        (self.blobs / "sha256").mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------- tags

    def _tags(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "tags.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_tags(self, tags: Mapping[str, str]) -> None:
        tmp = self.root / "tags.json.tmp"
        tmp.write_text(json.dumps(dict(tags), sort_keys=True))
        os.replace(tmp, self.root / "tags.json")

    # -------------------------------------------------------- pulling

    def layout_of(self, digest: str) -> Path:
        return self.images / checked_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return (self.layout_of(digest) / "index.json").exists()

    async def ensure(self, image: str, policy: str = "") -> str:
        """The digest of `image` for this node, pulled if the policy asks; raises ImageError."""
        reference = parse_reference(image)
        policy = effective_pull_policy(policy, reference)
        async with self._lock:
            digest = reference.digest or (self._tags().get(str(reference)) if policy != ALWAYS else None)
            if digest and self.has(digest):
                self._touch(digest)
                return digest
            if policy == NEVER:
                raise ImageError(ERR_IMAGE_NEVER_PULL,
                                 f"image {image!r} is not present on this node and imagePullPolicy is Never")
            digest = await self._resolve(reference)
            if not self.has(digest):
                await self._pull(reference, digest)
            self._write_tags({**self._tags(), str(reference): digest})
            self._touch(digest)
            return digest

    async def _resolve(self, reference: ImageReference) -> str:
        """The manifest digest for this platform (an index is looked into)."""
        raw = await _run("skopeo", "inspect", "--raw", "--retry-times", "2",
                         *self.access.skopeo_args(reference.registry), f"docker://{reference}")
        return digest_to_pull(raw, reference, self.platform)

    async def _pull(self, reference: ImageReference, digest: str) -> None:
        """Copy the image by digest (skopeo checks every blob against its digest), then check the manifest."""
        layout = self.layout_of(digest)
        staging = layout.with_name(layout.name + ".pulling")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / "blobs").symlink_to(Path("..") / ".." / "blobs")
        try:
            await _run("skopeo", "copy", "--quiet", "--retry-times", "2",
                       *self.access.skopeo_args(reference.registry, "src-"),
                       "--dest-shared-blob-dir", str(self.blobs), f"docker://{reference.by_digest(digest)}",
                       f"oci:{staging}:{REF_NAME}")
            pulled = self._manifest_descriptor(staging)["digest"]
            if pulled != digest:
                raise ImageError(ERR_IMAGE_PULL, f"image {reference}: pulled manifest {pulled}, wanted {digest}")
            os.replace(staging, layout)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("pulled %s as %s", reference, digest)

    @staticmethod
    def _manifest_descriptor(layout: Path) -> dict:
        index = json.loads((layout / "index.json").read_text())
        return index["manifests"][0]

    def manifest(self, digest: str) -> dict:
        return json.loads((self.blobs / "sha256" / digest.removeprefix("sha256:")).read_bytes())

    def image_config(self, digest: str) -> dict:
        """The image's config blob (Entrypoint, Cmd, Env, WorkingDir, User under "config")."""
        config = self.manifest(digest)["config"]["digest"]
        return json.loads((self.blobs / "sha256" / config.removeprefix("sha256:")).read_bytes())

    def _touch(self, digest: str) -> None:
        os.utime(self.layout_of(digest))

    # -------------------------------------------------------- what the node holds; GC

    def cached(self) -> list[CachedImage]:
        names: dict[str, list[str]] = {}
        for reference, digest in self._tags().items():
            names.setdefault(digest, []).append(reference)
        found = []
        for layout in sorted(self.images.iterdir()):
            if layout.name.endswith(".pulling") or not (layout / "index.json").exists():
                continue
            digest = f"sha256:{layout.name}"
            try:
                manifest = self.manifest(digest)
            except (OSError, ValueError):
                continue
            size = manifest["config"].get("size", 0) + sum(layer.get("size", 0) for layer in manifest.get("layers", ()))
            tagged = sorted(names.get(digest, ()))
            repos = sorted({parse_reference(t).repo for t in tagged})
            by_digest = [f"{r}@{digest}" for r in repos]  # a pull by digest is also a reference: name it once
            found.append(CachedImage(digest, layout, size, layout.stat().st_mtime,
                                     tuple(dict.fromkeys([*by_digest, *tagged]))))
        return found

    def held_images(self) -> tuple[ContainerImage, ...]:
        return tuple(ContainerImage(names=i.names or (i.digest,), size_bytes=i.size_bytes) for i in self.cached())

    async def collect_garbage(self, in_use: set[str] | Callable[[], set[str]]) -> list[str]:
        """Delete unused images, oldest first, until the cache is under budget, then unreferenced blobs.
        A callable `in_use` is asked once the store is ours: then an image a pull has just handed out counts."""
        async with self._lock:
            in_use = in_use() if callable(in_use) else in_use
            victims = images_to_collect(self.cached(), in_use, self.budget_bytes)
            for image in victims:
                shutil.rmtree(image.layout, ignore_errors=True)
            if victims:
                gone = {v.digest for v in victims}
                self._write_tags({r: d for r, d in self._tags().items() if d not in gone})
                self._remove_unreferenced_blobs()
                log.info("image GC removed %d image(s)", len(victims))
            return [v.digest for v in victims]

    def _remove_unreferenced_blobs(self) -> None:
        keep = set()
        for image in self.cached():
            manifest = self.manifest(image.digest)
            keep |= {image.digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
        for blob in (self.blobs / "sha256").iterdir():  # no pull is writing: the caller holds the lock
            if f"sha256:{blob.name}" not in keep:
                blob.unlink(missing_ok=True)
