"""Container logs: publishing lines to the DY_LOGS stream, and reading them back (`dockyard logs`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from typing import TextIO

from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.eventlog import H_TIME, LOGS_STREAM, EventLog, logs_subject, now_rfc3339, subject_for
from dockyard.services.node_agent.metrics import LOG_LINES
from dockyard.state import fold

log = logging.getLogger(__name__)

H_STREAM = "Dy-Stream"
ACK_TIMEOUT = 10.0
# Reading without --follow ends at the tail; this long without a message means there is nothing more.
QUIET_END_SECONDS = 5.0


class LogPublisher:
    """Publishes log lines pipelined (publish_async, acks awaited per chunk, not per line)."""

    def __init__(self, log_: EventLog, ack_timeout: float = ACK_TIMEOUT):
        self.js = log_.js
        self.ack_timeout = ack_timeout

    async def publish(self, subject: str, stream: str, lines: list[bytes]) -> bool:
        """Publish lines in order; True once the stream has acknowledged every one."""
        if not lines:
            return True
        headers = {H_STREAM: stream, H_TIME: now_rfc3339()}
        futures = [await self.js.publish_async(subject, line, headers=headers) for line in lines]
        done, pending = await asyncio.wait(futures, timeout=self.ack_timeout)
        for future in pending:
            future.cancel()
        failed = len(pending) + sum(1 for f in done if f.cancelled() or f.exception() is not None)
        LOG_LINES.labels(stream).inc(len(lines) - failed)
        if failed:
            log.warning("%d of %d log lines on %s not acknowledged", failed, len(lines), subject)
        return not failed


# ---------------------------------------------------------------- reading


async def _containers_with_logs(log_: EventLog, namespace: str, pod: str) -> list[str]:
    info = await log_.js.stream_info(LOGS_STREAM, subjects_filter=logs_subject(namespace, pod, "*"))
    return sorted(subject.rsplit(".", 1)[-1] for subject in (info.state.subjects or {}))


async def choose_container(log_: EventLog, namespace: str, pod: str, container: str | None) -> str:
    """The container whose logs to show, kubectl's way: the only one, or the one named."""
    current = fold(await log_.read_aggregate(subject_for("pod", namespace, pod)))
    if current is not None:
        names = [c.name for c in current.spec.containers]
    else:  # a deleted pod's logs outlive it
        names = await _containers_with_logs(log_, namespace, pod)
        if not names:
            raise ValueError(f'pods "{pod}" not found')
    if container is not None:
        if container not in names:
            raise ValueError(f"container {container} is not valid for pod {pod}")
        return container
    if len(names) == 1:
        return names[0]
    raise ValueError(f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]")


async def print_logs(log: EventLog, namespace: str, pod: str, container: str | None = None,
                     follow: bool = False, tail: int | None = None, since: dt.datetime | None = None,
                     timestamps: bool = False, out: TextIO = sys.stdout) -> int:
    """`dockyard logs`: print a container's lines (the last `tail`, from `since`), then with
    `follow` keep printing new ones until cancelled. Returns the exit code (0); raises ValueError
    for a pod or container that cannot be chosen."""
    container = await choose_container(log, namespace, pod, container)
    if tail is not None and tail < 0:
        tail = None
    policy: dict = {"deliver_policy": DeliverPolicy.ALL}
    if since is not None:
        policy = {"deliver_policy": DeliverPolicy.BY_START_TIME,
                  "opt_start_time": since.astimezone(dt.timezone.utc).isoformat()}
    queue: asyncio.Queue = asyncio.Queue()

    async def enqueue(msg) -> None:
        await queue.put(msg)

    sub = await log.js.subscribe(logs_subject(namespace, pod, container), cb=enqueue, ordered_consumer=True,
                                 config=ConsumerConfig(**policy), stream=LOGS_STREAM)
    try:
        info = await sub.consumer_info()
        if not follow and info.num_pending == 0 and info.delivered.stream_seq == 0 and queue.empty():
            return 0
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), None if follow else QUIET_END_SECONDS)
            except asyncio.TimeoutError:
                return 0
            remaining = msg.metadata.num_pending  # lines after this one, as of now
            if tail is None or remaining < tail:
                _write_line(out, msg, timestamps)
                if follow:
                    out.flush()
            if not follow and remaining == 0:
                return 0
    finally:
        await sub.unsubscribe()


def _write_line(out: TextIO, msg, timestamps: bool) -> None:
    line = (msg.data or b"").decode("utf-8", "replace")
    if timestamps:
        line = f"{(msg.headers or {}).get(H_TIME, '')} {line}"
    out.write(line + "\n")
