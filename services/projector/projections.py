"""Projections: how a batch of events becomes rows, written with its checkpoint in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.audit import GENESIS, ROW_COLUMNS, chain, entry_of
from dockyard.db import CHECKPOINTS_TABLE
from dockyard.eventlog import EventRecord, kind_filter, parse_subject
from dockyard.schemas.events import CommandRecorded
from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.services.projector.alerts import AlertProjection
from dockyard.services.projector.images import IMAGE_PROJECTIONS
from dockyard.services.projector.node_images import held_images, record_reports
from dockyard.state import Resource, evolve, with_held_images

_encoder = msgspec.json.Encoder()


def _timestamp(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc)


# A batch travels as one JSON parameter unpacked by jsonb_to_recordset: adapting Python lists
# into SQL arrays element by element cost more CPU than everything else the projection does.


class _Key(msgspec.Struct, frozen=True):
    namespace: str
    name: str


class _ResourceRow(msgspec.Struct, frozen=True):
    """A resource table's row, field for column."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: int
    labels: dict[str, str]
    object: Resource
    created_at: dt.datetime
    updated_at: dt.datetime
    node_name: str
    phase: str


def _rows_json(rows: Sequence[msgspec.Struct]) -> str:
    return _encoder.encode(rows).decode()


_KEYS = "(SELECT namespace, name FROM jsonb_to_recordset(CAST(:keys AS jsonb)) AS k(namespace text, name text))"


def _keys_json(keys: Iterable[tuple[str, str]]) -> str:
    return _rows_json([_Key(ns, name) for ns, name in keys])


def _resource_row(key: tuple[str, str], obj: Resource, updated_at: str) -> _ResourceRow:
    meta = obj.metadata
    return _ResourceRow(
        namespace=key[0], name=key[1], uid=meta.uid, generation=meta.generation,
        resource_version=int(meta.resource_version or 0), labels=meta.labels, object=obj,
        created_at=_timestamp(meta.creation_timestamp), updated_at=_timestamp(updated_at),
        node_name=getattr(obj.spec, "node_name", ""), phase=getattr(obj.status, "phase", ""),
    )


class ResourceProjection:
    """Current objects of one kind, keyed by (namespace, name), folded with `dockyard.state.evolve`."""

    def __init__(self, name: str, subject_kind: str, struct: type):
        self.name = name
        self.table = name
        self.filter_subject = kind_filter(subject_kind)
        self._decoder = msgspec.json.Decoder(struct)

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        keys = {parse_subject(r.subject)[1:] for r in records}
        current = await self._load(conn, table, keys)
        updated_at: dict[tuple[str, str], str] = {}
        for record in records:
            key = parse_subject(record.subject)[1:]
            current[key] = evolve(current.get(key), record)
            updated_at[key] = record.time
        current = await self.joined(conn, records, current)
        alive = {key: obj for key, obj in current.items() if obj is not None}
        gone = [key for key, obj in current.items() if obj is None]
        if gone:
            await conn.execute(text(f"DELETE FROM {table} WHERE (namespace, name) IN {_KEYS}"),
                               {"keys": _keys_json(gone)})
        if alive:
            await self._upsert(conn, table, alive, updated_at)

    async def joined(self, conn: AsyncConnection, records: Sequence[EventRecord], current: dict) -> dict:
        """The folded objects with what other aggregates add to them (nothing, but for nodes)."""
        return current

    async def _load(self, conn: AsyncConnection, table: str, keys: set[tuple[str, str]]) -> dict:
        rows = await conn.execute(
            text(f"SELECT namespace, name, object::text FROM {table} WHERE (namespace, name) IN {_KEYS}"),
            {"keys": _keys_json(keys)},
        )
        found: dict[tuple[str, str], Resource | None] = {(ns, name): self._decoder.decode(obj) for ns, name, obj in rows}
        return found

    async def _upsert(self, conn: AsyncConnection, table: str, objects: dict, updated_at: dict) -> None:
        rows = [_resource_row(key, obj, updated_at[key]) for key, obj in objects.items()]
        await conn.execute(
            text(
                f"INSERT INTO {table} (namespace, name, uid, generation, resource_version, labels, object,"
                f" created_at, updated_at, node_name, phase)"
                f" SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(namespace text, name text,"
                f" uid text, generation bigint, resource_version bigint, labels jsonb, object jsonb,"
                f" created_at timestamptz, updated_at timestamptz, node_name text, phase text)"
                f" ON CONFLICT (namespace, name) DO UPDATE SET uid = EXCLUDED.uid,"
                f" generation = EXCLUDED.generation, resource_version = EXCLUDED.resource_version,"
                f" labels = EXCLUDED.labels, object = EXCLUDED.object, created_at = EXCLUDED.created_at,"
                f" updated_at = EXCLUDED.updated_at, node_name = EXCLUDED.node_name, phase = EXCLUDED.phase"
            ),
            {"rows": _rows_json(rows)},
        )


class NodeProjection(ResourceProjection):
    """Nodes, each with the images it last reported on its own `nodeimages` subject joined onto its status."""

    def __init__(self):
        super().__init__("nodes", "node", Node)
        self.filter_subject = (kind_filter("node"), kind_filter("nodeimages"))

    async def joined(self, conn: AsyncConnection, records: Sequence[EventRecord], current: dict) -> dict:
        await record_reports(conn, records)
        held = await held_images(conn, (name for _, name in current))
        return {key: with_held_images(node, held) for key, node in current.items()}


_COMMAND_COLUMNS = ", ".join(ROW_COLUMNS)


class CommandProjection:
    """The audit trail: one row per command, accepted or refused, each hash chained over the one before."""

    name = "commands"
    table = "commands"
    filter_subject = kind_filter("command")

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        entries = [entry_of(r.seq, r.event) for r in records if isinstance(r.event, CommandRecorded)]
        if not entries:
            return
        # The table's last row before this batch is the chain's head: a rebuild into an empty
        # table starts from GENESIS and so arrives at the same hashes.
        head = (await conn.execute(
            text(f"SELECT hash FROM {table} WHERE seq < :seq ORDER BY seq DESC LIMIT 1"), {"seq": entries[0].seq}
        )).scalar()
        rows = chain(entries, GENESIS if head is None else head)
        await conn.execute(
            text(
                f"INSERT INTO {table} ({_COMMAND_COLUMNS}) SELECT {_COMMAND_COLUMNS}"
                f" FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(seq bigint, command_id text, time timestamptz,"
                f" actor text, verb text, kind text, namespace text, name text, result text, reason text,"
                f" summary text, dry_run boolean, prev_hash text, hash text)"
                f" ON CONFLICT (seq) DO NOTHING"
            ),
            {"rows": _rows_json(rows)},
        )


PROJECTIONS = {
    p.name: p
    for p in (
        ResourceProjection("deployments", "deployment", Deployment),
        ResourceProjection("pods", "pod", Pod),
        NodeProjection(),
        CommandProjection(),
        *IMAGE_PROJECTIONS,
        AlertProjection(),
    )
}


async def ensure_checkpoint(conn: AsyncConnection, checkpoint: str) -> None:
    await conn.execute(
        text(f"INSERT INTO {CHECKPOINTS_TABLE} (name, position) VALUES (:n, 0) ON CONFLICT (name) DO NOTHING"),
        {"n": checkpoint},
    )


async def apply_batch(conn: AsyncConnection, projection, table: str, checkpoint: str,
                      records: Sequence[EventRecord], last_seq: int) -> int:
    """Apply the records after the checkpoint and move it to `last_seq`, in the caller's transaction.

    The checkpoint row is locked first, so concurrent writers of one projection (a second
    projector, a rebuild's swap) take turns, and an event at or below it is never applied again.
    """
    position = (await conn.execute(
        text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n FOR UPDATE"), {"n": checkpoint}
    )).scalar_one()
    fresh = [r for r in records if r.seq > position]
    if fresh:
        await projection.apply(conn, table, fresh)
    if last_seq > position:
        await conn.execute(
            text(f"UPDATE {CHECKPOINTS_TABLE} SET position = :p, updated_at = now() WHERE name = :n"),
            {"p": last_seq, "n": checkpoint},
        )
        return last_seq
    return position
