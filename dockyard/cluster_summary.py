"""The cluster at a glance for `dockyard status`: nodes ready, pods by phase, firing alerts, projection lag."""

from __future__ import annotations

import msgspec
from sqlalchemy import text

from dockyard.client import ApiClient
from dockyard.db import async_engine

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_READY = '[{"type": "Ready", "status": "True"}]'


class ClusterSummary(msgspec.Struct, frozen=True, kw_only=True):
    nodes: int = 0
    nodes_ready: int = 0
    pods_by_phase: dict[str, int] = {}
    firing: dict[str, int] = {}  # "alertname (severity)" -> how many alerts of it fire
    projection_lag: dict[str, int] = {}  # projection -> events behind the log
    problem: str = ""  # why the summary is missing (the database or the log cannot be reached)


async def _read_models(database_url: str) -> tuple[int, int, dict[str, int], dict[str, int]]:
    engine = async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            nodes, ready = (await conn.execute(text(
                "SELECT count(*), count(*) FILTER (WHERE object->'status'->'conditions' @> CAST(:ready AS jsonb))"
                " FROM nodes"), {"ready": _READY})).one()
            phases = {phase or "Pending": int(n) for phase, n in
                      await conn.execute(text("SELECT phase, count(*) FROM pods GROUP BY phase"))}
            firing = {f"{name} ({severity})": int(n) for name, severity, n in await conn.execute(text(
                "SELECT alertname, severity, count(*) FROM alerts WHERE state = 'firing'"
                " GROUP BY alertname, severity ORDER BY alertname, severity"))}
    finally:
        await engine.dispose()
    return int(nodes), int(ready), phases, firing


async def _lags(nats_url: str, database_url: str) -> dict[str, int]:
    from dockyard.services.projector.admin import status_rows

    log = await ApiClient.connect_log(nats_url)
    engine = async_engine(database_url, pool_size=1)
    try:
        return {name: int(lag) for name, _, _, lag in await status_rows(log, engine)}
    finally:
        await log.close()
        await engine.dispose()


async def cluster_summary(nats_url: str, database_url: str) -> ClusterSummary:
    """Read from the read models and the log; a failure is reported in `problem`, never raised."""
    try:
        nodes, ready, phases, firing = await _read_models(database_url)
        lags = await _lags(nats_url, database_url)
    except Exception as exc:  # status must print what it can while parts are down
        return ClusterSummary(problem=f"{type(exc).__name__}: {exc}".splitlines()[0])
    ordered = {phase: phases.pop(phase, 0) for phase in PHASES}
    return ClusterSummary(nodes=nodes, nodes_ready=ready, pods_by_phase={**ordered, **phases}, firing=firing,
                          projection_lag=lags)
