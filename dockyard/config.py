"""Where things are: DOCKYARD_HOME, the stack file, and the NATS and PostgreSQL URLs."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class ConfigError(Exception):
    """No stack to talk to, or a setting that makes no sense."""


class ComponentInfo(msgspec.Struct, kw_only=True):
    name: str
    pid: int = 0
    url: str = ""
    health_url: str = ""
    log: str = ""


class StackInfo(msgspec.Struct, kw_only=True):
    """What `dockyard up` started, written to DOCKYARD_HOME/stack.json for every other command."""

    home: str
    nats_url: str
    database_url: str
    supervisor_pid: int = 0
    ready: bool = False
    components: list[ComponentInfo] = []


def home() -> Path:
    explicit = os.environ.get("DOCKYARD_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dockyard"


def stack_file(root: Path | None = None) -> Path:
    return (root or home()) / "stack.json"


def read_stack(root: Path | None = None) -> StackInfo | None:
    try:
        return msgspec.json.decode(stack_file(root).read_bytes(), type=StackInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_stack(info: StackInfo) -> None:
    path = stack_file(Path(info.home))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(info)))
    tmp.replace(path)


def nats_url() -> str:
    url = os.environ.get("DOCKYARD_NATS_URL")
    if url:
        return url
    stack = read_stack()
    if stack is None:
        raise ConfigError(f"no running stack under {home()}: run `dockyard up` or set DOCKYARD_NATS_URL")
    return stack.nats_url


def database_url() -> str:
    url = os.environ.get("DOCKYARD_DATABASE_URL")
    if url:
        return normalise_database_url(url)
    stack = read_stack()
    if stack is None:
        raise ConfigError(f"no running stack under {home()}: run `dockyard up` or set DOCKYARD_DATABASE_URL")
    return stack.database_url


def normalise_database_url(url: str) -> str:
    """SQLAlchemy needs the psycopg 3 driver named; accept plain postgresql:// URLs too."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
