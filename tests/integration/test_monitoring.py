"""The monitoring service's alert I/O and metrics on a real log (nats-server): in-process Monitors."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest

from dockyard.eventlog import kind_filter, subject_for
from dockyard.schemas.events import (
    AlertFired,
    AlertResolved,
    NodeRegistered,
    NodeStatusChanged,
    PodBinding,
    PodCreated,
    PodsBound,
    PodScheduled,
    alert_fingerprint,
)
from dockyard.schemas.manifests import Condition, Node, NodeSpec, NodeStatus, ObjectMeta
from dockyard.services.monitoring.builtin import Thresholds
from dockyard.services.monitoring.service import Monitor
from dockyard.services.monitoring.userrules import RuleFile
from tests.builders import make_pod
from tests.conftest import require

FAST = Thresholds(node_not_ready_for=0, keep_firing_for=0)


def node(name: str, ready: str = "True") -> Node:
    return Node(metadata=ObjectMeta(name=name), spec=NodeSpec(capacity={"cpu": "4", "memory": "8Gi"}),
                status=NodeStatus(allocatable={"cpu": "4", "memory": "8Gi"},
                                  conditions=(Condition(type="Ready", status=ready),)))


async def set_ready(eventlog, name: str, ready: str) -> None:
    await eventlog.append(subject_for("node", "", name), NodeStatusChanged(status=node(name, ready).status))


async def caught_up(monitor: Monitor, eventlog) -> None:
    """Wait until the monitor's view has seen everything in the log now."""
    last = await eventlog.last_stream_seq()
    for _ in range(500):
        if monitor.view.caught_up.is_set() and monitor.view.position >= last:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"view stuck at {monitor.view.position} < {last}")


@pytest.fixture
async def monitors(eventlog):
    """Start Monitors following the test's log; all stopped afterwards."""
    stop, tasks = asyncio.Event(), []

    def start(**options) -> Monitor:
        monitor = Monitor(eventlog, **{"thresholds": FAST, **options})
        tasks.append(asyncio.create_task(monitor.view.follow(eventlog, stop, monitor.on_records)))
        return monitor

    yield start
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def alert_events(eventlog) -> list:
    return [r.event async for r in eventlog.read(kind_filter("alert"))]


async def test_two_instances_fire_once_and_resolve_once(eventlog, monitors):
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node("n1")))
    await set_ready(eventlog, "n1", "Unknown")
    first, second = monitors(), monitors()
    for monitor in (first, second):
        await caught_up(monitor, eventlog)
    now = dt.datetime.now(dt.timezone.utc)
    await asyncio.gather(first.evaluate_once(now), second.evaluate_once(now))
    for monitor in (first, second):
        await caught_up(monitor, eventlog)
        await monitor.evaluate_once(now)  # the log says it fires: nothing more to append

    events = await alert_events(eventlog)
    assert [type(e) for e in events] == [AlertFired]
    fired = events[0]
    assert fired.alertname == "NodeNotReady" and fired.severity == "critical"
    assert fired.labels == {"alertname": "NodeNotReady", "severity": "critical", "node": "n1", "status": "unknown"}
    assert fired.annotations["summary"] == "Node n1 is not Ready (unknown)."

    await set_ready(eventlog, "n1", "True")
    for monitor in (first, second):
        await caught_up(monitor, eventlog)
    later = now + dt.timedelta(seconds=5)
    await asyncio.gather(first.evaluate_once(later), second.evaluate_once(later))
    events = await alert_events(eventlog)
    assert [type(e) for e in events] == [AlertFired, AlertResolved]
    assert events[1].labels == fired.labels
    last = await eventlog.last_seq(subject_for("alert", "", alert_fingerprint(fired.labels)))
    assert last == await eventlog.last_stream_seq()


async def test_a_restarted_instance_adopts_what_fires_instead_of_firing_again(eventlog, monitors):
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node("n1", "False")))
    first = monitors()
    await caught_up(first, eventlog)
    now = dt.datetime.now(dt.timezone.utc)
    await first.evaluate_once(now)

    slow = monitors(thresholds=Thresholds(node_not_ready_for=600, keep_firing_for=0))
    await caught_up(slow, eventlog)
    await slow.evaluate_once(now + dt.timedelta(seconds=1))  # its own `for` has not passed: adopts, keeps
    assert [type(e) for e in await alert_events(eventlog)] == [AlertFired]


async def test_cluster_metrics_from_the_log(eventlog, monitors):
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node("n1")))
    await eventlog.append(subject_for("node", "", "n2"), NodeRegistered(node=node("n2", "False")))
    for name in ("a", "b"):
        await eventlog.append(subject_for("pod", "default", name), PodCreated(pod=make_pod(name)))
    await eventlog.append(subject_for("node", "", "n1"), PodsBound(pods=(
        PodBinding(namespace="default", name="a", uid="u", cpu_millis=500, memory_bytes=1 << 20),)))
    await eventlog.append(subject_for("pod", "default", "a"), PodScheduled(node_name="n1"))
    monitor = monitors()
    await caught_up(monitor, eventlog)
    text = b"".join(await monitor.metrics_text_async())
    lines = set(text.decode().splitlines())
    for expected in (
        'dockyard_node_status_condition{node="n1",condition="Ready",status="true"} 1',
        'dockyard_node_status_condition{node="n2",condition="Ready",status="false"} 1',
        'dockyard_node_status_condition{node="n2",condition="Ready",status="true"} 0',
        'dockyard_node_status_allocatable{node="n1",resource="cpu",unit="core"} 4.0',
        'dockyard_node_status_allocated{node="n1",resource="cpu",unit="core"} 0.5',
        'dockyard_node_status_allocated{node="n1",resource="memory",unit="byte"} 1048576',
        'dockyard_pod_status_phase{namespace="default",pod="a",phase="Pending"} 1',
        'dockyard_scheduler_pending_pods 1',
        'dockyard_scheduler_schedule_attempts_total{result="scheduled"} 1',
        'dockyard_scheduler_scheduling_attempt_duration_seconds_count 1',
    ):
        assert expected in lines, expected
    promtool = Path("/usr/bin/promtool")
    require(promtool.exists(), "promtool is not installed (apt-get install prometheus)")
    check = subprocess.run([str(promtool), "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_a_bad_rule_file_is_refused_and_the_old_rules_keep_working(eventlog, monitors, tmp_path, caplog):
    rules = tmp_path / "alert-rules.yaml"
    rules.write_text("groups:\n- name: capacity\n  rules:\n  - alert: NodeBusy\n"
                     "    expr: 'dockyard_node_status_allocated{resource=\"cpu\"} > 0.25'\n"
                     "    labels: {severity: page}\n"
                     "    annotations: {summary: 'Node {{ $labels.node }} has {{ $value }} cores requested'}\n")
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node("n1")))
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    await eventlog.append(subject_for("node", "", "n1"), PodsBound(pods=(
        PodBinding(namespace="default", name="a", uid="u", cpu_millis=500),)))
    monitor = monitors(rule_file=RuleFile(str(rules)))
    await caught_up(monitor, eventlog)
    now = dt.datetime.now(dt.timezone.utc)
    await monitor.evaluate_once(now)

    rules.write_text("groups:\n- name: capacity\n  rules:\n  - alert: NodeBusy\n    expr: 'up >'\n")
    await monitor.evaluate_once(now + dt.timedelta(seconds=1))
    assert "line 5" in caplog.text and "`expr`" in caplog.text
    from prometheus_client import REGISTRY
    assert REGISTRY.get_sample_value("dockyard_alert_rules_reload_success") == 0

    await caught_up(monitor, eventlog)
    events = await alert_events(eventlog)
    assert [(type(e), e.alertname) for e in events] == [(AlertFired, "NodeBusy")]
    assert events[0].labels == {"alertname": "NodeBusy", "severity": "page", "node": "n1", "resource": "cpu",
                                "unit": "core"}
    assert events[0].annotations == {"summary": "Node n1 has 0.5 cores requested"}
    assert events[0].value == 0.5


async def test_a_stalled_projector_consumer_alerts_from_the_consumer_info(eventlog, monitors):
    for i in range(5):
        await eventlog.append(subject_for("pod", "default", f"p{i}"), PodCreated(pod=make_pod(f"p{i}")))
    await eventlog.ensure_consumer("dy-projector-pods", kind_filter("pod"))  # nobody pulls from it
    monitor = monitors(thresholds=Thresholds(projection_lag_events=3, projection_lag_for=0, consumer_stalled_for=0,
                                             keep_firing_for=0))
    await caught_up(monitor, eventlog)
    now = dt.datetime.now(dt.timezone.utc)
    await monitor.poll_consumers(now)
    assert monitor.health().projection_lag == {"pods": 5}
    await monitor.evaluate_once(now)
    fired = {e.alertname: e for e in await alert_events(eventlog)}
    assert fired["ProjectionLagHigh"].labels["projection"] == "pods" and fired["ProjectionLagHigh"].value == 5
    assert fired["ConsumerStalled"].labels["consumer"] == "dy-projector-pods"
    lines = b"".join(await monitor.metrics_text_async()).decode().splitlines()
    assert 'dockyard_projection_lag_events{projection="pods"} 5' in lines
    assert 'dockyard_alerts_firing{alertname="ConsumerStalled",severity="critical"} 1' in lines


PENDING_RULE = ("groups:\n- name: pods\n  rules:\n  - alert: PodsPending\n"
                "    expr: 'sum by (namespace) (dockyard_pod_status_phase{phase=\"Pending\"}) >= 1'\n"
                "    annotations: {summary: '{{ $value }} pod(s) pending in {{ $labels.namespace }}'}\n")


async def pods_pending_events(eventlog) -> list[AlertFired]:
    return [e for e in await alert_events(eventlog) if e.alertname == "PodsPending"]


async def test_a_changed_summary_is_appended_once_by_two_instances_and_not_too_often(eventlog, monitors, tmp_path):
    rules = tmp_path / "alert-rules.yaml"
    rules.write_text(PENDING_RULE)
    first, second = (monitors(rule_file=RuleFile(str(rules)), update_interval=60) for _ in range(2))
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    for monitor in (first, second):
        await caught_up(monitor, eventlog)
    now = dt.datetime.now(dt.timezone.utc)
    await first.evaluate_once(now)
    [fired] = await pods_pending_events(eventlog)
    assert fired.annotations == {"summary": "1 pod(s) pending in default"} and fired.value == 1

    async def both_at(seconds: float) -> list[AlertFired]:
        for monitor in (first, second):
            await caught_up(monitor, eventlog)
        later = now + dt.timedelta(seconds=seconds)
        await asyncio.gather(first.evaluate_once(later), second.evaluate_once(later))
        return await pods_pending_events(eventlog)

    await eventlog.append(subject_for("pod", "default", "b"), PodCreated(pod=make_pod("b")))
    assert await both_at(10) == [fired]  # the text changed, but the alert was appended 10 s ago
    events = await both_at(120)
    assert len(events) == 2, events  # one instance appended the update, the other found it had moved on
    update = events[1]
    assert update.annotations == {"summary": "2 pod(s) pending in default"} and update.value == 2
    assert (update.labels, update.active_since) == (fired.labels, fired.active_since)
    assert await both_at(400) == events  # nothing changed since: nothing appended
    for monitor in (first, second):
        assert monitor.firing_in_log()[alert_fingerprint(fired.labels)] == update
