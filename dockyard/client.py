"""The client side of the api: request-reply over NATS, for the CLI, the console and integrations."""

from __future__ import annotations

import asyncio
import getpass
import os
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import nats.errors

from dockyard.eventlog import EventLog
from dockyard.schemas import api
from dockyard.subscribe import EventHandler, EventStream, Subscription, retry_delay, run_subscription


class ApiCallError(Exception):
    """The api refused or failed a request; `code` is the api's (NotFound, Invalid, ...)."""

    def __init__(self, error: api.ApiError):
        super().__init__(error.message)
        self.code = error.code
        self.details = error.details


class Unreachable(Exception):
    """Nothing answered: the stack is down or the api is not running."""


# nats-py counts the first connect too: 3 tries a second apart, then the same grace when a
# connection drops (a watch across a restart of NATS survives it; across `dockyard down` it ends).
CLI_CONNECT_ATTEMPTS = 2
T = TypeVar("T")

_reply_decoder = msgspec.json.Decoder(api.Reply)
_encoder = msgspec.json.Encoder()


def connect_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words: `connection refused`, not a repr."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:  # getaddrinfo's negative codes
        return exc.strerror.lower()
    if isinstance(exc, (asyncio.TimeoutError, nats.errors.TimeoutError)):
        return "no answer in time"
    return str(exc) or exc.__class__.__name__


def current_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class ApiClient:
    def __init__(self, log: EventLog, actor: str | None = None, timeout: float = 30.0):
        self.log = log
        self.actor = actor or current_actor()
        self.timeout = timeout
        self.connection_lost = asyncio.Event()  # set by `connect`'s client once its reconnects run out

    async def while_connected(self, awaitable: Awaitable[T]) -> T:
        """`await awaitable`, or Unreachable once the connection is gone for good (a follow would wait for ever)."""
        work = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.connection_lost.wait())
        try:
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise Unreachable("lost the connection to the stack")
        if not work.cancelled() and work.exception() is not None and self.log.nc.is_closed:
            # It failed because the connection closed under it, before the closing was reported.
            raise Unreachable("lost the connection to the stack") from work.exception()
        return work.result()

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> ApiClient:
        """A connection for one command: it gives up after a few attempts, quietly, at first and later."""
        failures: list[Exception] = []
        lost = asyncio.Event()

        async def failed(exc: Exception) -> None:
            failures.append(exc)

        async def closed() -> None:
            lost.set()

        try:
            log = await EventLog.connect(url, name="dockyard-cli", max_reconnect_attempts=CLI_CONNECT_ATTEMPTS,
                                         reconnect_time_wait=1, connect_timeout=3, error_cb=failed,
                                         closed_cb=closed)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            reason = connect_failure(failures[-1] if failures else exc)
            raise Unreachable(f"cannot reach NATS at {url} ({reason}): is the stack up? (`dockyard status`)") \
                from exc
        client = cls(log, **kwargs)
        client.connection_lost = lost
        return client

    async def close(self) -> None:
        await self.log.close()

    @classmethod
    async def connect_log(cls, url: str) -> EventLog:
        """The event log alone, connected as a command connects: Unreachable after a few attempts."""
        return (await cls.connect(url)).log

    async def _call(self, subject: str, request: msgspec.Struct) -> api.Reply:
        try:
            msg = await self.log.nc.request(subject, _encoder.encode(request), timeout=self.timeout)
        except nats.errors.NoRespondersError as exc:
            raise Unreachable("the api service is not running (`dockyard status`)") from exc
        except nats.errors.TimeoutError as exc:
            raise Unreachable(f"the api did not answer within {self.timeout:.0f}s") from exc
        reply = _reply_decoder.decode(msg.data)
        if reply.error is not None:
            raise ApiCallError(reply.error)
        return reply

    async def apply(self, manifest: dict[str, Any], dry_run: bool = False) -> api.ApplyResult:
        request = api.ApplyRequest(manifest=manifest, actor=self.actor, command_id=uuid.uuid4().hex,
                                   dry_run=dry_run)
        return (await self._call(api.SUBJECT_APPLY, request)).applied

    async def delete(self, kind: str, name: str, namespace: str = "", dry_run: bool = False,
                     reason: str = "") -> api.ApplyResult:
        request = api.DeleteRequest(kind=kind, name=name, namespace=namespace, actor=self.actor,
                                    command_id=uuid.uuid4().hex, dry_run=dry_run, reason=reason)
        return (await self._call(api.SUBJECT_DELETE, request)).applied

    async def scale(self, name: str, namespace: str, replicas: int, dry_run: bool = False) -> api.ApplyResult:
        request = api.ScaleRequest(name=name, namespace=namespace, replicas=replicas, actor=self.actor,
                                   command_id=uuid.uuid4().hex, dry_run=dry_run)
        return (await self._call(api.SUBJECT_SCALE, request)).applied

    async def rollout(self, action: str, name: str, namespace: str, to_revision: int = 0) -> api.ApplyResult:
        request = api.RolloutRequest(action=action, name=name, namespace=namespace, to_revision=to_revision,
                                     actor=self.actor, command_id=uuid.uuid4().hex)
        return (await self._call(api.SUBJECT_ROLLOUT, request)).applied

    async def cordon(self, name: str, unschedulable: bool = True) -> api.ApplyResult:
        request = api.CordonRequest(name=name, unschedulable=unschedulable, actor=self.actor,
                                    command_id=uuid.uuid4().hex)
        return (await self._call(api.SUBJECT_CORDON, request)).applied

    async def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        return (await self._call(api.SUBJECT_GET, api.GetRequest(kind=kind, name=name, namespace=namespace))).object

    async def list_page(self, kind: str, namespace: str = "", selector: str = "", limit: int = 500,
                        continue_token: str = "") -> api.ObjectList:
        request = api.ListRequest(kind=kind, namespace=namespace, selector=selector, limit=limit,
                                  continue_token=continue_token)
        return (await self._call(api.SUBJECT_LIST, request)).list

    async def list(self, kind: str, namespace: str = "", selector: str = "",
                   chunk: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Every matching object, fetched in chunks as kubectl does; and the position it reflects."""
        items: list[dict[str, Any]] = []
        token, position = "", 0
        while True:
            page = await self.list_page(kind, namespace, selector, chunk, token)
            items.extend(page.items)
            position = max(position, page.position)
            token = page.continue_token
            if not token:
                return items, position

    # ------------------------------------------------------------ event subscriptions

    def events(self, pattern: str, durable: str, **options: Any) -> EventStream:
        """Typed events whose type matches `pattern` (`pod.*`, `pod.scheduled.*`, `*`; comma-separated).

        `async for event in client.events("pod.*", durable="billing"):` resumes where the durable
        consumer left off; each event is acknowledged when the loop asks for the next. Options:
        `deliver` ("new", "all" or a stream sequence: where a new durable starts), `ack_wait`,
        `batch`, `max_ack_pending`. A long-lived subscriber should connect with reconnects on
        (`ApiClient(await EventLog.connect(url))`); `ApiClient.connect` gives up after a few attempts.
        """
        return EventStream(Subscription(self.log, pattern, durable, **options))

    async def subscribe(self, pattern: str, *, durable: str, handler: EventHandler, max_attempts: int = 5,
                        backoff=retry_delay, stop: asyncio.Event | None = None, **options: Any) -> None:
        """Run `await handler(event)` for each matching event until `stop` is set (or the task is cancelled).

        A failing handler's event is retried after a back-off while later events go on; after
        `max_attempts` it goes to the dead-letter stream with the reason.
        """
        await run_subscription(Subscription(self.log, pattern, durable, **options), handler,
                               max_attempts=max_attempts, backoff=backoff, stop=stop)
