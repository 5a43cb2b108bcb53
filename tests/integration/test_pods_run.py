"""Pods run, end to end: api, projector, scheduler, controller and node agents on real NATS and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from dockyard.eventlog import kind_filter
from dockyard.state import evolve
from tests.polling import wait_for

FAST_AGENT = ("--driver", "process", "--heartbeat-interval", "0.5", "--backoff-base", "0.2", "--backoff-max", "1")


def dockyard(env, *args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, input=stdin, capture_output=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return result.stdout.decode()


def http_server_deployment(name: str = "web", replicas: int = 3, extra_args: tuple[str, ...] = (),
                           max_unavailable: int | None = None) -> dict:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{
                "name": "http",
                "command": ["python3", "-m", "http.server", "$(DOCKYARD_PORT_HTTP)", *extra_args],
                "ports": [{"name": "http", "containerPort": 8000}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
            }], "terminationGracePeriodSeconds": 2},
        },
    }
    if max_unavailable is not None:
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable,
                                                                       "maxSurge": 1}}
    return {"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def pods_of(env, app: str) -> list[dict]:
    return json.loads(ok(dockyard(env, "get", "pods", "-l", f"app={app}", "-o", "json")))["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def all_ready(env, app: str, count: int):
    pods = pods_of(env, app)
    return pods if len(pods) == count and all(ready(p) and p["status"]["phase"] == "Running" for p in pods) else None


@pytest.fixture
def cluster(services, nats_server, database_url, tmp_path):
    """The whole platform with fast clocks; `add_node(name)` starts another node agent."""
    services("projector")
    services("api")
    services("scheduler")
    services("controller", "--node-grace", "3", "--eviction-timeout", "2", "--tick", "0.5")
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)

    nodes: list[str] = []

    def add_node(name: str, *extra: str):
        nodes.append(name)
        return services("node-agent", "--name", name, "--state-dir", str(tmp_path / name), *FAST_AGENT, *extra)

    yield env, add_node
    from dockyard.services.node_agent.runtime import kill_recorded_processes

    for name in nodes:  # a killed agent leaves its processes behind, as a crashed kubelet would
        kill_recorded_processes(tmp_path / name)


def test_a_deployment_serves_http_and_heals(cluster):
    env, add_node = cluster
    add_node("n1")
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(http_server_deployment()).encode()))
    pods = wait_for(lambda: all_ready(env, "web", 3), what="3 ready pods")

    ports = [p["status"]["containerStatuses"][0]["hostPorts"]["http"] for p in pods]
    assert len(set(ports)) == 3
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200

    import psutil

    victim = pods[0]
    port = victim["status"]["containerStatuses"][0]["hostPorts"]["http"]
    pid = next(c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid)
    os.kill(pid, signal.SIGKILL)

    def restarted():
        pod = json.loads(ok(dockyard(env, "get", "pod", victim["metadata"]["name"], "-o", "json")))
        status = pod["status"]["containerStatuses"][0]
        return status.get("restartCount", 0) >= 1 and ready(pod)

    wait_for(restarted, what="the killed container restarted and ready")
    assert len(pods_of(env, "web")) == 3


def ready_counts_during(records, app: str, after_seq: int) -> list[int]:
    """Replay pods from the log; the count of Ready pods of `app` after each event past `after_seq`."""
    pods: dict = {}
    counts = []
    for record in records:
        key = record.subject
        pods[key] = evolve(pods.get(key), record)
        if pods[key] is None:
            del pods[key]
        if record.seq > after_seq:
            counts.append(sum(1 for p in pods.values() if p.metadata.labels.get("app") == app
                              and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)))
    return counts


async def test_rolling_update_keeps_five_of_six_ready_and_undo_returns(cluster, eventlog):
    env, add_node = cluster
    add_node("n1")
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(http_server_deployment(
        "roll", 6, max_unavailable=1)).encode()))
    first = wait_for(lambda: all_ready(env, "roll", 6), what="6 ready pods")
    first_hash = {p["metadata"]["labels"]["pod-template-hash"] for p in first}
    before_update = await eventlog.last_stream_seq()

    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(http_server_deployment(
        "roll", 6, extra_args=("--bind", "127.0.0.1"), max_unavailable=1)).encode()))
    status = ok(dockyard(env, "rollout", "status", "deployment", "roll", "--timeout", "120"))
    assert 'deployment "roll" successfully rolled out' in status
    second = wait_for(lambda: all_ready(env, "roll", 6), what="6 ready pods on the new revision")
    second_hash = {p["metadata"]["labels"]["pod-template-hash"] for p in second}
    assert len(second_hash) == 1 and second_hash != first_hash

    records = [r async for r in eventlog.read(kind_filter("pod"))]
    counts = ready_counts_during(records, "roll", before_update)
    assert counts and min(counts) >= 5, counts

    history = ok(dockyard(env, "rollout", "history", "deployment", "roll")).splitlines()
    assert [line.split()[0] for line in history[2:]] == ["1", "2"]
    assert ok(dockyard(env, "rollout", "undo", "deployment", "roll")).strip() == "deployment/roll rolled back"
    ok(dockyard(env, "rollout", "status", "deployment", "roll", "--timeout", "120"))
    third = wait_for(lambda: all_ready(env, "roll", 6), what="6 ready pods after undo")
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in third} == first_hash


def test_a_lost_node_goes_not_ready_and_its_pods_move(cluster):
    env, add_node = cluster
    doomed = add_node("n1")
    add_node("n2")
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(http_server_deployment("spread", 4)).encode()))
    wait_for(lambda: all_ready(env, "spread", 4), what="4 ready pods")

    doomed.kill()
    wait_for(lambda: "NotReady" in ok(dockyard(env, "get", "node", "n1")), what="n1 NotReady")

    def all_on_n2():
        pods = all_ready(env, "spread", 4)
        return pods if pods and all(p["spec"]["nodeName"] == "n2" for p in pods) else None

    wait_for(all_on_n2, timeout=120, what="the pods replaced on n2")


def test_a_pod_that_cannot_fit_waits_with_the_reason_then_lands(cluster):
    env, add_node = cluster
    add_node("small", "--cpu", "1")
    big = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
           "spec": {"containers": [{"name": "c", "command": ["sleep", "600"],
                                    "resources": {"requests": {"cpu": "8"}}}]}}
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(big).encode()))

    def explained():
        text = dockyard(env, "explain", "pod", "big").stdout.decode()
        return text if "insufficient cpu" in text else None

    text = wait_for(explained, what="the unschedulable reason")
    assert "0/1 nodes fit" in text
    pod = json.loads(ok(dockyard(env, "get", "pod", "big", "-o", "json")))
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")

    add_node("large", "--cpu", "16")
    wait_for(lambda: json.loads(ok(dockyard(env, "get", "pod", "big", "-o", "json")))["spec"].get("nodeName")
             == "large", what="big placed on the large node")


def test_scale_cordon_and_drain(cluster):
    env, add_node = cluster
    add_node("d1")
    add_node("d2")
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(http_server_deployment("drainme", 2)).encode()))
    wait_for(lambda: all_ready(env, "drainme", 2), what="2 ready pods")
    assert ok(dockyard(env, "scale", "deployment", "drainme", "--replicas", "4")).strip() == \
        "deployment/drainme scaled"
    wait_for(lambda: all_ready(env, "drainme", 4), what="4 ready pods")

    drained = ok(dockyard(env, "drain", "d1", "--timeout", "120"))
    assert "node/d1 cordoned" in drained and "node/d1 drained" in drained
    pods = wait_for(lambda: all_ready(env, "drainme", 4), what="4 ready pods after the drain")
    assert all(p["spec"]["nodeName"] == "d2" for p in pods)
    assert "SchedulingDisabled" in ok(dockyard(env, "get", "node", "d1"))
    assert ok(dockyard(env, "uncordon", "d1")).strip() == "node/d1 uncordoned"


async def test_two_schedulers_200_hollow_nodes_2000_pods_no_overcommit(cluster, services, eventlog, database_url):
    """Checked from the projections and from the log: no node over allocatable, no pod bound twice."""
    import collections

    from sqlalchemy import create_engine, text

    from dockyard.schemas.events import PodScheduled, PodsBound
    from dockyard.schemas.quantity import cpu_millis

    env, _ = cluster
    services("scheduler")  # a second instance, racing the first
    # Heartbeats well inside the cluster fixture's 3 s node grace, or the nodes would be declared lost.
    services("hollow-nodes", "--count", "200", "--cpu", "2", "--start-delay", "0.2", "--heartbeat-interval", "0.5")
    manifest = {"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": "many"},
                "spec": {"replicas": 2000, "selector": {"matchLabels": {"app": "many"}},
                         "template": {"metadata": {"labels": {"app": "many"}},
                                      "spec": {"containers": [{"name": "c", "image": "hollow",
                                                               "resources": {"requests": {"cpu": "250m"}}}]}}}}
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(manifest).encode()))
    fit = 200 * (2000 // 250)
    engine = create_engine(database_url)

    def bound_rows():
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT node_name, object->'spec'->'containers' FROM pods "
                                     "WHERE node_name <> ''")).all()
        return rows if len(rows) >= fit else None

    rows = wait_for(bound_rows, timeout=240, interval=1.0, what=f"{fit} pods bound in the read model")
    time.sleep(2.0)  # anything still in flight would land now and show below
    rows = bound_rows()
    engine.dispose()
    cpu_by_node = collections.Counter()
    for node, containers in rows:
        cpu_by_node[node] += sum(cpu_millis(c["resources"]["requests"]["cpu"]) for c in containers)
    assert len(rows) == fit and max(cpu_by_node.values()) <= 2000

    records = [r async for r in eventlog.read(kind_filter("pod"))]
    times_bound = collections.Counter(r.subject for r in records if isinstance(r.event, PodScheduled))
    assert len(times_bound) == fit and max(times_bound.values()) == 1
    node_records = [r async for r in eventlog.read(kind_filter("node"))]
    bindings = collections.Counter((b.namespace, b.name) for r in node_records if isinstance(r.event, PodsBound)
                                   for b in r.event.pods)
    assert len(bindings) == fit and max(bindings.values()) == 1
    pending = json.loads(ok(dockyard(env, "get", "pods", "-o", "json")))["items"]
    unbound = [p for p in pending if not p["spec"].get("nodeName")]
    assert len(pending) == 2000 and len(unbound) == 2000 - fit
