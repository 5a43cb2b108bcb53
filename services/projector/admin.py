"""Operator actions on projections: status with lag, and rebuild-and-swap without downtime."""

from __future__ import annotations

import time

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.client import ApiClient
from dockyard.db import CHECKPOINTS_TABLE, async_engine
from dockyard.eventlog import STREAM, EventLog, EventRecord, SubjectFilter, filter_config
from dockyard.printers import format_table
from dockyard.services.projector.projections import PROJECTIONS, apply_batch, ensure_checkpoint

REBUILD_BATCH = 2000


class RebuildError(Exception):
    pass


async def lag(log: EventLog, filter_subject: SubjectFilter, position: int) -> int:
    """How many events on the projection's subjects lie after its position."""
    config = ConsumerConfig(**filter_config(filter_subject), deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=position + 1, ack_policy=AckPolicy.NONE, inactive_threshold=5.0,
                            mem_storage=True)
    info = await log.js.add_consumer(STREAM, config)
    try:
        return info.num_pending or 0
    finally:
        await log.js.delete_consumer(STREAM, info.name)


async def positions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT name, position FROM {CHECKPOINTS_TABLE}"))
        return {name: int(position) for name, position in rows}


async def status_rows(log: EventLog, engine: AsyncEngine) -> list[list[str]]:
    known = await positions(engine)
    last = await log.last_stream_seq()
    rows = []
    for name, projection in PROJECTIONS.items():
        position = known.get(name, 0)
        rows.append([name, str(position), str(last), str(await lag(log, projection.filter_subject, position))])
    return rows


async def print_status(nats_url: str, database_url: str) -> int:
    log = await ApiClient.connect_log(nats_url)
    engine = async_engine(database_url, pool_size=1)
    try:
        print(format_table(["PROJECTION", "POSITION", "STREAM-LAST", "LAG"], await status_rows(log, engine)))
    finally:
        await log.close()
        await engine.dispose()
    return 0


async def _apply_until(log: EventLog, engine: AsyncEngine, projection, table: str, checkpoint: str,
                       start: int, until: int | None, conn=None) -> int:
    """Apply events after `start` (up to `until` if given) into `table` in batches; the new position."""
    batch: list[EventRecord] = []
    position = start

    async def flush(last_seq: int) -> int:
        if conn is not None:
            return await apply_batch(conn, projection, table, checkpoint, batch, last_seq)
        async with engine.begin() as c:
            return await apply_batch(c, projection, table, checkpoint, batch, last_seq)

    async for record in log.read(projection.filter_subject, start_seq=start + 1):
        if until is not None and record.seq > until:
            break
        batch.append(record)
        if len(batch) >= REBUILD_BATCH:
            position = await flush(record.seq)
            batch = []
    if batch:
        position = await flush(batch[-1].seq)
    return position


async def rebuild(nats_url: str, database_url: str, name: str) -> int:
    """Replay from sequence 1 into a fresh table, catch up, then swap it in under the checkpoint lock."""
    if name not in PROJECTIONS:
        raise RebuildError(f'unknown projection "{name}" (known: {", ".join(PROJECTIONS)})')
    projection = PROJECTIONS[name]
    fresh, checkpoint = f"{projection.table}__rebuild", f"{projection.name}__rebuild"
    log = await ApiClient.connect_log(nats_url)
    engine = async_engine(database_url, pool_size=2)
    started = time.monotonic()
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {fresh}"))
            await conn.execute(text(f"CREATE TABLE {fresh} (LIKE {projection.table} INCLUDING ALL)"))
            await conn.execute(text(f"DELETE FROM {CHECKPOINTS_TABLE} WHERE name = :n"), {"n": checkpoint})
            await ensure_checkpoint(conn, checkpoint)
        position = await _apply_until(log, engine, projection, fresh, checkpoint, 0, None)
        print(f"replayed {name} up to seq {position}; swapping in")
        async with engine.begin() as conn:
            # Holding the live checkpoint's row lock, the live projector waits while we catch
            # up to exactly its position and rename; then it carries on into the new table.
            live = (await conn.execute(
                text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n FOR UPDATE"), {"n": name}
            )).scalar() or 0
            position = await _apply_until(log, engine, projection, fresh, checkpoint, position, live, conn)
            await conn.execute(text(f"ALTER TABLE {projection.table} RENAME TO {projection.table}__old"))
            await conn.execute(text(f"ALTER TABLE {fresh} RENAME TO {projection.table}"))
            await conn.execute(text(f"DROP TABLE {projection.table}__old"))
            await conn.execute(text(f"DELETE FROM {CHECKPOINTS_TABLE} WHERE name = :n"), {"n": checkpoint})
            # The rebuild may have read past the live projector: those events are in the new table.
            await conn.execute(text(f"UPDATE {CHECKPOINTS_TABLE} SET position = GREATEST(position, :p),"
                                    f" updated_at = now() WHERE name = :n"), {"p": position, "n": name})
        print(f"projection {name} rebuilt to seq {max(position, live)} and swapped in "
              f"({time.monotonic() - started:.1f}s)")
        return 0
    finally:
        await log.close()
        await engine.dispose()
