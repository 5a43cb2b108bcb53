"""The webhook forwarder against a local HTTP receiver: signed, retried, deduped, dead-lettered,
and silent while a projection is rebuilt."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest

from dockyard.eventlog import DEAD_LETTER_STREAM, H_DEAD_REASON, H_DEAD_SEQ, Append, subject_for
from dockyard.schemas.events import PodCreated
from dockyard.services.projector.admin import rebuild
from dockyard.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, forward, signature_valid
from tests.builders import make_pod

SECRET = b"webhook-secret"


class Request(msgspec.Struct):
    key: str
    timestamp: str
    signature: str
    body: bytes
    status: int


class Receiver:
    """An HTTP endpoint on a free 127.0.0.1 port that records every POST.

    `answer(key, attempt)` gives the status for the attempt-th request with that idempotency key;
    `processed` is the receiver's dedupe: each key's body is taken once, whatever the status.
    """

    def __init__(self, answer: Callable[[str, int], int] = lambda key, attempt: 200):
        self.answer = answer
        self.requests: list[Request] = []
        self.processed: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.record(self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        return Handler

    def record(self, headers, body: bytes) -> int:
        key = headers[IDEMPOTENCY_HEADER]
        with self.lock:
            attempt = 1 + sum(1 for r in self.requests if r.key == key)
            status = self.answer(key, attempt)
            self.requests.append(Request(key, headers[TIMESTAMP_HEADER], headers.get(SIGNATURE_HEADER, ""),
                                         body, status))
            self.processed.setdefault(key, body)
        return status

    def delivered_keys(self) -> set[str]:
        with self.lock:
            return {r.key for r in self.requests if r.status == 200}

    def attempts(self, key: str) -> list[int]:
        with self.lock:
            return [r.status for r in self.requests if r.key == key]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answer: Callable[[str, int], int] = lambda key, attempt: 200) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for r in made:
        r.close()


class Forwarder:
    """`forward` as a task of this test, stopped at the end."""

    def __init__(self, log, url: str, **options):
        self.stop = asyncio.Event()
        options.setdefault("retry_base", 0.1)
        options.setdefault("deliver", "all")
        self.task = asyncio.create_task(forward(log, url, "pod.*", self.stop, secret=SECRET, **options))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def append_pods(log, names: list[str]) -> list[int]:
    results = await log.append_many([Append(subject=subject_for("pod", "default", n), event=PodCreated(
        pod=make_pod(n))) for n in names])
    assert all(isinstance(r, int) for r in results)
    return results


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_posts_are_signed_with_the_secret(eventlog, receiver):
    endpoint = receiver()
    seqs = await append_pods(eventlog, [f"p{i}" for i in range(5)])
    forwarder = Forwarder(eventlog, endpoint.url)
    try:
        await until(lambda: endpoint.delivered_keys() == {str(s) for s in seqs}, what="five deliveries")
    finally:
        await forwarder.close()
    for request in endpoint.requests:
        assert signature_valid(SECRET, request.timestamp, request.body, request.signature, now=time.time())
        assert not signature_valid(b"wrong", request.timestamp, request.body, request.signature, now=time.time())
        body = msgspec.json.decode(request.body)
        assert str(body["seq"]) == request.key and body["event"]["type"] == "pod.created.v1"


async def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(eventlog, receiver):
    endpoint = receiver(lambda key, attempt: 503 if attempt <= 2 else 200)
    [seq] = await append_pods(eventlog, ["web-1"])
    forwarder = Forwarder(eventlog, endpoint.url)
    try:
        await until(lambda: str(seq) in endpoint.delivered_keys(), what="the third attempt")
    finally:
        await forwarder.close()
    assert endpoint.attempts(str(seq)) == [503, 503, 200]


async def test_redeliveries_carry_the_same_key_so_the_receiver_takes_each_event_once(eventlog, receiver):
    # The receiver takes the event, but its answer is lost (a 500): the forwarder sends it again.
    endpoint = receiver(lambda key, attempt: 500 if attempt == 1 else 200)
    seqs = await append_pods(eventlog, [f"p{i}" for i in range(20)])
    forwarder = Forwarder(eventlog, endpoint.url)
    try:
        await until(lambda: len(endpoint.delivered_keys()) == 20, what="twenty deliveries")
    finally:
        await forwarder.close()
    assert len(endpoint.requests) == 40
    assert set(endpoint.processed) == {str(s) for s in seqs}
    for key, body in endpoint.processed.items():
        assert all(r.body == body for r in endpoint.requests if r.key == key)


async def test_an_event_the_receiver_keeps_refusing_is_dead_lettered_and_the_rest_delivered(eventlog, receiver):
    seqs = await append_pods(eventlog, [f"p{i}" for i in range(6)])
    refused = str(seqs[2])
    endpoint = receiver(lambda key, attempt: 500 if key == refused else 200)
    forwarder = Forwarder(eventlog, endpoint.url, max_attempts=3, durable="hook")
    try:
        await until(lambda: len(endpoint.attempts(refused)) == 3, what="three attempts")
        await until(lambda: endpoint.delivered_keys() == {str(s) for s in seqs} - {refused}, what="the rest")
    finally:
        await forwarder.close()
    dead = await eventlog.js.get_msg(DEAD_LETTER_STREAM, seq=1)
    assert dead.subject == "dy.dlq.hook" and dead.headers[H_DEAD_SEQ] == refused
    assert "HTTP 500" in dead.headers[H_DEAD_REASON] and "attempt 3 of 3" in dead.headers[H_DEAD_REASON]


async def test_rebuilding_a_projection_sends_no_webhook(eventlog, receiver, services, nats_server, database_url):
    from tests.integration.test_projector import wait_for_position

    services("projector")
    endpoint = receiver()
    forwarder = Forwarder(eventlog, endpoint.url)
    try:
        seqs = await append_pods(eventlog, [f"p{i}" for i in range(50)])
        await until(lambda: len(endpoint.requests) == 50, what="fifty deliveries")
        await asyncio.to_thread(wait_for_position, database_url, "pods", seqs[-1])

        assert await rebuild(nats_server.url, database_url, "pods") == 0
        await asyncio.sleep(1.5)  # time enough for anything the replay set off to arrive
        assert len(endpoint.requests) == 50

        [late] = await append_pods(eventlog, ["late"])  # the forwarder is alive: new events still go
        await until(lambda: len(endpoint.requests) == 51, what="the new event")
    finally:
        await forwarder.close()
    assert endpoint.requests[-1].key == str(late)


async def test_the_cli_forwards_signed_events(eventlog, receiver, nats_server, tmp_path):
    endpoint = receiver()
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url)
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "integrations", "webhook", "--url", endpoint.url,
                             "--events", "pod.*,alert.*", "--secret-file", str(secret_file), "--from", "all"],
                            env=env, stderr=subprocess.PIPE)
    try:
        seqs = await append_pods(eventlog, ["a", "b"])
        await until(lambda: endpoint.delivered_keys() == {str(s) for s in seqs}, what="two deliveries")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr.decode()
    assert b"forwarding pod.*,alert.* to" in stderr
    request = endpoint.requests[0]
    assert signature_valid(SECRET, request.timestamp, request.body, request.signature, now=time.time())
