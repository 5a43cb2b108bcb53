"""The audit trail end to end: commands through the CLI, tampering caught by `audit verify`, stored v1 records."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from dockyard import audit
from dockyard.db import async_engine
from dockyard.eventlog import Append, kind_filter, subject_for
from dockyard.schemas.events import CommandRecorded, ObjectRef
from tests.builders import deployment_manifest, pod_manifest
from tests.integration.test_cli import dockyard, ok, refused, write
from tests.integration.test_projector import position, wait_for_position

STORED_V1 = Path(__file__).parent.parent / "data" / "command_recorded_v1.jsonl"
COLUMNS = re.compile(r"\s{3,}")  # format_table pads columns with at least three spaces


def as_actor(env: dict, actor: str) -> dict:
    """The CLI's environment with `actor` as the user it records (getpass reads LOGNAME first)."""
    return dict(env, LOGNAME=actor, USER=actor)


def sql(url: str, statement: str, **params) -> list:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def wait_for_entries(url: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sql(url, "SELECT count(*) FROM commands")[0][0] < count:
        assert time.monotonic() < deadline, f"the commands projection did not reach {count} entries"
        time.sleep(0.05)


def audit_rows(env: dict, *args: str) -> list[list[str]]:
    lines = ok(dockyard(env, "audit", *args)).splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "VERB", "OBJECT", "RESULT", "SUMMARY/REASON"]
    return [COLUMNS.split(line.strip()) for line in lines[1:]]


def test_audit_lists_accepted_and_refused_commands(stack_env, tmp_path, database_url):
    alice, bob, carol = (as_actor(stack_env, name) for name in ("alice", "bob", "carol"))
    ok(dockyard(alice, "apply", "-f", write(tmp_path, "web.yaml", deployment_manifest("web", replicas=3))))
    ok(dockyard(bob, "scale", "deployment", "web", "--replicas", "5"))
    ok(dockyard(alice, "apply", "-f", write(tmp_path, "web2.yaml",
                                            deployment_manifest("web", replicas=5, image="nginx:1.28"))))
    refused(dockyard(carol, "delete", "pod", "ghost"))
    refused(dockyard(alice, "apply", "-f", write(tmp_path, "bad.yaml", deployment_manifest(cpu="lots"))))
    ok(dockyard(carol, "apply", "--dry-run", "-f", write(tmp_path, "p.yaml", pod_manifest("trial"))))
    wait_for_entries(database_url, 6)

    rows = audit_rows(stack_env)
    assert [row[1:5] for row in rows] == [
        ["alice", "apply", "deployment/default/web", "created"],
        ["bob", "scale", "deployment/default/web", "scaled"],
        ["alice", "apply", "deployment/default/web", "configured"],
        ["carol", "delete", "pod/default/ghost", "refused"],
        ["alice", "apply", "deployment/web", "refused"],
        ["carol", "apply (dry run)", "pod/default/trial", "created"],
    ]
    assert [row[5] for row in rows[:4]] == ["created", "replicas 3→5", "image web: nginx:1.27→nginx:1.28",
                                            'pods "ghost" not found']
    assert "is not a quantity" in rows[4][5]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[0]) for row in rows)

    assert [row[2] for row in audit_rows(stack_env, "--actor", "bob")] == ["scale"]
    assert [row[1] for row in audit_rows(stack_env, "--result", "refused")] == ["carol", "alice"]
    assert len(audit_rows(stack_env, "--result", "accepted")) == 4
    assert len(audit_rows(stack_env, "--kind", "deploy", "--name", "web")) == 4
    assert len(audit_rows(stack_env, "--since", "1h")) == 6
    none = dockyard(stack_env, "audit", "--until", "1h")
    assert none.returncode == 0 and none.stdout == b"" and b"No audit entries found." in none.stderr
    assert "--until" in refused(dockyard(stack_env, "audit", "--until", "yesterday"))

    entries = json.loads(ok(dockyard(stack_env, "audit", "--kind", "Deployment", "-o", "json")))
    assert [e["summary"] for e in entries[:3]] == ["created", "replicas 3→5", "image web: nginx:1.27→nginx:1.28"]
    assert entries[0]["prev_hash"] == audit.GENESIS and len(entries[0]["hash"]) == 64


def test_audit_verify_names_altered_removed_and_inserted_rows(stack_env, tmp_path, database_url):
    for actor, name in (("alice", "a"), ("bob", "b"), ("carol", "c"), ("dave", "d")):
        manifest = write(tmp_path, f"{name}.yaml", deployment_manifest(name))
        ok(dockyard(as_actor(stack_env, actor), "apply", "-f", manifest))
    wait_for_entries(database_url, 4)
    assert ok(dockyard(stack_env, "audit", "verify")).strip() == "audit trail verified: 4 entries"

    seqs = [seq for (seq,) in sql(database_url, "SELECT seq FROM commands ORDER BY seq")]
    sql(database_url, "UPDATE commands SET result = 'refused', summary = '' WHERE seq = :seq", seq=seqs[1])
    sql(database_url, "DELETE FROM commands WHERE seq = :seq", seq=seqs[2])
    forged = seqs[-1] + 1000
    sql(database_url, "INSERT INTO commands (seq, command_id, time, actor, verb, kind, namespace, name, result,"
                      " reason, summary, dry_run, prev_hash, hash) SELECT :seq, 'forged', time, 'mallory', 'delete',"
                      " kind, namespace, name, 'deleted', '', 'deleted', false, hash, repeat('0', 64)"
                      " FROM commands WHERE seq = :last", seq=forged, last=seqs[-1])

    result = dockyard(stack_env, "audit", "verify")
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        f"altered: seq {seqs[1]} (apply deployment/default/b by bob): result, summary differ",
        f"removed: seq {seqs[2]} (apply deployment/default/c by carol)",
        f"inserted: seq {forged} (delete deployment/default/d by mallory)",
    ]
    assert "3 of 4 entries differ" in result.stderr.decode()


def test_a_rebuilt_trail_has_the_same_chain(stack_env, tmp_path, database_url):
    for name in ("a", "b", "c"):
        ok(dockyard(stack_env, "apply", "-f", write(tmp_path, f"{name}.yaml", deployment_manifest(name))))
    refused(dockyard(stack_env, "delete", "pod", "ghost"))
    wait_for_entries(database_url, 4)
    before = sql(database_url, "SELECT seq, prev_hash, hash FROM commands ORDER BY seq")

    assert "swapped in" in ok(dockyard(stack_env, "projections", "rebuild", "commands"))
    assert sql(database_url, "SELECT seq, prev_hash, hash FROM commands ORDER BY seq") == before
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "e.yaml", deployment_manifest("e"))))
    wait_for_entries(database_url, 5)
    assert ok(dockyard(stack_env, "audit", "verify")).strip() == "audit trail verified: 5 entries"


def command(i: int, actor: str = "t") -> Append:
    return Append(subject=subject_for("command", "", f"c{i}"), event=CommandRecorded(
        command_id=f"c{i}", verb="apply", object=ObjectRef(kind="Pod", namespace="default", name=f"p{i}"),
        actor=actor, result="created", summary="created", time="2026-11-26T00:00:00Z"))


async def test_the_chain_holds_across_batches_and_a_killed_projector(eventlog, services, database_url):
    total = 4000
    for start in range(0, total, 2000):
        await eventlog.append_many([command(i) for i in range(start, start + 2000)])
    projector = services("projector")
    while position(database_url, "commands") < 1000:
        await asyncio.sleep(0.005)
    projector.kill()
    services("projector")
    wait_for_position(database_url, "commands", total)

    engine = async_engine(database_url, pool_size=1)
    try:
        result = await audit.verify(eventlog, engine)
    finally:
        await engine.dispose()
    assert (result.entries, result.findings, result.position) == (total, [], total)


async def test_stored_v1_records_are_read_as_v2(eventlog, services, database_url):
    stored = [json.loads(line) for line in STORED_V1.read_text().splitlines()]
    for line in stored:  # exactly as the log held them: the v1 payload and its envelope
        await eventlog.js.publish(line["subject"], line["data"].encode(), headers=line["headers"])
    await eventlog.append_many([command(1, actor="v2-writer")])

    history = await eventlog.read_aggregate(stored[0]["subject"])
    assert [(r.type, r.version) for r in history] == [("command.recorded.v2", 1)]
    assert history[0].event.object == ObjectRef(kind="Deployment", namespace="default", name="web")
    assert history[0].actor == "alice" and history[0].msg_id == "0b6c1f0e-v1-apply:record"

    read = [record async for record in eventlog.read(kind_filter("command"))]
    assert [r.type for r in read] == ["command.recorded.v2"] * 7
    assert [r.event.object.name for r in read] == ["web", "web", "web", "n1", "ghost", "p1", "p1"]

    services("projector")
    wait_for_position(database_url, "commands", read[-1].seq)
    rows = sql(database_url, "SELECT verb, kind, namespace, name, actor, result, reason, dry_run, summary"
                             " FROM commands ORDER BY seq")
    assert [tuple(r) for r in rows] == [
        ("apply", "Deployment", "default", "web", "alice", "created", "", False, ""),
        ("scale", "Deployment", "default", "web", "bob", "scaled", "", False, ""),
        ("apply", "Deployment", "", "web", "alice", "refused", "spec.replicas: Expected `int`, got `str`", False, ""),
        ("cordon", "Node", "", "n1", "ops", "cordoned", "", False, ""),
        ("delete", "Pod", "default", "ghost", "carol", "refused", 'pods "ghost" not found', False, ""),
        ("apply", "Pod", "team", "p1", "dave", "created", "", True, ""),
        ("apply", "Pod", "default", "p1", "v2-writer", "created", "", False, "created"),
    ]
    engine = async_engine(database_url, pool_size=1)
    try:
        result = await audit.verify(eventlog, engine)
    finally:
        await engine.dispose()
    assert (result.entries, result.findings) == (7, [])
