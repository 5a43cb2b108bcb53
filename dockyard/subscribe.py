"""Typed event subscriptions for integrations: durable, resumable, acknowledged after the handler.

A subscription is a durable JetStream consumer with explicit acks. It resumes after a crash
where its acknowledgements left off; what was handed out but not acknowledged comes again
(at least once). A handler's failure is retried later with back-off while the events behind it
flow on; after `max_attempts` the event goes to the dead-letter stream with the reason.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from dockyard.eventlog import (
    STREAM,
    SUBJECT_ROOT,
    EventLog,
    EventRecord,
    MalformedEvent,
    PullInbox,
    kind_filters,
    record_from,
    stream_seq_of,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32  # small: what waits in our buffer is not being worked on, but its ack timer runs
DEFAULT_ACK_WAIT = 60.0
DEFAULT_MAX_ACK_PENDING = 1000  # > 1: an event waiting for a retry does not hold back those behind it

EventHandler = Callable[[EventRecord], Awaitable[Any]]


# ---------------------------------------------------------------- patterns


def type_patterns(spec: str) -> tuple[str, ...]:
    """`pod.*,alert.*` -> ('pod.*', 'alert.*'); a `*` matches any run of characters, dots included."""
    patterns = tuple(p.strip() for p in spec.split(",") if p.strip())
    if not patterns:
        raise ValueError("no event type pattern given (e.g. 'pod.*', 'pod.scheduled.*', '*')")
    return patterns


def filter_subjects(patterns: tuple[str, ...]) -> list[str]:
    """The subjects to ask the server for: one kind's subjects when a pattern names its kind."""
    subjects = set()
    for pattern in patterns:
        prefix = pattern.split(".", 1)[0]
        if any(c in prefix for c in "*?["):
            return [f"{SUBJECT_ROOT}.>"]
        found = kind_filters(prefix)  # a type's first word is not always its subject's kind
        subjects.update((found,) if isinstance(found, str) else found)
    return sorted(subjects)


def type_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return lambda type_name: regex.match(type_name) is not None


def retry_delay(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential back-off: base, 2*base, 4*base, ... up to `cap`, after failed attempt `attempt`."""
    return min(cap, base * 2 ** max(attempt - 1, 0))


# ---------------------------------------------------------------- the consumer


def delivery_count(msg: Msg) -> int:
    """How many times the server has delivered this message, read from its ack subject."""
    tokens = msg.reply.split(".")
    return int(tokens[4] if len(tokens) == 9 else tokens[6])


def _start_policy(deliver: str | int) -> dict[str, Any]:
    if deliver == "new":
        return {"deliver_policy": DeliverPolicy.NEW}
    if deliver == "all":
        return {"deliver_policy": DeliverPolicy.ALL}
    if isinstance(deliver, int):
        return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": deliver}
    raise ValueError(f'deliver: "new", "all" or a stream sequence, not {deliver!r}')


async def ensure_durable(log_: EventLog, durable: str, subjects: list[str], *, deliver: str | int = "new",
                         ack_wait: float = DEFAULT_ACK_WAIT,
                         max_ack_pending: int = DEFAULT_MAX_ACK_PENDING) -> None:
    """Create the durable consumer, or update the one there (which keeps its start and position)."""
    config = ConsumerConfig(
        name=durable, durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
        max_ack_pending=max_ack_pending, max_deliver=-1, max_waiting=64, **_start_policy(deliver),
    )
    config = config.evolve(filter_subject=subjects[0]) if len(subjects) == 1 else \
        config.evolve(filter_subjects=subjects)
    try:
        existing = (await log_.js.consumer_info(STREAM, durable)).config
        config = config.evolve(deliver_policy=existing.deliver_policy, opt_start_seq=existing.opt_start_seq,
                               opt_start_time=existing.opt_start_time)
    except NotFoundError:
        pass
    await log_.js.add_consumer(STREAM, config)  # create, or update in place


class Delivery:
    """One delivered event: the record, which attempt this is, and how to settle it."""

    __slots__ = ("msg", "record", "attempt", "fetched_at")

    def __init__(self, msg: Msg, record: EventRecord, fetched_at: float):
        self.msg = msg
        self.record = record
        self.attempt = delivery_count(msg)
        self.fetched_at = fetched_at


class Subscription:
    """The events of a durable consumer that match the type patterns, one at a time, in order."""

    def __init__(self, log_: EventLog, pattern: str, durable: str, *, deliver: str | int = "new",
                 batch: int = DEFAULT_BATCH, ack_wait: float = DEFAULT_ACK_WAIT,
                 max_ack_pending: int = DEFAULT_MAX_ACK_PENDING, wait: float = 1.0):
        self.log = log_
        self.durable = durable
        self.patterns = type_patterns(pattern)
        self.matches = type_matcher(self.patterns)
        self.deliver = deliver
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.inbox = PullInbox(log_.nc, durable, batch, wait)
        self.buffered: deque[tuple[Msg, float]] = deque()

    async def open(self) -> None:
        await ensure_durable(self.log, self.durable, filter_subjects(self.patterns), deliver=self.deliver,
                             ack_wait=self.ack_wait, max_ack_pending=self.max_ack_pending)
        await self.inbox.open()

    async def close(self) -> None:
        """Hand back what was pulled but not worked on, so it comes again at once, not after ack_wait."""
        while self.buffered:
            msg, _ = self.buffered.popleft()
            await self._settle_quietly(msg.nak)
        await self.inbox.close()

    @staticmethod
    async def _settle_quietly(settle: Callable[[], Awaitable[None]]) -> None:
        try:
            await settle()
        except Exception:  # a closed connection: the server redelivers after ack_wait anyway
            pass

    async def next_delivery(self, stop: asyncio.Event | None = None) -> Delivery | None:
        """The next matching event; None once `stop` is set."""
        while stop is None or not stop.is_set():
            if not self.buffered:
                await self._pull()
                continue
            msg, fetched_at = self.buffered.popleft()
            delivery = await self._delivery_of(msg, fetched_at)
            if delivery is not None:
                return delivery
        return None

    async def _pull(self) -> None:
        msgs = await self.inbox.next_batch()
        if self.inbox.refusal:
            log.warning("pull from %s refused (%s); pulling again", self.durable, self.inbox.refusal)
            await asyncio.sleep(1.0)
        now = time.monotonic()
        self.buffered.extend((msg, now) for msg in msgs)

    async def _delivery_of(self, msg: Msg, fetched_at: float) -> Delivery | None:
        held = time.monotonic() - fetched_at
        if held > self.ack_wait:
            return None  # its ack timer ran out while it waited here: the server sends it again
        if held > self.ack_wait / 2:
            await msg.in_progress()  # restart its ack timer before the handler starts on it
        try:
            record = record_from(stream_seq_of(msg), msg.subject, msg.headers, msg.data)
        except MalformedEvent as exc:
            await self.log.dead_letter(self.durable, msg, str(exc))
            await msg.term()
            return None
        if not self.matches(record.type):
            await msg.ack()  # not asked for: pass over it
            return None
        return Delivery(msg, record, fetched_at)


# ---------------------------------------------------------------- the two ways to use it


class EventStream:
    """`async for event in client.events("pod.*", durable="billing")`.

    Each event is acknowledged when the loop asks for the next one, that is after the loop's
    body ran for it. Leaving the loop (break, an exception) acknowledges nothing more: the event
    in hand comes again to the next subscriber. Use `async with` to release it promptly.
    """

    def __init__(self, subscription: Subscription):
        self.subscription = subscription
        self._opened = False
        self._in_hand: Delivery | None = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> EventRecord:
        if self._in_hand is not None:
            await self._in_hand.msg.ack()
            self._in_hand = None
        if not self._opened:
            await self.subscription.open()
            self._opened = True
        self._in_hand = await self.subscription.next_delivery()
        assert self._in_hand is not None  # without a stop event the stream does not end
        return self._in_hand.record

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._in_hand is not None:
            self.subscription.buffered.appendleft((self._in_hand.msg, self._in_hand.fetched_at))
            self._in_hand = None
        if self._opened:
            await self.subscription.close()


async def settle_failure(log_: EventLog, durable: str, delivery: Delivery, reason: str, max_attempts: int,
                         backoff: Callable[[int], float]) -> None:
    """Retry later with back-off, or after the last attempt, dead-letter it with the reason."""
    if delivery.attempt >= max_attempts:
        await log_.dead_letter(durable, delivery.msg, f"{reason} (attempt {delivery.attempt} of {max_attempts})")
        await delivery.msg.term()
        return
    delay = backoff(delivery.attempt)
    log.info("seq %s failed attempt %s on %s (%s); again in %.1fs", delivery.record.seq, delivery.attempt,
             durable, reason, delay)
    await delivery.msg.nak(delay=delay)


def failure_reason(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


async def run_subscription(subscription: Subscription, handler: EventHandler, *, max_attempts: int = 5,
                           backoff: Callable[[int], float] = retry_delay,
                           stop: asyncio.Event | None = None) -> None:
    """Hand each event to `handler` until `stop`; acknowledge it once the handler has returned."""
    await subscription.open()
    try:
        while (delivery := await subscription.next_delivery(stop)) is not None:
            try:
                await handler(delivery.record)
            except Exception as exc:  # the handler's own failure: this event only, the rest go on
                await settle_failure(subscription.log, subscription.durable, delivery, failure_reason(exc),
                                     max_attempts, backoff)
            else:
                await delivery.msg.ack()
    finally:
        await subscription.close()
