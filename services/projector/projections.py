"""Projections: how a batch of events becomes rows, written with its checkpoint in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.db import CHECKPOINTS_TABLE
from dockyard.eventlog import EventRecord, kind_filter, parse_subject
from dockyard.schemas.events import CommandRecorded
from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.state import Resource, evolve

_encoder = msgspec.json.Encoder()


def _timestamp(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc)


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
        alive = {key: obj for key, obj in current.items() if obj is not None}
        gone = [key for key, obj in current.items() if obj is None]
        if gone:
            await conn.execute(
                text(f"DELETE FROM {table} WHERE (namespace, name) IN "
                     f"(SELECT * FROM unnest(CAST(:ns AS text[]), CAST(:names AS text[])))"),
                {"ns": [k[0] for k in gone], "names": [k[1] for k in gone]},
            )
        if alive:
            await self._upsert(conn, table, alive, updated_at)

    async def _load(self, conn: AsyncConnection, table: str, keys: set[tuple[str, str]]) -> dict:
        rows = await conn.execute(
            text(f"SELECT namespace, name, object::text FROM {table} WHERE (namespace, name) IN "
                 f"(SELECT * FROM unnest(CAST(:ns AS text[]), CAST(:names AS text[])))"),
            {"ns": [k[0] for k in keys], "names": [k[1] for k in keys]},
        )
        found: dict[tuple[str, str], Resource | None] = {(ns, name): self._decoder.decode(obj) for ns, name, obj in rows}
        return found

    async def _upsert(self, conn: AsyncConnection, table: str, objects: dict, updated_at: dict) -> None:
        columns: dict[str, list] = {c: [] for c in (
            "ns", "name", "uid", "gen", "rv", "labels", "obj", "created", "updated", "node", "phase")}
        for key, obj in objects.items():
            meta = obj.metadata
            columns["ns"].append(key[0])
            columns["name"].append(key[1])
            columns["uid"].append(meta.uid)
            columns["gen"].append(meta.generation)
            columns["rv"].append(int(meta.resource_version or 0))
            columns["labels"].append(_encoder.encode(meta.labels).decode())
            columns["obj"].append(_encoder.encode(obj).decode())
            columns["created"].append(_timestamp(meta.creation_timestamp))
            columns["updated"].append(_timestamp(updated_at[key]))
            columns["node"].append(getattr(obj.spec, "node_name", ""))
            columns["phase"].append(getattr(obj.status, "phase", ""))
        await conn.execute(
            text(
                f"INSERT INTO {table} (namespace, name, uid, generation, resource_version, labels, object,"
                f" created_at, updated_at, node_name, phase)"
                f" SELECT ns, name, uid, gen, rv, CAST(labels AS jsonb), CAST(obj AS jsonb), created, updated,"
                f" node, phase FROM unnest(CAST(:ns AS text[]), CAST(:name AS text[]), CAST(:uid AS text[]),"
                f" CAST(:gen AS bigint[]), CAST(:rv AS bigint[]), CAST(:labels AS text[]), CAST(:obj AS text[]),"
                f" CAST(:created AS timestamptz[]), CAST(:updated AS timestamptz[]), CAST(:node AS text[]),"
                f" CAST(:phase AS text[]))"
                f" AS u(ns, name, uid, gen, rv, labels, obj, created, updated, node, phase)"
                f" ON CONFLICT (namespace, name) DO UPDATE SET uid = EXCLUDED.uid,"
                f" generation = EXCLUDED.generation, resource_version = EXCLUDED.resource_version,"
                f" labels = EXCLUDED.labels, object = EXCLUDED.object, created_at = EXCLUDED.created_at,"
                f" updated_at = EXCLUDED.updated_at, node_name = EXCLUDED.node_name, phase = EXCLUDED.phase"
            ),
            columns,
        )


class CommandProjection:
    """The command record: one row per command, accepted or refused."""

    name = "commands"
    table = "commands"
    filter_subject = kind_filter("command")

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        rows = [(r.seq, r.event) for r in records if isinstance(r.event, CommandRecorded)]
        if not rows:
            return
        fields = ("command_id", "verb", "kind", "namespace", "name", "actor", "result", "reason")
        params: dict[str, list] = {f: [getattr(e, f) for _, e in rows] for f in fields}
        params["seq"] = [seq for seq, _ in rows]
        params["time"] = [_timestamp(e.time) for _, e in rows]
        params["dry_run"] = [e.dry_run for _, e in rows]
        await conn.execute(
            text(
                f"INSERT INTO {table} (seq, command_id, time, actor, verb, kind, namespace, name, result,"
                f" reason, dry_run) SELECT * FROM unnest(CAST(:seq AS bigint[]), CAST(:command_id AS text[]),"
                f" CAST(:time AS timestamptz[]), CAST(:actor AS text[]), CAST(:verb AS text[]),"
                f" CAST(:kind AS text[]), CAST(:namespace AS text[]), CAST(:name AS text[]),"
                f" CAST(:result AS text[]), CAST(:reason AS text[]), CAST(:dry_run AS boolean[]))"
                f" ON CONFLICT (seq) DO NOTHING"
            ),
            params,
        )


PROJECTIONS = {
    p.name: p
    for p in (
        ResourceProjection("deployments", "deployment", Deployment),
        ResourceProjection("pods", "pod", Pod),
        ResourceProjection("nodes", "node", Node),
        CommandProjection(),
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
