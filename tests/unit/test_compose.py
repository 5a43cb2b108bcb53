"""compose/: Prometheus' config and rules pass promtool, the rules fire as their tests say, and the dashboard and
rules use only metric names the services export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from dockyard.services.runner import SERVICES
from tests.conftest import require

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
PROMETHEUS = COMPOSE / "prometheus"

# What the monitoring service renders by hand (not through prometheus_client's registry).
CLUSTER_STATE = {
    "dockyard_node_status_condition", "dockyard_node_status_allocatable", "dockyard_node_status_allocated",
    "dockyard_node_spec_unschedulable", "dockyard_pod_status_phase", "dockyard_pod_container_status_restarts_total",
    "dockyard_deployment_spec_replicas", "dockyard_deployment_status_replicas_available",
    "dockyard_deployment_status_replicas_updated", "dockyard_deployment_status_condition",
    "dockyard_scheduler_pending_pods", "dockyard_scheduler_schedule_attempts_total",
    "dockyard_scheduler_scheduling_attempt_duration_seconds", "dockyard_projection_lag_events",
    "dockyard_alerts_firing",
}
_NAME = re.compile(r"\b((?:dockyard|process)_[a-zA-Z0-9_]+)")
_SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def exported_names() -> set[str]:
    """Every metric family the services register, plus the cluster state, as names appear in PromQL."""
    for module in SERVICES.values():
        importlib.import_module(module)
    names = set(CLUSTER_STATE)
    for collector in REGISTRY.collect():
        names.add(collector.name + ("_total" if collector.type == "counter" else ""))
        names.add(collector.name)
    return names


def referenced(expr: str) -> set[str]:
    found = set()
    for name in _NAME.findall(expr):
        for suffix in _SERIES_SUFFIXES:
            if name.endswith(suffix) and not name.endswith("_total"):
                name = name[: -len(suffix)]
                break
        found.add(name)
    return found


def promtool(*args: str) -> str:
    require(shutil.which("promtool") is not None, "promtool (Debian prometheus package) is not installed")
    result = subprocess.run(["promtool", *args], capture_output=True, timeout=60, cwd=PROMETHEUS)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    return output


def test_prometheus_config_is_valid():
    assert "is valid prometheus config file syntax" in promtool("check", "config", "prometheus.yml")


def test_alert_rules_are_valid():
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "rules.yml")


def test_alert_rules_fire_as_their_tests_say():
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def test_the_rules_cover_every_builtin_rule():
    from dockyard.services.monitoring.builtin import builtin_rules

    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {rule.name for rule in builtin_rules()} <= alerts


def test_every_service_is_scraped():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(SERVICES) <= jobs
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    for name in set(SERVICES) - {"node-agent"}:  # node agents run on the machines themselves
        assert "--metrics-port" in compose[name]["command"] and "9100" in compose[name]["command"], name
    assert {"nats-1", "nats-2", "nats-3", "postgres", "prometheus", "grafana"} <= compose.keys()


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_only_exported_metrics_are_referenced(source):
    if source == "dashboard":
        dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "dockyard.json").read_text())
        exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    else:
        rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
        exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    names = set().union(*(referenced(expr) for expr in exprs))
    assert names and not names - exported_names(), names - exported_names()


def test_the_dashboard_covers_the_three_areas_and_is_provisioned():
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "dockyard.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["Cluster overview", "Scheduling", "Event pipeline"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    datasource = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(panel["datasource"]["uid"] == uid for panel in dashboard["panels"] if panel["type"] != "row")
    provider = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "dashboards" / "dockyard.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_alertmanager_config_is_valid():
    require(shutil.which("amtool") is not None, "amtool (Debian prometheus-alertmanager package) is not installed")
    result = subprocess.run(["amtool", "check-config", str(COMPOSE / "alertmanager" / "alertmanager.yml")],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
