"""The api service: validates commands, appends their events, answers queries."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import msgspec
from nats.aio.msg import Msg
from prometheus_client import Counter, Histogram

from dockyard.db import RESOURCE_TABLES, async_engine
from dockyard.eventlog import Append, ConcurrencyConflict, EventLog, Metadata, now_rfc3339, subject_for
from dockyard.manifests import ManifestError, validate
from dockyard.metrics import APPEND_RETRIES
from dockyard.schemas import api
from dockyard.schemas.events import CommandRecorded, ObjectRef
from dockyard.schemas.manifests import KINDS, kind_named, subject_kind
from dockyard.selectors import SelectorError
from dockyard.service import Health
from dockyard.services.api import queries
from dockyard.services.api.decide import (
    DELETED,
    Refusal,
    change_summary,
    decide_apply,
    decide_cordon,
    decide_delete,
    decide_rollout,
    decide_scale,
)
from dockyard.state import fold

log = logging.getLogger(__name__)

REQUESTS = Counter("dockyard_api_requests_total", "Requests handled by the api", ["verb", "result"])
LATENCY = Histogram("dockyard_api_request_duration_seconds", "Time to answer a request", ["verb"])

MAX_CONFLICT_RETRIES = 8
MAX_IN_FLIGHT = 256
_SAFE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")

_decoders = {
    api.SUBJECT_APPLY: msgspec.json.Decoder(api.ApplyRequest),
    api.SUBJECT_DELETE: msgspec.json.Decoder(api.DeleteRequest),
    api.SUBJECT_GET: msgspec.json.Decoder(api.GetRequest),
    api.SUBJECT_LIST: msgspec.json.Decoder(api.ListRequest),
    api.SUBJECT_SCALE: msgspec.json.Decoder(api.ScaleRequest),
    api.SUBJECT_ROLLOUT: msgspec.json.Decoder(api.RolloutRequest),
    api.SUBJECT_CORDON: msgspec.json.Decoder(api.CordonRequest),
}
_encoder = msgspec.json.Encoder()


class RequestError(Exception):
    """A request the api refuses: becomes an ApiError reply."""

    def __init__(self, code: str, message: str, details: tuple[str, ...] = ()):
        super().__init__(message)
        self.error = api.ApiError(code=code, message=message, details=details)


def resolve_kind(kind: str) -> str:
    resolved = kind_named(kind)
    if resolved is None:
        raise RequestError("BadRequest", f'the server doesn\'t have a resource type "{kind}"')
    return resolved


def _namespace_of(kind: str, namespace: str) -> str:
    return (namespace or "default") if KINDS[kind].NAMESPACED else ""


def _summary(current, event) -> str:
    """The audit trail's summary of a decided change; an event without an object is a deletion."""
    if event is None:
        return ""
    after = next((getattr(event, field) for field in ("deployment", "pod", "node") if hasattr(event, field)), None)
    return change_summary(current, after)


class ApiService:
    def __init__(self, log_: EventLog, engine, wait_timeout: float = 5.0):
        self.log = log_
        self.engine = engine
        self.wait_timeout = wait_timeout
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task] = set()
        self._subscriptions = []

    async def start(self) -> None:
        for subject in _decoders:
            self._subscriptions.append(
                await self.log.nc.subscribe(subject, queue=api.QUEUE_GROUP, cb=self._on_request))

    async def _on_request(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Stop taking requests and finish those in flight."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        started = time.perf_counter()
        try:
            reply = await self.handle(msg.subject, msg.data)
        except Exception:
            log.exception("request on %s failed", msg.subject)
            reply = api.Reply(error=api.ApiError(code="Internal", message="internal error; see the api log"))
        finally:
            self._slots.release()
        REQUESTS.labels(verb, reply.error.code if reply.error else "ok").inc()
        LATENCY.labels(verb).observe(time.perf_counter() - started)
        if msg.reply:
            await self.log.nc.publish(msg.reply, _encoder.encode(reply))

    async def handle(self, subject: str, data: bytes) -> api.Reply:
        try:
            request = _decoders[subject].decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return api.Reply(error=api.ApiError(code="BadRequest", message=f"malformed request: {exc}"))
        try:
            if isinstance(request, api.ApplyRequest):
                return api.Reply(applied=await self.apply(request))
            if isinstance(request, api.DeleteRequest):
                return api.Reply(applied=await self.delete(request))
            if isinstance(request, api.ScaleRequest):
                return api.Reply(applied=await self._commit(
                    request, "scale", "Deployment", _namespace_of("Deployment", request.namespace), request.name,
                    lambda current, _: decide_scale(current, request.name, request.replicas)))
            if isinstance(request, api.RolloutRequest):
                return api.Reply(applied=await self._commit(
                    request, f"rollout-{request.action}", "Deployment",
                    _namespace_of("Deployment", request.namespace), request.name,
                    lambda current, history: decide_rollout(current, request.name, request.action, history,
                                                            now_rfc3339(), request.to_revision)))
            if isinstance(request, api.CordonRequest):
                return api.Reply(applied=await self._commit(
                    request, "cordon" if request.unschedulable else "uncordon", "Node", "", request.name,
                    lambda current, _: decide_cordon(current, request.name, request.unschedulable)))
            if isinstance(request, api.GetRequest):
                return api.Reply(object=await self.get(request))
            return api.Reply(list=await self.list(request))
        except RequestError as exc:
            return api.Reply(error=exc.error)

    # ------------------------------------------------------------ commands


    async def _record(self, request, verb: str, kind: str, namespace: str, name: str, result: str,
                      reason: str = "", summary: str = "") -> Append:
        command_id = request.command_id if _SAFE_ID.match(request.command_id) else uuid.uuid4().hex
        event = CommandRecorded(command_id=command_id, verb=verb,
                                object=ObjectRef(kind=kind, namespace=namespace, name=name),
                                actor=request.actor, result=result, reason=reason[:2000], summary=summary,
                                dry_run=request.dry_run, time=now_rfc3339())
        return Append(subject=subject_for("command", "", command_id), event=event, msg_id=f"{command_id}:record")

    async def _refuse(self, request, verb: str, kind: str, namespace: str, name: str, error: RequestError):
        record = await self._record(request, verb, kind, namespace, name, "refused", error.error.message)
        await self.log.append_many([record], Metadata(actor=request.actor, correlation_id=request.command_id))
        raise error

    async def apply(self, request: api.ApplyRequest) -> api.ApplyResult:
        raw = request.manifest
        kind, name = str(raw.get("kind", "")), str((raw.get("metadata") or {}).get("name", ""))
        try:
            incoming = validate(raw)
        except ManifestError as exc:
            error = RequestError("Invalid", str(exc), exc.errors)
            await self._refuse(request, "apply", kind, "", name, error)
        kind, meta = incoming.kind, incoming.metadata
        return await self._commit(request, "apply", kind, meta.namespace, meta.name,
                                  lambda current, _: decide_apply(current, incoming, now=now_rfc3339(),
                                                                  new_uid=str(uuid.uuid4())))

    async def delete(self, request: api.DeleteRequest) -> api.ApplyResult:
        kind = resolve_kind(request.kind)
        namespace = _namespace_of(kind, request.namespace)

        def decide(current, _):
            event = decide_delete(current, kind, request.reason)
            if event is None:
                raise RequestError("NotFound", f'{kind.lower()}s "{request.name}" not found')
            return DELETED, event

        return await self._commit(request, "delete", kind, namespace, request.name, decide)

    async def _commit(self, request, verb: str, kind: str, namespace: str, name: str, decide) -> api.ApplyResult:
        """Read, decide, append with the read sequence; on a conflict read again."""
        subject = subject_for(subject_kind(kind), namespace, name)
        meta = Metadata(actor=request.actor, correlation_id=request.command_id)
        for _ in range(MAX_CONFLICT_RETRIES):
            history = await self.log.read_aggregate(subject)
            current, last_seq = fold(history), (history[-1].seq if history else 0)
            try:
                result, event = decide(current, history)
            except Refusal as refusal:
                await self._refuse(request, verb, kind, namespace, name, RequestError(refusal.code, str(refusal)))
            except RequestError as error:
                await self._refuse(request, verb, kind, namespace, name, error)
            record = await self._record(request, verb, kind, namespace, name, result,
                                        summary=_summary(current, event))
            if event is None or request.dry_run:
                await self.log.append_many([record], meta)
                obj = current if event is None else None
                return api.ApplyResult(kind=kind, name=name, namespace=namespace, result=result,
                                       seq=last_seq, object=msgspec.to_builtins(obj) if obj else None)
            change = Append(subject=subject, event=event, expected_seq=last_seq, msg_id=f"{request.command_id}:0")
            try:
                seqs = await self.log.append_batch([change, record], meta)
            except ConcurrencyConflict:
                APPEND_RETRIES.inc()
                continue
            await queries.wait_for_position(self.engine, RESOURCE_TABLES[kind], seqs[0], self.wait_timeout)
            return api.ApplyResult(kind=kind, name=name, namespace=namespace, result=result, seq=seqs[0])
        raise RequestError("Conflict", f"{kind.lower()} {name} kept changing; try again")

    # ------------------------------------------------------------ queries

    async def get(self, request: api.GetRequest) -> dict:
        kind = resolve_kind(request.kind)
        obj = await queries.get_object(self.engine, kind, _namespace_of(kind, request.namespace), request.name)
        if obj is None:
            raise RequestError("NotFound", f'{kind.lower()}s "{request.name}" not found')
        return obj

    async def list(self, request: api.ListRequest) -> api.ObjectList:
        kind = resolve_kind(request.kind)
        namespace = request.namespace if KINDS[kind].NAMESPACED else ""
        try:
            return await queries.list_objects(self.engine, kind, namespace, request.selector,
                                              request.limit, request.continue_token)
        except (SelectorError, ValueError) as exc:
            raise RequestError("BadRequest", str(exc)) from exc


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    log_ = await EventLog.connect(nats_url, name="dockyard-api")
    engine = async_engine(database_url, pool_size=10)
    service = ApiService(log_, engine)
    await service.start()
    health.ready = True
    log.info("api answering on dy.api.> (queue group %s)", api.QUEUE_GROUP)
    await stop.wait()
    health.ready = False
    await service.drain()
    await log_.close()
    await engine.dispose()
