"""Held images in the nodes read model: each node's last node.images_reported.v1, kept and joined onto its row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported
from dockyard.schemas.manifests import ContainerImage
from dockyard.state import HeldImages

NODE_IMAGES_TABLE = "node_images"

_encoder = msgspec.json.Encoder()
_images = msgspec.json.Decoder(tuple[ContainerImage, ...])


class _Report(msgspec.Struct, frozen=True):
    name: str
    images: tuple[ContainerImage, ...]
    seq: int


def latest_reports(records: Sequence[EventRecord]) -> dict[str, _Report]:
    """Each node's last report among `records`."""
    latest: dict[str, _Report] = {}
    for record in records:
        if isinstance(record.event, NodeImagesReported):
            name = parse_subject(record.subject)[2]
            latest[name] = _Report(name=name, images=record.event.images, seq=record.seq)
    return latest


def last_deregistrations(records: Sequence[EventRecord]) -> dict[str, int]:
    """Each node's last deregistration among `records`: node -> its sequence."""
    return {parse_subject(r.subject)[2]: r.seq for r in records if isinstance(r.event, NodeDeregistered)}


async def record_reports(conn: AsyncConnection, records: Sequence[EventRecord]) -> None:
    """Keep each node's last report; an older one (a rebuild replaying the log) never replaces a newer.
    A deregistered node's report goes with it (what a node of that name holds next, it reports anew)."""
    reports = list(latest_reports(records).values())
    if reports:
        await _upsert(conn, reports)
    gone = last_deregistrations(records)
    if gone:
        await conn.execute(
            text(f"DELETE FROM {NODE_IMAGES_TABLE} USING jsonb_each_text(CAST(:gone AS jsonb)) AS g(name, seq)"
                 f" WHERE {NODE_IMAGES_TABLE}.name = g.name AND {NODE_IMAGES_TABLE}.seq < g.seq::bigint"),
            {"gone": _encoder.encode(gone).decode()},
        )


async def _upsert(conn: AsyncConnection, reports: list[_Report]) -> None:
    await conn.execute(
        text(f"INSERT INTO {NODE_IMAGES_TABLE} (name, images, seq)"
             f" SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(name text, images jsonb, seq bigint)"
             f" ON CONFLICT (name) DO UPDATE SET images = EXCLUDED.images, seq = EXCLUDED.seq"
             f" WHERE {NODE_IMAGES_TABLE}.seq < EXCLUDED.seq"),
        {"rows": _encoder.encode(reports).decode()},
    )


async def held_images(conn: AsyncConnection, names: Iterable[str]) -> HeldImages:
    """The last reported images of those of `names` that reported any."""
    names = sorted(set(names))
    if not names:
        return {}
    rows = await conn.execute(
        text(f"SELECT name, images::text FROM {NODE_IMAGES_TABLE}"
             f" WHERE name IN (SELECT jsonb_array_elements_text(CAST(:names AS jsonb)))"),
        {"names": _encoder.encode(names).decode()},
    )
    return {name: _images.decode(images) for name, images in rows}
