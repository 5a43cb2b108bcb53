"""The cluster at a glance for `dockyard status`: nodes ready, pods by phase, firing alerts, projection lag,
and alert rule files the monitoring service refused."""

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
    rules_refused: list[str] = []  # "<path> refused: line 8: ... (the 3 rule(s) loaded before stay in use)"
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


async def _from_log(nats_url: str, database_url: str) -> tuple[dict[str, int], list[str]]:
    """Each projection's lag, and the monitoring instances' refused rule files."""
    from dockyard.services.monitoring.rulestate import refused_rule_files
    from dockyard.services.projector.admin import status_rows

    log = await ApiClient.connect_log(nats_url)
    engine = async_engine(database_url, pool_size=1)
    try:
        lags = {name: int(lag) for name, _, _, lag in await status_rows(log, engine)}
        return lags, await refused_rule_files(log.js)
    finally:
        await log.close()
        await engine.dispose()


async def cluster_summary(nats_url: str, database_url: str) -> ClusterSummary:
    """Read from the read models and the log; a failure is reported in `problem`, never raised."""
    try:
        nodes, ready, phases, firing = await _read_models(database_url)
        lags, refused = await _from_log(nats_url, database_url)
    except Exception as exc:  # status must print what it can while parts are down
        return ClusterSummary(problem=f"{type(exc).__name__}: {exc}".splitlines()[0])
    ordered = {phase: phases.pop(phase, 0) for phase in PHASES}
    return ClusterSummary(nodes=nodes, nodes_ready=ready, pods_by_phase={**ordered, **phases}, firing=firing,
                          projection_lag=lags, rules_refused=refused)
