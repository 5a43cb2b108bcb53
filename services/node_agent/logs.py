"""Container logs: publishing lines to the DY_LOGS stream, and reading them back (`dockyard logs`).

Each run of a container (an instance: the pod's uid and the container's restart count) has a subject of its
own, `dy.logs.<ns>.<pod>.<uid>.<container>.<restart count>` (eventlog.logs_subject), rather than headers
on a subject per pod name. The server can filter on subject tokens but not on headers, so:
- a consumer's filter_subject picks exactly one instance: a re-created pod never shows its namesake's
  lines, and `--previous` is the subject one restart count lower;
- stream_info(subjects_filter=`...<uid>.<container>.*`) counts every instance's lines in one request,
  which is how a reader learns the instances of a pod whose status has not caught up with a restart;
- `--tail N` finds where one instance's last N lines start by bisecting its sequence range on what a
  consumer starting there would have pending (one subject, so the server's count is that instance's),
  then reads only those N lines;
- `-f` (and the console's live view) filters `...<uid>.<container>.*` from the current instance's first
  line, so following carries on into the instances after a restart, in stream order.
The price is one subject per container run, which the stream's age and size limits keep bounded.

Lines shipped before this layout (`dy.logs.<ns>.<pod>.<container>`, eventlog.legacy_logs_subject) say
nothing of which pod they came from; they are shown only for a deleted pod that has no newer lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from dockyard.eventlog import (
    H_TIME,
    LOGS_STREAM,
    EventLog,
    EventRecord,
    legacy_logs_subject,
    logs_subject,
    now_rfc3339,
    subject_for,
)
from dockyard.schemas.manifests import ContainerStatus, Pod
from dockyard.services.node_agent.images import (
    ERR_IMAGE_NEVER_PULL,
    ERR_IMAGE_PULL,
    IMAGE_PULL_BACK_OFF,
    INVALID_IMAGE_NAME,
)
from dockyard.services.node_agent.metrics import LOG_LINES
from dockyard.services.node_agent.status import never_ran
from dockyard.state import evolve, fold

log = logging.getLogger(__name__)

H_STREAM = "Dy-Stream"
ACK_TIMEOUT = 10.0
# Reading without --follow ends at the tail; this long without a message means there is nothing more.
QUIET_END_SECONDS = 5.0
# Waiting for these, kubelet answers a request for logs "trying and failing to pull image".
PULL_REASONS = (ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF, INVALID_IMAGE_NAME, ERR_IMAGE_NEVER_PULL)


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


@dataclass(frozen=True)
class LogSelection:
    """The lines to show: one instance of one container of one pod (uid None: lines from before uids)."""

    namespace: str
    pod: str
    container: str
    uid: str | None
    instance: int = 0

    @property
    def subject(self) -> str:
        """This instance's lines and no others."""
        if self.uid is None:
            return legacy_logs_subject(self.namespace, self.pod, self.container)
        return logs_subject(self.namespace, self.pod, self.uid, self.container, self.instance)

    @property
    def follow_subject(self) -> str:
        """This instance's lines and those of the container's later instances (restarts while following)."""
        if self.uid is None:
            return self.subject
        return logs_subject(self.namespace, self.pod, self.uid, self.container)

    def shows(self, subject: str) -> bool:
        """Whether a line on `subject` (from the follow subject) is this instance's or a later one's."""
        return self.uid is None or instance_of(subject) >= self.instance


def instance_of(subject: str) -> int:
    """The restart count a log subject names (its last token)."""
    token = subject.rsplit(".", 1)[-1]
    return int(token) if token.isdigit() else -1


def last_known_pod(records: Iterable[EventRecord]) -> Pod | None:
    """The pod as it is, or as it was just before it was last deleted (None: it never existed)."""
    pod = last = None
    for record in records:
        pod = evolve(pod, record)
        last = pod or last
    return last


def pick_instance(restart_count: int, shipped: Iterable[int], previous: bool) -> int | None:
    """The container instance to show: the current one is the later of the status's restart count and
    the newest instance with lines (the status may lag a restart); with `previous` the one before it,
    None when the current one is the first."""
    current = max([restart_count, *shipped])
    if not previous:
        return current
    return current - 1 if current > 0 else None


def waiting_to_start(status: ContainerStatus, pod: str) -> str:
    """kubelet's answer to logs of a container that never ran (its validateContainerLogStatus)."""
    why = "trying and failing to pull image" if status.reason in PULL_REASONS else status.reason or status.message
    return f'container "{status.name}" in pod "{pod}" is waiting to start: {why}'


def choose_name(names: list[str], container: str | None, pod: str) -> str:
    """The container whose logs to show, kubectl's way: the only one, or the one named."""
    if container is not None:
        if container not in names:
            raise ValueError(f"container {container} is not valid for pod {pod}")
        return container
    if len(names) == 1:
        return names[0]
    raise ValueError(f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]")


async def _shipped_instances(log_: EventLog, namespace: str, pod: str, uid: str, container: str) -> list[int]:
    """The instances of a container that have lines in the stream."""
    info = await log_.js.stream_info(LOGS_STREAM, subjects_filter=logs_subject(namespace, pod, uid, container))
    return [instance_of(subject) for subject in (info.state.subjects or {})]


async def _legacy_containers(log_: EventLog, namespace: str, pod: str) -> list[str]:
    info = await log_.js.stream_info(LOGS_STREAM, subjects_filter=legacy_logs_subject(namespace, pod))
    return sorted(subject.rsplit(".", 1)[-1] for subject in (info.state.subjects or {}))


async def select_lines(log_: EventLog, namespace: str, pod: str, container: str | None = None,
                       previous: bool = False, deleted: bool = False, follow: bool = False) -> LogSelection:
    """Which lines `dockyard logs` shows: the pod's current container instance, or with `previous` the
    one before. A deleted pod is not found, as kubectl says, unless `deleted` asks for its last
    incarnation's lines, which the stream keeps. A container waiting that never ran has no lines: kubectl's
    "is waiting to start", unless following (the console's live view waits for its first lines).
    Raises ValueError naming what is missing."""
    records = await log_.read_aggregate(subject_for("pod", namespace, pod))
    known = last_known_pod(records)
    gone = fold(records) is None
    if gone and not deleted:
        kept = known is not None or await _legacy_containers(log_, namespace, pod)
        where = "" if namespace == "default" else f" -n {namespace}"
        hint = f"; it was deleted, its logs are kept: dockyard logs {pod}{where} --deleted" if kept else ""
        raise ValueError(f'pods "{pod}" not found{hint}')
    if known is None:  # no history: only lines from before uids can be left
        return await _legacy_selection(log_, namespace, pod, container, previous)
    name = choose_name([c.name for c in known.spec.containers], container, pod)
    status = next((s for s in known.status.container_statuses if s.name == name), None)
    restarts = status.restart_count if status is not None else 0
    shipped = await _shipped_instances(log_, namespace, pod, known.metadata.uid, name)
    if gone and not shipped and name in await _legacy_containers(log_, namespace, pod):  # from before uids
        return await _legacy_selection(log_, namespace, pod, name, previous)
    # Lines shipped mean it ran, whatever a status that lags its start says.
    if status is not None and never_ran(status) and not shipped and not previous and not follow:
        raise ValueError(waiting_to_start(status, pod))
    instance = pick_instance(restarts, shipped, previous)
    if instance is None:
        raise ValueError(f'previous terminated container "{name}" in pod "{pod}" not found')
    return LogSelection(namespace, pod, name, known.metadata.uid, instance)


async def _legacy_selection(log_: EventLog, namespace: str, pod: str, container: str | None,
                            previous: bool) -> LogSelection:
    names = await _legacy_containers(log_, namespace, pod)
    if not names:
        raise ValueError(f'pods "{pod}" not found')
    name = choose_name(names, container, pod)
    if previous:  # those lines never said which run they came from
        raise ValueError(f'previous terminated container "{name}" in pod "{pod}" not found')
    return LogSelection(namespace, pod, name, uid=None)


async def _first_seq(log_: EventLog, subject: str) -> int:
    """The sequence of the first line on `subject`, or (none yet) of whatever is published next."""
    # Read before the search: a line published meanwhile has a later sequence, so it is not skipped.
    last = (await log_.js.stream_info(LOGS_STREAM)).state.last_seq
    try:
        return int((await log_.js.get_msg(LOGS_STREAM, seq=1, subject=subject, next=True)).seq)
    except NotFoundError:
        return last + 1


async def _lines_from(log_: EventLog, subject: str, seq: int) -> int:
    """How many lines on `subject` are at `seq` or after it: what a consumer starting there has pending."""
    config = ConsumerConfig(filter_subject=subject, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=seq, ack_policy=AckPolicy.NONE, inactive_threshold=5.0, mem_storage=True)
    info = await log_.js.add_consumer(LOGS_STREAM, config)
    with contextlib.suppress(Exception):  # it goes by itself after inactive_threshold
        await log_.js.delete_consumer(LOGS_STREAM, info.name)
    return info.num_pending or 0


async def _tail_start(log_: EventLog, subject: str, tail: int) -> int:
    """The sequence of the first of the last `tail` lines on `subject`. Bisects on what a consumer would
    have pending: a few dozen requests for a million lines, where reading them all to skip to the end
    takes minutes. Lines published meanwhile only add to what follows a sequence, so at least `tail`
    lines follow the answer when they are read (the reader keeps the last `tail`)."""
    if tail == 0:
        return (await log_.js.stream_info(LOGS_STREAM)).state.last_seq + 1
    info = await log_.js.stream_info(LOGS_STREAM, subjects_filter=subject)
    low = await _first_seq(log_, subject)
    if (info.state.subjects or {}).get(subject, 0) <= tail:
        return low
    high = int((await log_.js.get_last_msg(LOGS_STREAM, subject)).seq)
    while low < high:  # the last sequence from which `tail` lines or more remain
        middle = (low + high + 1) // 2
        if await _lines_from(log_, subject, middle) >= tail:
            low = middle
        else:
            high = middle - 1
    return low


async def _deliver_policy(log_: EventLog, selection: LogSelection, follow: bool, tail: int | None,
                          since: dt.datetime | None) -> dict:
    if since is not None:
        return {"deliver_policy": DeliverPolicy.BY_START_TIME,
                "opt_start_time": since.astimezone(dt.timezone.utc).isoformat()}
    start = await _first_seq(log_, selection.subject) if follow else 1  # following reads on into restarts
    if tail is not None:
        start = max(start, await _tail_start(log_, selection.subject, tail))
    return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start}


async def print_logs(log: EventLog, namespace: str, pod: str, container: str | None = None,
                     follow: bool = False, tail: int | None = None, since: dt.datetime | None = None,
                     timestamps: bool = False, previous: bool = False, deleted: bool = False,
                     out: TextIO = sys.stdout) -> int:
    """`dockyard logs`: print a container instance's lines (the last `tail`, from `since`), then with
    `follow` keep printing new ones (a restart's too) until cancelled. Returns the exit code (0);
    raises ValueError for a pod, container or instance that cannot be chosen, or a container that is
    waiting to start."""
    follow = follow and not previous  # a terminated instance has nothing more to say
    selection = await select_lines(log, namespace, pod, container, previous, deleted, follow)
    if tail is not None and tail < 0:
        tail = None
    policy = await _deliver_policy(log, selection, follow, tail, since)
    # Reading one instance's subject, what is pending after a line is that instance's: keep the last
    # `tail` (lines shipped since the start was found make more). A follower's filter takes in the
    # later runs too, so it prints from its start, the tail's first line.
    trim = tail if not follow or since is not None else None
    queue: asyncio.Queue = asyncio.Queue()

    async def enqueue(msg) -> None:
        await queue.put(msg)

    sub = await log.js.subscribe(selection.follow_subject if follow else selection.subject, cb=enqueue,
                                 ordered_consumer=True, config=ConsumerConfig(**policy), stream=LOGS_STREAM)
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
            if (trim is None or remaining < trim) and selection.shows(msg.subject):
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
