"""Processes on this machine for the process driver: spawning, finding them again, signalling, state files, logs on disk.

A container's output goes to files in the state directory (not to pipes held by the agent),
so a container outlives an agent that crashes, and the next agent can adopt it and carry on
shipping its logs from where the last one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path

import msgspec

from dockyard.servers import free_port
from dockyard.services.node_agent.status import exit_code_of

log = logging.getLogger(__name__)

ADOPTED_POLL_SECONDS = 0.2
MAX_LINE_BYTES = 16 * 1024  # DY_LOGS takes 64 KiB messages; longer lines go in pieces
READ_CHUNK_BYTES = 1 << 20
ROTATE_AT_BYTES = 16 << 20


# ---------------------------------------------------------------- /proc


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may hold spaces or ')': split after the last one.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_alive(pid: int, start_ticks: int) -> bool:
    """Is `pid` still the process that started at `start_ticks` (not a reused pid, not a zombie)?"""
    if pid <= 0:
        return False
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and (not start_ticks or stat[1] == start_ticks)


def signal_group(pid: int, sig: int) -> None:
    """Signal a container's process group (its leader started a session: pgid == pid)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- processes


class ContainerProcess:
    """A running container process: our child, or one adopted from an earlier agent (exit code unknown)."""

    def __init__(self, pid: int, start_ticks: int, child: asyncio.subprocess.Process | None = None):
        self.pid = pid
        self.start_ticks = start_ticks
        self.child = child
        self._exit: asyncio.Future | None = None

    @property
    def adopted(self) -> bool:
        return self.child is None

    async def _wait_exit(self) -> int | None:
        if self.child is not None:
            return exit_code_of(await self.child.wait())
        while proc_alive(self.pid, self.start_ticks):
            await asyncio.sleep(ADOPTED_POLL_SECONDS)
        return None

    async def wait(self) -> int | None:
        """The exit code once the process ends (None for an adopted one: not ours to reap)."""
        if self._exit is None:
            self._exit = asyncio.ensure_future(self._wait_exit())
        return await asyncio.shield(self._exit)

    def running(self) -> bool:
        if self.child is not None:
            return self.child.returncode is None
        return proc_alive(self.pid, self.start_ticks)

    def signal(self, sig: int) -> None:
        if self.running():
            signal_group(self.pid, sig)

    async def terminate(self, grace: float) -> int | None:
        """SIGTERM to the group, SIGKILL after `grace` seconds if it is still there."""
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), max(grace, 0))
        except asyncio.TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait()
        finally:
            self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """Once the leader is gone, whatever it left in its group goes too (the group keeps its pid from reuse)."""
        signal_group(self.pid, signal.SIGKILL)


async def spawn(argv: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path) -> ContainerProcess:
    """Start a container process in a session of its own, output appended to files; raises OSError."""
    if not argv:
        raise OSError("the container has neither command nor args")
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        child = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                     stderr=err, cwd=cwd, env=env, start_new_session=True)
    stat = proc_stat(child.pid)
    return ContainerProcess(child.pid, stat[1] if stat else 0, child)


# ---------------------------------------------------------------- host ports


class PortAllocator:
    """Host ports handed to containers, each held by one pod (`namespace/name`); never the same one twice
    while it is in use. The first claim of a port holds it: only its holder's release frees it."""

    def __init__(self) -> None:
        self.holders: dict[int, str] = {}

    def claim(self, port: int, holder: str = "") -> int:
        self.holders.setdefault(port, holder)
        return port

    def holder(self, port: int) -> str | None:
        return self.holders.get(port)

    def allocate(self, holder: str = "") -> int:
        while True:
            port = free_port()
            if port not in self.holders:
                return self.claim(port, holder)

    def release(self, ports, holder: str = "") -> None:
        for port in ports:
            if self.holders.get(port) == holder:
                del self.holders[port]


# ---------------------------------------------------------------- state files


class ContainerRecord(msgspec.Struct, kw_only=True):
    """What the agent must know to find a container again after it restarts."""

    namespace: str
    pod: str
    uid: str
    container: str
    pid: int = 0  # 0: no process now
    start_ticks: int = 0  # guards against a reused pid
    started_at: str = ""
    restart_count: int = 0
    image: str | None = None  # the spec's image when this run started (None: an older agent's record)
    host_ports: dict[str, int] = {}
    grace_seconds: int = 30
    stdout_offset: int = 0  # bytes of the log files already published
    stderr_offset: int = 0


_record_decoder = msgspec.json.Decoder(ContainerRecord)
_record_encoder = msgspec.json.Encoder()

RECORD_SUFFIX = ".json"


class StateDir:
    """`<root>/pods/<namespace>_<pod>_<uid>/`: per container `<name>.json`, `<name>.stdout.log`,
    `<name>.stderr.log`; `work/` is the default working directory of the pod's processes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.pods = self.root / "pods"

    def pod_dir(self, namespace: str, pod: str, uid: str) -> Path:
        # Names are DNS-1123, without '_': the directory name cannot be ambiguous.
        return self.pods / f"{namespace}_{pod}_{uid or 'none'}"

    @staticmethod
    def record_path(pod_dir: Path, container: str) -> Path:
        return pod_dir / f"{container}{RECORD_SUFFIX}"

    @staticmethod
    def log_path(pod_dir: Path, container: str, stream: str) -> Path:
        return pod_dir / f"{container}.{stream}.log"

    @staticmethod
    def work_dir(pod_dir: Path) -> Path:
        return pod_dir / "work"

    def scan(self) -> dict[Path, dict[str, ContainerRecord]]:
        """Every pod directory and its containers' records, as a previous agent left them."""
        found: dict[Path, dict[str, ContainerRecord]] = {}
        if not self.pods.is_dir():
            return found
        for pod_dir in sorted(self.pods.iterdir()):
            records = found.setdefault(pod_dir, {})
            for path in pod_dir.glob(f"*{RECORD_SUFFIX}"):
                try:
                    record = _record_decoder.decode(path.read_bytes())
                except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("ignoring unreadable state file %s: %s", path, exc)
                    continue
                records[record.container] = record
        return found

    @staticmethod
    def save(pod_dir: Path, record: ContainerRecord) -> None:
        path = StateDir.record_path(pod_dir, record.container)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_record_encoder.encode(record))
        os.replace(tmp, path)

    @staticmethod
    def remove(pod_dir: Path) -> None:
        shutil.rmtree(pod_dir, ignore_errors=True)


def kill_recorded_processes(root: Path) -> int:
    """SIGKILL every container process recorded under a state directory whose agent is gone
    (after a crash, for `dockyard down` and tests); returns how many were still running."""
    killed = 0
    for records in StateDir(root).scan().values():
        for record in records.values():
            if record.pid and proc_alive(record.pid, record.start_ticks):
                killed += 1
            if record.pid:
                signal_group(record.pid, signal.SIGKILL)  # the leader may be gone, its group not
    return killed


# ---------------------------------------------------------------- log files


class FileTail:
    """Reads whole lines appended to a file since the last read, from a saved offset."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = offset  # bytes read so far
        self.partial = b""  # read, but not yet a whole line

    @property
    def consumed(self) -> int:
        """Bytes whose lines have been handed out: where a later reader starts again."""
        return self.offset - len(self.partial)

    def read_lines(self, final: bool = False) -> list[bytes]:
        """New complete lines (all of it when `final`: the writer is gone); long lines in pieces."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated under us: start over
            self.offset, self.partial = 0, b""
        data = b""
        if size > self.offset:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(min(size - self.offset, READ_CHUNK_BYTES))
            self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if self.partial and (final or len(self.partial) >= MAX_LINE_BYTES):
            lines.append(self.partial)
            self.partial = b""
        return [piece for line in lines for piece in _pieces(line)]

    def rotate_if_large(self, limit: int = ROTATE_AT_BYTES) -> None:
        """Empty a large file once everything in it has been read; the writer appends (O_APPEND) from 0."""
        if self.offset < limit or self.partial:
            return
        try:
            if self.path.stat().st_size == self.offset:
                os.truncate(self.path, 0)
                self.offset = 0
        except OSError:
            pass


def _pieces(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE_BYTES:
        return [line]
    return [line[i:i + MAX_LINE_BYTES] for i in range(0, len(line), MAX_LINE_BYTES)]
