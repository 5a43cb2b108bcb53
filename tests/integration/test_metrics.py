"""Every service's /metrics passes `promtool check metrics`, carries the shared event-pipeline metrics, and
answers /healthz and /readyz."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from dockyard.eventlog import ConcurrencyConflict, subject_for
from dockyard.schemas.events import PodCreated
from tests.builders import make_pod
from tests.conftest import require
from tests.integration.test_cli import dockyard, ok, write
from tests.integration.test_pods_run import FAST_AGENT, http_server_deployment
from tests.registry_fixtures import registry_factory  # noqa: F401 - fixture

PROMTOOL = shutil.which("promtool")

# The event-pipeline metrics every service exports through the shared consumer code.
PIPELINE = ("dockyard_events_handled_total", "dockyard_event_handler_duration_seconds",
            "dockyard_consumer_pending_messages", "dockyard_consumer_ack_pending_messages",
            "dockyard_append_conflicts_total", "dockyard_append_retries_total", "process_resident_memory_bytes")


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check_metrics(text: str) -> None:
    """promtool reads the exposition on stdin and names every problem it finds; there must be none."""
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    problems = (result.stdout + result.stderr).decode().strip()
    assert result.returncode == 0 and not problems, problems


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def wait_for_sample(port: int, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        _, text = scrape(port)
        if needle in text:
            return text
        assert time.monotonic() < deadline, f"no {needle!r} in:\n{text}"
        time.sleep(0.2)


def assert_serves(port: int, *consumers: str) -> str:
    assert scrape(port, "/healthz") == (200, "ok\n")
    assert scrape(port, "/readyz") == (200, "ready\n")
    text = wait_for_sample(port, "dockyard_events_handled_total{" if consumers else "process_")
    for consumer in consumers:
        wait_for_sample(port, f'dockyard_consumer_pending_messages{{consumer="{consumer}"}}')
    text = scrape(port)[1]
    check_metrics(text)
    missing = [name for name in PIPELINE if name not in families(text) and name + "_total" not in text]
    assert not missing, missing
    return text


@pytest.fixture
def promtool():
    require(PROMTOOL is not None, "promtool (Debian prometheus package) is not installed")


def test_every_service_serves_clean_metrics_and_health(promtool, services, nats_server, database_url, tmp_path):
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    api = services("api")
    projector = services("projector")
    scheduler = services("scheduler")
    controller = services("controller", "--tick", "0.2")
    agent = services("node-agent", "--name", "n1", *FAST_AGENT)
    hollow = services("hollow-nodes", "--count", "3", "--heartbeat-interval", "0.5")
    manifest = write(tmp_path, "web.yaml", http_server_deployment("web", replicas=2))
    ok(dockyard(env, "apply", "-f", manifest))

    text = assert_serves(projector.port, "dy-projector-pods")
    assert 'dockyard_events_handled_total{consumer="dy-projector-pods",event_type="pod.created.v1",outcome="ok"}' \
        in wait_for_sample(projector.port, 'event_type="pod.created.v1"')
    assert 'dockyard_consumer_ack_pending_messages{consumer="dy-projector-pods"}' in \
        wait_for_sample(projector.port, 'dockyard_consumer_ack_pending_messages{consumer="dy-projector-pods"}')
    assert "dockyard_projector_events_applied_total" in text
    assert_serves(api.port)
    assert "dockyard_api_requests_total" in scrape(api.port)[1]
    text = assert_serves(scheduler.port, "scheduler")
    assert 'dockyard_scheduler_decisions_total{result="error"}' in text
    assert_serves(controller.port, "controller")
    assert_serves(agent.port, "node-agent")
    assert_serves(hollow.port, "hollow-nodes")


def test_registry_indexer_serves_clean_metrics(promtool, services, registry_factory):  # noqa: F811
    registry = registry_factory()
    indexer = services("registry-indexer", "--registry", registry.url, "--insecure", "--probe-interval", "0.3")
    assert_serves(indexer.port)
    assert "dockyard_registry_indexer_crawl_duration_seconds" in scrape(indexer.port)[1]


def test_monitoring_serves_clean_metrics(promtool, services):
    monitoring = services("monitoring")
    assert_serves(monitoring.port)
    assert "dockyard_node_status_condition" in wait_for_sample(monitoring.port, "dockyard_node_status_condition")


def conflicts() -> float:
    return REGISTRY.get_sample_value("dockyard_append_conflicts_total")


async def test_a_conflicting_append_is_counted(eventlog):
    before = conflicts()
    subject = subject_for("pod", "default", "web-1")
    await eventlog.append(subject, PodCreated(pod=make_pod()), expected_seq=0)
    with pytest.raises(ConcurrencyConflict):
        await eventlog.append(subject, PodCreated(pod=make_pod()), expected_seq=0)
    assert conflicts() == before + 1
