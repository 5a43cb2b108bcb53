"""`explain`: a pod's scheduling story from its own events."""

from __future__ import annotations

from dockyard.eventlog import EventRecord, subject_for
from dockyard.schemas.events import NodeScore, PodCreated, PodDeleted, PodScheduled, PodUnschedulable
from dockyard.services.scheduler.explain import explain
from tests.unit.test_scheduler_plugins import make_pod

SUBJECT = subject_for("pod", "default", "web-1")


def records(*events) -> list[EventRecord]:
    return [EventRecord(seq=i + 1, subject=SUBJECT, type=e.type_name(), version=1, time=f"2026-01-01T00:00:0{i}Z",
                        actor="system:scheduler", correlation_id="", causation_id="", msg_id="", event=e)
            for i, e in enumerate(events)]


CREATED = PodCreated(pod=make_pod("web-1"))
UNSCHEDULABLE = PodUnschedulable(message="0/40 nodes fit: 31 insufficient cpu, 9 untolerated taint dedicated=gpu",
                                 total_nodes=40, filtered={"NodeResourcesFit": 31, "TaintToleration": 9})
SCHEDULED = PodScheduled(node_name="n7", total_nodes=41, filtered={"NodeResourcesFit": 31, "TaintToleration": 9},
                         candidates=(NodeScore(node="n7", score=350.5, plugins={"LeastAllocated": 80.5,
                                                                                "PodTopologySpread": 100.0}),
                                     NodeScore(node="n3", score=120.0, plugins={"LeastAllocated": 20.0,
                                                                                "PodTopologySpread": 50.0})))


def test_a_pending_pod_says_what_is_missing():
    lines = explain(records(CREATED, UNSCHEDULABLE))
    assert lines[0] == "Pod default/web-1"
    assert lines[1] == "Pending: 0/40 nodes fit: 31 insufficient cpu, 9 untolerated taint dedicated=gpu"
    assert "Filtered out: 31 by NodeResourcesFit, 9 by TaintToleration" in lines


def test_a_bound_pod_shows_its_node_filters_and_candidates():
    lines = explain(records(CREATED, UNSCHEDULABLE, SCHEDULED))
    assert lines[1].startswith("Scheduled on n7 at 2026-01-01T00:00:02Z (seq 3)")
    assert "Nodes: 41 in the cluster" in lines
    assert "Filtered out: 31 by NodeResourcesFit, 9 by TaintToleration" in lines
    table = lines[lines.index("Top candidates:") + 1:]
    assert table[0].split() == ["NODE", "SCORE", "LeastAllocated", "PodTopologySpread"]
    assert table[1].split() == ["n7", "350.5", "80.5", "100"]
    assert table[2].split() == ["n3", "120", "20", "50"]


def test_a_pod_not_yet_decided_and_a_deleted_one():
    assert explain(records(CREATED))[1] == "Pending: not yet decided by the scheduler"
    assert explain(records(CREATED, SCHEDULED, PodDeleted(reason="Evicted")))[-1] == \
        "Deleted at 2026-01-01T00:00:02Z (Evicted)"


def test_no_events_means_no_pod():
    assert explain([]) == ["no events for this pod: it does not exist (or never did)"]
