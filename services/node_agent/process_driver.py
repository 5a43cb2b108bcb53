"""The process driver: each container is a plain process, restarted by its pod's policy, probed, its logs shipped."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from dockyard.eventlog import logs_subject, now_rfc3339
from dockyard.schemas.manifests import Container, ContainerStatus, Pod, Probe
from dockyard.services.node_agent.checks import probe_once
from dockyard.services.node_agent.expansion import container_argv, container_env, port_key
from dockyard.services.node_agent.logs import LogPublisher
from dockyard.services.node_agent.metrics import (
    CONTAINER_RESTARTS,
    CONTAINERS_ADOPTED,
    CONTAINERS_STARTED,
    PROBE_FAILURES,
    RUNNING_CONTAINERS,
)
from dockyard.services.node_agent.probes import (
    LIVENESS,
    READINESS,
    STARTUP,
    ProbeState,
    has_failed,
    initial_state,
    observe,
    probe_handler,
    resolve_port,
)
from dockyard.services.node_agent.restarts import BackOff, crashes_after_run, restart_delay, should_restart
from dockyard.services.node_agent.runtime import (
    ContainerProcess,
    ContainerRecord,
    FileTail,
    PortAllocator,
    StateDir,
    proc_alive,
    spawn,
)
from dockyard.services.node_agent.status import (
    CREATE_CONTAINER_CONFIG_ERROR,
    START_ERROR,
    START_ERROR_EXIT_CODE,
    backing_off,
    container_created,
    never_ran,
    run_ended,
    run_started,
    waiting,
    with_ready,
)
from dockyard.services.node_agent.usage import ProcessGroupTable, UsageSample, machine_sample

log = logging.getLogger(__name__)

_replace = msgspec.structs.replace
DRIVER = "process"
LOG_STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class ProcessDriverConfig:
    state_dir: Path
    backoff: BackOff = BackOff()
    log_poll_seconds: float = 0.1
    agent_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class ProcessDriver:
    """Runs pods as process groups; its state directory lets a restarted agent find them again."""

    name = DRIVER

    def __init__(self, config: ProcessDriverConfig, logs: LogPublisher):
        self.config = config
        self.logs = logs
        self.state = StateDir(config.state_dir)
        self.ports = PortAllocator()
        self.process_groups = ProcessGroupTable()
        self.found: dict[Path, dict[str, ContainerRecord]] = {}

    async def prepare(self) -> None:
        self.state.pods.mkdir(parents=True, exist_ok=True)
        self.found = self.state.scan()
        records = [record for records in self.found.values() for record in records.values()]
        for record in sorted(records, key=lambda r: not r.pid):  # a running container keeps its ports first
            for port in record.host_ports.values():
                self.ports.claim(port, port_holder(record.namespace, record.pod))

    def node_usage_sample(self) -> UsageSample:
        """The node is this machine: its own CPU and memory accounting."""
        return machine_sample()

    def worker_for(self, pod: Pod, on_change: Callable[[], None]) -> ProcessPod:
        pod_dir = self.state.pod_dir(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
        return ProcessPod(self, pod, pod_dir, self.found.pop(pod_dir, {}), on_change)

    async def clean_leftovers(self) -> None:
        leftovers, self.found = self.found, {}
        await asyncio.gather(*(self._clean(pod_dir, records) for pod_dir, records in leftovers.items()))

    async def _clean(self, pod_dir: Path, records: dict[str, ContainerRecord]) -> None:
        async def stop(record: ContainerRecord) -> None:
            if record.pid and proc_alive(record.pid, record.start_ticks):
                log.info("stopping %s/%s container %s (pid %d): its pod is no longer bound here",
                         record.namespace, record.pod, record.container, record.pid)
                await ContainerProcess(record.pid, record.start_ticks).terminate(record.grace_seconds)
            self.ports.release(record.host_ports.values(), port_holder(record.namespace, record.pod))

        await asyncio.gather(*(stop(record) for record in records.values()))
        StateDir.remove(pod_dir)


class ProcessPod:
    """One pod's containers, each supervised by a ContainerRunner."""

    def __init__(self, driver: ProcessDriver, pod: Pod, pod_dir: Path, records: dict[str, ContainerRecord],
                 on_change: Callable[[], None]):
        self.driver = driver
        self.pod = pod
        self.uid = pod.metadata.uid
        self.dir = pod_dir
        self.on_change = on_change
        self.port_holder = port_holder(pod.metadata.namespace, pod.metadata.name)
        previous = {status.name: status for status in pod.status.container_statuses}
        self.containers = [self._runner(container, previous.get(container.name), records.get(container.name))
                           for container in pod.spec.containers]

    def _runner(self, container: Container, previous: ContainerStatus | None,
                record: ContainerRecord | None) -> ContainerRunner:
        return ContainerRunner(self, container, previous, record)

    def start(self) -> None:
        StateDir.work_dir(self.dir).mkdir(parents=True, exist_ok=True)
        for runner in self.containers:
            runner.start()

    def update(self, pod: Pod) -> None:
        """The pod's spec changed in the one way a pod's spec may: the containers whose image changed run again."""
        self.pod = pod
        changed = {c.name: c for c in pod.spec.containers}
        for runner in self.containers:
            container = changed.get(runner.container.name)
            if container is not None and container.image != runner.container.image:
                runner.change_image(container)

    def container_statuses(self) -> tuple[ContainerStatus, ...]:
        return tuple(runner.status for runner in self.containers)

    def container_samples(self, monotonic: float) -> dict[str, UsageSample]:
        """Each running container's sample (its process group, or its cgroup under runc), by name."""
        return {runner.container.name: sample for runner in self.containers
                if (sample := runner.usage_sample(monotonic)) is not None}

    async def stop(self) -> None:
        grace = self.pod.spec.termination_grace_period_seconds
        await asyncio.gather(*(runner.stop(grace) for runner in self.containers))
        for runner in self.containers:
            self.driver.ports.release(runner.record.host_ports.values(), self.port_holder)
        StateDir.remove(self.dir)

    async def detach(self) -> None:
        await asyncio.gather(*(runner.detach() for runner in self.containers))


class ContainerRunner:
    """Start, watch, probe and restart one container; its status is what the agent reports."""

    def __init__(self, pod: ProcessPod, container: Container, previous: ContainerStatus | None,
                 record: ContainerRecord | None):
        self.pod = pod
        self.container = container
        self.config = pod.driver.config
        meta = pod.pod.metadata
        host_ports = record.host_ports if record is not None and record.host_ports else self._allocate_ports()
        self.record = record or ContainerRecord(namespace=meta.namespace, pod=meta.name, uid=meta.uid,
                                                container=container.name)
        self.record.host_ports = dict(host_ports)
        self.record.grace_seconds = pod.pod.spec.termination_grace_period_seconds
        self.env = container_env(container, host_ports, meta.name, self.config.agent_env)
        self.cwd = Path(container.working_dir) if container.working_dir else StateDir.work_dir(pod.dir)
        restarts = max(previous.restart_count if previous else 0, self.record.restart_count)
        self.status = _replace(previous or container_created(container.name, host_ports),
                               host_ports=dict(host_ports), restart_count=restarts)
        self.subject = logs_subject(meta.namespace, meta.name, meta.uid, container.name, restarts)
        self.tails = {stream: FileTail(StateDir.log_path(pod.dir, container.name, stream),
                                       getattr(self.record, f"{stream}_offset")) for stream in LOG_STREAMS}
        self.process: ContainerProcess | None = None
        self.task: asyncio.Task | None = None
        self.log_task: asyncio.Task | None = None
        self._log_lock = asyncio.Lock()
        self._image_changed = asyncio.Event()  # set: the image changed since this run's spec was read

    def _allocate_ports(self) -> dict[str, int]:
        ports, holder = self.pod.driver.ports, self.pod.port_holder
        return {port_key(p): ports.claim(p.host_port, holder) if p.host_port else ports.allocate(holder)
                for p in self.container.ports}

    def _set(self, status: ContainerStatus) -> None:
        if status != self.status:
            self.status = status
            self.pod.on_change()

    def usage_sample(self, monotonic: float) -> UsageSample | None:
        """/proc accounting of the container's process group (its leader started a session: pgid == pid)."""
        process = self.process
        if process is None or not process.running():
            return None
        return self.pod.driver.process_groups.sample(process.pid, monotonic)

    def _save(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # the pod directory went with its pod
            StateDir.save(self.pod.dir, self.record)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"container {self.record.pod}/{self.container.name}")
        self.task.add_done_callback(self._ended)
        self.log_task = asyncio.create_task(self._ship_logs_forever())

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("supervising %s/%s container %s failed", self.record.namespace, self.record.pod,
                      self.container.name, exc_info=task.exception())

    async def _cancel(self) -> None:
        for task in (self.task, self.log_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def change_image(self, container: Container) -> None:
        """Kubelet's in-place update: a running container is stopped (grace period) and runs again with the
        new image, whatever its restart policy; one waiting out a back-off starts at once."""
        log.info("%s/%s container %s: image %s -> %s", self.record.namespace, self.record.pod, container.name,
                 self.container.image, container.image)
        self.container = container
        self._image_changed.set()

    async def _unless_image_changes(self, seconds: float) -> None:
        """Sleep, cut short by a change of image."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._image_changed.wait(), seconds)

    async def stop(self, grace: float) -> None:
        await self._cancel()
        if self.process is not None and self.process.running():
            await self.process.terminate(grace)
        await self._ship_logs(final=True)

    async def detach(self) -> None:
        await self._cancel()
        await self._ship_logs()

    async def run(self) -> None:
        policy = self.pod.pod.spec.restart_policy
        process = self._adopt()
        if process is not None and self.record.image not in (None, self.container.image):
            self._image_changed.set()  # changed while no agent watched: replaced as if it had just changed
        if process is None and self.status.state == "terminated" and not should_restart(policy, self.status.exit_code):
            return  # it ended for good before this agent started
        problem = None if process is not None else self._config_problem()
        if problem:
            self._refuse_config(problem)
            return
        crashes = 0
        while True:
            if process is None:
                self._image_changed.clear()  # this start takes the container as it is now
                if not await self._before_start():
                    await self._image_changed.wait()  # it cannot start as it is (a bad image name): a new one may
                    continue
                process = await self._start_process()
            if process is not None:
                exit_code, ran_for = await self._supervise(process)
                process = None
            else:
                exit_code, ran_for = START_ERROR_EXIT_CODE, 0.0
            if self._image_changed.is_set():  # a new image is a new container: no back-off, no policy
                crashes = 0
                continue
            crashes = crashes_after_run(crashes, ran_for, self.config.backoff)
            if not should_restart(policy, exit_code):
                return
            crashes = await self._back_off(crashes)

    async def _back_off(self, crashes: int) -> int:
        """Wait out kubelet's back-off before the next start; a new image ends it, and the count of crashes."""
        delay = restart_delay(crashes, self.config.backoff.base, self.config.backoff.maximum)
        if delay > 0:
            self._set(backing_off(self.status))
            await self._unless_image_changes(delay)
        return 0 if self._image_changed.is_set() else crashes

    async def _before_start(self) -> bool:
        """What each start needs first (the runc driver pulls the image); False: not with this image (a bad name)."""
        return True

    async def _before_replacing(self) -> None:
        """The image changed under a running container: what to have ready before it is stopped."""

    def _config_problem(self) -> str | None:
        """Why this container cannot run as specified (None: it can)."""
        if not container_argv(self.container, self.env):
            return "the process driver runs a container's command and args; this one has neither"
        return None

    async def _launch(self, container: Container) -> ContainerProcess:
        """Start one run of the container; raises OSError."""
        return await spawn(container_argv(container, self.env), self.env, self.cwd,
                           self.tails["stdout"].path, self.tails["stderr"].path)

    async def _reap(self, process: ContainerProcess, exit_code: int | None) -> str:
        """Clean up after a run ended; the reason to report ("": from the exit code)."""
        process.kill_leftovers()
        return ""

    async def _probe_once(self, probe: Probe) -> bool:
        return await probe_once(probe, self._probe_port, self.env, self.cwd)

    def _refuse_config(self, problem: str) -> None:
        """A container that cannot run as given waits (the pod stays Pending) instead of crash-looping."""
        log.warning("%s/%s container %s: %s", self.record.namespace, self.record.pod, self.container.name, problem)
        self._set(waiting(self.status, CREATE_CONTAINER_CONFIG_ERROR, problem))

    def _note_in_log(self, problem: str) -> None:
        """The agent's word on a run that failed to start goes into that run's lines, as runc's own error does
        under the runc driver: the run counts (StartError, a restart) and `logs -p` shows why it ended. A
        container that never ran has no lines (kubelet's logs are the container's alone): its waiting
        message says why, and `dockyard logs` answers that it is waiting to start."""
        with contextlib.suppress(OSError), open(self.tails["stderr"].path, "ab") as err:
            err.write(f"dockyard: {problem}\n".encode())

    def _adopt(self) -> ContainerProcess | None:
        """The process an earlier agent started; one that ended meanwhile ends at once (exit code unknown)."""
        if not self.record.pid:
            return None
        self.process = ContainerProcess(self.record.pid, self.record.start_ticks)
        if self.process.running():
            CONTAINERS_ADOPTED.inc()
            log.info("adopted %s/%s container %s (pid %d)", self.record.namespace, self.record.pod,
                     self.container.name, self.record.pid)
        if self.status.state != "running" or self.status.started_at != self.record.started_at:
            self._set(run_started(self.status, self.record.started_at, restarted=False))
        return self.process

    async def _start_process(self) -> ContainerProcess | None:
        restarted = not never_ran(self.status)  # a wait for its image (or its ports) before is no run
        started_at = now_rfc3339()
        # Before it can print a line: each run's lines go to its own instance (restart count).
        self.subject = logs_subject(self.record.namespace, self.record.pod, self.pod.uid, self.container.name,
                                    run_started(self.status, started_at, restarted).restart_count)
        # The container as this run starts it: an image change arriving while it launches is the next run's.
        container = self.container
        try:
            process = await self._launch(container)
        except OSError as exc:
            log.warning("%s/%s container %s failed to start: %s", self.record.namespace, self.record.pod,
                        self.container.name, exc)
            self._note_in_log(f"failed to start container: {exc}")
            self._set(run_ended(run_started(self.status, started_at, restarted), START_ERROR_EXIT_CODE, START_ERROR))
            return None
        self.process = process
        CONTAINERS_STARTED.labels(self.pod.driver.name).inc()
        if restarted:
            CONTAINER_RESTARTS.labels(self.pod.driver.name).inc()
        status = run_started(self.status, started_at, restarted)
        self.record.pid, self.record.start_ticks, self.record.started_at = process.pid, process.start_ticks, started_at
        self.record.restart_count = status.restart_count
        self.record.image = container.image
        self._save()
        self._set(status)
        return process

    async def _supervise(self, process: ContainerProcess) -> tuple[int | None, float]:
        """Probe the process until it exits or fails its liveness; its exit code and how long it ran."""
        began = time.monotonic() - _age(self.record.started_at)
        started = asyncio.Event()  # the startup probe passed (at once without one)
        unhealthy = asyncio.Event()  # liveness or startup failed: restart it
        probes = [asyncio.create_task(self._probe_loop(kind, probe, process, started, unhealthy))
                  for kind, probe in ((STARTUP, self.container.startup_probe),
                                      (LIVENESS, self.container.liveness_probe),
                                      (READINESS, self.container.readiness_probe)) if probe is not None]
        if self.container.startup_probe is None:
            self._on_started(started)
        RUNNING_CONTAINERS.labels(self.pod.driver.name).inc()
        exited = asyncio.ensure_future(process.wait())
        failing = asyncio.ensure_future(unhealthy.wait())
        replaced = asyncio.ensure_future(self._image_changed.wait())
        try:
            await asyncio.wait({exited, failing, replaced}, return_when=asyncio.FIRST_COMPLETED)
            if replaced.done() and not exited.done():
                await self._before_replacing()  # the old run goes on meanwhile, probed as before
            if not exited.done():
                await process.terminate(self.pod.pod.spec.termination_grace_period_seconds)
            exit_code = await exited
        finally:
            for task in (*probes, failing, replaced, exited):
                task.cancel()
            RUNNING_CONTAINERS.labels(self.pod.driver.name).dec()
        reason = await self._reap(process, exit_code)
        await self._ship_logs(final=True)
        self.record.pid = 0
        self._save()
        self._set(run_ended(self.status, exit_code, reason))
        return exit_code, time.monotonic() - began

    def _on_started(self, started: asyncio.Event) -> None:
        started.set()
        if self.container.readiness_probe is None:
            self._set(with_ready(self.status, True))

    # ------------------------------------------------------------ probes

    def _probe_port(self, port: int | str) -> int:
        return resolve_port(port, self.container.ports, self.record.host_ports)

    async def _probe_loop(self, kind: str, probe: Probe, process: ContainerProcess, started: asyncio.Event,
                          unhealthy: asyncio.Event) -> None:
        if kind != STARTUP:
            await started.wait()
        await asyncio.sleep(probe.initial_delay_seconds)
        state = initial_state(kind)
        if kind == READINESS and process.adopted:
            state = ProbeState(ok=self.status.ready)  # as the last agent left it, until the probe says otherwise
        while process.running():
            success = await self._probe_once(probe)
            if not success:
                PROBE_FAILURES.labels(kind, probe_handler(probe)).inc()
            state = observe(state, success, probe)
            if kind == READINESS:
                self._set(with_ready(self.status, state.ok))
            elif has_failed(state, probe):
                log.info("%s/%s container %s failed its %s probe %d times: restarting", self.record.namespace,
                         self.record.pod, self.container.name, kind, state.failures)
                unhealthy.set()
                return
            elif kind == STARTUP and state.ok:
                self._on_started(started)
                return
            await asyncio.sleep(max(probe.period_seconds, 1))

    # ------------------------------------------------------------ logs

    async def _ship_logs_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.log_poll_seconds)
            await self._ship_logs()

    async def _ship_logs(self, final: bool = False) -> None:
        async with self._log_lock:
            moved = False
            for stream, tail in self.tails.items():
                lines = tail.read_lines(final)
                if lines:
                    try:
                        await self.pod.driver.logs.publish(self.subject, stream, lines)
                    except Exception as exc:  # logs are not history: a lost chunk must not stop the container's care
                        log.warning("publishing logs of %s/%s failed: %s", self.record.pod, self.container.name, exc)
                tail.rotate_if_large()
                if tail.consumed != getattr(self.record, f"{stream}_offset"):
                    setattr(self.record, f"{stream}_offset", tail.consumed)
                    moved = True
            if moved:
                self._save()


def port_holder(namespace: str, pod: str) -> str:
    """Who holds a host port: the pod, as `namespace/name` (its containers share the host's network)."""
    return f"{namespace}/{pod}"


def _age(started_at: str) -> float:
    """Seconds since an RFC 3339 time (0 if there is none)."""
    if not started_at:
        return 0.0
    try:
        started = dt.datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 0.0)
