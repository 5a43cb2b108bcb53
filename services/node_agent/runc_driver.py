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
import errno
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
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
from dockyard.services.node_agent.cgroups import (
    PARENT,
    Hierarchy,
    cgroup_sample,
    cgroups_path,
    controllers_problem,
    oom_kills,
    read_hierarchy,
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
from dockyard.services.node_agent.runtime import ContainerProcess, ContainerRecord, proc_stat, spawn
from dockyard.services.node_agent.status import backing_off, waiting
from dockyard.services.node_agent.usage import UsageSample

log = logging.getLogger(__name__)

DRIVER = "runc"
OOM_KILLED = "OOMKilled"
IMAGE_FILE = "dockyard-image"  # in the bundle: the digest it was unpacked from
RUNC_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0
EXEC_END_TIMEOUT = 5.0  # a timed-out exec: how long runc may take to write its pid file, and to exit once it is killed
PID_FILE_POLL = 0.05
PORT_RETRY_SECONDS = 2.0


class RuncUnavailable(Exception):
    """runc cannot be used here; the message says why and what to do."""


def check_runc(euid: int | None = None, hierarchy: Hierarchy | None = None, enable: bool = True) -> str:
    """The path of runc; raises RuncUnavailable when it (or skopeo, umoci) is missing or the agent is not root.
    `enable`: on cgroup v2, enable the controllers the containers need at the root (the driver's start)."""
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
    check_cgroups(hierarchy, enable)
    return path


def check_cgroups(hierarchy: Hierarchy | None = None, enable: bool = True) -> Hierarchy:
    """The cgroup hierarchy runc will use; RuncUnavailable naming what was found when it lacks a needed controller.
    Only with `enable` does it write (v2: the root's cgroup.subtree_control)."""
    hierarchy = read_hierarchy() if hierarchy is None else hierarchy
    problem = controllers_problem(hierarchy, enable)
    if problem is not None:
        raise RuncUnavailable(f"{problem} (or run the node agent with --driver process)")
    return hierarchy


def runc_problem(hierarchy: Hierarchy | None = None) -> str | None:
    """Why the runc driver cannot run here (None: it can); for `dockyard up` choosing its local node's driver.
    It only looks: a machine that ends up with the process driver keeps its cgroups as they were."""
    try:
        path = check_runc(hierarchy=hierarchy, enable=False)
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

    async def exec_until(self, container_id: str, command: Sequence[str], timeout: float, pid_file: Path) -> int:
        """`runc exec` of a command in a container, its exit status; -1 once `timeout` has passed, when the
        command is killed inside the container (killing `runc exec` alone would leave it running there)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv("exec", "--pid-file", str(pid_file), container_id, *command), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            return -1
        finally:
            # Shielded (and held: the loop keeps only weak references to tasks): a probe cancelled with its
            # container must not leave the command, or runc exec, behind.
            ending = asyncio.ensure_future(_end_exec(proc, container_id, pid_file))
            _KILLS.add(ending)
            ending.add_done_callback(_KILLS.discard)
            await asyncio.shield(ending)

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


_KILLS: set[asyncio.Future] = set()  # `runc kill`s, and ends of timed-out execs, under way


async def _end_exec(proc: asyncio.subprocess.Process, container_id: str, pid_file: Path) -> None:
    """After `runc exec`: kill what it started if it still runs, by the pid runc wrote, while runc exec, its
    parent, is there to reap it (killed with runc, it would be reparented to the container's init, which may
    never reap it); return once they are dead, so the next probe never meets them; then the pid file goes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXEC_END_TIMEOUT
    try:
        killed = await _kill_once_started(proc, container_id, pid_file, deadline)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), max(deadline - loop.time(), PID_FILE_POLL))
        while any(_alive(pid) for pid in killed) and loop.time() < deadline:
            await asyncio.sleep(PID_FILE_POLL)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        with contextlib.suppress(OSError):
            pid_file.unlink()


async def _kill_once_started(proc: asyncio.subprocess.Process, container_id: str, pid_file: Path,
                             deadline: float) -> list[int]:
    """Wait for runc exec to write the pid file (it does once the command started), then kill; the pids killed."""
    loop = asyncio.get_running_loop()
    while proc.returncode is None and loop.time() < deadline:
        pid = _pid_in(pid_file)
        if pid is not None:  # in a thread: the group's members are found by a scan of /proc
            return await asyncio.to_thread(_kill_exec_process, pid, container_id, proc.pid)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), PID_FILE_POLL)
    return []


def _alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):  # not written yet (runc writes it whole, by a rename)
        return None


def _kill_exec_process(pid: int, container_id: str, runc_pid: int) -> list[int]:
    """SIGKILL to an exec'd process, then to what it started in its process group (runc's init makes the
    process a session leader; runc exec itself is spared in any case), each only while it is in the
    container's cgroup: a pid that has been reused is left alone. Blocking (/proc): run it in a thread."""
    group = _process_group(pid)
    members = (pid, *(_group_members(group) if group is not None else ()))
    return [victim for victim in dict.fromkeys(members)
            if victim != runc_pid and _kill_in_container(victim, container_id)]


def _kill_in_container(pid: int, container_id: str) -> bool:
    """SIGKILL to `pid` if it is in the container's cgroup; whether it was sent. A pidfd opened before the
    check pins the process checked: if it exits and its pid is reused before the signal, the signal goes
    to the one that exited (ESRCH), never to the newcomer. Without pidfds (Linux before 5.3) it is check
    then kill, which such a reuse could race."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            return False
        return _in_container(pid, container_id) and _send_kill(pid)
    try:
        if not _in_container(pid, container_id):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def _send_kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rfind(")") + 2:].split()[2])  # after the command name: state, ppid, pgrp
    except (OSError, ValueError, IndexError):
        return None


def _group_members(group: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _process_group(int(entry)) == group]


def _in_container(pid: int, container_id: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    return any(line.endswith(f"/{PARENT}/{container_id}") for line in lines)


_EXEC_NUMBERS = itertools.count()  # each exec of a container its own pid file: probes may overlap


class RuncDriver(ProcessDriver):
    """Pods as runc containers; images from the node's cache; leftovers of an earlier agent adopted or deleted."""

    name = DRIVER

    def __init__(self, config: ProcessDriverConfig, logs: LogPublisher, images: ImageCache):
        super().__init__(config, logs)
        self.images = images
        self.runc = Runc(config.state_dir / "runc")
        self.containers: dict[str, RuncContainer] = {}  # container id -> its runner, while its pod is here
        self.cgroups = read_hierarchy()
        self._gc: asyncio.Task | None = None
        self._gc_again = False

    async def prepare(self) -> None:
        check_runc(hierarchy=self.cgroups)  # the one place that enables the controllers (v2) runc will need
        log.info("runc driver: %s", self.cgroups.describe())
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
            await self.images.collect_garbage(lambda: {d for c in self.containers.values() for d in c.digests_in_use()})
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
        self._pulled: tuple[str, str] | None = None  # (image, digest) pulled while the run before went on
        self.driver.containers[self.id] = self

    def digests_in_use(self) -> set[str]:
        """Its image, and one pulled for its next run (image GC must leave both)."""
        return {digest for digest in (self.digest, self._pulled and self._pulled[1]) if digest}

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
        await super().run()

    async def _before_start(self) -> bool:
        """Every start asks the image cache, so the pull policy applies to restarts too (kubelet's: Always
        asks the registry what the tag names now), unless the image was pulled just before this start."""
        pulled, self._pulled = self._pulled, None
        if pulled is not None and pulled[0] == self.container.image:
            self.digest = pulled[1]
            return True
        return await self._pull_image()

    async def _before_replacing(self) -> None:
        """The new image is pulled while the old run goes on; if that fails the old run still stops, and the
        next start pulls again as at creation, ErrImagePull then ImagePullBackOff on the container."""
        container = self.container
        with contextlib.suppress(ImageError):
            digest = await self.driver.images.ensure(container.image, container.image_pull_policy)
            self._pulled = (container.image, digest)

    async def _pull_image(self) -> bool:
        """Pull until it works (ErrImagePull, then ImagePullBackOff between tries); False for a bad name."""
        attempts = 0
        while True:
            self._image_changed.clear()  # this attempt takes the image as it is now
            container = self.container
            try:
                self.digest = await self.driver.images.ensure(container.image, container.image_pull_policy)
                if container is self.container:
                    return True
                continue  # the image changed during the pull: that one is wanted now
            except ImageError as exc:
                attempts += 1  # no note in its log: it has not run (the waiting message says why)
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
                                   f'Back-off pulling image "{container.image}": {self.status.message}'))
            await self._unless_image_changes(delay - 1.0)
            if container is not self.container:
                attempts = 0  # a new image starts its own back-off, not the old one's

    # ------------------------------------------------------------ one run

    async def _launch(self, container: Container) -> ContainerProcess:
        """One run of the image _before_start pulled (a pull failure is a wait for the image, never a run)."""
        await self.driver.runc.delete(self.id)  # the run before, kept for its OOM count
        await asyncio.to_thread(shutil.rmtree, self.bundle, True)
        self.bundle.parent.mkdir(parents=True, exist_ok=True)
        images = self.driver.images
        try:
            base = await unpack(images.layout_of(self.digest), REF_NAME, self.bundle, self.security)
        except BundleError as exc:
            raise OSError(str(exc)) from None
        spec = runtime_spec(base, images.image_config(self.digest), self.pod.pod, container,
                            host_ports=self.record.host_ports,
                            cgroups_path=cgroups_path(self.driver.cgroups, self.id),
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
        killed = oom_kills(self.driver.cgroups, self.id)
        process.kill_leftovers()
        await self.driver.runc.delete(self.id)
        return OOM_KILLED if killed else ""

    def usage_sample(self, monotonic: float) -> UsageSample | None:
        if self.process is None or not self.process.running():
            return None
        return cgroup_sample(self.driver.cgroups, self.id)

    async def _probe_once(self, probe: Probe) -> bool:
        if probe.exec is None:
            return await super()._probe_once(probe)
        pid_file = self.bundle / f"exec-{next(_EXEC_NUMBERS)}.pid"
        code = await self.driver.runc.exec_until(self.id, probe.exec.command, max(probe.timeout_seconds, 1), pid_file)
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
