"""`dockyard top`: a busy-looping process pod shows CPU, hollow nodes show figures, read from the dy_usage KV."""

from __future__ import annotations

import os
import time

import yaml

from tests.builders import pod_manifest
from tests.integration.test_cli import dockyard, ok
from tests.integration.test_pods_run import FAST_AGENT

FAST_USAGE = ("--usage-interval", "0.5")


def pinned_pod(name: str, node: str, command: list[str], cpu: str = "200m") -> dict:
    manifest = pod_manifest(name, nodeSelector={"kubernetes.io/hostname": node})
    manifest["spec"]["containers"] = [{"name": "main", "image": "busybox", "command": command,
                                       "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]
    return manifest


def table(env, *args: str) -> dict[str, list[str]]:
    result = dockyard(env, "top", *args)
    if result.returncode != 0:
        return {}
    lines = result.stdout.decode().splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def wait_for_rows(env, predicate, *args: str, timeout: float = 60.0) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = table(env, *args)
        if predicate(rows):
            return rows
        assert time.monotonic() < deadline, (rows, dockyard(env, "top", *args).stderr.decode())
        time.sleep(0.5)


def millicores(cell: str) -> int:
    assert cell.endswith("m"), cell
    return int(cell[:-1])


def test_top_shows_a_busy_process_pod_and_hollow_nodes(services, nats_server, database_url, tmp_path):
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    services("projector")
    services("api")
    assert "metrics not available yet" in dockyard(env, "top", "nodes").stderr.decode()
    services("scheduler")
    services("node-agent", "--name", "n1", "--state-dir", str(tmp_path / "n1"), *FAST_AGENT, *FAST_USAGE)
    services("hollow-nodes", "--count", "2", "--heartbeat-interval", "0.5", *FAST_USAGE)
    busy = pinned_pod("busy", "n1", ["python3", "-c", "while True: pass"])
    idle = pinned_pod("idle", "hollow-0", ["sleep", "3600"], cpu="400m")
    try:
        ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump_all([busy, idle]).encode()))

        pods = wait_for_rows(env, lambda rows: "busy" in rows and millicores(rows["busy"][0]) > 100
                             and "idle" in rows and millicores(rows["idle"][0]) > 0, "pods")
        busy_cpu, busy_memory = pods["busy"]
        assert busy_memory.endswith("Mi") and int(busy_memory[:-2]) > 0
        # A hollow pod uses a stable share of what it requests.
        idle_cpu, idle_memory = pods["idle"]
        assert 100 <= millicores(idle_cpu) <= 360 and 16 <= int(idle_memory[:-2]) <= 58

        nodes = wait_for_rows(env, lambda rows: {"n1", "hollow-0", "hollow-1"} <= rows.keys()
                              and rows["hollow-0"][0] != "0m" and millicores(rows["n1"][0]) > 0, "nodes")
        assert nodes["hollow-0"][:1] == [idle_cpu]  # a hollow node is the sum of its pods
        assert nodes["hollow-1"][0] == "0m" and nodes["hollow-1"][2] == "0Mi"
        cpu, cpu_percent, memory, memory_percent = nodes["n1"]
        assert millicores(cpu) > 100 and cpu_percent.endswith("%") and memory_percent.endswith("%")

        with_namespace = wait_for_rows(env, lambda rows: "default" in rows, "pods", "-A")
        assert with_namespace["default"][0] in ("busy", "idle")
        assert "No resources found in other namespace." in dockyard(env, "top", "pods", "-n", "other").stderr.decode()
    finally:
        from dockyard.services.node_agent.runtime import kill_recorded_processes

        kill_recorded_processes(tmp_path / "n1")


def two_container_pod(name: str, node: str, *containers: tuple[str, list[str], str]) -> dict:
    manifest = pinned_pod(name, node, [])
    manifest["spec"]["containers"] = [{"name": container, "image": "busybox", "command": command,
                                       "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}
                                      for container, command, cpu in containers]
    return manifest


def container_table(env, *args: str) -> dict[tuple[str, str], list[str]]:
    """`top pods --containers` keyed by (pod, container)."""
    rows = {}
    result = dockyard(env, "top", "pods", "--containers", *args)
    if result.returncode == 0:
        for line in result.stdout.decode().splitlines()[1:]:
            pod, container, *figures = line.split()
            rows[pod, container] = figures
    return rows


def test_top_pods_containers_shows_each_containers_usage(services, nats_server, database_url, tmp_path):
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    services("projector")
    services("api")
    services("scheduler")
    services("node-agent", "--name", "n1", "--state-dir", str(tmp_path / "n1"), *FAST_AGENT, *FAST_USAGE)
    services("hollow-nodes", "--count", "1", "--heartbeat-interval", "0.5", *FAST_USAGE)
    duo = two_container_pod("duo", "n1", ("spin", ["python3", "-c", "while True: pass"], "200m"),
                            ("nap", ["sleep", "3600"], "100m"))
    pair = two_container_pod("pair", "hollow-0", ("app", ["sleep", "3600"], "300m"),
                             ("proxy", ["sleep", "3600"], "100m"))
    try:
        ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump_all([duo, pair]).encode()))

        def shown(rows) -> bool:
            wanted = {("duo", "spin"), ("duo", "nap"), ("pair", "app"), ("pair", "proxy")}
            return (wanted <= rows.keys() and millicores(rows["duo", "spin"][0]) > 100
                    and millicores(rows["duo", "nap"][0]) < millicores(rows["duo", "spin"][0])
                    and millicores(rows["pair", "proxy"][0]) > 0)

        deadline = time.monotonic() + 60.0
        while not shown(rows := container_table(env)):
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        assert rows["duo", "nap"][1].endswith("Mi") and rows["duo", "spin"][1].endswith("Mi")
        # A hollow pod's figures are split over its containers by their requests (3:1 here), all from one report.
        app, proxy = millicores(rows["pair", "app"][0]), millicores(rows["pair", "proxy"][0])
        assert abs(app - 3 * proxy) <= 3
        lines = ok(dockyard(env, "top", "pods", "--containers", "-A")).splitlines()
        assert lines[0].split() == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        assert {tuple(line.split()[:3]) for line in lines[1:]} == {
            ("default", "duo", "spin"), ("default", "duo", "nap"),
            ("default", "pair", "app"), ("default", "pair", "proxy")}
    finally:
        from dockyard.services.node_agent.runtime import kill_recorded_processes

        kill_recorded_processes(tmp_path / "n1")
