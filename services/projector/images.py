"""Projections of the image index: `image_tags` from image events, `registries` from registry events."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.eventlog import EventRecord, kind_filter
from dockyard.schemas.events import (
    ImageDeleted,
    ImageIndexed,
    ImagePlatform,
    ImageRejected,
    ImageTagMoved,
    RegistryRecovered,
    RegistryUnreachable,
)

_encoder = msgspec.json.Encoder()


class _TagRow(msgspec.Struct, frozen=True):
    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str
    size: int
    platforms: tuple[ImagePlatform, ...]
    problem: str
    seq: int
    updated_at: str


class _RegistryRow(msgspec.Struct, frozen=True):
    registry: str
    reachable: bool
    reason: str
    since: str


def _tag_rows(records: Sequence[EventRecord]) -> tuple[dict, dict]:
    """The batch folded per tag: rows to upsert, and keys to delete (the last event wins)."""
    upserts: dict[tuple[str, str, str], _TagRow] = {}
    deletes: dict[tuple[str, str, str], bool] = {}
    for record in records:
        event = record.event
        if not isinstance(event, (ImageIndexed, ImageTagMoved, ImageRejected, ImageDeleted)):
            continue
        key = (event.registry, event.repository, event.tag)
        if isinstance(event, ImageDeleted):
            upserts.pop(key, None)
            deletes[key] = True
            continue
        deletes.pop(key, None)
        if isinstance(event, ImageRejected):
            upserts[key] = _TagRow(*key, "", "", 0, (), event.reason, record.seq, record.time)
        else:
            upserts[key] = _TagRow(*key, event.digest, event.media_type, event.size, event.platforms, "",
                                   record.seq, record.time)
    return upserts, deletes


class ImageTagProjection:
    name = "image_tags"
    table = "image_tags"
    filter_subject = kind_filter("image")

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        upserts, deletes = _tag_rows(records)
        if deletes:
            keys = [{"registry": r, "repository": p, "tag": t} for r, p, t in deletes]
            await conn.execute(text(
                f"DELETE FROM {table} WHERE (registry, repository, tag) IN (SELECT registry, repository, tag"
                f" FROM jsonb_to_recordset(CAST(:keys AS jsonb)) AS k(registry text, repository text, tag text))"
            ), {"keys": _encoder.encode(keys).decode()})
        if upserts:
            await conn.execute(text(
                f"INSERT INTO {table} (registry, repository, tag, digest, media_type, size, platforms, problem,"
                f" seq, updated_at) SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(registry text,"
                f" repository text, tag text, digest text, media_type text, size bigint, platforms jsonb,"
                f" problem text, seq bigint, updated_at timestamptz)"
                f" ON CONFLICT (registry, repository, tag) DO UPDATE SET digest = EXCLUDED.digest,"
                f" media_type = EXCLUDED.media_type, size = EXCLUDED.size, platforms = EXCLUDED.platforms,"
                f" problem = EXCLUDED.problem, seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at"
            ), {"rows": _encoder.encode(list(upserts.values())).decode()})


class RegistryProjection:
    name = "registries"
    table = "registries"
    filter_subject = kind_filter("registry")

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        rows: dict[str, _RegistryRow] = {}
        for record in records:
            event = record.event
            if isinstance(event, RegistryUnreachable):
                rows[event.registry] = _RegistryRow(event.registry, False, event.reason, record.time)
            elif isinstance(event, RegistryRecovered):
                rows[event.registry] = _RegistryRow(event.registry, True, "", record.time)
        if rows:
            await conn.execute(text(
                f"INSERT INTO {table} (registry, reachable, reason, since) SELECT * FROM"
                f" jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(registry text, reachable boolean, reason text,"
                f" since timestamptz) ON CONFLICT (registry) DO UPDATE SET reachable = EXCLUDED.reachable,"
                f" reason = EXCLUDED.reason, since = EXCLUDED.since"
            ), {"rows": _encoder.encode(list(rows.values())).decode()})


IMAGE_PROJECTIONS = (ImageTagProjection(), RegistryProjection())
