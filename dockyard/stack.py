"""`dockyard up`, `down` and `status`: the whole platform on one machine, under DOCKYARD_HOME."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dockyard import config
from dockyard.config import ComponentInfo, StackInfo
from dockyard.db import database_ready, migrate
from dockyard.eventlog import EventLog
from dockyard.servers import NatsServer, PostgresServer, ServerError, free_port, pid_alive, tail, terminate
from dockyard.services.registry_indexer.options import RegistryOptions

SERVICES = ("api", "projector", "scheduler", "controller", "monitoring", "node-agent")
ALERT_RULES_FILE = "alert-rules.yaml"  # in DOCKYARD_HOME: the operator's alert rules, if present
RESTART_BACKOFF_MAX = 30.0


def local_node_driver() -> tuple[str, str]:
    """The local node's driver: runc where it works and dockyard runs as root, else process; and why."""
    from dockyard.services.node_agent.runc_driver import runc_problem

    problem = runc_problem()
    return ("process", problem) if problem else ("runc", "runc works here and dockyard runs as root")


def service_arguments(root: Path, hollow_nodes: int, local_node: bool = True,
                      node_driver: str = "process", registry: RegistryOptions | None = None) -> dict[str, list[str]]:
    """Each child service of the stack and its flags: a local node (`node_driver`), maybe hollow nodes."""
    arguments = {name: [] for name in SERVICES}
    arguments["node-agent"] = ["--name", socket.gethostname().lower(), "--driver", node_driver,
                               "--state-dir", str(root / "node-agent")]
    if not local_node:  # e.g. a stack that will receive `dockyard events import`: its log stays empty
        del arguments["node-agent"]
    # Passed even before the file exists: the monitoring service picks it up when it appears.
    arguments["monitoring"] = ["--rules", str(root / ALERT_RULES_FILE)]
    if hollow_nodes:
        arguments["hollow-nodes"] = ["--count", str(hollow_nodes)]
    if registry is not None:
        arguments["registry-indexer"] = registry.indexer_arguments()
        if registry.insecure and "node-agent" in arguments and node_driver == "runc":  # it pulls from there too
            host = urllib.parse.urlsplit(registry.url).netloc  # a URL with a scheme: cli's registry_url saw to it
            arguments["node-agent"] += ["--insecure-registry", host]
    return arguments


def say_local_node(driver: tuple[str, str]) -> None:
    _say(f"local node: the {driver[0]} driver ({driver[1]})")


class StackError(Exception):
    """The stack could not be brought up or down; the message says what to look at."""


def _say(message: str) -> None:
    print(message, flush=True)


class Supervisor:
    """Starts the servers and services in order, restarts services that die, stops all in reverse."""

    def __init__(self, root: Path, hollow_nodes: int = 0, local_node: bool = True,
                 registry: RegistryOptions | None = None):
        self.root = root
        self.node_driver = local_node_driver() if local_node else ("", "")
        self.arguments = service_arguments(root, hollow_nodes, local_node, self.node_driver[0] or "process",
                                           registry)
        self.logs = root / "logs"
        self.nats: NatsServer | None = None
        self.postgres: PostgresServer | None = None
        self.services: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.restarts: dict[str, tuple[int, float]] = {}
        self.info: StackInfo | None = None
        self.stopping = False

    def start(self) -> StackInfo:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        nats_url = os.environ.get("DOCKYARD_NATS_URL") or self._start_nats()
        database_url = config.normalise_database_url(os.environ.get("DOCKYARD_DATABASE_URL", "")) \
            or self._start_postgres()
        if "node-agent" in self.arguments:
            say_local_node(self.node_driver)
        _say("applying migrations (alembic upgrade head)")
        migrate(database_url)
        asyncio.run(_ensure_streams(nats_url))
        components = [self._component("nats", nats_url), self._component("postgres", database_url)]
        for name in self.arguments:
            self.ports[name] = free_port()
            self._spawn(name, nats_url, database_url)
            components.append(ComponentInfo(name=name, pid=self.services[name].pid,
                                            health_url=f"http://127.0.0.1:{self.ports[name]}",
                                            log=str(self.logs / f"{name}.log")))
        self.info = StackInfo(home=str(self.root), nats_url=nats_url, database_url=database_url,
                              supervisor_pid=os.getpid(), ready=False, components=components)
        config.write_stack(self.info)
        self._wait_services_ready()
        self.info.ready = True
        config.write_stack(self.info)
        return self.info

    def _start_nats(self) -> str:
        self.nats = NatsServer(self.root / "nats")
        _say(f"starting nats-server (JetStream in {self.nats.data_dir / 'jetstream'})")
        self.nats.start()
        return self.nats.url

    def _start_postgres(self) -> str:
        self.postgres = PostgresServer(self.root / "postgres" / "data")
        _say(f"starting PostgreSQL (data in {self.postgres.data_dir})")
        self.postgres.start()
        return self.postgres.url()

    def _component(self, name: str, url: str) -> ComponentInfo:
        server = self.nats if name == "nats" else self.postgres
        if server is None:
            return ComponentInfo(name=name, url=url)
        health = server.monitor_url if name == "nats" else ""
        return ComponentInfo(name=name, pid=server.pid or 0, url=url, health_url=health, log=str(server.log_path))

    def _spawn(self, name: str, nats_url: str, database_url: str) -> None:
        env = dict(os.environ, DOCKYARD_NATS_URL=nats_url, DOCKYARD_DATABASE_URL=database_url,
                   DOCKYARD_HOME=str(self.root))
        with open(self.logs / f"{name}.log", "ab") as log:
            self.services[name] = subprocess.Popen(
                [sys.executable, "-P", "-m", "dockyard", "run", name, "--metrics-port", str(self.ports[name]),
                 *self.arguments[name]],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _wait_services_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for name in self.arguments:
            while not _http_ok(f"http://127.0.0.1:{self.ports[name]}/readyz"):
                if self.services[name].poll() is not None:
                    raise StackError(f"{name} exited with code {self.services[name].returncode}; its log:\n"
                                     f"{tail(self.logs / f'{name}.log')}")
                if time.monotonic() > deadline:
                    raise StackError(f"{name} did not become ready; see {self.logs / f'{name}.log'}")
                time.sleep(0.1)

    def watch(self) -> None:
        """Restart services that exit, with back-off, until asked to stop."""
        assert self.info is not None
        while not self.stopping:
            for name, proc in list(self.services.items()):
                if proc.poll() is None:
                    continue
                count, since = self.restarts.get(name, (0, 0.0))
                delay = min(2.0**count, RESTART_BACKOFF_MAX)
                if time.monotonic() - since < delay:
                    continue
                _say(f"{name} exited with code {proc.returncode}; restarting (see {self.logs / f'{name}.log'})")
                self._spawn(name, self.info.nats_url, self.info.database_url)
                self.restarts[name] = (count + 1, time.monotonic())
                for component in self.info.components:
                    if component.name == name:
                        component.pid = self.services[name].pid
                config.write_stack(self.info)
            time.sleep(0.5)

    def stop(self) -> None:
        self.stopping = True
        for name, proc in reversed(list(self.services.items())):
            if proc.poll() is None:
                _say(stopping_message(name, local_pods(self.root) if name == "node-agent" else None))
            terminate(proc.pid, grace=15.0)
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()
        config.stack_file(self.root).unlink(missing_ok=True)


async def _ensure_streams(nats_url: str) -> None:
    log = await EventLog.connect(nats_url, name="dockyard-up")
    try:
        await log.ensure_streams()
    finally:
        await log.close()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _tcp_ok(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=2):
            return True
    except OSError:
        return False


def print_summary(info: StackInfo) -> None:
    _say(f"dockyard is up (home: {info.home})")
    _say(f"  nats:       {info.nats_url}")
    _say(f"  postgresql: {info.database_url}")
    for component in info.components:
        if component.name not in ("nats", "postgres"):
            _say(f"  {component.name + ':':<11} pid {component.pid}, metrics {component.health_url}/metrics")
    _say(f"  logs:       {Path(info.home) / 'logs'}")


def running_stack(root: Path) -> StackInfo | None:
    info = config.read_stack(root)
    if info and pid_alive(info.supervisor_pid):
        return info
    return None


def up(root: Path, detach: bool, hollow_nodes: int = 0, local_node: bool = True,
       registry: RegistryOptions | None = None) -> int:
    existing = running_stack(root)
    if existing:
        _say(f"dockyard is already up under {root} (supervisor pid {existing.supervisor_pid})")
        return 0
    if detach:
        return _up_detached(root, hollow_nodes, local_node, registry)
    supervisor = Supervisor(root, hollow_nodes, local_node, registry)

    def request_stop(signum, frame):
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        info = supervisor.start()
        print_summary(info)
        _say("press Ctrl-C to stop")
        supervisor.watch()
    except (ServerError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        supervisor.stop()
        return 1
    _say("stopping dockyard")
    supervisor.stop()
    _say("stopped; data kept in " + str(root))
    return 0


def _up_detached(root: Path, hollow_nodes: int, local_node: bool, registry: RegistryOptions | None = None) -> int:
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    log_path = root / "logs" / "up.log"
    with open(log_path, "ab") as log:
        command = [sys.executable, "-P", "-m", "dockyard", "up", "--hollow-nodes", str(hollow_nodes),
                   *(registry.up_arguments() if registry else [])]
        proc = subprocess.Popen(command + ([] if local_node else ["--no-local-node"]),
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, DOCKYARD_HOME=str(root)))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        info = config.read_stack(root)
        if info and info.ready and info.supervisor_pid == proc.pid:
            if local_node:  # the supervisor decided the same way, on this machine as this user
                say_local_node(local_node_driver())
            print_summary(info)
            return 0
        if proc.poll() is not None:
            print(f"error: dockyard up failed; its log ({log_path}):\n{tail(log_path)}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"error: dockyard up did not become ready in time; see {log_path}", file=sys.stderr)
    return 1


def down(root: Path) -> int:
    info = config.read_stack(root)
    if info is None:
        _say(f"dockyard is not running under {root}")
        return 0
    if pid_alive(info.supervisor_pid):
        os.kill(info.supervisor_pid, signal.SIGTERM)
        _wait_for_supervisor(info, root, timeout=90)
    if pid_alive(info.supervisor_pid):
        terminate(info.supervisor_pid, grace=0)
    # Whatever the supervisor left behind (it may have crashed) goes too.
    for component in reversed(info.components):
        if component.name == "postgres" and component.pid and pid_alive(component.pid):
            PostgresServer(Path(info.home) / "postgres" / "data").stop()
        elif component.pid:
            terminate(component.pid)
    from dockyard.services.node_agent.runc_driver import delete_all_containers
    from dockyard.services.node_agent.runtime import kill_recorded_processes

    kill_recorded_processes(root / "node-agent")  # pods of an agent that crashed
    delete_all_containers(root / "node-agent")  # and its runc containers, which outlive their `runc run`
    config.stack_file(root).unlink(missing_ok=True)
    _say(f"dockyard stopped; data kept in {root}")
    return 0


def _wait_for_supervisor(info: StackInfo, root: Path, timeout: float) -> None:
    """Wait for the supervisor to stop everything, saying what it is waiting on as that changes
    (a node agent stopping its pods takes their grace periods: `down` must not look hung)."""
    deadline = time.monotonic() + timeout
    said: str | None = None
    while pid_alive(info.supervisor_pid) and time.monotonic() < deadline:
        component = waiting_on(info.components, pid_alive)
        if component is not None and component.name != said:
            pods = local_pods(root) if component.name == "node-agent" else None
            _say(stopping_message(component.name, pods))
            said = component.name
        time.sleep(0.1)
    if pid_alive(info.supervisor_pid):
        _say(f"the supervisor (pid {info.supervisor_pid}) did not stop in {timeout:.0f}s; killing what is left")


def stop_order(components: list[ComponentInfo]) -> list[ComponentInfo]:
    """The order Supervisor.stop stops components in: services newest first, then NATS, then PostgreSQL."""
    services = [c for c in components if c.name not in ("nats", "postgres")]
    servers = sorted((c for c in components if c.name in ("nats", "postgres")), key=lambda c: c.name)
    return [*reversed(services), *servers]


def waiting_on(components: list[ComponentInfo], alive: Callable[[int], bool]) -> ComponentInfo | None:
    """The component a stopping supervisor is waiting on: the first still alive in its stop order."""
    return next((c for c in stop_order(components) if c.pid and alive(c.pid)), None)


def stopping_message(name: str, pods: int | None = None) -> str:
    if pods is None:
        return f"stopping {name}..."
    return f"stopping {name} ({pods} pod{'' if pods == 1 else 's'})..."


def local_pods(root: Path) -> int:
    """How many pods the local node agent has on this machine, from its state directory."""
    from dockyard.services.node_agent.runtime import StateDir

    return len(StateDir(root / "node-agent").scan())


def component_health(component: ComponentInfo) -> tuple[bool, str]:
    if component.pid and not pid_alive(component.pid):
        return False, "not running"
    if component.name == "nats":
        ok = _http_ok(component.health_url + "/healthz?js-enabled-only=true") if component.health_url \
            else _tcp_ok(component.url)
    elif component.name == "postgres":
        ok = database_ready(component.url)
    else:
        ok = _http_ok(component.health_url + "/readyz")
    return ok, "healthy" if ok else "unhealthy"


def status(root: Path) -> int:
    from dockyard.cluster_summary import cluster_summary
    from dockyard.printers import cluster_summary_lines, format_table

    info = config.read_stack(root)
    if info is None:
        _say(f"dockyard is not running under {root}")
        return 1
    rows, all_ok = [], True
    for component in info.components:
        ok, state = component_health(component)
        all_ok &= ok
        endpoint = component.url if component.name in ("nats", "postgres") else component.health_url + "/metrics"
        rows.append([component.name, state, str(component.pid or "external"), endpoint])
    supervisor = "running" if pid_alive(info.supervisor_pid) else "not running"
    _say(f"home: {info.home}   supervisor: {supervisor} (pid {info.supervisor_pid})")
    _say(format_table(["COMPONENT", "STATUS", "PID", "ENDPOINT"], rows))
    _say("")
    for line in cluster_summary_lines(asyncio.run(cluster_summary(info.nats_url, info.database_url))):
        _say(line)
    return 0 if all_ok else 1
