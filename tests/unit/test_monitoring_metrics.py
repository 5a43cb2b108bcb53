"""Cluster-state metrics text, the scheduler tally from event timestamps, and the Alertmanager payload."""

from __future__ import annotations

import datetime as dt

import msgspec

from dockyard.eventlog import EventRecord, subject_for
from dockyard.schemas.events import PodCreated, PodDeleted, PodScheduled, PodStatusChanged, PodUnschedulable
from dockyard.schemas.manifests import ContainerStatus, PodStatus
from dockyard.services.monitoring.alertmanager import Alertmanager, Notice, payload
from dockyard.services.monitoring.exposition import Family, cluster_families, render
from dockyard.services.monitoring.health import ClusterHealth, DeploymentHealth, PodHealth
from dockyard.services.monitoring.tally import LogTally
from tests.builders import make_pod

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def record(seq: int, name: str, event, seconds: float) -> EventRecord:
    stamp = (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return EventRecord(seq=seq, subject=subject_for("pod", "default", name), type=event.type_name(), version=1,
                       time=stamp, actor="t", correlation_id="", causation_id="", msg_id="", event=event)


def restarted(count: int) -> PodStatusChanged:
    return PodStatusChanged(status=PodStatus(phase="Running", container_statuses=(
        ContainerStatus(name="main", restart_count=count),)))


def test_the_tally_times_scheduling_from_the_events_and_counts_restarts():
    tally = LogTally()
    for r in (record(1, "a", PodCreated(pod=make_pod("a")), 0), record(2, "a", PodUnschedulable(message="no"), 1),
              record(3, "a", PodScheduled(node_name="n1"), 0.3), record(4, "a", restarted(1), 10),
              record(5, "a", restarted(1), 11), record(6, "a", restarted(3), 20)):
        tally.observe(r)
    figures = tally.figures(pending=0)
    assert figures.attempts == {"scheduled": 1, "unschedulable": 1, "error": 0}
    assert (figures.duration_count, figures.duration_sum) == (1, 0.3)
    assert dict(figures.duration_buckets)[0.25] == 0 and dict(figures.duration_buckets)[0.5] == 1
    assert [t.second for t in tally.restart_times[("default", "a")]] == [10, 20, 20]
    tally.observe(record(7, "a", PodDeleted(), 30))
    assert ("default", "a") not in tally.restart_times


def test_text_format_with_histogram_headers_once():
    families = [Family("x_total", "counter", "Things.", ("name", "kind"), [("a", "b", 2), ("d", "e", 0.5)]),
                Family("h_bucket", "histogram", "H.", ("le",), [("+Inf", 1)], metric="h"),
                Family("h_count", "histogram", "H.", (), [(1,)], metric="h")]
    assert b"".join(render(families)) == (b'# HELP x_total Things.\n# TYPE x_total counter\n'
                                b'x_total{name="a",kind="b"} 2\nx_total{name="d",kind="e"} 0.5\n'
                                b'# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n')


def test_label_values_from_outside_the_api_are_escaped():
    health = ClusterHealth(alerts_firing={("A", 'pa"ge\\x'): 1})
    text = b"".join(render(cluster_families(health)))
    assert b'dockyard_alerts_firing{alertname="A",severity="pa\\"ge\\\\x"} 1\n' in text


def test_every_pod_has_one_series_per_phase_and_deployments_their_conditions():
    health = ClusterHealth(pods=(PodHealth(namespace="ns", name="p", phase="Running",
                                           container_restarts=(("main", 2),)),),
                           deployments=(DeploymentHealth(namespace="ns", name="d", replicas=3, progressing="False"),))
    lines = b"".join(render(cluster_families(health))).decode().splitlines()
    assert [line for line in lines if line.startswith("dockyard_pod_status_phase{")] == [
        f'dockyard_pod_status_phase{{namespace="ns",pod="p",phase="{phase}"}} {int(phase == "Running")}'
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown")]
    assert 'dockyard_pod_container_status_restarts_total{namespace="ns",pod="p",container="main"} 2' in lines
    assert 'dockyard_deployment_status_condition{namespace="ns",deployment="d",condition="Progressing",' \
           'status="false"} 1' in lines


def test_alertmanager_payload_firing_expires_unless_resent_and_resolved_has_its_end():
    now = T0
    body = payload([Notice({"alertname": "A"}, {"summary": "s"}, "2026-01-01T00:00:00Z"),
                    Notice({"alertname": "B"}, {}, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")], now, 60)
    assert body == [
        {"labels": {"alertname": "A"}, "annotations": {"summary": "s"}, "startsAt": "2026-01-01T00:00:00Z",
         "endsAt": "2026-01-01T00:04:00.000Z"},
        {"labels": {"alertname": "B"}, "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
         "endsAt": "2026-01-01T00:01:00Z"},
    ]
    assert msgspec.json.encode(body)


def test_alertmanager_sends_on_change_and_every_resend_interval():
    manager = Alertmanager("http://127.0.0.1:9", resend_interval=60)
    one = {"fp1": Notice({"alertname": "A"}, {}, "t")}
    assert not manager.due({}, 0)
    assert manager.due(one, 0)
    manager._last_sent = (0, dict(one))
    assert not manager.due(one, 59)
    assert manager.due(one, 60)
    assert manager.due({}, 1)  # the set changed
    assert manager.due({"fp1": Notice({"alertname": "A"}, {"summary": "now 7"}, "t")}, 1)  # its text changed
    manager.queue_resolved(Notice({"alertname": "A"}, {}, "t", "u"))
    assert manager.due(one, 1)


def test_pods_lines_kept_between_renders_match_fresh_rows():
    from dataclasses import replace

    from dockyard.services.monitoring.exposition import PodLines

    pods = tuple(PodHealth(namespace="ns", name=f"p{i}", phase="Running", container_restarts=(("main", i),))
                 for i in range(3))
    lines = PodLines()
    health = ClusterHealth(pods=pods)
    assert b"".join(render(cluster_families(health, lines))) == b"".join(render(cluster_families(health)))
    changed = ClusterHealth(pods=(pods[0], replace(pods[1], phase="Failed")))  # p1 failed, p2 went
    text = b"".join(render(cluster_families(changed, lines)))
    assert text == b"".join(render(cluster_families(changed)))
    assert b'pod="p1",phase="Failed"} 1' in text and b'pod="p2"' not in text
