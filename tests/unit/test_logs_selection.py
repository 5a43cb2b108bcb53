"""Which log lines `dockyard logs` shows: subjects per container instance, the instance chosen, the last pod."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.eventlog import legacy_logs_subject, logs_subject, subject_for
from dockyard.schemas.events import PodCreated, PodDeleted, PodStatusChanged
from dockyard.schemas.manifests import ContainerStatus, PodStatus
from dockyard.services.node_agent.logs import LogSelection, choose_name, instance_of, last_known_pod, pick_instance
from tests.builders import event_record, make_pod

SUBJECT = subject_for("pod", "default", "web-1")


def pod_with_uid(uid: str):
    pod = make_pod("web-1")
    return msgspec.structs.replace(pod, metadata=msgspec.structs.replace(pod.metadata, uid=uid))


def test_subjects_put_the_uid_and_restart_count_in_tokens_a_filter_can_match():
    assert logs_subject("default", "web.1", "u-1", "main", 3) == "dy.logs.default.web_1.u-1.main.3"
    assert logs_subject("default", "web-1", "u-1", "main") == "dy.logs.default.web-1.u-1.main.*"
    assert logs_subject("default", "web-1", "", "main", 0) == "dy.logs.default.web-1.-.main.0"
    assert legacy_logs_subject("default", "web-1", "main") == "dy.logs.default.web-1.main"


def test_a_selection_reads_its_instance_and_follows_into_later_ones():
    selection = LogSelection("default", "web-1", "main", "u-1", 2)
    assert selection.subject == "dy.logs.default.web-1.u-1.main.2"
    assert selection.follow_subject == "dy.logs.default.web-1.u-1.main.*"
    assert [selection.shows(f"dy.logs.default.web-1.u-1.main.{n}") for n in (1, 2, 3)] == [False, True, True]
    legacy = LogSelection("default", "web-1", "main", None)
    assert legacy.subject == legacy.follow_subject == "dy.logs.default.web-1.main"
    assert legacy.shows("dy.logs.default.web-1.main")


@pytest.mark.parametrize(("restart_count", "shipped", "previous", "expected"), [
    (0, [], False, 0),
    (0, [0], True, None),
    (2, [0, 1, 2], False, 2),
    (2, [0, 1, 2], True, 1),
    (1, [0, 1, 2], False, 2),  # lines of a run the status has not reported yet
    (1, [0, 1, 2], True, 1),
    (3, [0], True, 2),  # the previous run said nothing (or its lines aged out): nothing to show
], ids=["first-run", "first-run-no-previous", "current", "previous", "status-lags", "previous-status-lags",
        "previous-silent"])
def test_pick_instance(restart_count, shipped, previous, expected):
    assert pick_instance(restart_count, shipped, previous) == expected


def test_instance_of_reads_the_last_token():
    assert instance_of("dy.logs.default.web-1.u-1.main.12") == 12
    assert instance_of("dy.logs.default.web-1.main") == -1


def test_choose_name_the_kubectl_way():
    assert choose_name(["main"], None, "web-1") == "main"
    assert choose_name(["a", "b"], "b", "web-1") == "b"
    with pytest.raises(ValueError, match="container c is not valid for pod web-1"):
        choose_name(["a", "b"], "c", "web-1")
    with pytest.raises(ValueError, match=r"a container name must be specified for pod web-1, choose one of: \[a b\]"):
        choose_name(["a", "b"], None, "web-1")


def test_last_known_pod_is_the_latest_incarnation_even_once_deleted():
    status = PodStatus(phase="Running", container_statuses=(ContainerStatus(name="main", restart_count=4),))
    records = [event_record(1, SUBJECT, PodCreated(pod=pod_with_uid("old"))),
               event_record(2, SUBJECT, PodDeleted()),
               event_record(3, SUBJECT, PodCreated(pod=pod_with_uid("new"))),
               event_record(4, SUBJECT, PodStatusChanged(status=status))]
    assert last_known_pod(records[:1]).metadata.uid == "old"
    assert last_known_pod(records[:2]).metadata.uid == "old"  # deleted: as it was last
    known = last_known_pod(records)
    assert known.metadata.uid == "new" and known.status.container_statuses[0].restart_count == 4
    deleted = last_known_pod([*records, event_record(5, SUBJECT, PodDeleted())])
    assert deleted.metadata.uid == "new" and deleted.status.container_statuses[0].restart_count == 4
    assert last_known_pod([]) is None
