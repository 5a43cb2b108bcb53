"""State from events: the fold shared by projections, queries and replay."""

from __future__ import annotations

from dockyard.eventlog import EventRecord
from dockyard.schemas.events import (
    PodCreated,
    PodDeleted,
    PodScheduled,
    PodStatusChanged,
    PodUpdated,
)
from dockyard.schemas.manifests import PodStatus
from dockyard.state import fold
from tests.builders import make_pod


def record(seq: int, event) -> EventRecord:
    return EventRecord(seq=seq, subject="dy.evt.pod.default.p", type=event.type_name(), version=1,
                       time=f"2026-11-26T00:00:{seq:02d}Z", actor="t", correlation_id="", causation_id="",
                       msg_id="", event=event)


def test_lifecycle_of_a_pod():
    pod = make_pod("p")
    state = fold([record(1, PodCreated(pod=pod)), record(2, PodScheduled(node_name="n1")),
                  record(3, PodStatusChanged(status=PodStatus(phase="Running")))])
    assert state.metadata.resource_version == "3"
    assert state.spec.node_name == "n1"
    assert state.status.phase == "Running"
    assert [c.type for c in state.status.conditions] == []  # status replaced wholesale by the agent's report


def test_scheduling_records_the_condition():
    state = fold([record(1, PodCreated(pod=make_pod("p"))), record(2, PodScheduled(node_name="n1"))])
    assert [(c.type, c.status) for c in state.status.conditions] == [("PodScheduled", "True")]


def test_an_update_keeps_the_status():
    state = fold([record(1, PodCreated(pod=make_pod("p"))),
                  record(2, PodStatusChanged(status=PodStatus(phase="Running"))),
                  record(3, PodUpdated(pod=make_pod("p", restartPolicy="Never")))])
    assert state.status.phase == "Running" and state.spec.restart_policy == "Never"


def test_deleted_is_gone_and_late_status_does_not_resurrect():
    state = fold([record(1, PodCreated(pod=make_pod("p"))), record(2, PodDeleted()),
                  record(3, PodStatusChanged(status=PodStatus(phase="Failed")))])
    assert state is None
