"""The runc driver: each container is an OCI bundle run by `runc run` as the process driver's child process.

The supervision (output files in the state directory, adoption after an agent restart, restart
policy and back-off, probes, log shipping) is the process driver's; `runc run --keep` in the
foreground is the process it watches. runc forwards the signals it gets to the container and exits
with the container's status; `--keep` leaves the stopped container (and its memory cgroup) until
the agent has read whether the kernel OOM-killed it, then `runc delete` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from dockyard.schemas.manifests import Container, ContainerImage, ContainerStatus, Pod, Probe
from dockyard.services.node_agent.bundle import (
    BundleError,
    existing_host_files,
    runtime_spec,
    security_of,
    unpack,
    volume_problem,
    write_spec,
)
from dockyard.services.node_agent.expansion import port_key
from dockyard.services.node_agent.images import (
    ERR_IMAGE_PULL,
    IMAGE_PULL_BACK_OFF,
    INVALID_IMAGE_NAME,
    REF_NAME,
    ImageCache,
    ImageError,
)
from dockyard.services.node_agent.logs import LogPublisher
from dockyard.services.node_agent.process_driver import ContainerRunner, ProcessDriver, ProcessDriverConfig, ProcessPod
from dockyard.services.node_agent.restarts import restart_delay
from dockyard.services.node_agent.runtime import ContainerProcess, ContainerRecord, spawn
from dockyard.services.node_agent.status import backing_off, waiting
from dockyard.services.node_agent.usage import UsageSample

log = logging.getLogger(__name__)

DRIVER = "runc"
OOM_KILLED = "OOMKilled"
IMAGE_FILE = "dockyard-image"  # in the bundle: the digest it was unpacked from
RUNC_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0
CGROUP_PARENT = "dockyard"  # relative: under the agent's own cgroup, in every controller
CGROUP_ROOT = Path("/sys/fs/cgroup")
PORT_RETRY_SECONDS = 2.0


class RuncUnavailable(Exception):
    """runc cannot be used here; the message says why and what to do."""


def check_runc(euid: int | None = None) -> str:
    """The path of runc; raises RuncUnavailable when it (or skopeo, umoci) is missing or the agent is not root."""
    path = shutil.which("runc")
    if path is None:
        raise RuncUnavailable("the runc driver needs runc on PATH (apt-get install runc), "
                              "or run the node agent with --driver process")
    missing = [tool for tool in ("skopeo", "umoci") if shutil.which(tool) is None]
    if missing:
        raise RuncUnavailable(f"the runc driver pulls and unpacks images with skopeo and umoci; missing: "
                              f"{', '.join(missing)} (apt-get install {' '.join(missing)})")
    if (os.geteuid() if euid is None else euid) != 0:
        raise RuncUnavailable("the runc driver must run as root: runc creates namespaces and cgroups "
                              "(or run the node agent with --driver process)")
    return path


def runc_problem() -> str | None:
    """Why the runc driver cannot run here (None: it can); for `dockyard up` choosing its local node's driver."""
    try:
        path = check_runc()
        subprocess.run([path, "--version"], capture_output=True, check=True, timeout=10)
    except RuncUnavailable as exc:
        return str(exc)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"runc does not work here: {exc}"
    return None


def delete_all_containers(state_dir: Path) -> int:
    """Force-delete every runc container of a node whose agent is gone (`dockyard down` after a crash)."""
    runc = Runc(state_dir / "runc")
    if not runc.root.is_dir() or shutil.which("runc") is None:
        return 0
    listed = subprocess.run(runc.argv("list", "--format", "json"), capture_output=True, text=True, timeout=30)
    ids = [c["id"] for c in json.loads(listed.stdout or "null") or ()] if listed.returncode == 0 else []
    for container_id in ids:
        subprocess.run(runc.argv("delete", "--force", container_id), capture_output=True, timeout=30)
    return len(ids)


class Runc:
    """The runc command line, its state under a root of this node's own (so agents on one machine keep apart)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def argv(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.root), *args]

    async def call(self, *args: str, timeout: float = RUNC_TIMEOUT) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(*self.argv(*args), stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            return -1, b"", b"timed out"
        finally:
            if proc.returncode is None:  # timed out or cancelled: runc exec's process goes with it
                proc.kill()
                await asyncio.shield(proc.wait())
        return proc.returncode, out, err

    async def list_ids(self) -> list[str]:
        code, out, _ = await self.call("list", "--format", "json")
        if code != 0 or not out.strip():
            return []
        return [c["id"] for c in json.loads(out) or ()]

    async def delete(self, container_id: str) -> None:
        await self.call("delete", "--force", container_id)


class RuncProcess(ContainerProcess):
    """`runc run` for one container: signals go to the container through runc, not to runc's group."""

    def __init__(self, pid: int, start_ticks: int, child, runc: Runc, container_id: str):
        super().__init__(pid, start_ticks, child)
        self.runc = runc
        self.container_id = container_id

    def signal(self, sig: int) -> None:
        """Sent by `runc kill` in the background: signal() is not async, and the agent's loop must not wait."""
        if self.running():
            kill = asyncio.get_running_loop().create_task(self._kill(sig))
            _KILLS.add(kill)  # the loop keeps only a weak reference to a task
            kill.add_done_callback(_KILLS.discard)

    async def _kill(self, sig: int) -> None:
        with contextlib.suppress(OSError):  # runc gone: there is nothing to signal through
            await self.runc.call("kill", self.container_id, str(int(sig)), timeout=KILL_TIMEOUT)


_KILLS: set[asyncio.Task] = set()  # `runc kill`s under way


def container_cgroup(controller: str, container_id: str, proc_cgroup: str = "/proc/self/cgroup") -> Path:
    """Where runc put the container's cgroup of `controller`: CGROUP_PARENT/<id> under the agent's own (v1)."""
    own = "/"
    with contextlib.suppress(OSError), open(proc_cgroup) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                own = path
    return CGROUP_ROOT / controller / own.lstrip("/") / CGROUP_PARENT / container_id


def cgroup_sample(container_id: str) -> UsageSample | None:
    """CPU time (cpuacct.usage) and working set (memory usage less inactive page cache), as kubelet counts it."""
    try:
        cpu_ns = int((container_cgroup("cpuacct", container_id) / "cpuacct.usage").read_text())
        memory = container_cgroup("memory", container_id)
        usage = int((memory / "memory.usage_in_bytes").read_text())
        stats = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines() if " " in line)
    except (OSError, ValueError):
        return None
    inactive = int(stats.get("total_inactive_file", 0))
    return UsageSample(cpu_seconds=cpu_ns / 1e9, memory_bytes=max(usage - inactive, 0))


def oom_kills(cgroup: Path) -> int:
    """The kernel's count of OOM kills in a memory cgroup (0 if it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        for line in (cgroup / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


class RuncDriver(ProcessDriver):
    """Pods as runc containers; images from the node's cache; leftovers of an earlier agent adopted or deleted."""

    name = DRIVER

    def __init__(self, config: ProcessDriverConfig, logs: LogPublisher, images: ImageCache):
        super().__init__(config, logs)
        self.images = images
        self.runc = Runc(config.state_dir / "runc")
        self.containers: dict[str, RuncContainer] = {}  # container id -> its runner, while its pod is here
        self._gc: asyncio.Task | None = None
        self._gc_again = False

    async def prepare(self) -> None:
        check_runc()
        self.runc.root.mkdir(parents=True, exist_ok=True)
        await super().prepare()

    def worker_for(self, pod: Pod, on_change: Callable[[], None]) -> RuncPod:
        pod_dir = self.state.pod_dir(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
        return RuncPod(self, pod, pod_dir, self.found.pop(pod_dir, {}), on_change)

    async def clean_leftovers(self) -> None:
        await super().clean_leftovers()  # SIGTERM to `runc run` (it passes it on), SIGKILL after the grace period
        for container_id in await self.runc.list_ids():
            if container_id not in self.containers:
                log.info("deleting runc container %s: no pod bound here claims it", container_id)
                await self.runc.delete(container_id)

    def held_images(self) -> tuple[ContainerImage, ...]:
        return self.images.held_images()

    async def collect_garbage(self) -> None:
        try:
            await self.images.collect_garbage(lambda: {c.digest for c in self.containers.values() if c.digest})
        except OSError as exc:
            log.warning("image GC failed: %s", exc)

    def collect_garbage_soon(self) -> None:
        """Image GC in the background, one at a time: it waits for the cache's lock, which a pull holds for
        minutes, and a pod's deletion must not wait behind it. Asked for during a GC, another follows it."""
        if self._gc is not None and not self._gc.done():
            self._gc_again = True
            return
        self._gc = asyncio.create_task(self._collect_garbage_while_asked(), name="image GC")

    async def _collect_garbage_while_asked(self) -> None:
        self._gc_again = True
        while self._gc_again:
            self._gc_again = False
            await self.collect_garbage()


class RuncPod(ProcessPod):
    """A pod's containers under runc; its end lets the image cache collect what no pod uses any more."""

    def _runner(self, container: Container, previous: ContainerStatus | None,
                record: ContainerRecord | None) -> ContainerRunner:
        # A container with no image is a host process, as under the process driver (Nomad's raw_exec
        # beside its docker driver): the same manifests run on every node, with or without runc.
        if not container.image:
            return super()._runner(container, previous, record)
        return RuncContainer(self, container, previous, record)

    async def stop(self) -> None:
        await super().stop()
        self.driver.collect_garbage_soon()


class RuncContainer(ContainerRunner):
    """One container of a pod under runc."""

    def __init__(self, pod: RuncPod, container: Container, previous: ContainerStatus | None,
                 record: ContainerRecord | None):
        super().__init__(pod, container, previous, record)
        self.driver: RuncDriver = pod.driver
        self.id = f"{pod.dir.name}_{container.name}"
        self.bundle = pod.dir / "bundles" / container.name
        self.security = security_of(container)
        self.digest = _recorded_digest(self.bundle)  # an adopted container's image stays in use
        self.driver.containers[self.id] = self

    def _allocate_ports(self) -> dict[str, int]:
        """The host's network: a container listens on its containerPort (hostPort, when given, must match).
        A port another pod holds stays that pod's (the first claim wins); _config_problem names the clash."""
        ports, holder = self.pod.driver.ports, self.pod.port_holder
        return {port_key(p): ports.claim(p.host_port or p.container_port, holder) for p in self.container.ports}

    def _config_problem(self) -> str | None:
        if not self.container.image:
            return "the runc driver runs images: this container has no image"
        return self._port_problem() or volume_problem(self.pod.pod, self.container)

    async def _wait_for_ports(self) -> None:
        """Wait (CreateContainerConfigError, the holder named) while another pod holds one of its host ports."""
        before, problem = self.status, self._port_problem()
        if problem is None:
            return
        self._refuse_config(problem)
        while self._port_problem() is not None:
            await asyncio.sleep(PORT_RETRY_SECONDS)
        self._set(before)  # as if it had not waited: its first run is no restart

    def _port_problem(self) -> str | None:
        """Another pod on this node listens on one of its ports: it would only crash-loop on EADDRINUSE."""
        ports = self.pod.driver.ports
        for port in sorted(set(self.record.host_ports.values())):
            holder = ports.holder(ports.claim(port, self.pod.port_holder))  # free again: ours now
            if holder != self.pod.port_holder:
                return f"host port {port} is in use by {holder}"
        return None

    def _volume_dirs(self) -> dict[str, str]:
        """The pod's emptyDir directories this container mounts, made if new (they live as long as the pod)."""
        dirs = {}
        for mount in self.container.volume_mounts:
            path = self.pod.dir / "volumes" / mount.name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # as Kubernetes makes them: writable whatever user the container runs as
            dirs[mount.name] = str(path)
        return dirs

    # ------------------------------------------------------------ image

    async def run(self) -> None:
        if not self.record.pid and self.status.state != "terminated":
            await self._wait_for_ports()
            if not await self._pull_image():
                return
        await super().run()

    async def _pull_image(self) -> bool:
        """Pull until it works (ErrImagePull, then ImagePullBackOff between tries); False for a bad name."""
        attempts = 0
        while True:
            try:
                self.digest = await self.driver.images.ensure(self.container.image,
                                                               self.container.image_pull_policy)
                return True
            except ImageError as exc:
                attempts += 1
                self._note_in_log(f"pulling image {self.container.image!r}: {exc}")
                log.warning("%s/%s container %s: %s", self.record.namespace, self.record.pod,
                            self.container.name, exc)
                self._set(_waiting(self.status, exc.reason, str(exc)))
                if exc.reason == INVALID_IMAGE_NAME:
                    return False
            backoff = self.config.backoff
            delay = max(restart_delay(attempts + 1, backoff.base, backoff.maximum), 1.0)
            await asyncio.sleep(1.0)  # long enough for ErrImagePull to be reported, as kubelet shows it first
            if self.status.reason == ERR_IMAGE_PULL:
                self._set(_waiting(self.status, IMAGE_PULL_BACK_OFF,
                                   f'Back-off pulling image "{self.container.image}": {self.status.message}'))
            await asyncio.sleep(delay - 1.0)

    # ------------------------------------------------------------ one run

    async def _launch(self) -> ContainerProcess:
        if not self.digest:
            try:
                self.digest = await self.driver.images.ensure(self.container.image, self.container.image_pull_policy)
            except ImageError as exc:
                raise OSError(str(exc)) from None
        await self.driver.runc.delete(self.id)  # the run before, kept for its OOM count
        await asyncio.to_thread(shutil.rmtree, self.bundle, True)
        self.bundle.parent.mkdir(parents=True, exist_ok=True)
        images = self.driver.images
        try:
            base = await unpack(images.layout_of(self.digest), REF_NAME, self.bundle, self.security)
        except BundleError as exc:
            raise OSError(str(exc)) from None
        spec = runtime_spec(base, images.image_config(self.digest), self.pod.pod, self.container,
                            host_ports=self.record.host_ports, cgroups_path=f"{CGROUP_PARENT}/{self.id}",
                            security=self.security, host_files=existing_host_files(),
                            volume_dirs=self._volume_dirs())
        if not spec["process"]["args"]:
            raise OSError("neither the image (entrypoint, cmd) nor the container (command, args) says what to run")
        write_spec(self.bundle, spec)
        (self.bundle / IMAGE_FILE).write_text(self.digest)
        child = await spawn(self.driver.runc.argv("run", "--keep", "--bundle", str(self.bundle), self.id),
                            {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}, self.bundle,
                            self.tails["stdout"].path, self.tails["stderr"].path)
        return RuncProcess(child.pid, child.start_ticks, child.child, self.driver.runc, self.id)

    def _adopt(self) -> ContainerProcess | None:
        process = super()._adopt()
        if process is not None:
            self.process = process = RuncProcess(process.pid, process.start_ticks, None, self.driver.runc, self.id)
        return process

    async def _reap(self, process: ContainerProcess, exit_code: int | None) -> str:
        """OOMKilled if the kernel killed in its cgroup; then the stopped container goes."""
        killed = oom_kills(container_cgroup("memory", self.id))
        process.kill_leftovers()
        await self.driver.runc.delete(self.id)
        return OOM_KILLED if killed else ""

    def usage_sample(self, monotonic: float) -> UsageSample | None:
        if self.process is None or not self.process.running():
            return None
        return cgroup_sample(self.id)

    async def _probe_once(self, probe: Probe) -> bool:
        if probe.exec is None:
            return await super()._probe_once(probe)
        code, _, _ = await self.driver.runc.call("exec", self.id, *probe.exec.command,
                                                 timeout=max(probe.timeout_seconds, 1))
        return code == 0

    # ------------------------------------------------------------ the end

    async def stop(self, grace: float) -> None:
        await super().stop(grace)
        await self.driver.runc.delete(self.id)
        await asyncio.to_thread(shutil.rmtree, self.bundle, True)
        self.driver.containers.pop(self.id, None)

    async def detach(self) -> None:
        await super().detach()
        self.driver.containers.pop(self.id, None)


def _recorded_digest(bundle: Path) -> str:
    try:
        return (bundle / IMAGE_FILE).read_text().strip()
    except OSError:
        return ""


def _waiting(status: ContainerStatus, reason: str, message: str) -> ContainerStatus:
    """Waiting for its image; a container that ran before keeps that run as lastState."""
    status = backing_off(status) if status.state == "terminated" else status
    return waiting(status, reason, message)
