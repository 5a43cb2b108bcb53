"""Time travel's pure parts: the fold from a snapshot, what changed, history lines, time to position."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.eventlog import EventRecord, subject_for
from dockyard.schemas.events import (
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentUpdated,
    NodeRegistered,
    PodCreated,
    PodDeleted,
    PodScheduled,
    PodStatusChanged,
    PodsBound,
    PodUpdated,
)
from dockyard.schemas.manifests import PodStatus
from dockyard.timetravel import (
    _snapshot_decoder,
    changed_fields,
    describe_change,
    diff,
    history,
    last_seq_at,
    parse_time,
    replay,
    snapshot_due,
)
from tests.builders import make_deployment, make_pod
from tests.strategies import pods

_replace = msgspec.structs.replace


def record(seq: int, subject: str, event, actor: str = "alice") -> EventRecord:
    return EventRecord(seq=seq, subject=subject, type=event.type_name(), version=1,
                       time=f"2026-11-26T10:00:{seq % 60:02d}Z", actor=actor, correlation_id="",
                       causation_id="", msg_id="", event=event)


def records_of(*pairs) -> list[EventRecord]:
    return [record(seq, subject, event) for seq, (subject, event) in enumerate(pairs, start=1)]


WEB = subject_for("deployment", "default", "web")


# ---------------------------------------------------------------- snapshot + fold == fold from 1

NAMES = ("a", "b", "c")
PHASES = ("Pending", "Running", "Succeeded", "Failed")


@st.composite
def pod_events(draw):
    """A pod aggregate's event, any order: creates, updates, schedules, status changes, deletes."""
    name = draw(st.sampled_from(NAMES))
    subject = subject_for("pod", "default", name)
    choice = draw(st.sampled_from(["created", "updated", "scheduled", "status", "deleted"]))
    if choice in ("created", "updated"):
        pod = draw(pods())
        pod = _replace(pod, metadata=_replace(pod.metadata, name=name, namespace="default"))
        return subject, (PodCreated if choice == "created" else PodUpdated)(pod=pod)
    if choice == "scheduled":
        return subject, PodScheduled(node_name=draw(st.sampled_from(["n1", "n2"])))
    if choice == "status":
        return subject, PodStatusChanged(status=PodStatus(phase=draw(st.sampled_from(PHASES))))
    return subject, PodDeleted()


def through_snapshot(objects) -> dict:
    """The objects as a snapshot row stores them and `load_snapshot` reads them back."""
    stored = msgspec.json.encode([[ns, name, obj] for (ns, name), obj in objects.items()])
    return {(ns, name): obj for ns, name, obj in _snapshot_decoder("Pod").decode(stored)}


@settings(max_examples=60, deadline=None)
@given(events=st.lists(pod_events(), max_size=25), data=st.data())
def test_snapshot_then_fold_equals_fold_from_the_first_event(events, data):
    records = records_of(*events)
    split = data.draw(st.integers(0, len(records)), label="snapshot position")
    from_snapshot = replay(through_snapshot(replay({}, records[:split])), records[split:])
    assert from_snapshot == replay({}, records)


def test_replay_leaves_its_input_alone_and_drops_the_deleted():
    created = replay({}, records_of((subject_for("pod", "default", "p"), PodCreated(pod=make_pod("p")))))
    after = replay(created, [record(2, subject_for("pod", "default", "p"), PodDeleted())])
    assert list(created) == [("default", "p")] and after == {}


# ---------------------------------------------------------------- what changed


def test_a_scale_is_one_field_and_the_resource_version_is_not_news():
    before = make_deployment(replicas=3)
    after = _replace(before, spec=_replace(before.spec, replicas=5),
                     metadata=_replace(before.metadata, resource_version="9"))
    assert [describe_change(c) for c in changed_fields(before, after)] == ["spec.replicas 3→5"]


def test_containers_are_matched_by_name():
    before, after = make_deployment(image="nginx:1.27"), make_deployment(image="nginx:1.28")
    assert [describe_change(c) for c in changed_fields(before, after)] == [
        "spec.template.spec.containers[web].image nginx:1.27→nginx:1.28"]


def test_a_condition_that_appears_is_one_change():
    [pod] = replay({}, records_of((subject_for("pod", "default", "p"), PodCreated(pod=make_pod("p"))))).values()
    [scheduled] = replay({("default", "p"): pod},
                         [record(2, subject_for("pod", "default", "p"), PodScheduled(node_name="n1"))]).values()
    paths = [c.path for c in changed_fields(pod, scheduled)]
    assert paths == ["spec.nodeName", "status.conditions[PodScheduled]"]


def test_diff_names_added_removed_replaced_and_changed():
    web, db, cache = make_deployment("web"), make_deployment("db"), make_deployment("cache")
    before = {("default", "web"): web, ("default", "db"): db, ("default", "cache"): cache}
    after = {
        ("default", "web"): _replace(web, spec=_replace(web.spec, replicas=5)),
        ("default", "cache"): _replace(cache, metadata=_replace(cache.metadata, uid="another")),
        ("default", "api"): make_deployment("api"),
    }
    changes = {c.name: c for c in diff("Deployment", before, after)}
    assert {name: c.change for name, c in changes.items()} == {
        "api": "added", "cache": "replaced", "db": "removed", "web": "changed"}
    assert [describe_change(f) for f in changes["web"].fields] == ["spec.replicas 3→5"]


def test_diff_of_equal_states_is_empty():
    state = {("default", "web"): make_deployment("web")}
    assert diff("Deployment", state, dict(state)) == []


# ---------------------------------------------------------------- history


def test_history_says_what_each_event_did_and_who_did_it():
    records = [
        record(1, WEB, DeploymentCreated(deployment=make_deployment(replicas=2)), actor="alice"),
        record(4, WEB, DeploymentUpdated(deployment=make_deployment(replicas=5)), actor="bob"),
        record(7, WEB, DeploymentDeleted(), actor="carol"),
    ]
    entries = history(records)
    assert [(e.seq, e.actor, e.detail) for e in entries] == [
        (1, "alice", "created"), (4, "bob", "spec.replicas 2→5"), (7, "carol", "deleted")]
    assert entries[1].type == "deployment.updated.v1" and entries[1].time == "2026-11-26T10:00:04Z"


def test_an_event_that_changes_nothing_shows_what_it_carried():
    from dockyard.manifests import validate

    node = validate({"apiVersion": "dockyard.io/v1", "kind": "Node", "metadata": {"name": "n1"}})
    subject = subject_for("node", "", "n1")
    entries = history([record(1, subject, NodeRegistered(node=node)), record(2, subject, PodsBound(pods=()))])
    assert entries[1].detail == 'pods=[]'


def test_a_deletion_gives_its_reason():
    subject = subject_for("pod", "default", "p")
    entries = history([record(1, subject, PodCreated(pod=make_pod("p"))),
                       record(2, subject, PodDeleted(reason="Evicted"))])
    assert entries[1].detail == "deleted (Evicted)"


# ---------------------------------------------------------------- from a time to a position

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


TIMES = [0, 1, 1, 1, 2, 5, 9]  # seq 1..7; appends of one window share a time


@pytest.mark.parametrize("when,expected", [
    (-1, 0), (0, 1), (0.5, 1), (1, 4), (1.5, 4), (2, 5), (4.9, 5), (5, 6), (9, 7), (100, 7),
], ids=["before-all", "first", "between", "last-of-equal", "after-equal", "exact", "gap", "exact-2", "last",
        "after-all"])
async def test_last_seq_at_or_before_a_time(when, expected):
    async def time_at(seq: int) -> dt.datetime:
        return at(TIMES[seq - 1])

    assert await last_seq_at(at(when), 1, len(TIMES), time_at) == expected


async def test_a_stream_that_starts_later_counts_from_its_first_sequence():
    async def time_at(seq: int) -> dt.datetime:
        return at(seq)

    assert await last_seq_at(at(3), 101, 110, time_at) == 100
    assert await last_seq_at(at(104), 101, 110, time_at) == 104


@pytest.mark.parametrize("value,expected", [
    ("2026-11-26T10:00:00Z", at(0)),
    ("2026-11-26T10:00:00.123456789Z", at(0.123456)),
    ("2026-11-26T11:00:00+01:00", at(0)),
    ("2026-11-26T10:00:00", at(0)),
], ids=["utc", "nanoseconds", "offset", "naive-is-utc"])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("before,after,every,due", [
    (0, 10, 100, False), (90, 100, 100, True), (99, 250, 100, True), (100, 199, 100, False),
    (0, 1000, 0, False),
], ids=["short", "reaches", "jumps-two", "within", "disabled"])
def test_snapshot_due_when_a_multiple_is_crossed(before, after, every, due):
    assert snapshot_due(before, after, every) is due
