"""Export and import of the event log: a fresh stack fed the export reaches identical projections."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import create_engine, text

from dockyard.eventlog import H_MSG_ID, H_TIME, H_TYPE, STREAM, Append, register_upcaster, subject_for
from dockyard.schemas.events import PodCreated, PodScheduled
from dockyard.servers import NatsServer
from dockyard.services.projector.projections import PROJECTIONS
from dockyard.transfer import ExportedEvent, TransferError, export_events, import_events
from tests.builders import make_pod
from tests.conftest import ServiceProcess, fresh_database
from tests.integration.test_projector import append_all, checksum, wait_for_position, workload


@pytest.fixture
def target_nats():
    """A second nats-server: the fresh stack the export goes into."""
    root = Path(tempfile.mkdtemp(prefix="dy-nats-target-", dir="/tmp"))
    server = NatsServer(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def target_database(postgres):
    return fresh_database(postgres)


def dockyard(nats_url: str, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_url)
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=120)


def lines_of(export: bytes) -> list[ExportedEvent]:
    return [msgspec.json.decode(line, type=ExportedEvent) for line in export.splitlines()]


def projection_checksums(url: str) -> dict[str, str]:
    """Every projection's rows, every column, except `created_at`: the builders' objects carry no
    creationTimestamp, and for those the projector falls back to the time it projects them."""
    engine = create_engine(url)
    with engine.connect() as conn:
        sums = {p.table: checksum(conn.execute(text(f"SELECT (to_jsonb(t) - 'created_at')::text FROM {p.table} t"))
                                  .scalars())
                for p in PROJECTIONS.values()}
    engine.dispose()
    return sums


def wait_for_projections(url: str, events: list[ExportedEvent]) -> None:
    for name, projection in PROJECTIONS.items():
        subjects = projection.filter_subject
        prefixes = tuple(s.removesuffix(">") for s in ((subjects,) if isinstance(subjects, str) else subjects))
        last = max((e.seq for e in events if e.subject.startswith(prefixes)), default=0)
        wait_for_position(url, name, last)


async def history(log) -> list[Append]:
    """The projector's workload, some of it as atomic batches and with idempotency keys."""
    appends = workload()
    await append_all(log, appends)
    for i in range(5):
        pod = subject_for("pod", "batched", f"b{i}")
        await log.append_batch([
            Append(subject=pod, event=PodCreated(pod=make_pod(f"b{i}", "batched")), expected_seq=0, msg_id=f"cmd{i}:0"),
            Append(subject=pod, event=PodScheduled(node_name="n1"), msg_id=f"cmd{i}:1"),
        ])
    return appends


async def test_export_then_import_into_a_fresh_stack_gives_identical_projections(
    eventlog, services, database_url, nats_server, target_nats, target_database, tmp_path
):
    await history(eventlog)
    services("projector")
    exported = dockyard(nats_server.url, "events", "export")
    assert exported.returncode == 0, exported.stderr.decode()
    events = lines_of(exported.stdout)
    assert [e.seq for e in events] == list(range(1, await eventlog.last_stream_seq() + 1))
    assert not any(k.startswith(("Nats-Expected-", "Nats-Batch-")) for e in events for k in e.headers)
    wait_for_projections(database_url, events)

    export_file = tmp_path / "events.jsonl"
    export_file.write_bytes(exported.stdout)
    imported = dockyard(target_nats.url, "events", "import", str(export_file))
    assert imported.returncode == 0, imported.stderr.decode()
    assert f"imported {len(events)} events".encode() in imported.stderr
    projector = ServiceProcess("projector", target_nats.url, target_database, tmp_path).start()
    try:
        wait_for_projections(target_database, events)  # the projector catches up from the log
        assert projection_checksums(target_database) == projection_checksums(database_url)
        again = dockyard(target_nats.url, "events", "export")
        assert again.stdout == exported.stdout  # same subjects, sequences, envelopes and payload bytes
    finally:
        projector.stop()


async def test_import_refuses_a_stack_with_history_unless_forced(eventlog, nats_server, tmp_path):
    await append_all(eventlog, workload()[:10])
    export_file = tmp_path / "events.jsonl"
    with open(export_file, "wb") as out:
        await export_events(eventlog, out)
    refused = dockyard(nats_server.url, "events", "import", str(export_file))
    assert refused.returncode == 1
    assert b"DY_EVENTS is not empty (last sequence 10)" in refused.stderr and b"--force" in refused.stderr

    forced = dockyard(nats_server.url, "events", "import", "--force", str(export_file))
    assert forced.returncode == 0, forced.stderr.decode()
    assert await eventlog.last_stream_seq() == 20


async def test_an_import_that_would_drop_a_duplicate_stops_there(eventlog):
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")), msg_id="cmd1:0")
    await eventlog.append(subject_for("pod", "default", "b"), PodCreated(pod=make_pod("b")))
    out = io.BytesIO()
    await export_events(eventlog, out)
    with pytest.raises(TransferError, match="Nats-Msg-Id 'cmd1:0' is already stored at seq 1"):
        await import_events(eventlog, out.getvalue().splitlines())
    assert await eventlog.last_stream_seq() == 2  # nothing after the duplicate went in either


async def test_export_chooses_by_kind_and_by_envelope_time(eventlog):
    await append_all(eventlog, workload()[:40])  # one append: one envelope time for the forty
    await append_all(eventlog, workload()[40:60])  # a later one
    everything = io.BytesIO()
    await export_events(eventlog, everything)
    second_time = lines_of(everything.getvalue())[-1].headers[H_TIME]
    moment = dt.datetime.fromisoformat(second_time.replace("Z", "+00:00"))

    pods = io.BytesIO()
    assert await export_events(eventlog, pods, kind="pod") == 45
    assert all(e.subject.startswith("dy.evt.pod.") for e in lines_of(pods.getvalue()))
    before, after = io.BytesIO(), io.BytesIO()
    assert await export_events(eventlog, before, until=moment) == 40
    assert await export_events(eventlog, after, since=moment) == 20
    assert [e.seq for e in lines_of(after.getvalue())] == list(range(41, 61))


async def test_payloads_travel_as_stored_so_upcasters_still_apply(eventlog, nats_server):
    register_upcaster("pod.scheduled.v0", lambda p: {"type": "pod.scheduled.v1", "node_name": p["node"]})
    subject = subject_for("pod", "default", "old")
    stored_v0 = b'{"type":"pod.scheduled.v0","node":"n7"}'
    await eventlog.js.publish(subject, stored_v0, headers={H_TYPE: "pod.scheduled.v0", H_MSG_ID: "old:0"})
    out = io.BytesIO()
    await export_events(eventlog, out)
    [line] = lines_of(out.getvalue())
    assert bytes(line.data) == stored_v0

    await eventlog.js.delete_stream(STREAM)  # a fresh stack
    await eventlog.ensure_streams()
    assert await import_events(eventlog, out.getvalue().splitlines()) == 1
    [record] = await eventlog.read_aggregate(subject)
    assert record.event == PodScheduled(node_name="n7") and record.msg_id == "old:0"
    raw = await eventlog.js.get_msg(STREAM, seq=1)
    assert raw.data == stored_v0


async def test_a_line_that_is_not_an_event_is_named(eventlog):
    with pytest.raises(TransferError, match="line 2: not an exported event"):
        await import_events(eventlog, [b"", b'{"seq": 1}'])
