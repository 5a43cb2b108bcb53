"""Forward events to an HTTP endpoint as signed POSTs: at least once, retried, then dead-lettered.

The forwarder is a durable consumer of its own, never part of a projection: rebuilding a read
model replays the log into tables and sends nothing.

A receiver checks `X-Dockyard-Signature` (`sha256=` HMAC-SHA256 with the shared secret over
`X-Dockyard-Timestamp` + "." + body), rejects old timestamps, and dedupes on `Idempotency-Key`
(the event's stream sequence, the same on every redelivery).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from functools import partial

import httpx
import msgspec

from dockyard.eventlog import EventLog, EventRecord
from dockyard.subscribe import Subscription, retry_delay, run_subscription

SIGNATURE_HEADER = "X-Dockyard-Signature"
TIMESTAMP_HEADER = "X-Dockyard-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE_HEADER = "X-Dockyard-Event-Type"
SIGNATURE_TOLERANCE = 300.0  # seconds a receiver should accept between the timestamp and its clock
DEFAULT_MAX_ATTEMPTS = 8
REQUEST_TIMEOUT = 10.0

_body_encoder = msgspec.json.Encoder()


class DeliveryRefused(Exception):
    """The endpoint answered, but not with a 2xx."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_valid(secret: bytes, timestamp: str, body: bytes, signed: str, now: float,
                    tolerance: float = SIGNATURE_TOLERANCE) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (no replays)."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), signed)


def event_body(record: EventRecord) -> bytes:
    """The event as JSON: its envelope (seq, subject, type, actor, time, ids) and its payload as `event`."""
    return _body_encoder.encode(record)


def idempotency_key(record: EventRecord) -> str:
    return str(record.seq)


def request_headers(record: EventRecord, body: bytes, secret: bytes | None, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: idempotency_key(record),
        EVENT_TYPE_HEADER: record.type,
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


async def post_event(http: httpx.AsyncClient, url: str, secret: bytes | None, record: EventRecord) -> None:
    """POST one event; raises on a connection failure or a non-2xx answer (the subscription retries)."""
    body = event_body(record)
    response = await http.post(url, content=body, headers=request_headers(record, body, secret, time.time()))
    if not response.is_success:
        raise DeliveryRefused(f"HTTP {response.status_code} from {url}: {response.text[:200]}")


def default_durable(url: str) -> str:
    """One durable consumer per endpoint, so two forwarders to one URL share its position."""
    return f"dy-webhook-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


async def forward(log_: EventLog, url: str, pattern: str, stop: asyncio.Event, *, secret: bytes | None = None,
                  durable: str = "", max_attempts: int = DEFAULT_MAX_ATTEMPTS, retry_base: float = 1.0,
                  **options) -> None:
    """Forward matching events to `url` until `stop`; `options` go to the Subscription."""
    subscription = Subscription(log_, pattern, durable or default_durable(url), **options)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        await run_subscription(subscription, partial(post_event, http, url, secret), max_attempts=max_attempts,
                               backoff=partial(retry_delay, base=retry_base), stop=stop)
