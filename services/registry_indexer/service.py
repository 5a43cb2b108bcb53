"""The registry indexer: crawls a registry, listens to its notifications, and appends image events on change."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import msgspec
from prometheus_client import Counter, Histogram

from dockyard.eventlog import EventLog, Metadata
from dockyard.service import Health
from dockyard.services.registry_indexer.content import Garbage
from dockyard.services.registry_indexer.distribution import Registry, Unreachable
from dockyard.services.registry_indexer.index import RegistryIndex, image_filter, registry_subject

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the log

NEEDS_DATABASE = False
ACTOR = Metadata(actor="registry-indexer")

EVENTS = Counter("dockyard_registry_indexer_events_total", "Image and registry events appended", ["type"])
CRAWL_SECONDS = Histogram("dockyard_registry_indexer_crawl_duration_seconds", "Time of one full crawl",
                          buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
NOTIFICATIONS = Counter("dockyard_registry_indexer_notifications_total", "Registry notifications received",
                        ["action"])


def add_arguments(parser) -> None:
    parser.add_argument("--registry", required=True, help="the registry's URL (http://host:port or host:port)")
    parser.add_argument("--username", default="", help="user for basic auth or the bearer-token flow")
    parser.add_argument("--password-file", default="", help="a file holding the password")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP, or HTTPS without verifying")
    parser.add_argument("--webhook-host", default="127.0.0.1", help="address the notification endpoint listens on")
    parser.add_argument("--webhook-port", type=int, default=0, help="port for registry notifications (0: none)")
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

    async def append(self, events: list) -> None:
        events = [e for e in events if e is not None]
        if not events:
            return
        for result in await self.log.append_many(self.index.record(events), ACTOR):
            if isinstance(result, Exception):
                log.error("append failed: %s", result)
        for event in events:
            EVENTS.labels(event.type_name()).inc()
            log.info("%s %s", event.type_name(), msgspec.json.encode(event)[:300].decode())

    async def mark_reachable(self, reachable: bool, reason: str = "") -> bool:
        """Record a change of reachability; True if the registry just came back."""
        event = self.index.observe_registry(reachable, reason)
        await self.append([event])
        return event is not None and reachable

    async def observe(self, repository: str, tag: str, digest: str = ""):
        try:
            known = self.index.tags.get((repository, tag))
            return await self.registry.resolve(repository, tag, digest, known.digest if known else "")
        except Garbage as exc:
            log.warning("%s/%s:%s: %s", self.registry.name, repository, tag, exc)
            return str(exc)

    async def crawl_tags(self, repository: str, tags: list[str]) -> list:
        seen = await asyncio.gather(*(self.observe(repository, tag) for tag in tags))
        return [self.index.observe_tag(repository, tag, s) for tag, s in zip(tags, seen)]

    async def crawl_repository(self, repository: str) -> None:
        try:
            listed = await self.registry.tags(repository)
        except Garbage as exc:
            await self.append([self.index.observe_tag(repository, "", str(exc))])
            return
        gone = sorted(self.index.tags_of(repository) - set(listed))
        await self.append(await self.crawl_tags(repository, listed)
                          + [self.index.observe_tag(repository, tag, None) for tag in gone])

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
                await self.append([self.index.observe_tag(repository, tag, seen)])
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


async def serve_webhook(indexer: Indexer, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP/1.1 endpoint: every POST body is a notification envelope; answers 200."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = (line.partition(":") for line in lines[1:] if line)
                headers = {name.strip().lower(): value.strip() for name, _, value in fields}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
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
                index.evolve(record.event)
    return index


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    password = Path(args.password_file).read_text().strip() if args.password_file else ""
    registry = Registry(args.registry, username=args.username, password=password, insecure=args.insecure,
                        concurrency=args.concurrency)
    log_ = await EventLog.connect(nats_url, name="dockyard-registry-indexer")
    await log_.ensure_streams()
    indexer = Indexer(log_, registry, await load_index(log_, registry.name))
    server = await serve_webhook(indexer, args.webhook_host, args.webhook_port) if args.webhook_port else None
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
