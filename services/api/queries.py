"""Queries the api answers from the read models in PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import time

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard.db import CHECKPOINTS_TABLE, RESOURCE_TABLES
from dockyard.schemas.api import ObjectList
from dockyard.selectors import parse_selector, to_sql

MAX_PAGE = 5000


def _encode_token(namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([namespace, name])).decode()


def _decode_token(token: str) -> tuple[str, str]:
    try:
        namespace, name = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()))
        return str(namespace), str(name)
    except Exception as exc:
        raise ValueError("continue token is not valid; start the list again") from exc


async def projection_position(engine: AsyncEngine, projection: str) -> int:
    async with engine.connect() as conn:
        row = (await conn.execute(text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n"),
                                  {"n": projection})).first()
    return int(row[0]) if row else 0


async def wait_for_position(engine: AsyncEngine, projection: str, seq: int, timeout: float = 5.0) -> bool:
    """Wait until a projection has applied `seq`, so a get after an apply sees it."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        if await projection_position(engine, projection) >= seq:
            return True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    return False


async def get_object(engine: AsyncEngine, kind: str, namespace: str, name: str) -> dict | None:
    sql = text(f"SELECT object::text FROM {RESOURCE_TABLES[kind]} WHERE namespace = :ns AND name = :name")
    async with engine.connect() as conn:
        row = (await conn.execute(sql, {"ns": namespace, "name": name})).first()
    return msgspec.json.decode(row[0]) if row else None


async def list_objects(engine: AsyncEngine, kind: str, namespace: str, selector: str, limit: int,
                       continue_token: str) -> ObjectList:
    """One page ordered by (namespace, name); the token resumes after its last row."""
    limit = max(1, min(limit, MAX_PAGE))
    where, params = to_sql(parse_selector(selector))
    clauses = [where]
    if namespace:
        clauses.append("namespace = :ns")
        params["ns"] = namespace
    if continue_token:
        params["after_ns"], params["after_name"] = _decode_token(continue_token)
        clauses.append("(namespace, name) > (:after_ns, :after_name)")
    params["limit"] = limit + 1
    table = RESOURCE_TABLES[kind]
    sql = text(
        f"SELECT namespace, name, object::text FROM {table} WHERE {' AND '.join(clauses)} "
        f"ORDER BY namespace, name LIMIT :limit"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sql, params)).all()
        position = (await conn.execute(text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n"),
                                       {"n": table})).scalar() or 0
    token = _encode_token(rows[limit - 1][0], rows[limit - 1][1]) if len(rows) > limit else ""
    items = tuple(msgspec.json.decode(row[2]) for row in rows[:limit])
    return ObjectList(items=items, continue_token=token, position=int(position))
