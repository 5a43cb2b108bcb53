"""Fixtures that start real servers: nats-server and PostgreSQL on free loopback ports."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from dockyard.servers import NatsServer, PostgresServer, ServerError


def _short_tmp(prefix: str) -> Path:
    # Short paths: Unix sockets and the postgres user's traversal of parents both care.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def require(condition: bool, reason: str) -> None:
    """Skip for a missing component, or fail when CI says every component must be there."""
    if not condition:
        if os.environ.get("DOCKYARD_REQUIRE_ALL") == "1":
            pytest.fail(f"required component missing: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def nats_server():
    root = _short_tmp("dy-nats-")
    server = NatsServer(root)
    try:
        server.start()
    except ServerError as exc:
        require(False, f"nats-server: {exc}")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    root = _short_tmp("dy-pg-")
    root.chmod(0o755)
    server = PostgresServer(root / "pg", fast_unsafe=True)
    try:
        server.start()
    except ServerError as exc:
        require(False, f"postgresql: {exc}")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres):
    """A fresh, migrated database per test."""
    from dockyard.db import migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    url = postgres.url(name)
    migrate(url)
    return url


@pytest.fixture
async def eventlog(nats_server):
    """A connected EventLog on a clean DY_EVENTS stream."""
    from dockyard.eventlog import DEAD_LETTER_STREAM, STREAM, EventLog

    log = await EventLog.connect(nats_server.url)
    for stream in (STREAM, DEAD_LETTER_STREAM):
        try:
            await log.js.delete_stream(stream)
        except Exception:
            pass
    await log.ensure_streams()
    yield log
    await log.close()
