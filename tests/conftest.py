"""Fixtures that start real servers: nats-server and PostgreSQL on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def fresh_database(postgres: PostgresServer) -> str:
    """A new, migrated database on the session's server; its URL."""
    from dockyard.db import migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    url = postgres.url(name)
    migrate(url)
    return url


@pytest.fixture
def database_url(postgres):
    """A fresh, migrated database per test."""
    return fresh_database(postgres)


@pytest.fixture
async def eventlog(nats_server):
    """A connected EventLog on a clean DY_EVENTS stream."""
    from dockyard.eventlog import DEAD_LETTER_STREAM, HEARTBEAT_BUCKET, LOGS_STREAM, STREAM, USAGE_BUCKET, EventLog

    log = await EventLog.connect(nats_server.url)
    from dockyard.services.monitoring.rulestate import BUCKET as MONITORING_BUCKET

    buckets = (HEARTBEAT_BUCKET, USAGE_BUCKET, MONITORING_BUCKET)
    for stream in (STREAM, DEAD_LETTER_STREAM, LOGS_STREAM, *(f"KV_{bucket}" for bucket in buckets)):
        try:
            await log.js.delete_stream(stream)
        except Exception:
            pass
    await log.ensure_streams()
    yield log
    await log.close()


class ServiceProcess:
    """A service started as users start it (`python -m dockyard.services.NAME`), killable."""

    def __init__(self, name: str, nats_url: str, database_url: str, log_dir: Path, args: tuple[str, ...] = ()):
        self.name = name
        self.args = tuple(args)
        self.env = dict(os.environ, DOCKYARD_NATS_URL=nats_url, DOCKYARD_DATABASE_URL=database_url)
        self.log_path = log_dir / f"{name}-{'-'.join(args)[:40]}.log".replace("/", "_")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        from dockyard.servers import free_port

        port = self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockyard", "run", self.name, "--metrics-port", str(port), *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def services(nats_server, database_url, eventlog, tmp_path):
    """Start services by name against this test's stream and database; all stopped afterwards."""
    started: list[ServiceProcess] = []

    def start(name: str, *args: str) -> ServiceProcess:
        service = ServiceProcess(name, nats_server.url, database_url, tmp_path, args).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def stack_env(nats_server, database_url, services):
    """Environment for running the `dockyard` CLI against a running api and projector."""
    services("projector")
    services("api")
    return dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
