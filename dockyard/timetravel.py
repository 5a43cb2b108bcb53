"""Time travel: the cluster's objects as they were at a point in the log, folded with `dockyard.state.evolve`.

The log is the truth. A snapshot (one kind's objects at a stream position, copied from its
projection in the transaction that moved the projection there) only spares the fold the
events before it: the objects at sequence N are the nearest snapshot at or before N, with
the kind's events after it, up to N, folded on top.

A node's held images are their own aggregate (`dy.evt.nodeimages.<node>`): nodes are folded
from both subjects, each node with its last report at or before N (since its last
deregistration) joined on, as every reader of the present does (`dockyard.state.with_held_images`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dockyard.db import CHECKPOINTS_TABLE, RESOURCE_TABLES
from dockyard.eventlog import (
    H_TIME,
    STREAM,
    EventLog,
    EventRecord,
    SubjectFilter,
    kind_filter,
    parse_subject,
    subject_for,
)
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported
from dockyard.schemas.manifests import KINDS, Node, subject_kind
from dockyard.state import HeldImages, Resource, evolve, with_held_images

Key = tuple[str, str]  # (namespace, name), as the aggregate's subject names it
Objects = dict[Key, Resource]

SNAPSHOTS_TABLE = "snapshots"
# Stream sequences between two snapshots of a projection: a point in history after the first
# snapshot is at most this far (or one projector batch, when it was catching up) from one before
# it, so that is all `--at` folds.
SNAPSHOT_EVERY = 50_000
SNAPSHOT_CHUNK = 5_000  # objects per snapshot row
KIND_OF_TABLE = {table: kind for kind, table in RESOURCE_TABLES.items()}
IGNORED_FIELDS = frozenset({"metadata.resourceVersion"})  # moves with every event: never news
SHOWN_VALUE_WIDTH = 60


def key_of(record: EventRecord) -> Key:
    _, namespace, name = parse_subject(record.subject)
    return namespace, name


HELD_IMAGES_KIND = "nodeimages"  # the subject kind of a node's image reports


def kind_subjects(kind: str, namespace: str = "") -> SubjectFilter:
    """The subjects `kind`'s objects are folded from, in one namespace if given (nodes: with their image reports)."""
    if namespace and KINDS[kind].NAMESPACED:
        return subject_for(subject_kind(kind), namespace, "*")
    if KINDS[kind] is Node:
        return kind_filter(subject_kind(kind)), kind_filter(HELD_IMAGES_KIND)
    return kind_filter(subject_kind(kind))


def aggregate_subjects(kind: str, namespace: str, name: str) -> SubjectFilter:
    """The subjects one object is folded from (a node: its own and its image reports')."""
    subject = subject_for(subject_kind(kind), namespace, name)
    if KINDS[kind] is Node:
        return subject, subject_for(HELD_IMAGES_KIND, "", name)
    return subject


# ---------------------------------------------------------------- folding (pure)


def learn_held_images(held: HeldImages, record: EventRecord) -> None:
    """What one event says of the nodes' held images: a report is its node's, a deregistration forgets
    it (what a node of that name holds next, it reports anew), as the view and the nodes read model have it."""
    event = record.event
    if isinstance(event, NodeImagesReported):
        held[parse_subject(record.subject)[2]] = event.images
    elif isinstance(event, NodeDeregistered):
        held.pop(parse_subject(record.subject)[2], None)


def evolve_joined(current: Resource | None, record: EventRecord, held: HeldImages) -> Resource | None:
    """`evolve`, a node's image reports joined on; `held` (node -> its last report) is kept up to date.

    The one fold of the past, for a whole kind (`replay`) and for one object (`history`,
    `aggregate_at`); a report's key is its node's, ("", name).
    """
    learn_held_images(held, record)
    if isinstance(record.event, NodeImagesReported):
        return with_held_images(current, held)
    after = evolve(current, record)
    return with_held_images(after, held) if isinstance(after, Node) else after


def replay(objects: Objects, records: Iterable[EventRecord], held: HeldImages | None = None) -> Objects:
    """The objects after the records, each evolved and the deleted dropped; `objects` is left as it was.

    `held` is the nodes' last image reports as of `objects`, brought up to date in place by
    the reports and deregistrations among the records (a batch at a time: the caller carries it on).
    """
    current = dict(objects)
    held = {} if held is None else held
    for record in records:
        key = key_of(record)
        after = evolve_joined(current.get(key), record, held)
        if after is None:
            current.pop(key, None)
        else:
            current[key] = after
    return current


def in_namespace(objects: Objects, namespace: str) -> Objects:
    return {key: obj for key, obj in objects.items() if key[0] == namespace} if namespace else dict(objects)


def ordered(objects: Objects) -> list[Resource]:
    """As the api lists them: by namespace, then name."""
    return [objects[key] for key in sorted(objects)]


# ---------------------------------------------------------------- what changed (pure)


class FieldChange(msgspec.Struct, frozen=True):
    """One field's move: `spec.replicas` 3 -> 5. None stands for absent."""

    path: str
    before: Any
    after: Any


class ObjectChange(msgspec.Struct, frozen=True):
    change: str  # added | removed | replaced (a new uid under the same name) | changed
    kind: str
    namespace: str
    name: str
    fields: tuple[FieldChange, ...] = ()


@functools.cache
def _wire_names(struct_type: type) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, f.encode_name) for f in msgspec.structs.fields(struct_type))


def _is_record(value: Any) -> bool:
    return isinstance(value, (msgspec.Struct, dict))


def _members(value: Any) -> dict[str, Any]:
    if isinstance(value, msgspec.Struct):
        return {wire: getattr(value, name) for name, wire in _wire_names(type(value))}
    return {str(k): v for k, v in value.items()}


def _labelled(items: Sequence[Any]) -> dict[str, Any]:
    """List items by their unique name or type when they all have one (containers, conditions), else by index."""
    for field in ("name", "type"):
        labels = [_members(item).get(field) for item in items]
        if all(isinstance(label, str) and label for label in labels) and len(set(labels)) == len(labels):
            return dict(zip(labels, items))
    return {str(index): item for index, item in enumerate(items)}


def _path(parent: str, member: str) -> str:
    return f"{parent}.{member}" if parent else member


def _diff_into(before: Any, after: Any, path: str, out: list[FieldChange]) -> None:
    if before == after:
        return
    if _is_record(before) and _is_record(after):
        old, new = _members(before), _members(after)
        for member in [*old, *(m for m in new if m not in old)]:
            _diff_into(old.get(member), new.get(member), _path(path, member), out)
    elif isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) \
            and all(_is_record(item) for item in (*before, *after)):
        old, new = _labelled(before), _labelled(after)
        for label in [*old, *(m for m in new if m not in old)]:
            _diff_into(old.get(label), new.get(label), f"{path}[{label}]", out)
    elif path not in IGNORED_FIELDS:
        out.append(FieldChange(path, before, after))


# What was asked for first, what happened next, the bookkeeping last.
_SECTION_ORDER = {"spec": 0, "status": 1, "metadata": 2}


def changed_fields(before: Resource, after: Resource) -> list[FieldChange]:
    """The leaves that differ, by wire path (`spec.template.spec.containers[web].image`); list items
    are matched by name or type where they have one, and an item that came or went is one change."""
    out: list[FieldChange] = []
    _diff_into(before, after, "", out)
    return sorted(out, key=lambda change: _SECTION_ORDER.get(change.path.split(".", 1)[0], 3))


def shown(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, (int, float)):
        return str(value)
    text_ = msgspec.json.encode(value).decode()
    return text_ if len(text_) <= SHOWN_VALUE_WIDTH else text_[:SHOWN_VALUE_WIDTH - 1] + "…"


def describe_change(change: FieldChange) -> str:
    return f"{change.path} {shown(change.before)}→{shown(change.after)}"


def diff(kind: str, before: Objects, after: Objects) -> list[ObjectChange]:
    """Objects added, removed, replaced or changed from one state of `kind` to another, by key."""
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None:
            changes.append(ObjectChange("added", kind, *key))
        elif new is None:
            changes.append(ObjectChange("removed", kind, *key))
        elif old != new and (fields := changed_fields(old, new)):
            change = "replaced" if old.metadata.uid != new.metadata.uid else "changed"
            changes.append(ObjectChange(change, kind, *key, fields=tuple(fields)))
    return changes


# ---------------------------------------------------------------- history (pure)


class HistoryEntry(msgspec.Struct, frozen=True):
    seq: int
    time: str
    type: str
    actor: str
    detail: str


def event_detail(before: Resource | None, after: Resource | None, record: EventRecord, most: int = 3) -> str:
    """What one event did to its object, in a line: created, deleted, or the fields it moved."""
    if before is None and after is not None:
        return "created"
    if after is None:
        reason = getattr(record.event, "reason", "")
        return ("deleted" + (f" ({reason})" if reason else "")) if before is not None else "-"
    fields = changed_fields(before, after)
    if not fields:  # an event that leaves the object as it was (a node's pods bound): say what it carried
        return _scalar_fields(record.event) or "-"
    more = f" (+{len(fields) - most} more)" if len(fields) > most else ""
    return ", ".join(describe_change(f) for f in fields[:most]) + more


def _scalar_fields(event: Any) -> str:
    payload = msgspec.to_builtins(event)
    payload.pop("type", None)
    return ", ".join(f"{k}={shown(v)}" for k, v in payload.items())


def history(records: Iterable[EventRecord]) -> list[HistoryEntry]:
    """An aggregate's events with what each did, folding as it goes."""
    entries, current, held = [], None, {}
    for record in records:
        after = evolve_joined(current, record, held)
        entries.append(HistoryEntry(record.seq, record.time, record.type, record.actor,
                                    event_detail(current, after, record)))
        current = after
    return entries


# ---------------------------------------------------------------- from a time to a position


def parse_time(value: str) -> dt.datetime:
    """An RFC 3339 time with up to nanoseconds (Python keeps microseconds); naive means UTC."""
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


async def last_seq_at(when: dt.datetime, first: int, last: int,
                      time_at: Callable[[int], Awaitable[dt.datetime]]) -> int:
    """The last sequence in [first, last] whose event happened at or before `when`, `first - 1` if none.

    A binary search, so about 20 look-ups for a million events; times out of order (appenders'
    clocks apart) still give a sequence whose event is at or before `when` and whose next is after.
    """
    low, high = first - 1, last
    while low < high:
        middle = (low + high + 1) // 2
        if await time_at(middle) <= when:
            low = middle
        else:
            high = middle - 1
    return low


async def event_time(log: EventLog, seq: int) -> dt.datetime:
    """When the event at (or first after) `seq` happened, by its envelope; after all time if none."""
    try:
        msg = await log.js.get_msg(STREAM, seq=seq, next=True, direct=True)
    except NotFoundError:
        return END_OF_TIME
    headers = msg.headers or {}
    # The envelope's time, not the server's: an imported log travels by when things happened.
    stamp = headers.get(H_TIME) or headers.get("Nats-Time-Stamp", "")
    return parse_time(stamp) if stamp else END_OF_TIME


async def position_at(log: EventLog, when: dt.datetime) -> int:
    """The stream sequence of the last event at or before `when` (0 before the first)."""
    state = (await log.js.stream_info(STREAM)).state
    if not state.last_seq:
        return 0
    return await last_seq_at(when, state.first_seq or 1, state.last_seq, lambda seq: event_time(log, seq))


# ---------------------------------------------------------------- snapshots


@functools.cache
def _snapshot_decoder(kind: str) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(list[tuple[str, str, KINDS[kind]]])


async def load_snapshot(engine: AsyncEngine, kind: str, seq: int) -> tuple[int, Objects]:
    """The nearest snapshot of `kind` at or before `seq`: its position and objects; (0, {}) if none."""
    sql = text(f"SELECT position, objects::text FROM {SNAPSHOTS_TABLE} WHERE kind = :kind AND position ="
               f" (SELECT max(position) FROM {SNAPSHOTS_TABLE} WHERE kind = :kind AND position <= :seq)"
               f" ORDER BY chunk")
    async with engine.connect() as conn:
        rows = (await conn.execute(sql, {"kind": kind, "seq": seq})).all()
    if not rows:
        return 0, {}
    decoder = _snapshot_decoder(kind)
    objects: Objects = {}
    for _, chunk in rows:
        objects.update(((namespace, name), obj) for namespace, name, obj in decoder.decode(chunk))
    return int(rows[0][0]), objects


def snapshot_due(before: int, after: int, every: int = SNAPSHOT_EVERY) -> bool:
    """Whether a projection moving from `before` to `after` has crossed a multiple of `every`."""
    return every > 0 and after // every > before // every


async def take_snapshot(conn: AsyncConnection, kind: str, position: int) -> int:
    """Copy `kind`'s projection, standing at `position`, into a snapshot; in the caller's transaction.

    The caller makes sure the table is at `position`: the projector by doing this in the batch's
    transaction, `snapshot_now` by holding the checkpoint row. Returns the rows written.
    """
    table, chunk = RESOURCE_TABLES[kind], f"(n / {SNAPSHOT_CHUNK:d})::integer"
    result = await conn.execute(text(
        f"INSERT INTO {SNAPSHOTS_TABLE} (kind, position, chunk, time, objects)"
        f" SELECT CAST(:kind AS text), CAST(:position AS bigint), {chunk}, now(),"
        f" jsonb_agg(jsonb_build_array(namespace, name, object) ORDER BY n)"
        f" FROM (SELECT namespace, name, object, row_number() OVER (ORDER BY namespace, name) - 1 AS n"
        f" FROM {table}) AS o GROUP BY {chunk}"
        # an empty kind is a snapshot too: "nothing at this position" spares the fold as much
        f" UNION ALL SELECT CAST(:kind AS text), CAST(:position AS bigint), 0, now(), '[]'::jsonb"
        f" WHERE NOT EXISTS (SELECT 1 FROM {table})"
        f" ON CONFLICT DO NOTHING"
    ), {"kind": kind, "position": position})
    return result.rowcount


async def snapshot_now(engine: AsyncEngine, kind: str) -> int:
    """Snapshot `kind`'s projection where it stands; its position. The projector waits meanwhile."""
    table = RESOURCE_TABLES[kind]
    async with engine.begin() as conn:
        position = (await conn.execute(
            text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n FOR SHARE"), {"n": table}
        )).scalar() or 0
        if position:
            await take_snapshot(conn, kind, position)
    return int(position)


class SnapshotInfo(msgspec.Struct, frozen=True):
    kind: str
    position: int
    time: dt.datetime
    objects: int


async def list_snapshots(engine: AsyncEngine) -> list[SnapshotInfo]:
    sql = text(f"SELECT kind, position, min(time), sum(jsonb_array_length(objects)) FROM {SNAPSHOTS_TABLE}"
               f" GROUP BY kind, position ORDER BY kind, position")
    async with engine.connect() as conn:
        return [SnapshotInfo(kind, int(position), time, int(count))
                for kind, position, time, count in await conn.execute(sql)]


# ---------------------------------------------------------------- the past, read from the log


async def held_images_at(log: EventLog, seq: int) -> HeldImages:
    """Each node's last image report at or before `seq`, unless a deregistration forgot it since.

    What a snapshot of the nodes cannot say: which of its nodes' images came from a report
    (and so outlive a later status's copy), and the reports of nodes not there at the time.
    The node subjects are read too, for their deregistrations: correct, not cheap (a
    snapshot of the reports themselves would spare it).
    """
    held: HeldImages = {}
    if seq > 0:
        async for batch in log.read_range(kind_subjects("Node"), end_seq=seq):
            for record in batch:
                learn_held_images(held, record)
    return held


async def fold_from(log: EventLog, kind: str, objects: Objects, after_seq: int, until_seq: int,
                    namespace: str = "") -> Objects:
    """`objects` (the state of `kind` at `after_seq`) with the kind's events up to `until_seq` folded in."""
    current = in_namespace(objects, namespace)
    held = await held_images_at(log, after_seq) if KINDS[kind] is Node else {}
    async for batch in log.read_range(kind_subjects(kind, namespace), start_seq=after_seq + 1, end_seq=until_seq):
        current = replay(current, batch, held)
    return current


async def objects_at(log: EventLog, kind: str, seq: int, namespace: str = "",
                     engine: AsyncEngine | None = None) -> Objects:
    """`kind`'s objects (in `namespace`, or everywhere) as they were after the event at `seq`.

    With an engine, the fold starts from the nearest snapshot; without, from the first event.
    """
    start, objects = await load_snapshot(engine, kind, seq) if engine is not None else (0, {})
    return await fold_from(log, kind, objects, start, seq, namespace)


async def aggregate_at(log: EventLog, kind: str, namespace: str, name: str,
                       seq: int | None = None) -> tuple[Resource | None, list[EventRecord]]:
    """One object as it was after the event at `seq` (default: now), and its events up to there."""
    records: list[EventRecord] = []
    async for batch in log.read_range(aggregate_subjects(kind, namespace, name), end_seq=seq):
        records.extend(batch)
    return replay({}, records).get((namespace, name)), records

