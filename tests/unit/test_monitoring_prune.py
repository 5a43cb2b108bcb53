"""The monitoring service forgets deleted pods and nodes: a cluster with churn does not grow its maps."""

from __future__ import annotations

import datetime as dt

import pytest

from dockyard.eventlog import EventRecord, subject_for
from dockyard.manifests import validate
from dockyard.schemas.events import NodeDeregistered, NodeRegistered, PodCreated, PodDeleted, PodStatusChanged
from dockyard.schemas.manifests import ContainerStatus, PodStatus
from dockyard.services.monitoring.health import heartbeats_kept
from dockyard.services.monitoring.service import Monitor
from tests.builders import make_pod

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
RESTARTS_LINE = 'dockyard_pod_container_status_restarts_total{namespace="default",pod="%s",container="main"} %d'


class Log:
    """Numbers the events a test feeds, as the stream would."""

    def __init__(self) -> None:
        self.seq = 0

    def record(self, kind: str, name: str, event, seconds: float = 0.0) -> EventRecord:
        self.seq += 1
        stamp = (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        namespace = "" if kind == "node" else "default"
        return EventRecord(seq=self.seq, subject=subject_for(kind, namespace, name), type=event.type_name(),
                           version=1, time=stamp, actor="t", correlation_id="", causation_id="", msg_id="",
                           event=event)


def restarted(count: int) -> PodStatusChanged:
    return PodStatusChanged(status=PodStatus(phase="Running", container_statuses=(
        ContainerStatus(name="main", restart_count=count),)))


async def feed(monitor: Monitor, records: list[EventRecord]) -> None:
    """As ClusterView.follow does: the view folds the batch, then the listener sees it."""
    for record in records:
        monitor.view.apply(record)
    await monitor.on_records(records)


def pod_churn(log: Log, name: str, late_status: bool) -> list[EventRecord]:
    """A pod that restarts and is deleted; maybe its agent's last report lands after the deletion."""
    records = [log.record("pod", name, PodCreated(pod=make_pod(name))), log.record("pod", name, restarted(1), 1),
               log.record("pod", name, restarted(3), 2), log.record("pod", name, PodDeleted(), 3)]
    if late_status:
        records.append(log.record("pod", name, restarted(4), 4))
    return records


@pytest.mark.parametrize("batch", [1, 4, 5, 7, 1000], ids=lambda size: f"batches-of-{size}")
async def test_deleted_pods_leave_the_restart_maps_whatever_the_batching(batch):
    monitor, log = Monitor(log=None), Log()
    records = [r for i in range(100) for r in pod_churn(log, f"p{i}", late_status=i % 2 == 0)]
    records += [log.record("pod", "kept", PodCreated(pod=make_pod("kept"))),
                log.record("pod", "kept", restarted(2), 9)]
    for start in range(0, len(records), batch):
        await feed(monitor, records[start:start + batch])
    tally = monitor.tally
    assert set(tally.restart_totals) == set(tally.restart_times) == {("default", "kept")}
    assert set(tally.created) <= {("default", "kept")} and list(monitor.view.pods) == [("default", "kept")]


async def test_a_deleted_pods_restarts_leave_the_metrics():
    monitor, log = Monitor(log=None), Log()
    await feed(monitor, [log.record("pod", "a", PodCreated(pod=make_pod("a"))),
                         log.record("pod", "a", restarted(2), 1),
                         log.record("pod", "b", PodCreated(pod=make_pod("b")))])
    text = b"".join(await monitor.metrics_text_async()).decode()
    assert RESTARTS_LINE % ("a", 2) in text.splitlines() and 'pod="b"' in text

    await feed(monitor, [log.record("pod", "a", PodDeleted(), 2)])
    await feed(monitor, [log.record("pod", "a", restarted(3), 3)])  # the agent's report after the deletion
    text = b"".join(await monitor.metrics_text_async()).decode()
    assert 'pod="a"' not in text and 'pod="b"' in text


def node_record(log: Log, name: str, registered: bool) -> EventRecord:
    if registered:
        return log.record("node", name, NodeRegistered(node=validate(
            {"apiVersion": "dockyard.io/v1", "kind": "Node", "metadata": {"name": name}})))
    return log.record("node", name, NodeDeregistered())


@pytest.mark.parametrize(("heartbeats", "registered", "kept"), [
    ({"n1": 0.0}, {"n1"}, {"n1"}),
    ({"gone": 60.0}, set(), {"gone"}),
    ({"gone": 59.0}, set(), set()),
    ({"n1": 0.0, "gone": 10.0, "back": 80.0}, {"n1"}, {"n1", "back"}),
], ids=["registered-however-silent", "deleted-within-grace", "deleted-past-grace", "mixed"])
def test_the_heartbeats_kept(heartbeats, registered, kept):
    assert set(heartbeats_kept(heartbeats, registered, now=100.0, grace=40.0)) == kept


async def test_node_churn_does_not_grow_the_heartbeat_map():
    monitor, log = Monitor(log=None), Log()
    now = dt.datetime.now(dt.timezone.utc)
    for round_ in range(20):
        names = [f"n{round_}-{i}" for i in range(10)]
        await feed(monitor, [node_record(log, name, registered=True) for name in names])
        monitor.heartbeats.update({name: now.timestamp() for name in names})
        await feed(monitor, [node_record(log, name, registered=False) for name in names])
        now += dt.timedelta(seconds=monitor.thresholds.heartbeat_grace + 1)
        await monitor.evaluate_once(now)
        assert len(monitor.heartbeats) == 0 and not monitor.view.nodes
    await feed(monitor, [node_record(log, "stays", registered=True)])
    monitor.heartbeats["stays"] = now.timestamp() - 3600  # silent long ago, but registered: kept
    await monitor.evaluate_once(now)
    assert list(monitor.heartbeats) == ["stays"]
