"""The event log against a real nats-server: append, read, conflicts, idempotency, batches, consumers."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
from nats.aio.msg import Msg

from dockyard.eventlog import (
    DEAD_LETTER_STREAM,
    H_DEAD_REASON,
    Append,
    ConcurrencyConflict,
    EventLog,
    EventLogError,
    Metadata,
    PullInbox,
    kind_filter,
    parse_subject,
    register_upcaster,
    stream_seq_of,
    subject_for,
    unseen,
    UPCASTERS,
)
from dockyard.servers import NatsServer
from dockyard.schemas.events import PodDeleted, PodScheduled


def pod_subject(name: str = "web-1", namespace: str = "default") -> str:
    return subject_for("pod", namespace, name)


@pytest.mark.parametrize(
    "kind,namespace,name,subject",
    [
        ("pod", "default", "web-1", "dy.evt.pod.default.web-1"),
        ("node", "", "node1.example.com", "dy.evt.node.node1_example_com"),
        ("deployment", "team-a", "api", "dy.evt.deployment.team-a.api"),
    ],
    ids=["namespaced", "cluster-scoped-with-dots", "deployment"],
)
def test_subjects_round_trip(kind, namespace, name, subject):
    assert subject_for(kind, namespace, name) == subject
    assert parse_subject(subject) == (kind, namespace, name)


async def test_append_and_read_history_in_order(eventlog):
    subject = pod_subject()
    meta = Metadata(actor="alice", correlation_id="c-1", causation_id="cmd-1")
    first = await eventlog.append(subject, PodScheduled(node_name="n1"), expected_seq=0, meta=meta)
    second = await eventlog.append(subject, PodScheduled(node_name="n2"), expected_seq=first, meta=meta)
    await eventlog.append(pod_subject("other"), PodScheduled(node_name="n3"), expected_seq=0)

    history = await eventlog.read_aggregate(subject)

    assert [r.seq for r in history] == [first, second]
    assert [r.event.node_name for r in history] == ["n1", "n2"]
    assert history[0].type == "pod.scheduled.v1" and history[0].version == 1
    assert (history[0].actor, history[0].correlation_id, history[0].causation_id) == ("alice", "c-1", "cmd-1")
    assert history[0].time.endswith("Z")
    assert await eventlog.last_seq(subject) == second
    assert await eventlog.last_seq(pod_subject("never")) == 0


async def test_stale_expected_sequence_is_a_typed_conflict(eventlog):
    subject = pod_subject()
    seq = await eventlog.append(subject, PodScheduled(node_name="n1"), expected_seq=0)
    await eventlog.append(subject, PodScheduled(node_name="n2"), expected_seq=seq)

    with pytest.raises(ConcurrencyConflict) as conflict:
        await eventlog.append(subject, PodScheduled(node_name="n3"), expected_seq=seq)
    assert conflict.value.subject == subject
    with pytest.raises(ConcurrencyConflict):
        await eventlog.append(subject, PodScheduled(node_name="n3"), expected_seq=0)
    assert len(await eventlog.read_aggregate(subject)) == 2


async def test_a_retried_append_lands_once(eventlog):
    subject = pod_subject()
    first = await eventlog.append(subject, PodScheduled(node_name="n1"), expected_seq=0, msg_id="cmd-7:0")
    again = await eventlog.append(subject, PodScheduled(node_name="n1"), expected_seq=0, msg_id="cmd-7:0")
    unchecked = await eventlog.append(subject, PodScheduled(node_name="n1"), msg_id="cmd-7:0")

    assert first == again == unchecked
    assert len(await eventlog.read_aggregate(subject)) == 1


async def test_batch_is_all_or_nothing(eventlog):
    a, b = pod_subject("a"), pod_subject("b")
    seq_a = await eventlog.append(a, PodScheduled(node_name="n1"), expected_seq=0)

    seqs = await eventlog.append_batch([
        Append(subject=a, event=PodScheduled(node_name="n2"), expected_seq=seq_a, msg_id="c1:0"),
        Append(subject=b, event=PodScheduled(node_name="n2"), expected_seq=0, msg_id="c1:1"),
        Append(subject=a, event=PodDeleted(), msg_id="c1:2"),
    ])
    assert seqs == [seq_a + 1, seq_a + 2, seq_a + 3]

    with pytest.raises(ConcurrencyConflict):
        await eventlog.append_batch([
            Append(subject=pod_subject("c"), event=PodScheduled(node_name="n9"), expected_seq=0, msg_id="c2:0"),
            Append(subject=b, event=PodDeleted(), expected_seq=0, msg_id="c2:1"),  # stale: b exists
        ])
    assert await eventlog.read_aggregate(pod_subject("c")) == []
    assert await eventlog.last_stream_seq() == seq_a + 3

    retried = await eventlog.append_batch([
        Append(subject=a, event=PodScheduled(node_name="n2"), expected_seq=seq_a, msg_id="c1:0"),
        Append(subject=b, event=PodScheduled(node_name="n2"), expected_seq=0, msg_id="c1:1"),
        Append(subject=a, event=PodDeleted(), msg_id="c1:2"),
    ])
    assert retried == seqs
    assert await eventlog.last_stream_seq() == seq_a + 3


async def test_append_many_reports_each_result(eventlog):
    subjects = [pod_subject(f"p{i}") for i in range(50)]
    results = await eventlog.append_many(
        [Append(subject=s, event=PodScheduled(node_name="n"), expected_seq=0) for s in subjects]
        + [Append(subject=subjects[0], event=PodDeleted(), expected_seq=0)]
    )
    assert all(isinstance(r, int) for r in results[:50])
    assert isinstance(results[50], ConcurrencyConflict)


async def test_upcaster_turns_an_old_version_into_the_current_one(eventlog):
    subject = pod_subject()
    old_payload = msgspec.json.encode({"type": "pod.scheduled.v0", "node": "legacy-node"})
    await eventlog.nc.publish(subject, old_payload, headers={"Dy-Event-Type": "pod.scheduled.v0"})
    await eventlog.nc.flush()
    register_upcaster("pod.scheduled.v0", lambda p: {"type": "pod.scheduled.v1", "node_name": p["node"]})
    try:
        for _ in range(50):
            history = await eventlog.read_aggregate(subject)
            if history:
                break
            await asyncio.sleep(0.02)
    finally:
        UPCASTERS.pop("pod.scheduled.v0")
    assert history[0].event == PodScheduled(node_name="legacy-node")
    assert history[0].version == 0


async def test_consumer_hands_batches_in_order_and_dead_letters_malformed(eventlog):
    for i in range(10):
        await eventlog.append(pod_subject(f"p{i}"), PodScheduled(node_name=f"n{i}"))
        if i == 4:
            await eventlog.js.publish(pod_subject("bad"), b"{not json", headers={"Dy-Event-Type": "pod.scheduled.v1"})
    await eventlog.ensure_consumer("test-consumer", kind_filter("pod"))
    seen: list[int] = []
    failures = [1]
    stop = asyncio.Event()

    async def handler(records, last_seq):
        if failures:  # the first delivery fails: the same batch must come back
            failures.pop()
            raise RuntimeError("database down")
        seen.extend(r.seq for r in records)
        if last_seq >= 11:
            stop.set()

    await asyncio.wait_for(eventlog.consume("test-consumer", handler, stop, batch=4, retry_backoff=0.01), 20)

    assert seen == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    dead = await eventlog.js.get_msg(DEAD_LETTER_STREAM, seq=1)
    assert dead.data == b"{not json"
    assert "pod.scheduled.v1" in dead.headers[H_DEAD_REASON]


async def test_read_follows_from_a_sequence(eventlog):
    for i in range(5):
        await eventlog.append(pod_subject(f"p{i}"), PodScheduled(node_name="n"))
    seqs = [r.seq async for r in eventlog.read(kind_filter("pod"), start_seq=3)]
    assert seqs == [3, 4, 5]
    assert [r async for r in eventlog.read(kind_filter("deployment"))] == []


def delivery(seq: int, delivered: int = 1) -> Msg:
    """A consumer delivery as the server addresses it: the ack subject carries its place."""
    return Msg(_client=None, subject=pod_subject(), reply=f"$JS.ACK.DY_EVENTS.c.{delivered}.{seq}.{seq}.0.0")


def test_stream_sequence_is_read_from_either_form_of_ack_subject():
    assert stream_seq_of(delivery(42)) == 42
    with_domain = Msg(_client=None, reply="$JS.ACK.hub.ACCHASH.DY_EVENTS.c.1.42.7.0.0.rnd")
    assert stream_seq_of(with_domain) == 42


@pytest.mark.parametrize(
    "arrived,last_seen,expected",
    [
        ([1, 2, 3], 0, [1, 2, 3]),
        ([3, 4, 5], 3, [4, 5]),
        ([2, 3], 3, []),
        ([4, 5, 2, 6], 3, [4, 5, 6]),
    ],
    ids=["all-new", "redelivered-head", "only-redeliveries", "redelivery-in-between"],
)
def test_unseen_keeps_the_log_order(arrived, last_seen, expected):
    assert [stream_seq_of(m) for m in unseen([delivery(s) for s in arrived], last_seen)] == expected


async def test_pull_inbox_hands_on_everything_that_arrived_in_batches(eventlog):
    # With AckAll, a delivery dropped here would be acknowledged with the next batch, and lost.
    inbox = PullInbox(eventlog.nc, "c", batch=2, wait=0.1)
    for seq in range(1, 6):  # more than a batch: a stale pull's deliveries came in as well
        await inbox._on_message(delivery(seq))

    batches = [[stream_seq_of(m) for m in await inbox.next_batch()] for _ in range(3)]

    assert batches == [[1, 2], [3, 4], [5]]


async def test_append_many_waits_once_for_all_acknowledgements(eventlog):
    async def take_without_answering(msg):
        pass

    await eventlog.nc.subscribe("silent.>", cb=take_without_answering)
    appends = [Append(subject=f"silent.{i}", event=PodScheduled(node_name="n")) for i in range(5)]
    appends.insert(2, Append(subject=pod_subject(), event=PodScheduled(node_name="n"), expected_seq=0))

    started = time.monotonic()
    results = await eventlog.append_many(appends, timeout=0.3)

    assert time.monotonic() - started < 1.0  # one deadline, not one per unanswered append
    assert results[2] == 1
    assert all(isinstance(r, EventLogError) and "no acknowledgement" in str(r)
               for i, r in enumerate(results) if i != 2)


async def acknowledged_up_to(log: EventLog, consumer: str, seq: int, within: float = 5.0) -> bool:
    """Whether the consumer's ack floor reaches `seq` (acks are processed after they are sent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        info = await log.js.consumer_info("DY_EVENTS", consumer)
        if info.ack_floor.stream_seq >= seq and not info.num_ack_pending:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_consumer_carries_on_after_the_server_restarts():
    root = Path(tempfile.mkdtemp(prefix="dy-restart-", dir="/tmp"))
    server = NatsServer(root)
    server.start()
    log = await EventLog.connect(server.url)
    try:
        await log.ensure_streams()
        for i in range(5):
            await log.append(pod_subject(f"p{i}"), PodScheduled(node_name="n"))
        await log.ensure_consumer("restart-consumer", kind_filter("pod"))
        seen: list[int] = []
        stop = asyncio.Event()

        async def handler(records, last_seq):
            seen.extend(r.seq for r in records)
            if last_seq >= 10:
                stop.set()

        consuming = asyncio.create_task(log.consume("restart-consumer", handler, stop, fetch_timeout=0.2))
        while len(seen) < 5:
            await asyncio.sleep(0.01)
        server.stop()
        server.start()
        while not (log.nc.stats["reconnects"] and log.nc.is_connected):
            await asyncio.sleep(0.05)
        for i in range(5, 10):
            await log.append(pod_subject(f"p{i}"), PodScheduled(node_name="n"))
        await asyncio.wait_for(consuming, 20)

        assert seen == list(range(1, 11))
        assert await acknowledged_up_to(log, "restart-consumer", 10)
    finally:
        await log.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
