"""The projector service: durable consumers applying the log to PostgreSQL read models."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import async_engine
from dockyard.eventlog import EventLog, EventRecord
from dockyard.service import Health
from dockyard.services.projector.projections import PROJECTIONS, apply_batch, ensure_checkpoint
from dockyard.timetravel import KIND_OF_TABLE, SNAPSHOT_EVERY, snapshot_due, take_snapshot

log = logging.getLogger(__name__)

EVENTS = Counter("dockyard_projector_events_applied_total", "Events applied to read models", ["projection"])
BATCH_SECONDS = Histogram("dockyard_projector_batch_duration_seconds", "Time to apply one batch", ["projection"])
POSITION = Gauge("dockyard_projector_position", "Last stream sequence applied", ["projection"])
SNAPSHOT_SECONDS = Histogram("dockyard_projector_snapshot_duration_seconds", "Time to take one snapshot for"
                             " time travel (in the batch's transaction)", ["projection"])


def add_arguments(parser) -> None:
    parser.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY,
                        help="snapshot each resource projection every N stream sequences, for time travel"
                             f" (default {SNAPSHOT_EVERY:,}; 0: never)")


def consumer_name(projection: str) -> str:
    return f"dy-projector-{projection}"


async def checkpoint_of(engine: AsyncEngine, name: str) -> int:
    async with engine.begin() as conn:
        await ensure_checkpoint(conn, name)
        return (await conn.execute(text("SELECT position FROM projection_checkpoints WHERE name = :n"),
                                   {"n": name})).scalar_one()


async def run_projection(log_: EventLog, engine: AsyncEngine, name: str, stop: asyncio.Event,
                         batch: int = 2000, snapshot_every: int = SNAPSHOT_EVERY) -> None:
    """Project while this instance holds the projection's lock; standbys wait for it."""
    projection = PROJECTIONS[name]
    async with engine.connect() as lock_conn:
        while not stop.is_set():
            got = (await lock_conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:n))"),
                                           {"n": f"dockyard-projector-{name}"})).scalar()
            await lock_conn.commit()
            if got:
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        if stop.is_set():
            return
        # The checkpoint in PostgreSQL is the truth; the consumer is a cursor started after it.
        position = await checkpoint_of(engine, projection.name)
        POSITION.labels(name).set(position)
        await log_.ensure_consumer(consumer_name(name), projection.filter_subject, position + 1, reset=True)
        log.info("projection %s resumes after seq %s", name, position)

        snapshot_kind = KIND_OF_TABLE.get(projection.table) if snapshot_every > 0 else None

        async def handle(records: list[EventRecord], last_seq: int) -> None:
            nonlocal position
            started = time.perf_counter()
            snapshot_seconds = None
            async with engine.begin() as conn:
                applied = await apply_batch(conn, projection, projection.table, projection.name, records, last_seq)
                # In the batch's transaction, so the snapshot is the table exactly at `applied`.
                if snapshot_kind and snapshot_due(position, applied, snapshot_every):
                    snapshot_started = time.perf_counter()
                    await take_snapshot(conn, snapshot_kind, applied)
                    snapshot_seconds = time.perf_counter() - snapshot_started
            position = applied
            if snapshot_seconds is not None:
                SNAPSHOT_SECONDS.labels(name).observe(snapshot_seconds)
            EVENTS.labels(name).inc(len(records))
            POSITION.labels(name).set(applied)
            BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)

        await log_.consume(consumer_name(name), handle, stop, batch=batch)


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    log_ = await EventLog.connect(nats_url, name="dockyard-projector")
    await log_.ensure_streams()  # the first service up on an empty server must not find no stream
    engine = async_engine(database_url, pool_size=2 * len(PROJECTIONS) + 2)
    snapshot_every = getattr(args, "snapshot_every", SNAPSHOT_EVERY)
    tasks = [asyncio.create_task(run_projection(log_, engine, name, stop, snapshot_every=snapshot_every), name=name)
             for name in PROJECTIONS]
    health.ready = True
    done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task in tasks and task.exception():
            health.ready = False
            log.error("projection %s stopped: %s", task.get_name(), task.exception())
            stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await log_.close()
    await engine.dispose()
