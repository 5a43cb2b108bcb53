"""The console's pure view logic: rows folded from events, filters, sort, pages and table changes."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.eventlog import EventRecord, subject_for
from dockyard.schemas.events import PodCreated, PodDeleted, PodStatusChanged
from dockyard.schemas.manifests import Pod, PodStatus
from dockyard.tui.rows import Query, ResourceRows
from dockyard.tui.streams import RateMeter


def make_pod(name: str, namespace: str = "default", labels: dict | None = None, phase: str = "Running",
             node: str = "n1") -> dict:
    return {"apiVersion": "dockyard.io/v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": phase}}


def record(seq: int, name: str, event, namespace: str = "default") -> EventRecord:
    return EventRecord(seq=seq, subject=subject_for("pod", namespace, name), type="t", version=1,
                       time="2026-01-01T00:00:01Z", actor="test", correlation_id="", causation_id="",
                       msg_id="", event=event)


def make_rows(*pods: dict, page_size: int = 500) -> ResourceRows:
    rows = ResourceRows("Pod", page_size=page_size)
    rows.load(pods, position=10)
    return rows


@pytest.mark.parametrize("raw,text,selector", [
    ("web", "web", ""),
    ("-l app=web", "", "app=web"),
    ("-l app=web nginx", "nginx", "app=web"),
    ("  ", "", ""),
], ids=["text", "labels", "labels-and-text", "empty"])
def test_query_parse(raw, text, selector):
    assert Query.parse(raw) == Query(text=text, selector=selector)


@pytest.mark.parametrize("query,expected", [
    (Query(text="web"), ["default/web-1", "default/web-2"]),
    (Query(text="^default db-"), ["default/db-1"]),
    (Query(text="web-[2]"), ["default/web-2"]),
    (Query(text="web-["), []),  # not a regex: searched as text
    (Query(selector="app=db"), ["default/db-1"]),
    (Query(selector="app!=db"), ["default/web-1", "default/web-2"]),
], ids=["substring", "regex-anchor", "regex-class", "bad-regex-as-text", "label", "label-not"])
def test_filter(query, expected):
    rows = make_rows(make_pod("web-1", labels={"app": "web"}), make_pod("web-2", labels={"app": "web"}),
                     make_pod("db-1", labels={"app": "db"}))
    rows.query = query
    assert rows.visible_keys() == expected


def test_a_first_refresh_adds_the_page_in_order():
    rows = make_rows(make_pod("b"), make_pod("a"))
    change = rows.refresh()
    assert [k for k, _ in change.added] == ["default/a", "default/b"]
    assert not change.removed and not change.reordered


def test_a_status_event_updates_one_row_in_place():
    rows = make_rows(make_pod("a", phase="Pending"), make_pod("b"))
    rows.refresh()
    changed = rows.absorb([record(11, "a", PodStatusChanged(status=PodStatus(phase="Running")))])
    change = rows.refresh(changed)
    assert changed == {"default/a"}
    assert [k for k, _ in change.updated] == ["default/a"]
    assert not change.added and not change.removed and not change.reordered


def test_old_events_are_skipped_and_deletes_remove_rows():
    rows = make_rows(make_pod("a"), make_pod("b"))
    rows.refresh()
    assert rows.absorb([record(5, "a", PodDeleted())]) == set()  # before the listed position
    change = rows.refresh(rows.absorb([record(11, "a", PodDeleted())]))
    assert change.removed == ["default/a"] and rows.shown == ["default/b"]


def test_pages_hold_page_size_rows():
    rows = make_rows(*(make_pod(f"p{i:03}") for i in range(25)), page_size=10)
    assert len(rows.visible_keys()) == 10 and rows.matching == 25
    rows.page = 2
    assert rows.visible_keys() == [f"default/p{i:03}" for i in range(20, 25)]
    rows.page = 9  # past the end: the last page
    assert rows.visible_keys()[0] == "default/p020"


def test_sort_by_column_reorders():
    rows = make_rows(make_pod("a", phase="Running"), make_pod("b", phase="Pending"))
    rows.refresh()
    rows.sort_column = rows.headers.index("STATUS")
    change = rows.refresh()
    assert rows.shown == ["default/b", "default/a"] and change.reordered


def test_namespace_limits_rows():
    rows = make_rows(make_pod("a", namespace="prod"), make_pod("b"))
    rows.namespace = "prod"
    assert rows.visible_keys() == ["prod/a"]


def test_rate_meter_counts_a_window():
    meter = RateMeter(window=5)
    meter.add(0.0, 50)
    meter.add(4.0, 50)
    assert meter.rate(4.0) == 20
    assert meter.rate(6.0) == 10


def test_a_live_change_of_the_sort_column_moves_the_row():
    rows = make_rows(make_pod("a", phase="Running"), make_pod("b", phase="Running"), make_pod("c", phase="Running"))
    rows.sort_column = rows.headers.index("STATUS")
    rows.refresh()
    same = rows.refresh(rows.absorb([record(11, "b", PodStatusChanged(status=PodStatus(phase="Running")))]))
    assert not same.reordered and not same.added  # its sort cell did not change: updated in place
    moved = rows.refresh(rows.absorb([record(12, "c", PodStatusChanged(status=PodStatus(phase="Failed")))]))
    assert rows.shown == ["default/c", "default/a", "default/b"] and moved.reordered


def test_a_new_pod_lands_in_key_order():
    rows = make_rows(make_pod("a"), make_pod("c"))
    rows.refresh()
    pod = msgspec.convert(make_pod("b"), Pod)
    rows.refresh(rows.absorb([record(11, "b", PodCreated(pod=pod))]))
    assert rows.shown == ["default/a", "default/b", "default/c"]


def test_phases_are_counted_as_pods_change():
    rows = make_rows(make_pod("a", phase="Pending"), make_pod("b"))
    rows.absorb([record(11, "a", PodStatusChanged(status=PodStatus(phase="Running")))])
    assert +rows.phases == {"Running": 2}
    rows.absorb([record(12, "b", PodDeleted())])
    assert +rows.phases == {"Running": 1}
