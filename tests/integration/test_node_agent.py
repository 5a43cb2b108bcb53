"""The node agent as users run it (a subprocess on a real nats-server): nodes, pods as processes, probes, logs, adoption, hollow nodes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest
from nats.js.errors import NoKeysError

from dockyard.eventlog import LOGS_STREAM, logs_subject, subject_for
from dockyard.schemas.events import (
    NodeRegistered,
    NodeStatusChanged,
    NodeUpdated,
    PodCreated,
    PodDeleted,
    PodScheduled,
)
from dockyard.schemas.manifests import Condition, Pod
from dockyard.servers import free_port
from dockyard.services.node_agent.logs import print_logs
from dockyard.services.node_agent.runtime import StateDir, kill_recorded_processes, proc_alive
from dockyard.state import fold
from tests.builders import make_pod
from tests.polling import eventually

pytestmark = pytest.mark.slow

NODE = "n1"
FAST_BACKOFF = ["--backoff-base", "0.5", "--backoff-max", "2", "--backoff-reset", "600"]


class Agent:
    """`python -m dockyard.services.node_agent ...` (or hollow-nodes) started and stopped by a test."""

    def __init__(self, module: str, args: list[str], nats_url: str, log_path: Path):
        self.module, self.args, self.log_path = module, args, log_path
        self.env = dict(os.environ, DOCKYARD_NATS_URL=nats_url, DOCKYARD_LOG_LEVEL="INFO")
        self.proc: subprocess.Popen | None = None

    async def start(self) -> Agent:
        port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-P", "-m", self.module, "--metrics-port", str(port),
                                          *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_path.read_text()[-3000:]}")
            try:
                status = await asyncio.to_thread(_get_status, f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"agent did not become ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _get_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status


def _get_body(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.fixture
def state_dir(tmp_path):
    root = tmp_path / "node"
    yield root
    kill_recorded_processes(root)  # what killed agents (stopped before this runs) left for a next one to adopt


@pytest.fixture
def agents(nats_server, eventlog, state_dir, tmp_path):
    started: list[Agent] = []

    async def start(*args: str, module: str = "dockyard.services.node_agent") -> Agent:
        agent = Agent(module, list(args), nats_server.url, tmp_path / f"agent-{len(started)}.log")
        started.append(agent)
        return await agent.start()

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def process_agent(agents, state_dir):
    async def start(*extra: str) -> Agent:
        return await agents("--name", NODE, "--driver", "process", "--state-dir", str(state_dir),
                            "--heartbeat-interval", "1", *FAST_BACKOFF, *extra)
    return start


# ---------------------------------------------------------------- helpers


def pod_with(name: str, containers: list[dict], **spec) -> Pod:
    pod = make_pod(name, containers=containers, **spec)
    meta = msgspec.structs.replace(pod.metadata, uid=str(uuid.uuid4()))
    return msgspec.structs.replace(pod, metadata=meta)


async def bind(eventlog, pod: Pod, node: str = NODE) -> Pod:
    subject = subject_for("pod", pod.metadata.namespace, pod.metadata.name)
    await eventlog.append(subject, PodCreated(pod=pod), expected_seq=0)
    await eventlog.append(subject, PodScheduled(node_name=node))
    return pod


async def current(eventlog, kind: str, name: str, namespace: str = "default"):
    return fold(await eventlog.read_aggregate(subject_for(kind, namespace if kind != "node" else "", name)))


async def pod_where(eventlog, name: str, predicate, timeout: float = 30.0) -> Pod:
    last: list[Pod | None] = [None]

    async def check():
        last[0] = await current(eventlog, "pod", name)
        return last[0] if last[0] is not None and predicate(last[0]) else None

    try:
        return await eventually(check, timeout, what=f"pod {name}")
    except AssertionError:
        status = msgspec.json.encode(last[0].status).decode() if last[0] else None
        raise AssertionError(f"pod {name} never matched; last status: {status}") from None


def condition(pod: Pod, type_: str) -> str:
    return next((c.status for c in pod.status.conditions if c.type == type_), "")


def running_and_ready(pod: Pod) -> bool:
    return pod.status.phase == "Running" and condition(pod, "Ready") == "True"


def record_of(state_dir: Path, pod: Pod, container: str) -> dict:
    pod_dir = StateDir(state_dir).pod_dir(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
    return json.loads(StateDir.record_path(pod_dir, container).read_text())


async def pid_gone(pid: int, ticks: int, timeout: float = 30.0) -> None:
    async def gone():
        return not proc_alive(pid, ticks)
    await eventually(gone, timeout, what=f"pid {pid} to end")


# ---------------------------------------------------------------- nodes


async def test_registers_a_ready_node_and_heartbeats(process_agent, agents, eventlog, state_dir):
    agent = await process_agent("--cpu", "2", "--memory", "4Gi", "--labels", "disk=ssd",
                                "--taints", "dedicated=gpu:NoSchedule")
    node = await current(eventlog, "node", NODE)
    assert node.metadata.labels == {"disk": "ssd", "kubernetes.io/hostname": NODE}
    assert node.spec.capacity == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("dedicated", "gpu", "NoSchedule")]
    assert node.status.allocatable == node.status.capacity == node.spec.capacity
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")

    kv = await eventlog.heartbeats()
    first = (await kv.get(NODE)).value.decode()
    assert first.endswith("Z")

    async def beat_again():
        return (await kv.get(NODE)).value.decode() > first
    await eventually(beat_again, what="a second heartbeat")

    # The same spec registered again by a restarted agent appends nothing.
    agent.stop()
    registrations = [r for r in await eventlog.read_aggregate(subject_for("node", "", NODE))
                     if isinstance(r.event, (NodeRegistered, NodeUpdated))]
    await process_agent("--cpu", "2", "--memory", "4Gi", "--labels", "disk=ssd",
                        "--taints", "dedicated=gpu:NoSchedule")
    again = [r for r in await eventlog.read_aggregate(subject_for("node", "", NODE))
             if isinstance(r.event, (NodeRegistered, NodeUpdated))]
    assert again == registrations


async def test_a_live_agent_puts_its_node_back_to_ready(process_agent, eventlog):
    await process_agent()
    node = await current(eventlog, "node", NODE)
    unknown = Condition(type="Ready", status="Unknown", reason="NodeStatusUnknown", last_transition_time="T")
    await eventlog.append(subject_for("node", "", NODE), NodeStatusChanged(
        status=msgspec.structs.replace(node.status, conditions=(unknown,))))

    async def ready_again():
        return condition(await current(eventlog, "node", NODE), "Ready") == "True"
    await eventually(ready_again, what="the node Ready again")


# ---------------------------------------------------------------- pods as processes


HTTP_SERVER = {
    "name": "web",
    "command": ["python3", "-m", "http.server", "$(DOCKYARD_PORT_HTTP)", "--bind", "127.0.0.1"],
    "ports": [{"name": "http", "containerPort": 8080}],
    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
}


async def test_http_server_runs_ready_serves_and_comes_back_after_sigkill(process_agent, eventlog, state_dir):
    await process_agent()
    pod = await bind(eventlog, pod_with("web-1", [HTTP_SERVER]))
    ready = await pod_where(eventlog, "web-1", running_and_ready)
    (web,) = ready.status.container_statuses
    port = web.host_ports["http"]
    assert (web.state, web.ready, web.restart_count) == ("running", True, 0)
    assert ready.status.host_ip == "127.0.0.1" and ready.status.start_time
    assert [c.type for c in ready.status.conditions] == ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
    status, _ = await asyncio.to_thread(_get_body, f"http://127.0.0.1:{port}/")
    assert status == 200

    first = record_of(state_dir, pod, "web")
    os.kill(first["pid"], signal.SIGKILL)
    again = await pod_where(eventlog, "web-1", lambda p: p.status.container_statuses[0].restart_count == 1
                            and running_and_ready(p))
    (web,) = again.status.container_statuses
    assert (web.last_state, web.last_reason, web.last_exit_code) == ("terminated", "Error", 137)
    assert web.host_ports["http"] == port  # a restart keeps the pod's port
    assert record_of(state_dir, pod, "web")["pid"] != first["pid"]
    status, _ = await asyncio.to_thread(_get_body, f"http://127.0.0.1:{port}/")
    assert status == 200


async def test_never_restarted_exit_3_fails_with_its_exit_code(process_agent, eventlog):
    await process_agent()
    await bind(eventlog, pod_with("once", [{"name": "main", "command": ["sh", "-c", "exit 3"]}],
                                  restartPolicy="Never"))
    failed = await pod_where(eventlog, "once", lambda p: p.status.phase == "Failed")
    (main,) = failed.status.container_statuses
    assert (main.state, main.reason, main.exit_code, main.restart_count) == ("terminated", "Error", 3, 0)
    assert condition(failed, "Ready") == "False"


async def test_on_failure_crash_loop_backs_off(process_agent, eventlog):
    await process_agent()
    await bind(eventlog, pod_with("crash", [{"name": "main", "command": ["sh", "-c", "echo crashing; exit 1"]}],
                                  restartPolicy="OnFailure"))
    looping = await pod_where(eventlog, "crash", lambda p: p.status.container_statuses
                              and p.status.container_statuses[0].reason == "CrashLoopBackOff")
    (main,) = looping.status.container_statuses
    assert (main.state, main.last_state, main.last_reason, main.last_exit_code) == ("waiting", "terminated", "Error", 1)
    assert main.restart_count >= 1 and looping.status.phase == "Running"
    later = await pod_where(eventlog, "crash", lambda p: p.status.container_statuses[0].restart_count
                            >= main.restart_count + 2)
    assert later.status.container_statuses[0].last_exit_code == 1


async def test_on_failure_clean_exit_succeeds(process_agent, eventlog):
    await process_agent()
    await bind(eventlog, pod_with("job", [{"name": "main", "command": ["true"]}], restartPolicy="OnFailure"))
    done = await pod_where(eventlog, "job", lambda p: p.status.phase == "Succeeded")
    assert done.status.container_statuses[0].reason == "Completed"


async def test_failing_liveness_probe_restarts_the_container(process_agent, eventlog):
    await process_agent()
    container = {"name": "main", "command": ["sleep", "1000"],
                 "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}}
    await bind(eventlog, pod_with("sick", [container]))
    restarted = await pod_where(eventlog, "sick", lambda p: p.status.container_statuses
                                and p.status.container_statuses[0].restart_count >= 1)
    assert restarted.status.container_statuses[0].last_exit_code == 128 + signal.SIGTERM


async def test_a_container_without_a_command_waits_instead_of_crash_looping(process_agent, eventlog):
    await process_agent()
    await bind(eventlog, pod_with("imaged", [{"name": "main", "image": "nginx:1.27"}]))
    waiting = await pod_where(eventlog, "imaged", lambda p: p.status.container_statuses
                              and p.status.container_statuses[0].reason == "CreateContainerConfigError")
    assert waiting.status.phase == "Pending" and waiting.status.container_statuses[0].restart_count == 0


async def test_a_probe_can_use_the_container_port_number(process_agent, eventlog):
    await process_agent()
    container = {**HTTP_SERVER, "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    await bind(eventlog, pod_with("tcp", [container]))
    await pod_where(eventlog, "tcp", running_and_ready)


# ---------------------------------------------------------------- logs


async def test_logs_reach_dy_logs_and_print(process_agent, eventlog):
    await process_agent()
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; sleep 1000"
    talk = await bind(eventlog, pod_with("talk", [{"name": "main", "command": ["sh", "-c", script]}]))
    subject = logs_subject("default", "talk", talk.metadata.uid, "main", 0)

    async def six_lines():
        info = await eventlog.js.stream_info(LOGS_STREAM, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0) >= 6
    await eventually(six_lines, what="six log lines")

    err = await eventlog.js.get_msg(LOGS_STREAM, subject=subject)
    assert err.data == b"oops" and err.headers["Dy-Stream"] == "stderr" and err.headers["Dy-Time"].endswith("Z")

    out = io.StringIO()
    assert await print_logs(eventlog, "default", "talk", out=out) == 0
    assert sorted(out.getvalue().splitlines()) == sorted([f"line {i}" for i in range(1, 6)] + ["oops"])

    out = io.StringIO()
    await print_logs(eventlog, "default", "talk", tail=2, timestamps=True, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.split(" ", 1)[0].endswith("Z") for line in lines)
    assert lines[-1].split(" ", 1)[1] == "oops"

    out = io.StringIO()
    await print_logs(eventlog, "default", "talk", container="main", tail=0, out=out)
    assert out.getvalue() == ""


async def test_follow_prints_new_lines(process_agent, eventlog):
    await process_agent()
    script = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"
    await bind(eventlog, pod_with("ticker", [{"name": "main", "command": ["sh", "-c", script]}]))
    out = io.StringIO()
    follower = asyncio.create_task(print_logs(eventlog, "default", "ticker", follow=True, tail=1, out=out))

    async def several():
        return len(out.getvalue().splitlines()) >= 3
    await eventually(several, what="followed lines")
    follower.cancel()
    numbers = [int(line.split()[1]) for line in out.getvalue().splitlines()]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


async def test_logs_of_a_pod_with_several_containers_need_a_name(process_agent, eventlog):
    await process_agent()
    await bind(eventlog, pod_with("pair", [{"name": "a", "command": ["sh", "-c", "echo from-a; sleep 1000"]},
                                           {"name": "b", "command": ["sh", "-c", "echo from-b; sleep 1000"]}]))
    with pytest.raises(ValueError, match=r"a container name must be specified for pod pair, choose one of: \[a b\]"):
        await print_logs(eventlog, "default", "pair")
    with pytest.raises(ValueError, match="container c is not valid for pod pair"):
        await print_logs(eventlog, "default", "pair", container="c")

    async def from_b():
        out = io.StringIO()
        await print_logs(eventlog, "default", "pair", container="b", out=out)
        return out.getvalue() == "from-b\n"
    await eventually(from_b, what="b's line")


# ---------------------------------------------------------------- termination and adoption


async def test_deleted_pod_gets_sigterm_then_sigkill_after_the_grace_period(process_agent, eventlog, state_dir,
                                                                             tmp_path):
    await process_agent()
    marker = tmp_path / "got-term"
    stubborn = ("import os, signal, time\n"
                "signal.signal(signal.SIGTERM, lambda *_: open(os.environ['MARKER'], 'w').close())\n"
                "print('up', flush=True)\n"
                "while True: time.sleep(1)\n")
    pod = await bind(eventlog, pod_with("stubborn", [{"name": "main", "command": ["python3", "-c", stubborn],
                                                      "env": [{"name": "MARKER", "value": str(marker)}]}],
                                        terminationGracePeriodSeconds=2))
    await pod_where(eventlog, "stubborn", running_and_ready)

    async def up():  # its handler is in place once it says so
        out = io.StringIO()
        await print_logs(eventlog, "default", "stubborn", out=out)
        return out.getvalue() == "up\n"
    await eventually(up, what="the process to start")
    record = record_of(state_dir, pod, "main")
    await eventlog.append(subject_for("pod", "default", "stubborn"), PodDeleted())
    await pid_gone(record["pid"], record["start_ticks"])
    assert marker.exists()  # it was asked first, and ignored it

    async def cleaned():
        return not StateDir(state_dir).pod_dir("default", "stubborn", pod.metadata.uid).exists()
    await eventually(cleaned, what="the pod's state directory to go")


async def test_restarted_agent_adopts_its_processes_and_stops_deleted_pods(process_agent, eventlog, state_dir):
    agent = await process_agent()
    sleeper = [{"name": "main", "command": ["sleep", "1000"]}]
    talker = "echo first; while [ ! -f go ]; do sleep 0.1; done; echo second; exec sleep 1000"
    keep = await bind(eventlog, pod_with("keep", [{"name": "main", "command": ["sh", "-c", talker]}]))
    gone = await bind(eventlog, pod_with("gone", sleeper))
    await pod_where(eventlog, "keep", running_and_ready)
    await pod_where(eventlog, "gone", running_and_ready)
    kept, doomed = record_of(state_dir, keep, "main"), record_of(state_dir, gone, "main")

    async def logs_are(expected):
        out = io.StringIO()
        await print_logs(eventlog, "default", "keep", out=out)
        return out.getvalue() == expected
    await eventually(lambda: logs_are("first\n"), what="the first line")

    async def offset_saved():
        return record_of(state_dir, keep, "main")["stdout_offset"] == len(b"first\n")
    await eventually(offset_saved, what="the shipped offset saved")

    agent.kill()
    await eventlog.append(subject_for("pod", "default", "gone"), PodDeleted())
    before = await eventlog.last_seq(subject_for("pod", "default", "keep"))
    await process_agent()

    await pid_gone(doomed["pid"], doomed["start_ticks"])
    assert proc_alive(kept["pid"], kept["start_ticks"])
    assert record_of(state_dir, keep, "main")["pid"] == kept["pid"]
    pod = await current(eventlog, "pod", "keep")
    assert running_and_ready(pod) and pod.status.container_statuses[0].restart_count == 0
    # It reports nothing new for a pod whose status did not change.
    assert await eventlog.last_seq(subject_for("pod", "default", "keep")) == before
    # It ships what the process writes from where the last agent stopped: nothing twice.
    work = StateDir.work_dir(StateDir(state_dir).pod_dir("default", "keep", keep.metadata.uid))
    (work / "go").touch()
    await eventually(lambda: logs_are("first\nsecond\n"), what="the line written after adoption")

    # An adopted process is watched too: when it dies it is restarted (exit code unknown).
    os.kill(kept["pid"], signal.SIGKILL)
    again = await pod_where(eventlog, "keep", lambda p: p.status.container_statuses[0].restart_count == 1
                            and running_and_ready(p))
    main = again.status.container_statuses[0]
    assert (main.last_reason, main.last_exit_code) == ("Unknown", None)


# ---------------------------------------------------------------- hollow


async def test_hollow_nodes_register_and_run_bound_pods(agents, eventlog):
    await agents("--count", "50", "--start-delay", "0.2", "--heartbeat-interval", "1",
                 module="dockyard.services.node_agent.hollow")
    nodes = [await current(eventlog, "node", f"hollow-{i}") for i in range(50)]
    assert all(n is not None and condition(n, "Ready") == "True" for n in nodes)
    assert {n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes} == {"zone-0", "zone-1", "zone-2"}
    kv = await eventlog.heartbeats()

    async def all_beat():
        try:
            return len(await kv.keys()) >= 50
        except NoKeysError:
            return False
    await eventually(all_beat, what="50 heartbeats")

    for i in range(10):
        await bind(eventlog, pod_with(f"sim-{i}", [{"name": "main", "image": "nginx"}]), node=f"hollow-{i * 5}")
    for i in range(10):
        pod = await pod_where(eventlog, f"sim-{i}", running_and_ready)
        assert pod.status.container_statuses[0].state == "running"
    await eventlog.append(subject_for("pod", "default", "sim-0"), PodDeleted())


async def test_hollow_driver_for_one_node(agents, eventlog):
    await agents("--name", "h1", "--driver", "hollow", "--start-delay", "0")
    node = await current(eventlog, "node", "h1")
    assert node.spec.capacity == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    await bind(eventlog, pod_with("sim", [{"name": "main", "image": "nginx"}]), node="h1")
    await pod_where(eventlog, "sim", running_and_ready)


async def test_a_stopped_agent_stops_its_pods(process_agent, eventlog, state_dir):
    agent = await process_agent()
    pod = await bind(eventlog, pod_with("short", [{"name": "main", "command": ["sleep", "1000"]}]))
    await pod_where(eventlog, "short", running_and_ready)
    record = record_of(state_dir, pod, "main")
    agent.stop()
    await pid_gone(record["pid"], record["start_ticks"], timeout=5)


async def test_keep_pods_on_exit_leaves_them_to_the_next_agent(process_agent, eventlog, state_dir):
    agent = await process_agent("--keep-pods-on-exit")
    pod = await bind(eventlog, pod_with("kept", [{"name": "main", "command": ["sleep", "1000"]}]))
    await pod_where(eventlog, "kept", running_and_ready)
    record = record_of(state_dir, pod, "main")
    agent.stop()
    assert proc_alive(record["pid"], record["start_ticks"])
    successor = await process_agent()

    async def adopted():
        return "adopted default/kept container main" in successor.log_path.read_text()
    await eventually(adopted, what="the process adopted")
    assert proc_alive(record["pid"], record["start_ticks"])
    assert record_of(state_dir, pod, "main")["pid"] == record["pid"]
    assert (await current(eventlog, "pod", "kept")).status.container_statuses[0].restart_count == 0
