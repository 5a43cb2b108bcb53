"""A real Prometheus scraping a running stack's monitoring service agrees with what the CLI shows."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import yaml

from tests.builders import deployment_manifest
from tests.monitoring_fixtures import prometheus_server  # noqa: F401 - fixture
from tests.polling import wait_for


def dockyard(env, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, input=stdin, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return result.stdout.decode()


def cli_view(env) -> tuple[int, dict[str, int]]:
    """Ready nodes and pods by phase, as `dockyard get` shows them."""
    nodes = json.loads(dockyard(env, "get", "nodes", "-o", "json"))["items"]
    pods = json.loads(dockyard(env, "get", "pods", "-A", "-o", "json"))["items"]
    ready = sum(1 for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in n.get("status", {}).get("conditions", [])))
    return ready, dict(collections.Counter(p["status"]["phase"] for p in pods))


def promql_view(prometheus) -> tuple[int, dict[str, int]]:
    ready = prometheus.query('sum(dockyard_node_status_condition{condition="Ready",status="true"})')
    phases = prometheus.query("sum by (phase) (dockyard_pod_status_phase) > 0")
    return (int(float(ready[0]["value"][1])) if ready else -1,
            {r["metric"]["phase"]: int(float(r["value"][1])) for r in phases})


def test_promql_shows_the_ready_nodes_and_pods_by_phase_the_cli_shows(stack_env, services, prometheus_server):
    services("scheduler")
    services("controller", "--tick", "0.5")
    services("hollow-nodes", "--count", "3", "--heartbeat-interval", "1", "--start-delay", "0.2")
    monitoring = services("monitoring", "--eval-interval", "1")
    prometheus = prometheus_server([f"127.0.0.1:{monitoring.port}"], interval=0.5)

    dockyard(stack_env, "apply", "-f", "-", stdin=yaml.safe_dump(deployment_manifest("web", replicas=4)).encode())
    too_big = deployment_manifest("huge", replicas=1, cpu="64")  # fits no node: stays Pending
    dockyard(stack_env, "apply", "-f", "-", stdin=yaml.safe_dump(too_big).encode())
    expected = (3, {"Running": 4, "Pending": 1})
    wait_for(lambda: cli_view(stack_env) == expected, what=f"the CLI to show {expected}")
    wait_for(lambda: promql_view(prometheus) == expected,
             what=f"PromQL to show {expected} (last: {promql_view(prometheus)})")
    assert cli_view(stack_env) == promql_view(prometheus)

    up = prometheus.query("up")
    assert [r["value"][1] for r in up] == ["1"]
    assert prometheus.query('dockyard_scheduler_schedule_attempts_total{result="scheduled"} >= 4')
