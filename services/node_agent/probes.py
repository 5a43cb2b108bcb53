"""Probe outcomes: thresholds over consecutive results, and which host port a probe reaches. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from dockyard.schemas.manifests import ContainerPort, Probe
from dockyard.services.node_agent.expansion import port_key

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"


class ProbeState(msgspec.Struct, frozen=True):
    """Whether the probe passes now, and the current run of equal results."""

    ok: bool
    successes: int = 0
    failures: int = 0


def initial_state(kind: str) -> ProbeState:
    """A container is live until proven dead, but ready (or started) only once proven so."""
    return ProbeState(ok=kind == LIVENESS)


def observe(state: ProbeState, success: bool, probe: Probe) -> ProbeState:
    """The state after one result: it flips after successThreshold successes or failureThreshold failures in a row."""
    if success:
        successes = state.successes + 1
        ok = state.ok or successes >= max(probe.success_threshold, 1)
        return ProbeState(ok=ok, successes=successes, failures=0)
    failures = state.failures + 1
    ok = state.ok and failures < max(probe.failure_threshold, 1)
    return ProbeState(ok=ok, successes=0, failures=failures)


def has_failed(state: ProbeState, probe: Probe) -> bool:
    """failureThreshold failures in a row: a liveness or startup probe now restarts the container."""
    return state.failures >= max(probe.failure_threshold, 1)


def probe_handler(probe: Probe) -> str:
    if probe.exec is not None:
        return "exec"
    if probe.http_get is not None:
        return "httpGet"
    if probe.tcp_socket is not None:
        return "tcpSocket"
    return "none"


def resolve_port(port: int | str, ports: Sequence[ContainerPort], host_ports: Mapping[str, int]) -> int:
    """A probe's port on 127.0.0.1: a declared port (by name or container port number) maps to
    its host port; any other number is taken as-is. An unknown name raises ValueError."""
    for declared in ports:
        if str(port) in (declared.name, str(declared.container_port)):
            key = port_key(declared)
            if key in host_ports:
                return host_ports[key]
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    raise ValueError(f"probe names port {port!r}, which the container does not declare")
