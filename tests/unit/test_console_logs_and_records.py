"""The console's pure pieces beyond pods: log search (as less), and the image and alert rows."""

from __future__ import annotations

import pytest

from dockyard.eventlog import EventRecord, subject_for
from dockyard.schemas.events import AlertFired, AlertResolved, alert_fingerprint
from dockyard.tui.logsearch import LogSearch
from dockyard.tui.records import AlertRows, ImageRows

LINES = ["starting", "GET /health 200", "error: disk full", "GET /api 500", "Error again", "done"]


def searched(pattern: str) -> LogSearch:
    search = LogSearch(pattern)
    for number, line in enumerate(LINES):
        search.scan(number, line)
    return search


@pytest.mark.parametrize("pattern,hits", [
    ("error", [2, 4]),  # smart case: lower case matches either
    ("Error", [4]),  # a capital: exact case
    ("GET /.* 5\\d\\d", [3]),  # a regex
    ("[unclosed", []),  # not a regex: the literal text
], ids=["smart-case", "exact-case", "regex", "literal"])
def test_search_finds_lines(pattern, hits):
    assert searched(pattern).hits == hits


def test_next_and_previous_wrap_around_as_less_does():
    search = searched("GET")
    assert search.step(1, from_line=0) == 1
    assert search.position() == "/GET: match 1 of 2"
    assert search.step(1, from_line=0) == 3
    assert search.step(1, from_line=0) == 1  # past the last: back to the first
    assert search.step(-1, from_line=0) == 3  # before the first: the last
    assert searched("GET").step(-1, from_line=2) == 1  # from the top line on show, backwards
    assert searched("nothing").step(1, from_line=0) is None


def test_spans_mark_every_match_in_a_line():
    assert LogSearch("o").spans("foo bar") == [(1, 2), (2, 3)]
    assert LogSearch("x*").spans("abc") == []  # empty matches highlight nothing


def image(tag: str, digest: str = "sha256:" + "b" * 64) -> dict:
    return {"registry": "r:5000", "repository": "team/web", "tag": tag, "digest": digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
            "platforms": [{"digest": digest, "os": "linux", "architecture": "arm64", "size": 2048}],
            "problem": "", "updated": ""}


def test_images_are_replaced_by_a_fresh_read():
    rows = ImageRows()
    rows.load([image("v1"), image("v2")])
    rows.refresh()
    changed = rows.replace([image("v2", "sha256:" + "c" * 64), image("v3")])
    assert changed == {"r:5000/team/web:v1", "r:5000/team/web:v2", "r:5000/team/web:v3"}
    change = rows.refresh(changed)
    assert rows.shown == ["r:5000/team/web:v2", "r:5000/team/web:v3"]
    assert change.removed == ["r:5000/team/web:v1"]
    assert rows.cells["r:5000/team/web:v2"][:4] == ["team/web", "v2", "sha256:cccccccccccc", "linux/arm64"]


def alert_record(seq: int, event, labels: dict) -> EventRecord:
    return EventRecord(seq=seq, subject=subject_for("alert", "", alert_fingerprint(labels)), type="t", version=1,
                       time="2026-01-01T00:00:00Z", actor="monitoring", correlation_id="", causation_id="",
                       msg_id="", event=event)


def test_alerts_fold_fired_then_resolved_and_sort_firing_first():
    down = {"alertname": "NodeNotReady", "severity": "critical", "node": "n1"}
    slow = {"alertname": "SlowScheduling", "severity": "warning"}
    rows = AlertRows()
    rows.absorb([
        alert_record(1, AlertFired(alertname="NodeNotReady", severity="critical", labels=down,
                                   annotations={"summary": "n1 is not ready"}), down),
        alert_record(2, AlertFired(alertname="SlowScheduling", labels=slow), slow),
    ])
    assert rows.firing == 2
    rows.absorb([alert_record(3, AlertResolved(alertname="NodeNotReady", labels=down,
                                               resolved_at="2026-01-01T00:05:00Z"), down)])
    assert rows.firing == 1
    rows.refresh()
    first, second = (rows.cells[key] for key in rows.shown)
    assert first[:3] == ["SlowScheduling", "warning", "firing"]
    assert second[:3] == ["NodeNotReady", "critical", "resolved"] and second[4:] == ["node=n1", "n1 is not ready"]
    rows.query = rows.query.parse("-l severity=critical")
    assert rows.visible_keys() == [alert_fingerprint(down)]


def test_an_alert_firing_into_an_empty_view_appears():
    labels = {"alertname": "NodeNotReady", "severity": "critical", "node": "n1"}
    rows = AlertRows()
    rows.refresh()  # the empty view drawn first
    change = rows.refresh(rows.absorb([alert_record(5, AlertFired(alertname="NodeNotReady", labels=labels), labels)]))
    assert [key for key, _ in change.added] == [alert_fingerprint(labels)] and rows.matching == 1
