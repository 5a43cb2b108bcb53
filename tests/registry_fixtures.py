"""A real registry (Debian's docker-registry) on a free loopback port, and test images built without Docker."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dockyard.servers import free_port
from tests.conftest import _short_tmp, require

REGISTRY_BIN = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WEBHOOK_TOKEN = "hook-s3cret"  # what fixture registries send their notifications with (indexers: --webhook-token)


def require_registry_tools() -> None:
    require(Path(REGISTRY_BIN).exists(), "docker-registry is not installed (apt-get install docker-registry)")
    for tool in ("skopeo", "umoci"):
        require(shutil.which(tool) is not None, f"{tool} is not installed (apt-get install {tool})")
    require(Path(BUSYBOX).exists(), "a static busybox is not installed (apt-get install busybox-static)")


def bcrypt_hash(password: str) -> str:
    """htpasswd's bcrypt through libxcrypt: Distribution accepts nothing else and no Python bcrypt is here."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt_gensalt.restype = ctypes.c_char_p
    return lib.crypt(password.encode(), lib.crypt_gensalt(b"$2b$", 5, None, 0)).decode()


class RegistryServer:
    """docker-registry with storage in `root`, deletes enabled, notifications posted to `webhook_url`.

    Notifications carry `Authorization: Bearer <webhook_token>` when a token is given.
    """

    def __init__(self, root: Path, webhook_url: str = "", users: dict[str, str] | None = None,
                 webhook_token: str = ""):
        self.root = root
        self.port = free_port()
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.users = users or {}
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _config(self) -> Path:
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
                 "  filesystem:", f"    rootdirectory: {self.root / 'data'}", "  delete:", "    enabled: true",
                 "http:", f"  addr: {self.address}"]
        if self.users:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: dockyard-test", f"    path: {htpasswd}"]
        if self.webhook_url:
            lines += ["notifications:", "  endpoints:", "    - name: dockyard", f"      url: {self.webhook_url}",
                      "      timeout: 2s", "      threshold: 3", "      backoff: 200ms",
                      "      ignore:", "        actions: [pull]"]
            if self.webhook_token:
                lines += ["      headers:", f"        Authorization: [Bearer {self.webhook_token}]"]
        path = self.root / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> "RegistryServer":
        config = self._config()
        with open(self.root / "registry.log", "ab") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401 with auth on: it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def delete_manifest(self, repository: str, digest: str) -> None:
        request = urllib.request.Request(f"{self.url}/v2/{repository}/manifests/{digest}", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202


def run_tool(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def base_layout(root: Path, rootless: bool = True) -> tuple[Path, Path]:
    """An OCI layout (root/layout) with an empty `base` image unpacked at root/bundle, to fill and repack."""
    layout, bundle = root / "layout", root / "bundle"
    run_tool("umoci", "init", "--layout", str(layout))
    run_tool("umoci", "new", "--image", f"{layout}:base")
    run_tool("umoci", "unpack", *(["--rootless"] if rootless else []), "--image", f"{layout}:base", str(bundle))
    return layout, bundle


def push_image(layout: Path, ref: str, registry: RegistryServer, target: str, creds: str = "") -> None:
    """`skopeo copy` the layout's `ref` (every platform of an index, digests kept) to registry/target."""
    args = ["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if creds:
        args.append(f"--dest-creds={creds}")
    subprocess.run([*args, f"oci:{layout}:{ref}", f"docker://{registry.address}/{target}"], check=True,
                   capture_output=True, timeout=60)


class TestImages:
    """An OCI layout holding busybox images: `v1`, `v2` (another config, so another digest), `multi` (an index)."""

    __test__ = False

    def __init__(self, root: Path):
        self.layout, bundle = base_layout(root)
        run = run_tool
        (bundle / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
        run("umoci", "repack", "--image", f"{self.layout}:v1", str(bundle))
        run("umoci", "config", "--image", f"{self.layout}:v1", "--config.entrypoint", "/bin/busybox",
            "--config.cmd", "sh", "--config.workingdir", "/srv", "--config.user", "1000",
            "--config.exposedports", "8080/tcp", "--config.label", "org.example.app=demo")
        run("umoci", "config", "--image", f"{self.layout}:v1", "--tag", "v2", "--config.env", "VERSION=2")
        run("umoci", "config", "--image", f"{self.layout}:v1", "--tag", "arm64", "--architecture", "arm64")
        self._add_index("multi", ("v1", "amd64"), ("arm64", "arm64"))

    def descriptor(self, ref: str) -> dict:
        index = json.loads((self.layout / "index.json").read_text())
        ref_name = "org.opencontainers.image.ref.name"
        return next(m for m in index["manifests"] if m.get("annotations", {}).get(ref_name) == ref)

    def _add_index(self, ref: str, *members: tuple[str, str]) -> None:
        manifests = []
        for member, arch in members:
            d = self.descriptor(member)
            manifests.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                              "platform": {"os": "linux", "architecture": arch}})
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        digest = hashlib.sha256(body).hexdigest()
        (self.layout / "blobs" / "sha256" / digest).write_bytes(body)
        index_path = self.layout / "index.json"
        index = json.loads(index_path.read_text())
        index["manifests"].append({"mediaType": OCI_INDEX, "digest": f"sha256:{digest}", "size": len(body),
                                   "annotations": {"org.opencontainers.image.ref.name": ref}})
        index_path.write_text(json.dumps(index))

    def digest(self, ref: str) -> str:
        return self.descriptor(ref)["digest"]

    def push(self, ref: str, registry: RegistryServer, target: str, creds: str = "") -> None:
        push_image(self.layout, ref, registry, target, creds)


@pytest.fixture(scope="session")
def test_images():
    require_registry_tools()
    root = _short_tmp("dy-img-")
    yield TestImages(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def registry_factory():
    """Start registries (`make(webhook_url=..., users=...)`); all stopped and removed afterwards.

    Their notifications carry WEBHOOK_TOKEN unless `webhook_token` says otherwise ("" for none).
    """
    require_registry_tools()
    started: list[RegistryServer] = []

    def make(webhook_url: str = "", users: dict[str, str] | None = None,
             webhook_token: str = WEBHOOK_TOKEN) -> RegistryServer:
        server = RegistryServer(_short_tmp("dy-reg-"), webhook_url, users, webhook_token).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


# ---------------------------------------------------------------- an in-process registry that can lie


class FakeRegistry:
    """A Distribution API served from a thread: `routes[path] = (status, headers, body)`, with optional auth.

    For what a real registry will not do: truncated manifests, wrong digests, HTML, cycles.
    `bearer` turns on the token flow (401 + `WWW-Authenticate: Bearer realm=.../token`);
    `basic` = (user, password) is what the token endpoint (or, without bearer, every path) checks.
    """

    def __init__(self, bearer: bool = False, basic: tuple[str, str] | None = None):
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[str] = []
        fake = self
        token = "t0ken"
        basic_header = ("Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()) if basic else ""

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                auth = self.headers.get("Authorization", "")
                if self.path.startswith("/token"):
                    if basic_header and auth != basic_header:
                        return self._send(401, {}, b"")
                    return self._send(200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode())
                if bearer and auth != f"Bearer {token}":
                    challenge = f'Bearer realm="{fake.url}/token",service="fake",scope="repository:x:pull"'
                    return self._send(401, {"WWW-Authenticate": challenge}, b"")
                if not bearer and basic_header and auth != basic_header:
                    return self._send(401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"")
                path = self.path if self.path in fake.routes else self.path.split("?")[0]
                status, headers, body = fake.routes.get(path, (404, {}, b'{"errors":[]}'))
                self._send(status, headers, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def blob(self, repository: str, body: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.routes[f"/v2/{repository}/blobs/{digest}"] = (200, {"Content-Type": "application/octet-stream"}, body)
        return digest

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST,
                 digest: str = "") -> str:
        digest = digest or "sha256:" + hashlib.sha256(body).hexdigest()
        self.routes[f"/v2/{repository}/manifests/{reference}"] = (
            200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, body)
        return digest

    def image(self, repository: str, tag: str, arch: str = "amd64", cmd: str = "sh") -> str:
        """A well-formed single-platform image under `tag`; its manifest digest."""
        config = json.dumps({"os": "linux", "architecture": arch, "config": {"Cmd": [cmd]}}).encode()
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": self.blob(repository, config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": "sha256:" + "ab" * 32, "size": 1234}]}).encode()
        digest = self.manifest(repository, tag, body)
        self.manifest(repository, digest, body)
        return digest

    def catalog(self, repositories: list[str], tags: dict[str, list[str]]) -> None:
        self.routes["/v2/_catalog"] = (200, {"Content-Type": "application/json"},
                                       json.dumps({"repositories": repositories}).encode())
        for repository, names in tags.items():
            self.routes[f"/v2/{repository}/tags/list"] = (200, {"Content-Type": "application/json"},
                                                          json.dumps({"name": repository, "tags": names}).encode())


@pytest.fixture
def fake_registry():
    made: list[FakeRegistry] = []

    def make(**options) -> FakeRegistry:
        made.append(FakeRegistry(**options))
        return made[-1]

    yield make
    for fake in made:
        fake.close()
