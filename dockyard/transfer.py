"""Export the event log to JSON Lines and import it into a fresh stack, byte for byte.

A line is one stored message: its subject, stream sequence, envelope headers and raw payload.
The payload is kept as stored (not re-encoded), so upcasters still apply when it is read back.

An import appends each event right after the one before it (Nats-Expected-Last-Sequence), so
into a fresh stream the sequences come out as they were exported. `Nats-Msg-Id` travels with
the event; should the server take one for a duplicate (a file imported twice), the import stops
there with the line named rather than leave a hole: everything before it is in, nothing after.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import BinaryIO

import msgspec
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dockyard.eventlog import (
    H_TIME,
    STREAM,
    EventLog,
    PullInbox,
    filter_config,
    kind_filters,
    pending_of,
    stream_seq_of,
)

EXPORT_BATCH = 10_000
IMPORT_WINDOW = 2_000  # publishes in flight before waiting for their acknowledgements
ACK_TIMEOUT = 30.0
# Stream time is taken after the envelope time on the same machine; allow for clocks that disagree.
CLOCK_SKEW = dt.timedelta(minutes=5)
# Transport directives of the original append, not part of the event: never replayed.
DROPPED_HEADER_PREFIXES = ("Nats-Expected-", "Nats-Batch-")
H_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"


class TransferError(Exception):
    """An export or import that cannot go on; the message says which line or what to do."""


class ExportedEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of an export. `data` is the payload's JSON text, or base64 in a JSON string."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: msgspec.Raw
    encoding: str = "json"


_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(ExportedEvent)


# ---------------------------------------------------------------- export


def rfc3339(moment: dt.datetime) -> str:
    """The envelope's own time format, so times compare as strings."""
    utc = moment.astimezone(dt.timezone.utc)
    return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


class TimeWindow(msgspec.Struct, frozen=True):
    """Envelope times from `since` (inclusive) to `until` (exclusive), as RFC 3339 strings."""

    since: str = ""
    until: str = ""

    def holds(self, time: str) -> bool:
        if not (self.since or self.until):
            return True
        return bool(time) and (not self.since or time >= self.since) and (not self.until or time < self.until)


def envelope_of(headers: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (headers or {}).items() if not k.startswith(DROPPED_HEADER_PREFIXES)}


def exported(msg: Msg) -> ExportedEvent:
    data, encoding = msg.data or b"", "json"
    try:
        msgspec.json.decode(data, type=msgspec.Raw)  # checks the JSON without building it
    except msgspec.DecodeError:
        data, encoding = _line_encoder.encode(base64.b64encode(data).decode()), "base64"
    return ExportedEvent(seq=stream_seq_of(msg), subject=msg.subject, headers=envelope_of(msg.headers),
                         data=msgspec.Raw(data), encoding=encoding)


async def _export_consumer(log: EventLog, kind: str | None, since: dt.datetime | None) -> tuple[str, int]:
    """An ephemeral, unacknowledged reader of the stream; its name and how many it will hand."""
    policy = {"deliver_policy": DeliverPolicy.ALL}
    if since is not None:
        start = (since - CLOCK_SKEW).astimezone(dt.timezone.utc)
        policy = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": start.isoformat()}
    config = ConsumerConfig(**filter_config(kind_filters(kind)), ack_policy=AckPolicy.NONE, mem_storage=True,
                            inactive_threshold=60.0, **policy)
    info = await log.js.add_consumer(STREAM, config)
    return info.name, info.num_pending or 0


async def stored_messages(log: EventLog, kind: str | None = None,
                          since: dt.datetime | None = None) -> AsyncIterator[list[Msg]]:
    """The stream's messages in order, in batches, up to its last message when this began."""
    consumer, pending = await _export_consumer(log, kind, since)
    last_seq = await log.last_stream_seq()
    inbox = PullInbox(log.nc, consumer, EXPORT_BATCH, wait=1.0)
    await inbox.open()
    idle = 0
    try:
        while pending:
            msgs = await inbox.next_batch()
            if inbox.refusal:
                raise TransferError(f"the server refused to hand the stream over: {inbox.refusal}")
            idle = 0 if msgs else idle + 1
            if idle >= 3:  # the consumer has gone (a server restart): better an error than a hang
                raise TransferError(f"the stream stopped handing messages over with {pending} to go")
            if msgs:
                yield msgs
                pending = pending_of(msgs[-1]) if stream_seq_of(msgs[-1]) < last_seq else 0
    finally:
        await inbox.close()
        try:
            await log.js.delete_consumer(STREAM, consumer)
        except Exception:  # it goes by itself after its inactive threshold
            pass


async def export_events(log: EventLog, out: BinaryIO, since: dt.datetime | None = None,
                        until: dt.datetime | None = None, kind: str | None = None) -> int:
    """Write the log (or the part of it in the window and of the kind) to `out`; the event count."""
    window = TimeWindow(rfc3339(since) if since else "", rfc3339(until) if until else "")
    stop_after = rfc3339(until + CLOCK_SKEW) if until else ""
    written = 0
    async with aclosing(stored_messages(log, kind, since)) as batches:
        async for msgs in batches:
            lines = [exported(m) for m in msgs if window.holds((m.headers or {}).get(H_TIME, ""))]
            out.write(_line_encoder.encode_lines(lines))
            written += len(lines)
            if stop_after and (msgs[-1].headers or {}).get(H_TIME, "") > stop_after:
                break
    out.flush()
    return written


# ---------------------------------------------------------------- import


def parse_line(line: bytes, number: int) -> ExportedEvent:
    try:
        return _line_decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise TransferError(f"line {number}: not an exported event: {exc}") from exc


def payload_of(event: ExportedEvent) -> bytes:
    if event.encoding == "base64":
        return base64.b64decode(msgspec.json.decode(event.data, type=str))
    if event.encoding != "json":
        raise TransferError(f"seq {event.seq}: unknown payload encoding {event.encoding!r}")
    return bytes(event.data)


class _Pipeline:
    """Publishes to the stream in windows, one window's acknowledgements awaited behind the next.

    Each event must land right after the one before it (Nats-Expected-Last-Sequence), so nothing
    interleaves and nothing is skipped; the first refusal names the event that broke the chain.
    """

    def __init__(self, log: EventLog, first_seq: int):
        self.log = log
        self.first_seq = first_seq
        self.inbox = log.nc.new_inbox()
        self.sent = 0
        self.settled = 0
        self.acks: dict[int, bytes] = {}
        self.in_flight: deque[list[ExportedEvent]] = deque()
        self._target = 0
        self._arrived = asyncio.Event()
        self._sub = None

    async def open(self) -> None:
        self._sub = await self.log.nc.subscribe(f"{self.inbox}.*", cb=self._on_ack)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_ack(self, msg: Msg) -> None:
        self.acks[int(msg.subject.rsplit(".", 1)[1])] = msg.data
        if len(self.acks) >= self._target:
            self._arrived.set()

    async def send(self, events: list[ExportedEvent]) -> None:
        for event in events:
            headers = envelope_of(event.headers)
            headers[H_EXPECTED_LAST_SEQ] = str(self.first_seq + self.sent - 1)
            await self.log.nc.publish(event.subject, payload_of(event), reply=f"{self.inbox}.{self.sent}",
                                      headers=headers)
            self.sent += 1
        self.in_flight.append(events)
        if len(self.in_flight) > 1:
            await self._settle(self.in_flight.popleft())

    async def finish(self) -> None:
        while self.in_flight:
            await self._settle(self.in_flight.popleft())

    async def _settle(self, events: list[ExportedEvent]) -> None:
        """Wait for the acknowledgements of the oldest window in flight and check each."""
        self._target = len(events)
        self._arrived.clear()
        if len(self.acks) < self._target:
            try:
                async with asyncio.timeout(ACK_TIMEOUT):
                    await self._arrived.wait()
            except TimeoutError:
                raise TransferError(f"no acknowledgement within {ACK_TIMEOUT:.0f}s for events from seq "
                                    f"{self.first_seq + self.settled}; they may be missing") from None
        for event in events:
            ack = self.acks.pop(self.settled, b"")
            check_ack(event, msgspec.json.decode(ack) if ack else {})
            self.settled += 1


def check_ack(event: ExportedEvent, ack: dict) -> None:
    if ack.get("error"):
        raise TransferError(f"exported seq {event.seq} ({event.subject}) refused: "
                            f"{ack['error'].get('description', ack['error'])}")
    if ack.get("duplicate"):
        # Its Nats-Msg-Id is already stored: the server dropped it, and the history would have a hole.
        raise TransferError(f"exported seq {event.seq} ({event.subject}): Nats-Msg-Id "
                            f"{event.headers.get('Nats-Msg-Id')!r} is already stored at seq {ack.get('seq')}; "
                            f"was this file imported already?")
    if not ack.get("seq"):
        raise TransferError(f"exported seq {event.seq} ({event.subject}): no stream stored it")


def exported_events(lines: Iterable[bytes]) -> Iterable[ExportedEvent]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_line(line, number)


async def import_events(log: EventLog, lines: Iterable[bytes]) -> int:
    """Append exported events after the stream's last message, in the file's order; the count."""
    pipeline = _Pipeline(log, await log.last_stream_seq() + 1)
    await pipeline.open()
    try:
        window: list[ExportedEvent] = []
        for event in exported_events(lines):
            window.append(event)
            if len(window) == IMPORT_WINDOW:
                await pipeline.send(window)
                window = []
        if window:
            await pipeline.send(window)
        await pipeline.finish()
    finally:
        await pipeline.close()
    return pipeline.settled


async def ensure_fresh(log: EventLog, force: bool) -> None:
    """Refuse to import into a stream that already has history, unless told to append after it."""
    await log.ensure_streams()
    last = await log.last_stream_seq()
    if last and not force:
        raise TransferError(f"{STREAM} is not empty (last sequence {last}): import into a fresh stack "
                            f"(`dockyard up --no-local-node`, so no node registers first), "
                            f"or pass --force to append after what is there")
