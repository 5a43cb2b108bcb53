"""The registry indexer: crawls a registry, listens to its notifications, and appends image events on change."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from prometheus_client import Counter, Histogram

from dockyard.eventlog import MAX_BATCH, Append, ConcurrencyConflict, EventLog, EventLogError, Metadata
from dockyard.metrics import APPEND_RETRIES
from dockyard.schemas.base import Event
from dockyard.schemas.events import RegistryRecovered
from dockyard.service import Health
from dockyard.services.registry_indexer.content import Garbage
from dockyard.services.registry_indexer.distribution import Registry, Resolved, Unreachable
from dockyard.services.registry_indexer.index import RegistryIndex, image_filter, registry_subject
from dockyard.services.registry_indexer.options import registry_url

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the log

NEEDS_DATABASE = False
WEBHOOK_TOKEN_ENV = "DOCKYARD_WEBHOOK_TOKEN"
APPEND_ATTEMPTS = 5  # re-decisions after lost races before an append is left to the next resync
Decision = Callable[[], Event | None]  # the event an observation calls for, given the index as it is now
APPENDED, LOST_RACE, FAILED = "appended", "lost-race", "failed"  # how one aggregate's append went
ACTOR = Metadata(actor="registry-indexer")

EVENTS = Counter("dockyard_registry_indexer_events_total", "Image and registry events appended", ["type"])
CRAWL_SECONDS = Histogram("dockyard_registry_indexer_crawl_duration_seconds", "Time of one full crawl",
                          buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
NOTIFICATIONS = Counter("dockyard_registry_indexer_notifications_total", "Registry notifications received",
                        ["action"])


def add_arguments(parser) -> None:
    parser.add_argument("--registry", required=True, type=registry_url,
                        help="the registry's URL (http[s]://host[:port])")
    parser.add_argument("--username", default="", help="user for basic auth or the bearer-token flow")
    parser.add_argument("--password-file", default="", help="a file holding the password")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP, or HTTPS without verifying")
    parser.add_argument("--webhook-host", default="127.0.0.1", help="address the notification endpoint listens on")
    parser.add_argument("--webhook-port", type=int, default=0, help="port for registry notifications (0: none)")
    parser.add_argument("--webhook-token", default=os.environ.get(WEBHOOK_TOKEN_ENV, ""),
                        help="shared secret the registry sends as `Authorization: Bearer TOKEN` with each "
                             f"notification; others get 401 (default: ${WEBHOOK_TOKEN_ENV}; empty: no check)")
    parser.add_argument("--resync-interval", type=float, default=300.0, help="seconds between full crawls")
    parser.add_argument("--probe-interval", type=float, default=2.0,
                        help="seconds between checks that the registry answers")
    parser.add_argument("--concurrency", type=int, default=32, help="registry requests in flight at most")


class Indexer:
    """Turns crawls and notifications into events, one piece of work at a time."""

    def __init__(self, log_: EventLog, registry: Registry, index: RegistryIndex):
        self.log = log_
        self.registry = registry
        self.index = index
        self.work: asyncio.Queue[tuple[str, ...]] = asyncio.Queue()

    async def append(self, decisions: list[Decision]) -> list[Event]:
        """Append the events `decisions` call for; the events that landed.

        Each repository's events go as one atomic batch guarded by the repository's last sequence.
        A batch that lost a race (another indexer appended first) re-reads that repository and
        decides again, so two indexers never record one change twice.
        """
        landed: list[Event] = []
        for _ in range(APPEND_ATTEMPTS):
            decided = [(decide, event) for decide in decisions if (event := decide()) is not None]
            if not decided:
                break
            batches = self.index.record([event for _, event in decided])
            results = await asyncio.gather(*(self._append_aggregate(s, a) for s, a in batches.items()))
            lost = {subject for subject, result in zip(batches, results) if result == LOST_RACE}
            failed = {subject for subject, result in zip(batches, results) if result == FAILED}
            landed += [e for _, e in decided if self.index.subject_of(e) not in lost | failed]
            APPEND_RETRIES.inc(len(lost))
            for subject in lost | failed:
                # The index folded these events in before the append: forget them, so that a failed
                # append is decided again by the next resync instead of being believed to have happened.
                self.index.reload(subject, await self.log.read_aggregate(subject))
            decisions = [decide for decide, event in decided if self.index.subject_of(event) in lost]
            if not decisions:
                break
        else:
            log.error("gave up on %d decisions after %d conflicts", len(decisions), APPEND_ATTEMPTS)
        for event in landed:
            EVENTS.labels(event.type_name()).inc()
            log.info("%s %s", event.type_name(), msgspec.json.encode(event)[:300].decode())
        return landed

    async def _append_aggregate(self, subject: str, appends: list[Append]) -> str:
        """Append one aggregate's events after the sequence the index last saw: APPENDED, LOST_RACE or FAILED."""
        for start in range(0, len(appends), MAX_BATCH):
            chunk = appends[start:start + MAX_BATCH]
            chunk[0] = msgspec.structs.replace(chunk[0], expected_seq=self.index.seqs.get(subject, 0))
            try:
                self.index.seqs[subject] = (await self.log.append_batch(chunk, ACTOR))[-1]
            except ConcurrencyConflict:
                return LOST_RACE
            except EventLogError as exc:
                log.error("append to %s failed: %s", subject, exc)
                return FAILED  # not a race: deciding again now would not help; the next resync retries
        return APPENDED

    async def mark_reachable(self, reachable: bool, reason: str = "") -> bool:
        """Record a change of reachability; True if the registry just came back."""
        landed = await self.append([lambda: self.index.observe_registry(reachable, reason)])
        return reachable and any(isinstance(e, RegistryRecovered) for e in landed)

    async def observe(self, repository: str, tag: str, digest: str = ""):
        try:
            known = self.index.tags.get((repository, tag))
            return await self.registry.resolve(repository, tag, digest, known.digest if known else "")
        except Garbage as exc:
            log.warning("%s/%s:%s: %s", self.registry.name, repository, tag, exc)
            return str(exc)

    def seen(self, repository: str, tag: str, seen: Resolved | str | None) -> Decision:
        """The decision an observation calls for, made against the index as it is when it is taken."""
        return lambda: self.index.observe_tag(repository, tag, seen)

    async def crawl_tags(self, repository: str, tags: list[str]) -> list[Decision]:
        seen = await asyncio.gather(*(self.observe(repository, tag) for tag in tags))
        return [self.seen(repository, tag, s) for tag, s in zip(tags, seen)]

    async def crawl_repository(self, repository: str) -> None:
        try:
            listed = await self.registry.tags(repository)
        except Garbage as exc:
            await self.append([self.seen(repository, "", str(exc))])
            return
        gone = sorted(self.index.tags_of(repository) - set(listed))
        await self.append(await self.crawl_tags(repository, listed)
                          + [self.seen(repository, tag, None) for tag in gone])

    async def crawl(self) -> None:
        started = time.perf_counter()
        try:
            repositories = await self.registry.repositories()
        except Garbage as exc:
            log.warning("%s: catalog: %s", self.registry.name, exc)
            return
        gone = sorted(self.index.repositories() - set(repositories))
        await asyncio.gather(*(self.crawl_repository(r) for r in [*repositories, *gone]))
        CRAWL_SECONDS.observe(time.perf_counter() - started)
        log.info("crawled %s: %d repositories in %.2fs", self.registry.name, len(repositories),
                 time.perf_counter() - started)

    async def do(self, item: tuple[str, ...]) -> None:
        try:
            if item[0] == "crawl":
                await self.crawl()
            elif item[0] == "repository":
                await self.crawl_repository(item[1])
            else:
                _, repository, tag, digest = item
                seen = await self.observe(repository, tag, digest)
                await self.append([self.seen(repository, tag, seen)])
            await self.mark_reachable(True)
        except Unreachable as exc:
            log.warning("%s unreachable: %s", self.registry.name, exc)
            await self.mark_reachable(False, str(exc))

    async def work_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._next_work()
            except Exception:  # a bug in one piece of work must not stop the indexer
                log.exception("indexing failed")

    async def _next_work(self) -> None:
        pending = [await self.work.get()]
        while not self.work.empty():
            pending.append(self.work.get_nowait())
        if ("crawl",) in pending:  # a full crawl covers every other piece of queued work
            pending = [("crawl",)]
        for piece in dict.fromkeys(pending):
            await self.do(piece)

    async def probe_loop(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.registry.ping()
                if await self.mark_reachable(True):
                    self.work.put_nowait(("crawl",))  # whatever changed while it was down
            except Unreachable as exc:
                await self.mark_reachable(False, str(exc))
            await _sleep(stop, interval)

    async def resync_loop(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            await _sleep(stop, interval)
            self.work.put_nowait(("crawl",))

    def notified(self, body: bytes) -> None:
        """Queue the work a registry notification envelope calls for (push of a tag, a delete)."""
        try:
            envelope = msgspec.json.decode(body)
            events = envelope.get("events") or []
        except (msgspec.DecodeError, AttributeError):
            log.warning("notification is not an events envelope")
            return
        for event in events:
            action = str(event.get("action", ""))
            NOTIFICATIONS.labels(action or "unknown").inc()
            target = event.get("target") or {}
            repository = target.get("repository")
            if not repository or action not in ("push", "delete"):
                continue  # pulls (our own crawl among them) change nothing
            if action == "push" and target.get("tag"):
                self.work.put_nowait(("tag", repository, target["tag"], str(target.get("digest", ""))))
            elif action == "delete":
                self.work.put_nowait(("repository", repository))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n"


def authorized(headers: dict[str, str], token: str) -> bool:
    """The request carries the shared secret (Distribution sends it as a configured header)."""
    if not token:
        return True
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def serve_webhook(indexer: Indexer, host: str, port: int, token: str = "") -> asyncio.Server:
    """A minimal HTTP/1.1 endpoint: every authorized POST body is a notification envelope (200); else 401."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = (line.partition(":") for line in lines[1:] if line)
                headers = {name.strip().lower(): value.strip() for name, _, value in fields}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not authorized(headers, token):
                    NOTIFICATIONS.labels("unauthorized").inc()
                    writer.write(UNAUTHORIZED)
                else:
                    if lines[0].startswith("POST"):
                        indexer.notified(body)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:  # shutdown with a keep-alive connection open
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def load_index(log_: EventLog, registry: str) -> RegistryIndex:
    """Fold this registry's image and registry events: restarts emit nothing for what the log already has."""
    index = RegistryIndex(registry)
    for subject in (image_filter(registry), registry_subject(registry)):
        async for batch in log_.read_range(subject):
            for record in batch:
                index.apply(record)
    return index


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    password = Path(args.password_file).read_text().strip() if args.password_file else ""
    registry = Registry(args.registry, username=args.username, password=password, insecure=args.insecure,
                        concurrency=args.concurrency)
    log_ = await EventLog.connect(nats_url, name="dockyard-registry-indexer")
    await log_.ensure_streams()
    indexer = Indexer(log_, registry, await load_index(log_, registry.name))
    server = None
    if args.webhook_port:
        if not args.webhook_token:
            log.warning("the notification endpoint takes anyone's POST: set --webhook-token or $%s",
                        WEBHOOK_TOKEN_ENV)
        server = await serve_webhook(indexer, args.webhook_host, args.webhook_port, args.webhook_token)
    await indexer.do(("crawl",))
    health.ready = True
    tasks = [asyncio.create_task(indexer.work_loop(stop)),
             asyncio.create_task(indexer.probe_loop(stop, args.probe_interval)),
             asyncio.create_task(indexer.resync_loop(stop, args.resync_interval))]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if server:
        server.close()
    await registry.close()
    await log_.close()
