"""The event log: appends with optimistic concurrency, aggregate history, durable consumers.

Every service talks to JetStream through this module. One stream, `DY_EVENTS`, one
subject per aggregate (`dy.evt.<kind>.<namespace>.<name>`), events as msgspec JSON
with their envelope in headers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from dockyard.metrics import (
    APPEND_CONFLICTS,
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    DEAD_LETTERED,
    ERROR,
    HANDLER_SECONDS,
    OK,
    count_handled,
)
from dockyard.schemas.base import Event, event_version
from dockyard.schemas.events import EVENT_TYPES, AnyEvent, command_recorded_from_v1, event_decoder, event_encoder

log = logging.getLogger(__name__)

STREAM = "DY_EVENTS"
SUBJECT_ROOT = "dy.evt"
DEAD_LETTER_STREAM = "DY_DEADLETTER"
DEAD_LETTER_ROOT = "dy.dlq"
LOGS_STREAM = "DY_LOGS"
LOGS_ROOT = "dy.logs"
HEARTBEAT_BUCKET = "dy_heartbeats"
HEARTBEAT_TTL = 300.0  # entries expire on their own; liveness is judged on their age, not their presence
USAGE_BUCKET = "dy_usage"  # node name -> dockyard.schemas.usage.NodeUsage JSON
USAGE_TTL = 60.0
MAX_BATCH = 1000  # the server's limit on an atomic batch
# The server allows 50 atomic batches in flight per stream; stay under it per process.
MAX_CONCURRENT_BATCHES = 32

H_TYPE = "Dy-Event-Type"
H_VERSION = "Dy-Schema-Version"
H_ACTOR = "Dy-Actor"
H_CORRELATION = "Dy-Correlation-Id"
H_CAUSATION = "Dy-Causation-Id"
H_TIME = "Dy-Time"
H_MSG_ID = "Nats-Msg-Id"
H_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
H_DEAD_REASON = "Dy-Dead-Reason"
H_DEAD_SEQ = "Dy-Dead-Seq"
H_DEAD_SUBJECT = "Dy-Dead-Subject"

ERR_WRONG_LAST_SEQUENCE = 10071
ERR_BATCH_DUPLICATE_MSG_ID = 10201


class EventLogError(Exception):
    """The log refused or failed an append."""


class ConcurrencyConflict(EventLogError):
    """The aggregate moved on since it was read: re-read and decide again."""

    def __init__(self, subject: str, expected: int | None, detail: str):
        super().__init__(f"{subject}: expected last sequence {expected}, {detail}")
        self.subject = subject
        self.expected = expected


class MalformedEvent(ValueError):
    """A stored message that cannot be decoded into a known event."""


# ---------------------------------------------------------------- subjects


def _token(part: str) -> str:
    # Names are DNS-1123: no '_', '*', '>' or spaces, so '.' -> '_' is reversible.
    return part.replace(".", "_")


def subject_for(kind: str, namespace: str, name: str) -> str:
    """The subject of one aggregate; cluster-scoped kinds have no namespace token."""
    if namespace:
        return f"{SUBJECT_ROOT}.{kind}.{_token(namespace)}.{_token(name)}"
    return f"{SUBJECT_ROOT}.{kind}.{_token(name)}"


def parse_subject(subject: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of an aggregate subject."""
    parts = subject.split(".")
    if len(parts) == 5:
        return parts[2], parts[3].replace("_", "."), parts[4].replace("_", ".")
    if len(parts) == 4:
        return parts[2], "", parts[3].replace("_", ".")
    raise ValueError(f"not an aggregate subject: {subject}")


def kind_filter(kind: str | None = None) -> str:
    return f"{SUBJECT_ROOT}.{kind}.>" if kind else f"{SUBJECT_ROOT}.>"


SubjectFilter = str | tuple[str, ...]  # one subject pattern, or several one consumer reads together


def kind_filters(kind: str | None = None) -> SubjectFilter:
    """The subjects the events of `kind` (their type's first word) are on: that kind's aggregates, and
    any other kind its events live on (node.images_reported.v1 is on `nodeimages`); all with no kind."""
    if kind is None:
        return kind_filter()
    kinds = sorted({cls.KIND for tag, cls in EVENT_TYPES.items() if tag.split(".", 1)[0] == kind} | {kind})
    return kind_filter(kinds[0]) if len(kinds) == 1 else tuple(kind_filter(k) for k in kinds)


def filter_config(subjects: SubjectFilter) -> dict[str, Any]:
    """A ConsumerConfig's filter: `filter_subject` for one pattern, `filter_subjects` for several."""
    if isinstance(subjects, str):
        return {"filter_subject": subjects}
    return {"filter_subject": subjects[0]} if len(subjects) == 1 else {"filter_subjects": list(subjects)}


# ---------------------------------------------------------------- envelope


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    """Who and why: travels in the headers of every event of one command."""

    actor: str = "system"
    correlation_id: str = ""
    causation_id: str = ""


class Append(msgspec.Struct, frozen=True, kw_only=True):
    """One event to append. `expected_seq` None skips the concurrency check, 0 means new."""

    subject: str
    event: Event
    expected_seq: int | None = None
    msg_id: str = ""


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: its payload plus the envelope and its place in the stream."""

    seq: int
    subject: str
    type: str
    version: int
    time: str
    actor: str
    correlation_id: str
    causation_id: str
    msg_id: str
    event: Any  # one of AnyEvent


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[str, Upcaster] = {}


def register_upcaster(old_type: str, upcast: Upcaster) -> None:
    """Register how to turn a stored `old_type` payload into a newer one (its `type` included)."""
    UPCASTERS[old_type] = upcast


# Event types that moved on: every reader of the log upcasts their stored old versions.
register_upcaster("command.recorded.v1", command_recorded_from_v1)


def decode_event(type_name: str, data: bytes) -> Event:
    """Decode a payload, running upcasters for old versions first."""
    try:
        if type_name not in UPCASTERS:
            return event_decoder.decode(data)
        payload = msgspec.json.decode(data)
        seen = set()
        while payload.get("type") in UPCASTERS and payload["type"] not in seen:
            seen.add(payload["type"])
            payload = UPCASTERS[payload["type"]](payload)
        return msgspec.convert(payload, AnyEvent)
    except (msgspec.DecodeError, msgspec.ValidationError, AttributeError, KeyError) as exc:
        raise MalformedEvent(f"{type_name or 'untyped'}: {exc}") from exc


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _header_value(value: str) -> str:
    # A header value cannot hold a line break: it would end the header block.
    return value.replace("\r", " ").replace("\n", " ")


def envelope_headers(event: Event, meta: Metadata, msg_id: str, time: str) -> dict[str, str]:
    type_name = event.type_name()
    headers = {
        H_TYPE: type_name,
        H_VERSION: str(event_version(type_name)),
        H_ACTOR: _header_value(meta.actor),
        H_TIME: time,
    }
    if meta.correlation_id:
        headers[H_CORRELATION] = _header_value(meta.correlation_id)
    if meta.causation_id:
        headers[H_CAUSATION] = _header_value(meta.causation_id)
    if msg_id:
        headers[H_MSG_ID] = _header_value(msg_id)
    return headers


def record_from(seq: int, subject: str, headers: dict[str, str] | None, data: bytes) -> EventRecord:
    """Build an EventRecord from a stored message; raises MalformedEvent."""
    headers = headers or {}
    type_name = headers.get(H_TYPE, "")
    event = decode_event(type_name, data or b"")
    return EventRecord(
        seq=seq,
        subject=subject,
        type=event.type_name(),
        version=event_version(type_name) if type_name else 1,
        time=headers.get(H_TIME, ""),
        actor=headers.get(H_ACTOR, ""),
        correlation_id=headers.get(H_CORRELATION, ""),
        causation_id=headers.get(H_CAUSATION, ""),
        msg_id=headers.get(H_MSG_ID, ""),
        event=event,
    )


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_ROOT}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
        allow_direct=True,
        allow_atomic=True,
        discard=DiscardPolicy.NEW,
    )


def dead_letter_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_ROOT}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=30 * 24 * 3600.0,
        max_bytes=1 << 30,
    )


def logs_config(replicas: int = 1) -> StreamConfig:
    """Container log lines: not history, so a size- and age-limited stream of their own."""
    return StreamConfig(
        name=LOGS_STREAM,
        subjects=[f"{LOGS_ROOT}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_bytes=256 * 1024 * 1024,
        max_age=7 * 24 * 3600.0,
        max_msg_size=64 * 1024,
        discard=DiscardPolicy.OLD,
    )


def logs_subject(namespace: str, pod: str, uid: str = "*", container: str = "*", instance: int | str = "*") -> str:
    """One container instance's lines: `dy.logs.<ns>.<pod>.<pod uid>.<container>.<restart count>`
    ("*" leaves a part open, for a filter). Why the uid and instance are tokens: services/node_agent/logs.py."""
    return f"{LOGS_ROOT}.{_token(namespace)}.{_token(pod)}.{uid or '-'}.{container}.{instance}"


def legacy_logs_subject(namespace: str, pod: str, container: str = "*") -> str:
    """Lines shipped before the subject carried the pod's uid; read for deleted pods only."""
    return f"{LOGS_ROOT}.{_token(namespace)}.{_token(pod)}.{container}"


# ---------------------------------------------------------------- pull consumers

PULL_ROOT = "$JS.API.CONSUMER.MSG.NEXT"
STATUS_HEARTBEAT = "100"
# No messages, request expired, request conflict (leadership change, consumer deleted, ...):
# the pull is over and the next one may fare better. Anything else the server refused outright.
STATUS_END_OF_PULL = frozenset({"404", "408", "409"})
CONSUMER_REPORT_SECONDS = 5.0  # how often a consumer's pending counts are read from the server
PULL_GRACE = 1.0  # beyond a pull's own expiry, before taking it (or its answer) as lost


def stream_seq_of(msg: Msg) -> int:
    """A consumer delivery's stream sequence, read from its ack subject.

    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>`, or with a
    domain and account hash after `$JS.ACK` and a random token at the end.
    """
    tokens = msg.reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def unseen(msgs: Iterable[Msg], last_seen: int) -> list[Msg]:
    """The deliveries after `last_seen`, each later than the one before it."""
    fresh = []
    for msg in msgs:
        seq = stream_seq_of(msg)
        if seq > last_seen:
            fresh.append(msg)
            last_seen = seq
    return fresh


def pending_of(msg: Msg) -> int:
    """How many deliveries the consumer still had for us after this one, read from its ack subject."""
    tokens = msg.reply.split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])


class PullInbox:
    """A durable consumer's deliveries, pulled onto a private inbox and kept in arrival order.

    Pulling by hand rather than through nats-py's `fetch` spares a task, a uuid and a timer per
    message, and the parsing of metadata the consumer does not need: most of the projector's
    time went there. Nothing that arrives is dropped: with AckAll, acknowledging a later message
    would acknowledge a dropped one too, and it would be lost.
    """

    def __init__(self, nc: NATS, consumer: str, batch: int, wait: float):
        self.nc = nc
        self.batch = batch
        self.wait = wait
        self.subject = f"{PULL_ROOT}.{STREAM}.{consumer}"
        self.inbox = nc.new_inbox()
        self.refusal = ""  # the server's answer when it refused the last pull
        self._ask_available = msgspec.json.encode({"batch": batch, "no_wait": True})
        self._ask_waiting = msgspec.json.encode({"batch": batch, "expires": int(wait * 1e9)})
        self._arrived: list[Msg] = []
        self._pull_over = asyncio.Event()
        self._sub: Any = None

    async def open(self) -> None:
        # A plain subscription: the client subscribes it again by itself after a reconnect.
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_message)

    async def close(self) -> None:
        if self._sub is not None and not (self.nc.is_closed or self.nc.is_draining):
            await self._sub.unsubscribe()

    async def next_batch(self) -> list[Msg]:
        """Up to `batch` deliveries in order: those there now, else those that come within `wait`."""
        self.refusal = ""
        if not self._arrived:
            await self._pull(self._ask_available)
        if not self._arrived and not self.refusal:
            await self._pull(self._ask_waiting)
        batch, self._arrived = self._arrived[:self.batch], self._arrived[self.batch:]
        return batch

    async def _pull(self, request: bytes) -> None:
        self._pull_over.clear()
        await self.nc.publish(self.subject, request, reply=self.inbox)
        try:
            async with asyncio.timeout(self.wait + PULL_GRACE):
                await self._pull_over.wait()
        except TimeoutError:
            pass  # the request or its answer was lost to a reconnect: the next pull asks again

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a delivery: its reply subject is where it is acknowledged
            self._arrived.append(msg)
            if len(self._arrived) >= self.batch:
                self._pull_over.set()
            return
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == STATUS_HEARTBEAT:
            return
        if status not in STATUS_END_OF_PULL:
            self.refusal = " ".join(f"{status} {headers.get('Description', '')}".split())
        self._pull_over.set()


# ---------------------------------------------------------------- the log

Handler = Callable[[list[EventRecord], int], Awaitable[None]]


async def _log_connection_error(exc: Exception) -> None:
    # One line per failure: nats-py's default prints a traceback for every refused reconnect.
    log.warning("NATS: %s", str(exc) or exc.__class__.__name__)


class EventLog:
    """A connection to the log. Use `await EventLog.connect(url)`; close with `close()`."""

    def __init__(self, nc: NATS):
        self.nc = nc
        self.js = nc.jetstream()
        self._inbox = ""
        self._pending: dict[str, asyncio.Future] = {}
        self._next_token = 0
        self._batch_slots = asyncio.Semaphore(MAX_CONCURRENT_BATCHES)

    @classmethod
    async def connect(cls, url: str, name: str = "dockyard", **options: Any) -> EventLog:
        """Connect, retrying for ever by default (services are supervised; the console shows a banner).

        nats-py applies `max_reconnect_attempts` to the first connect too: a short-lived caller that
        must give up passes a small positive number (0 would also mean "for ever").
        """
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("reconnect_time_wait", 0.5)
        options.setdefault("error_cb", _log_connection_error)
        # A cluster's seed list, `nats://a:4222,nats://b:4222`: any of them will do to start.
        servers = [part.strip() for part in url.split(",")] if "," in url else url
        nc = await nats.connect(servers, name=name, **options)
        return cls(nc)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    async def ensure_streams(self, replicas: int = 1) -> None:
        """Create or update the streams this log needs."""
        for config in (stream_config(replicas), dead_letter_config(replicas), logs_config(replicas)):
            try:
                await self.js.stream_info(config.name)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)
        await self.heartbeats(replicas)
        await self.usage(replicas)

    async def _bucket(self, name: str, ttl: float, replicas: int):
        try:
            return await self.js.key_value(name)
        except (NotFoundError, nats.js.errors.BucketNotFoundError):
            from nats.js.api import KeyValueConfig

            return await self.js.create_key_value(KeyValueConfig(bucket=name, ttl=ttl, history=1, replicas=replicas))

    async def heartbeats(self, replicas: int = 1):
        """The KV bucket node agents heartbeat into (key: node name, value: RFC 3339 time)."""
        return await self._bucket(HEARTBEAT_BUCKET, HEARTBEAT_TTL, replicas)

    async def usage(self, replicas: int = 1):
        """The KV bucket node agents report resource usage into (key: node name, value: NodeUsage JSON)."""
        return await self._bucket(USAGE_BUCKET, USAGE_TTL, replicas)

    async def last_stream_seq(self) -> int:
        info = await self.js.stream_info(STREAM)
        return info.state.last_seq

    # ------------------------------------------------------------ appends

    async def _ack_inbox(self) -> str:
        if not self._inbox:
            self._inbox = self.nc.new_inbox()
            await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        return self._inbox

    async def _on_ack(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject.rsplit(".", 1)[-1], None)
        if future is not None and not future.done():
            future.set_result(msg)

    def _reply_slot(self, inbox: str) -> tuple[str, asyncio.Future]:
        self._next_token += 1
        token = format(self._next_token, "x")
        future = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        return f"{inbox}.{token}", future

    async def _publish(self, append: Append, meta: Metadata, time: str, reply: str = "",
                       extra: dict[str, str] | None = None) -> None:
        headers = envelope_headers(append.event, meta, append.msg_id, time)
        if append.expected_seq is not None:
            headers[H_EXPECTED_SUBJECT_SEQ] = str(append.expected_seq)
        if extra:
            headers.update(extra)
        await self.nc.publish(append.subject, event_encoder.encode(append.event), reply=reply, headers=headers)

    @staticmethod
    async def _await_acks(futures: Sequence[asyncio.Future], timeout: float) -> None:
        """Wait for acknowledgements under one deadline for them all; late ones are left undone."""
        try:
            async with asyncio.timeout(timeout):
                for future in futures:
                    await future
        except TimeoutError:
            pass

    @staticmethod
    def _ack_of(future: asyncio.Future) -> dict[str, Any]:
        if not future.done() or future.cancelled():
            raise EventLogError("no acknowledgement from the event log (is the stream there?)")
        msg: Msg = future.result()
        if msg.headers and msg.headers.get("Status") == "503":
            raise EventLogError(f"no stream accepts {msg.subject}: run migrations / ensure_streams")
        return msgspec.json.decode(msg.data) if msg.data else {}

    async def _await_ack(self, future: asyncio.Future, timeout: float) -> dict[str, Any]:
        await self._await_acks([future], timeout)
        return self._ack_of(future)

    async def append_many(self, appends: Sequence[Append], meta: Metadata = Metadata(),
                          timeout: float = 10.0) -> list[int | EventLogError]:
        """Append independently, pipelined: each result is a sequence or the error for that event."""
        inbox = await self._ack_inbox()
        time = now_rfc3339()
        futures = []
        for append in appends:
            reply, future = self._reply_slot(inbox)
            futures.append(future)
            await self._publish(append, meta, time, reply)
        await self._await_acks(futures, timeout)
        results: list[int | EventLogError] = []
        for append, future in zip(appends, futures):
            try:
                results.append(await self._result_of(append, self._ack_of(future)))
            except EventLogError as exc:
                results.append(exc)
        return results

    async def append(self, subject: str, event: Event, *, expected_seq: int | None = None,
                     msg_id: str = "", meta: Metadata = Metadata()) -> int:
        """Append one event; raises ConcurrencyConflict if the aggregate moved on."""
        result = (await self.append_many([Append(subject=subject, event=event,
                                                 expected_seq=expected_seq, msg_id=msg_id)], meta))[0]
        if isinstance(result, EventLogError):
            raise result
        return result

    async def _result_of(self, append: Append, ack: dict[str, Any]) -> int:
        error = ack.get("error")
        if not error:
            return int(ack["seq"])
        if error.get("err_code") == ERR_WRONG_LAST_SEQUENCE:
            # A retried command collides with its own earlier append: that is success.
            if append.msg_id:
                seq = await self._seq_of_msg_id(append.subject, {append.msg_id})
                if seq:
                    return seq
            APPEND_CONFLICTS.inc()
            raise ConcurrencyConflict(append.subject, append.expected_seq, error.get("description", ""))
        raise EventLogError(error.get("description", str(error)))

    async def append_batch(self, appends: Sequence[Append], meta: Metadata = Metadata(),
                           timeout: float = 10.0) -> list[int]:
        """Append all or none (an atomic batch); returns each event's sequence."""
        if not appends:
            return []
        if len(appends) == 1:
            return [await self.append(appends[0].subject, appends[0].event,
                                      expected_seq=appends[0].expected_seq,
                                      msg_id=appends[0].msg_id, meta=meta)]
        if len(appends) > MAX_BATCH:
            raise EventLogError(f"an atomic batch holds at most {MAX_BATCH} events, got {len(appends)}")
        async with self._batch_slots:
            ack = await self._publish_batch(appends, meta, timeout)
        error = ack.get("error")
        if error:
            if error.get("err_code") in (ERR_WRONG_LAST_SEQUENCE, ERR_BATCH_DUPLICATE_MSG_ID):
                # A retried batch collides with its own earlier commit: that is success.
                ids = {a.msg_id for a in appends if a.msg_id}
                last = await self._seq_of_msg_id(appends[-1].subject, ids) if ids else 0
                if last:
                    return list(range(last - len(appends) + 1, last + 1))
            if error.get("err_code") == ERR_WRONG_LAST_SEQUENCE:
                APPEND_CONFLICTS.inc()
                raise ConcurrencyConflict(appends[0].subject, appends[0].expected_seq,
                                          error.get("description", ""))
            raise EventLogError(error.get("description", str(error)))
        last = int(ack["seq"])
        return list(range(last - len(appends) + 1, last + 1))

    async def _publish_batch(self, appends: Sequence[Append], meta: Metadata, timeout: float) -> dict:
        inbox = await self._ack_inbox()
        batch_id = uuid.uuid4().hex
        time = now_rfc3339()
        seen_subjects: set[str] = set()
        future = None
        for index, append in enumerate(appends, start=1):
            extra = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index)}
            if index == len(appends):
                extra["Nats-Batch-Commit"] = "1"
            # The server checks expectations against the stream before the batch, so
            # only an aggregate's first event in the batch may carry one.
            if append.subject in seen_subjects:
                append = msgspec.structs.replace(append, expected_seq=None)
            seen_subjects.add(append.subject)
            reply = ""
            if index == len(appends):
                reply, future = self._reply_slot(inbox)
            await self._publish(append, meta, time, reply, extra)
        assert future is not None
        return await self._await_ack(future, timeout)

    async def _seq_of_msg_id(self, subject: str, msg_ids: set[str]) -> int:
        try:
            msg = await self.js.get_msg(STREAM, subject=subject, direct=True)
        except NotFoundError:
            return 0
        if msg.headers and msg.headers.get(H_MSG_ID) in msg_ids:
            return int(msg.seq)
        return 0

    # ------------------------------------------------------------ reads

    async def last_seq(self, subject: str) -> int:
        """The stream sequence of an aggregate's last event; 0 if it has none."""
        try:
            msg = await self.js.get_msg(STREAM, subject=subject, direct=True)
        except NotFoundError:
            return 0
        return int(msg.seq)

    async def read_aggregate(self, subject: str, after_seq: int = 0) -> list[EventRecord]:
        """An aggregate's events in order (after `after_seq`)."""
        records: list[EventRecord] = []
        seq = after_seq + 1
        while True:
            try:
                msg = await self.js.get_msg(STREAM, seq=seq, subject=subject, next=True, direct=True)
            except NotFoundError:
                return records
            records.append(record_from(int(msg.seq), msg.subject or subject, msg.headers, msg.data or b""))
            seq = int(msg.seq) + 1

    async def read(self, filter_subject: SubjectFilter = kind_filter(), *, start_seq: int = 1,
                   start_time: dt.datetime | None = None, follow: bool = False,
                   on_malformed: Callable[[Msg, Exception], None] | None = None):
        """Iterate records in order from a point in the stream; with `follow`, wait for new ones."""
        if not follow and await self.last_stream_seq() == 0:
            return
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=10_000)

        async def enqueue(msg: Msg) -> None:
            await queue.put(msg)

        policy = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": max(start_seq, 1)}
        if start_time is not None:
            policy = {"deliver_policy": DeliverPolicy.BY_START_TIME,
                      "opt_start_time": start_time.astimezone(dt.timezone.utc).isoformat()}
        config = ConsumerConfig(**policy, **filter_config(filter_subject))
        sub = await self.js.subscribe(config.filter_subject or config.filter_subjects[0], cb=enqueue,
                                      ordered_consumer=True, config=config, stream=STREAM)
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=None if follow else 1.0)
                except asyncio.TimeoutError:
                    return  # nothing matched within a second of the end: we are caught up
                try:
                    yield record_from(msg.metadata.sequence.stream, msg.subject, msg.headers, msg.data)
                except MalformedEvent as exc:
                    if on_malformed:
                        on_malformed(msg, exc)
                if not follow and msg.metadata.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()

    async def read_range(self, filter_subject: SubjectFilter = kind_filter(), *, start_seq: int = 1,
                         end_seq: int | None = None, batch: int = 5000):
        """Iterate lists of records from `start_seq` up to `end_seq` (default: the end now), in order.

        For bulk replay (time travel, rebuilds): a pull consumer of its own with no acks, pulled by
        hand like `consume`, several times faster than the push consumer behind `read`. Malformed
        messages are skipped, as the projector (which dead-letters them) skips them.
        """
        end = end_seq if end_seq is not None else await self.last_stream_seq()
        if end < max(start_seq, 1):
            return
        config = ConsumerConfig(**filter_config(filter_subject), deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=max(start_seq, 1), ack_policy=AckPolicy.NONE,
                                inactive_threshold=30.0, mem_storage=True)
        info = await self.js.add_consumer(STREAM, config)
        inbox = PullInbox(self.nc, info.name, batch, wait=5.0)
        await inbox.open()
        try:
            pending, idle = info.num_pending or 0, 0
            while pending:
                msgs = await inbox.next_batch()
                if inbox.refusal:
                    raise EventLogError(f"reading {filter_subject}: {inbox.refusal}")
                if not msgs:
                    idle += 1
                    if idle >= 3:  # the consumer has gone (a server restart): better an error than a hang
                        raise EventLogError(f"reading {filter_subject}: no deliveries, {pending} pending")
                    continue
                idle = 0
                records = []
                for msg in msgs:
                    seq = stream_seq_of(msg)
                    if seq > end:
                        break
                    try:
                        records.append(record_from(seq, msg.subject, msg.headers, msg.data))
                    except MalformedEvent:
                        pass
                if records:
                    yield records
                pending = 0 if stream_seq_of(msgs[-1]) >= end else pending_of(msgs[-1])
        finally:
            await inbox.close()
            try:
                await self.js.delete_consumer(STREAM, info.name)
            except Exception:  # it goes by itself after inactive_threshold
                pass

    # ------------------------------------------------------------ consumers

    async def dead_letter(self, consumer: str, msg: Msg, reason: str) -> None:
        """Keep a message no handler can use, with the reason, out of the way."""
        seq = stream_seq_of(msg)
        headers = dict(msg.headers or {})
        headers.pop(H_MSG_ID, None)
        headers.update({
            H_DEAD_REASON: reason[:1000],
            H_DEAD_SEQ: str(seq),
            H_DEAD_SUBJECT: msg.subject,
        })
        await self.js.publish(f"{DEAD_LETTER_ROOT}.{consumer}", msg.data or b"", headers=headers,
                              stream=DEAD_LETTER_STREAM)
        log.warning("dead-lettered seq %s on %s: %s", seq, msg.subject, reason)

    async def ensure_consumer(self, name: str, filter_subject: SubjectFilter, start_seq: int = 1,
                              reset: bool = False) -> None:
        """Create a durable pull consumer (re-created from `start_seq` when `reset`)."""
        config = ConsumerConfig(
            durable_name=name,
            **filter_config(filter_subject),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start_seq, 1),
            ack_policy=AckPolicy.ALL,
            ack_wait=60.0,
            max_ack_pending=20_000,
            max_deliver=-1,
            max_waiting=64,
        )
        if reset:
            try:
                await self.js.delete_consumer(STREAM, name)
            except NotFoundError:
                pass
        try:
            await self.js.consumer_info(STREAM, name)
        except NotFoundError:
            await self.js.add_consumer(STREAM, config)

    async def consume(self, name: str, handler: Handler, stop: asyncio.Event, *,
                      batch: int = 2000, fetch_timeout: float = 1.0,
                      retry_backoff: float = 0.5) -> None:
        """Hand batches from durable consumer `name` to `handler(records, last_seq)` until `stop`.

        A batch is acknowledged only after the handler returns; a failing handler gets the
        same batch again (never a later one), so the order the handler sees is the log's.
        Malformed messages go to the dead-letter stream and the batch carries on.
        """
        inbox = PullInbox(self.nc, name, batch, fetch_timeout)
        await inbox.open()
        gauges = asyncio.create_task(self._report_consumer(name, stop), name=f"{name}-gauges")
        handed = 0  # the last stream sequence given to the handler
        try:
            while not stop.is_set():
                msgs = await inbox.next_batch()
                if inbox.refusal:
                    log.warning("pull from %s refused (%s); pulling again", name, inbox.refusal)
                    await asyncio.sleep(retry_backoff)
                if not msgs:
                    continue
                CONSUMER_PENDING.labels(name).set(pending_of(msgs[-1]))
                # A redelivery of what the handler has had (its ack was lost) is only acknowledged again.
                fresh = unseen(msgs, handed)
                if fresh:
                    handed = stream_seq_of(fresh[-1])
                    records = await self._records_of(name, fresh)
                    await self._deliver(name, handler, records, handed, stop, retry_backoff)
                await max(msgs, key=stream_seq_of).ack()  # AckAll: acknowledges all up to it
        finally:
            gauges.cancel()
            await inbox.close()

    async def _report_consumer(self, name: str, stop: asyncio.Event, every: float = CONSUMER_REPORT_SECONDS) -> None:
        """Refresh the consumer's pending and ack-pending gauges from the server's own count."""
        while not stop.is_set():
            try:
                info = await self.js.consumer_info(STREAM, name)
                CONSUMER_PENDING.labels(name).set(info.num_pending or 0)
                CONSUMER_ACK_PENDING.labels(name).set(info.num_ack_pending or 0)
            except Exception as exc:  # a gauge a few seconds stale is better than a consumer stopped
                log.debug("consumer info for %s: %s", name, exc)
            try:
                await asyncio.wait_for(stop.wait(), every)
            except asyncio.TimeoutError:
                pass

    async def _records_of(self, consumer: str, msgs: Iterable[Msg]) -> list[EventRecord]:
        records = []
        for msg in msgs:
            try:
                records.append(record_from(stream_seq_of(msg), msg.subject, msg.headers, msg.data))
            except MalformedEvent as exc:
                await self.dead_letter(consumer, msg, str(exc))
                count_handled(consumer, [(msg.headers or {}).get(H_TYPE, "")], DEAD_LETTERED)
        return records

    @staticmethod
    async def _deliver(consumer: str, handler: Handler, records: list[EventRecord], last_seq: int,
                       stop: asyncio.Event, backoff: float) -> None:
        delay = backoff
        while True:
            started = time.perf_counter()
            try:
                await handler(records, last_seq)
                HANDLER_SECONDS.labels(consumer).observe(time.perf_counter() - started)
                count_handled(consumer, (r.type for r in records), OK)
                return
            except Exception:  # the handler's own failure: keep the batch, back off, retry
                count_handled(consumer, (r.type for r in records), ERROR)
                log.exception("handler failed on a batch ending at seq %s; retrying in %.1fs", last_seq, delay)
                if stop.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
