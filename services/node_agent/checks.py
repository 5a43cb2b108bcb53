"""Running one probe attempt against a process-driver container: exec, httpGet or tcpSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

from dockyard.schemas.manifests import HTTPGetAction, Probe
from dockyard.services.node_agent.runtime import signal_group

PROBE_HOST = "127.0.0.1"
USER_AGENT = "dockyard-probe/1.0"


async def probe_once(probe: Probe, port_of: Callable[[int | str], int], env: dict[str, str], cwd: Path) -> bool:
    """One attempt within the probe's timeout; any error counts as a failure."""
    timeout = max(probe.timeout_seconds, 1)
    try:
        if probe.exec is not None:
            return await _exec(list(probe.exec.command), env, cwd, timeout)
        if probe.http_get is not None:
            return await asyncio.wait_for(_http_get(probe.http_get, port_of(probe.http_get.port)), timeout)
        if probe.tcp_socket is not None:
            return await asyncio.wait_for(_tcp(port_of(probe.tcp_socket.port)), timeout)
    except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    return True  # a probe with no handler cannot fail


async def _exec(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> bool:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL,
                                                env=env, cwd=cwd, start_new_session=True)
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    finally:
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _http_get(action: HTTPGetAction, port: int) -> bool:
    """A success is a status from 200 to 399, as kubelet counts it."""
    context = None
    if action.scheme.upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # kubelet does not verify probe certificates either
    reader, writer = await asyncio.open_connection(PROBE_HOST, port, ssl=context)
    try:
        path = action.path if action.path.startswith("/") else f"/{action.path}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {PROBE_HOST}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
                     f"Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    parts = status_line.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def _tcp(port: int) -> bool:
    _, writer = await asyncio.open_connection(PROBE_HOST, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
