"""For runc driver tests: busybox images with every applet, hand-made (hostile) OCI layouts, and cleaning up runc."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import _short_tmp, require
from tests.registry_fixtures import (
    BUSYBOX,
    OCI_MANIFEST,
    RegistryServer,
    base_layout,
    push_image,
    require_registry_tools,
    run_tool,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def require_runc() -> None:
    require_registry_tools()
    require(shutil.which("runc") is not None, "runc is not installed (apt-get install runc)")
    require(os.geteuid() == 0, "the runc driver needs root")


def busybox_applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, check=True, text=True).stdout
    return [name for name in out.split() if name and name != "busybox"]


class BusyboxImages:
    """An OCI layout with busybox images `1.0` and `2.0` (env VERSION=2): every applet in /bin, cmd `sh`."""

    __test__ = False

    def __init__(self, root: Path):
        self.layout, bundle = base_layout(root, rootless=False)
        run = run_tool
        rootfs = bundle / "rootfs"
        for directory in ("bin", "tmp", "etc", "www"):
            (rootfs / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in busybox_applets():
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        (rootfs / "www" / "index.html").write_text("hello from runc\n")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
        run("umoci", "repack", "--image", f"{self.layout}:1.0", str(bundle))
        run("umoci", "config", "--image", f"{self.layout}:1.0", "--config.cmd", "sh",
            "--config.env", "PATH=/bin", "--config.env", "VERSION=1")
        run("umoci", "config", "--image", f"{self.layout}:1.0", "--tag", "2.0", "--config.env", "VERSION=2")

    def push(self, ref: str, registry: RegistryServer, target: str) -> None:
        push_image(self.layout, ref, registry, target)


@pytest.fixture(scope="session")
def busybox_images():
    require_runc()
    root = _short_tmp("dy-bb-")
    yield BusyboxImages(root)
    shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- hand-made layouts


def tar_layer(add) -> bytes:
    """A gzipped tar built by `add(tar)`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar)
    return gzip.compress(raw.getvalue(), mtime=0)


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def add_entry(tar: tarfile.TarFile, name: str, type_: bytes, linkname: str = "", mode: int = 0o755,
              devmajor: int = 0, devminor: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = type_, linkname, mode
    info.devmajor, info.devminor = devmajor, devminor
    tar.addfile(info)


def layout_with_layers(root: Path, layers: list[bytes], ref: str = "img", config: dict | None = None) -> Path:
    """An OCI image layout holding one image of `layers` (gzipped tars), tagged `ref`."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    diff_ids = [f"sha256:{hashlib.sha256(gzip.decompress(layer)).hexdigest()}" for layer in layers]
    config = {"architecture": "amd64", "os": "linux", "config": config or {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **blob(json.dumps(config).encode())},
                "layers": [{"mediaType": OCI_LAYER, **blob(layer)} for layer in layers]}
    descriptor = {"mediaType": OCI_MANIFEST, **blob(json.dumps(manifest).encode()), "annotations": {REF_NAME: ref}}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    return root


# ---------------------------------------------------------------- cleaning up


def delete_runc_containers(state_dir: Path) -> None:
    """Force-delete whatever runc still has under a node's state directory (a killed agent leaves containers)."""
    root = state_dir / "runc"
    if not root.is_dir():
        return
    out = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"], capture_output=True, text=True)
    for container in json.loads(out.stdout or "null") or ():
        subprocess.run(["runc", "--root", str(root), "delete", "--force", container["id"]], capture_output=True)


def runc_ids(state_dir: Path) -> dict[str, dict]:
    out = subprocess.run(["runc", "--root", str(state_dir / "runc"), "list", "--format", "json"],
                         capture_output=True, text=True, check=True)
    return {c["id"]: c for c in json.loads(out.stdout or "null") or ()}


def runc_exec(state_dir: Path, container_id: str, *argv: str) -> str:
    out = subprocess.run(["runc", "--root", str(state_dir / "runc"), "exec", container_id, *argv],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout
