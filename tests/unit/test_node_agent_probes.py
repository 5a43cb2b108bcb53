"""Probe thresholds and port resolution."""

import pytest

from dockyard.schemas.manifests import ContainerPort, ExecAction, Probe
from dockyard.services.node_agent.probes import (
    LIVENESS,
    READINESS,
    STARTUP,
    has_failed,
    initial_state,
    observe,
    resolve_port,
)

PROBE = Probe(exec=ExecAction(command=("true",)), success_threshold=2, failure_threshold=3)


def run(kind, results, probe=PROBE):
    state = initial_state(kind)
    seen = []
    for success in results:
        state = observe(state, success, probe)
        seen.append((state.ok, has_failed(state, probe)))
    return seen


@pytest.mark.parametrize("kind, results, expected", [
    (READINESS, [], []),
    (READINESS, [True], [(False, False)]),
    (READINESS, [True, True], [(False, False), (True, False)]),
    (READINESS, [True, False, True, True], [(False, False)] * 3 + [(True, False)]),
    (READINESS, [True, True, False, False], [(False, False), (True, False), (True, False), (True, False)]),
    (READINESS, [True, True, False, False, False], [(False, False), (True, False), (True, False), (True, False),
                                                   (False, True)]),
    (LIVENESS, [False, False], [(True, False), (True, False)]),
    (LIVENESS, [False, False, False], [(True, False), (True, False), (False, True)]),
    (LIVENESS, [False, False, True, False, False], [(True, False)] * 5),
    (STARTUP, [False, False, False], [(False, False), (False, False), (False, True)]),
], ids=["none", "one-success", "threshold", "run-broken", "two-failures", "three-failures", "live-two",
        "live-three", "live-reset", "startup-fails"])
def test_thresholds_count_consecutive_results(kind, results, expected):
    assert run(kind, results) == expected


def test_liveness_starts_ok_readiness_does_not():
    assert initial_state(LIVENESS).ok and not initial_state(READINESS).ok and not initial_state(STARTUP).ok


PORTS = (ContainerPort(container_port=8080, name="http"), ContainerPort(container_port=9000))
HOST_PORTS = {"http": 31000, "9000": 31001}


@pytest.mark.parametrize("port, expected", [
    ("http", 31000), (8080, 31000), ("8080", 31000), (9000, 31001), ("9000", 31001), (7000, 7000),
], ids=["by-name", "by-number", "number-as-text", "unnamed", "unnamed-text", "undeclared-number"])
def test_resolve_port(port, expected):
    assert resolve_port(port, PORTS, HOST_PORTS) == expected


def test_an_undeclared_name_is_an_error():
    with pytest.raises(ValueError, match="grpc"):
        resolve_port("grpc", PORTS, HOST_PORTS)
