"""The audit trail's pure parts: v1 records upcast, the hash chain, and comparing a table with the log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from dockyard import audit
from dockyard.eventlog import H_TYPE, record_from
from dockyard.schemas.events import CommandRecorded, ObjectRef

STORED_V1 = Path(__file__).parent.parent / "data" / "command_recorded_v1.jsonl"

_replace = msgspec.structs.replace


def stored_v1() -> list[dict]:
    return [json.loads(line) for line in STORED_V1.read_text().splitlines() if line.strip()]


def make_entry(seq: int, **fields) -> audit.AuditEntry:
    defaults = dict(command_id=f"c{seq}", time="2026-11-26T10:00:00.000000Z", actor="alice", verb="apply",
                    kind="Deployment", namespace="default", name="web", result="configured", reason="",
                    summary="replicas 3→5", dry_run=False)
    return audit.AuditEntry(seq=seq, **{**defaults, **fields})


def test_stored_v1_records_decode_as_v2():
    records = [record_from(seq, line["subject"], line["headers"], line["data"].encode())
               for seq, line in enumerate(stored_v1(), start=1)]
    assert all(line["headers"][H_TYPE] == "command.recorded.v1" for line in stored_v1())
    assert {r.type for r in records} == {"command.recorded.v2"} and {r.version for r in records} == {1}
    first, refused, cordon, dry = records[0].event, records[2].event, records[3].event, records[5].event
    assert first == CommandRecorded(command_id="0b6c1f0e-v1-apply", verb="apply",
                                    object=ObjectRef(kind="Deployment", namespace="default", name="web"),
                                    actor="alice", result="created", time="2026-11-20T09:00:00.000001Z")
    assert refused.object == ObjectRef(kind="Deployment", name="web") and refused.reason.startswith("spec.replicas")
    assert cordon.object == ObjectRef(kind="Node", name="n1") and cordon.summary == ""
    assert dry.dry_run and dry.object.namespace == "team"


TIMES = {
    "zulu-micro": ("2026-11-26T10:00:00.123456Z", "2026-11-26T10:00:00.123456Z"),
    "zulu-whole-second": ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00.000000Z"),
    "offset": ("2026-11-26T12:00:00.5+02:00", "2026-11-26T10:00:00.500000Z"),
    "naive-is-utc": ("2026-11-26T10:00:00", "2026-11-26T10:00:00.000000Z"),
    "unparseable": ("yesterday", "1970-01-01T00:00:00.000000Z"),
    "overflows-on-conversion": ("0001-01-01T00:00:00+01:00", "1970-01-01T00:00:00.000000Z"),
    "from-postgres": (dt.datetime(2026, 11, 26, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                      "2026-11-26T10:00:00.000000Z"),
}


@pytest.mark.parametrize("value,expected", TIMES.values(), ids=TIMES.keys())
def test_audit_time_reads_the_same_from_the_log_and_from_postgres(value, expected):
    assert audit.audit_time(value) == expected


def test_entry_of_flattens_the_object_and_keeps_nul_out_of_postgres():
    event = CommandRecorded(command_id="c1", verb="delete", object=ObjectRef(kind="Pod", namespace="ns", name="p"),
                            actor="mal\x00lory", result="refused", reason="no", time="2026-11-26T10:00:00Z")
    entry = audit.entry_of(7, event)
    assert (entry.seq, entry.kind, entry.namespace, entry.name, entry.actor) == (7, "Pod", "ns", "p", "mal\ufffdlory")
    assert audit.describe(entry) == "delete pod/ns/p by mal\ufffdlory"


def test_the_chain_links_each_entry_to_the_one_before():
    rows = audit.chain([make_entry(3), make_entry(5, actor="bob"), make_entry(9, result="refused")])
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert all(r.hash == audit.link(r.prev_hash, r.entry()) and len(r.hash) == 64 for r in rows)
    assert audit.chain([make_entry(3), make_entry(5, actor="bob"), make_entry(9, result="refused")]) == rows


def test_changing_one_entry_changes_its_hash_and_every_later_one():
    entries = [make_entry(seq) for seq in (1, 2, 3, 4)]
    original = audit.chain(entries)
    tampered = audit.chain([entries[0], _replace(entries[1], actor="mallory"), *entries[2:]])
    assert tampered[0].hash == original[0].hash
    assert all(t.hash != o.hash for t, o in zip(tampered[1:], original[1:]))


def test_a_chain_continued_from_its_head_equals_the_whole_chain():
    entries = [make_entry(seq) for seq in range(1, 8)]
    whole = audit.chain(entries)
    first, rest = audit.chain(entries[:3]), audit.chain(entries[3:], whole[2].hash)
    assert first + rest == whole


def test_compare_names_altered_removed_and_inserted_rows():
    expected = audit.chain([make_entry(seq, name=f"d{seq}") for seq in (10, 11, 12, 13)])
    altered = _replace(expected[1], summary="replicas 3→50")
    inserted = audit.chain([make_entry(99, actor="mallory", verb="delete")], expected[-1].hash)[0]
    stored = [expected[0], altered, expected[3], inserted]  # seq 12 removed
    findings = audit.compare(expected, stored)
    assert [str(f) for f in findings] == [
        "altered: seq 11 (apply deployment/default/d11 by alice): summary differ",
        "removed: seq 12 (apply deployment/default/d12 by alice)",
        "inserted: seq 99 (delete deployment/default/web by mallory)",
    ]


def test_compare_sees_a_rewritten_hash_even_when_the_content_is_intact():
    expected = audit.chain([make_entry(1), make_entry(2)])
    stored = [expected[0], _replace(expected[1], hash="0" * 64)]
    assert [(f.what, f.entry.seq, f.fields) for f in audit.compare(expected, stored)] == [("altered", 2, ("hash",))]


def test_an_intact_table_compares_clean():
    expected = audit.chain([make_entry(seq) for seq in range(1, 6)])
    assert audit.compare(expected, list(reversed(expected))) == []


def test_object_name_leaves_out_the_namespace_of_cluster_scoped_kinds():
    assert audit.object_name(make_entry(1, kind="Node", namespace="", name="n1")) == "node/n1"
