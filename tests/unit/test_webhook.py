"""Webhook requests: what is signed and how a receiver checks it, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest

from dockyard.eventlog import EventRecord
from dockyard.schemas.events import PodScheduled
from dockyard.subscribe import retry_delay
from dockyard.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    default_durable,
    event_body,
    request_headers,
    signature,
    signature_valid,
)

SECRET = b"s3cret"
NOW = 1_800_000_000.0


def make_record(seq: int = 42, event=None) -> EventRecord:
    return EventRecord(seq=seq, subject="dy.evt.pod.default.web-1", type="pod.scheduled.v1", version=1,
                       time="2026-11-26T10:00:00.000000Z", actor="scheduler", correlation_id="c1",
                       causation_id="", msg_id="m1", event=event or PodScheduled(node_name="n1"))


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET, b"1800000000.{}", hashlib.sha256).hexdigest()
    assert signature(SECRET, "1800000000", b"{}") == f"sha256={expected}"


def test_headers_carry_timestamp_signature_and_the_sequence_as_idempotency_key():
    record = make_record()
    body = event_body(record)
    headers = request_headers(record, body, SECRET, NOW)
    assert headers[TIMESTAMP_HEADER] == "1800000000"
    assert headers[IDEMPOTENCY_HEADER] == "42"
    assert signature_valid(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=NOW)


def test_without_a_secret_nothing_is_signed():
    record = make_record()
    assert SIGNATURE_HEADER not in request_headers(record, event_body(record), None, NOW)


@pytest.mark.parametrize(
    "secret, timestamp, body, now, valid",
    [
        (SECRET, "1800000000", b'{"a":1}', NOW, True),
        (b"other", "1800000000", b'{"a":1}', NOW, False),
        (SECRET, "1800000000", b'{"a":2}', NOW, False),
        (SECRET, "1800000001", b'{"a":1}', NOW, False),
        (SECRET, "1800000000", b'{"a":1}', NOW + 301, False),
    ],
    ids=["untouched", "wrong-secret", "body-changed", "timestamp-changed", "too-old"],
)
def test_a_receiver_accepts_only_an_untouched_recent_request(secret, timestamp, body, now, valid):
    signed = signature(SECRET, "1800000000", b'{"a":1}')
    assert signature_valid(secret, timestamp, body, signed, now=now) is valid


def test_body_is_the_envelope_with_the_payload_under_event():
    body = msgspec.json.decode(event_body(make_record()))
    assert body["seq"] == 42 and body["type"] == "pod.scheduled.v1" and body["actor"] == "scheduler"
    assert body["event"] == {"type": "pod.scheduled.v1", "node_name": "n1"}


def test_the_idempotency_key_is_the_same_on_every_redelivery():
    first, again = make_record(seq=7), make_record(seq=7)
    assert request_headers(first, b"", None, NOW)[IDEMPOTENCY_HEADER] == \
        request_headers(again, b"", None, NOW + 60)[IDEMPOTENCY_HEADER]


def test_retries_back_off_exponentially_up_to_a_cap():
    assert [retry_delay(n, base=1.0, cap=10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_one_durable_consumer_per_endpoint():
    assert default_durable("http://a/hook") == default_durable("http://a/hook") != default_durable("http://b/hook")
