"""Pod and container status in Kubernetes' shape, from what the driver observed. Pure: no I/O, the clock passed in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from dockyard.schemas.manifests import Condition, ContainerStatus, PodStatus

_replace = msgspec.structs.replace

HOST_IP = "127.0.0.1"

# Container reasons, as kubelet spells them.
CONTAINER_CREATING = "ContainerCreating"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
COMPLETED = "Completed"
ERROR = "Error"
UNKNOWN = "Unknown"  # an adopted process ended while no one could see its exit code
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # it cannot run as specified
START_ERROR = "StartError"  # the process could not be started at all
START_ERROR_EXIT_CODE = 128

# Pod condition reasons.
CONTAINERS_NOT_READY = "ContainersNotReady"
POD_COMPLETED = "PodCompleted"

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
FINISHED_PHASES = (SUCCEEDED, FAILED)


# ---------------------------------------------------------------- containers


def exit_code_of(returncode: int) -> int:
    """A process' return code as a container exit code: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def terminated_reason(exit_code: int | None) -> str:
    if exit_code is None:
        return UNKNOWN
    return COMPLETED if exit_code == 0 else ERROR


def container_created(name: str, host_ports: Mapping[str, int], restart_count: int = 0) -> ContainerStatus:
    """A container the agent is about to start for the first time."""
    return ContainerStatus(name=name, state="waiting", reason=CONTAINER_CREATING, restart_count=restart_count,
                           host_ports=dict(host_ports))


def _remember_exit(status: ContainerStatus) -> ContainerStatus:
    """A terminated run becomes the lastState of what comes next."""
    if status.state != "terminated":
        return status
    return _replace(status, last_state="terminated", last_reason=status.reason, last_exit_code=status.exit_code)


def waiting(status: ContainerStatus, reason: str, message: str = "") -> ContainerStatus:
    """Waiting to run, and why: kubelet's state.waiting reason and message."""
    return _replace(status, state="waiting", reason=reason, message=message, ready=False)


def never_ran(status: ContainerStatus) -> bool:
    """Waiting and not run yet (created, pulling its image, refused as specified): no start, no run before.
    Its first run is no restart, and it has no lines to show."""
    return status.state == "waiting" and not status.started_at and not status.last_state and not status.restart_count


def run_started(status: ContainerStatus, started_at: str, restarted: bool) -> ContainerStatus:
    status = _remember_exit(status)
    return _replace(status, state="running", reason="", message="", exit_code=None, signal=0, started_at=started_at,
                    ready=False, restart_count=status.restart_count + (1 if restarted else 0))


def signal_of(exit_code: int | None) -> int:
    """The signal an exit code says ended a run (128 + N, N a Linux signal number), else 0."""
    return exit_code - 128 if exit_code is not None and 128 < exit_code <= 128 + 64 else 0


def run_ended(status: ContainerStatus, exit_code: int | None, reason: str = "") -> ContainerStatus:
    return _replace(status, state="terminated", reason=reason or terminated_reason(exit_code), message="",
                    exit_code=exit_code, signal=signal_of(exit_code), ready=False)


def backing_off(status: ContainerStatus) -> ContainerStatus:
    """Waiting out the back-off after a run ended: CrashLoopBackOff, the run kept as lastState."""
    status = _remember_exit(status)
    return _replace(waiting(status, CRASH_LOOP_BACK_OFF), exit_code=None, signal=0)


def with_ready(status: ContainerStatus, ready: bool) -> ContainerStatus:
    ready = ready and status.state == "running"
    return status if status.ready == ready else _replace(status, ready=ready)


# ---------------------------------------------------------------- pods


def pod_phase(containers: Sequence[ContainerStatus], restart_policy: str) -> str:
    """Pending until every container has run; Succeeded or Failed once all ended for good; else Running.

    As kubelet's getPhase: a container waiting out a back-off (it has a lastState) counts as running,
    and containers that all ended are only the end under a policy that will not start them again:
    under Always (or OnFailure after a failure) the pod is Running, restarting — never Failed, which
    would make a ReplicaSet replace it (as an agent adopting containers that died while it was away saw).
    """
    if not containers or any(c.state == "waiting" and not c.last_state for c in containers):
        return PENDING
    if all(c.state == "terminated" for c in containers):
        succeeded = all(c.exit_code == 0 for c in containers)
        if restart_policy == "Always" or (restart_policy == "OnFailure" and not succeeded):
            return RUNNING
        return SUCCEEDED if succeeded else FAILED
    return RUNNING


def _condition(previous: Sequence[Condition], type_: str, status: bool, now: str,
               reason: str = "", message: str = "") -> Condition:
    """The condition now, keeping its lastTransitionTime if its status did not change."""
    value = "True" if status else "False"
    before = next((c for c in previous if c.type == type_), None)
    since = before.last_transition_time if before is not None and before.status == value else ""
    return Condition(type=type_, status=value, reason=reason, message=message,
                     last_transition_time=since or now)


def pod_status(containers: Sequence[ContainerStatus], previous: PodStatus, now: str, restart_policy: str,
               host_ip: str = HOST_IP) -> PodStatus:
    """The pod's status from its containers' (in spec order), `previous` supplying transition times."""
    phase = pod_phase(containers, restart_policy)
    unready = [c.name for c in containers if not c.ready]
    reason = message = ""
    if phase in FINISHED_PHASES:
        reason = POD_COMPLETED
    elif unready:
        reason, message = CONTAINERS_NOT_READY, f"containers with unready status: [{' '.join(unready)}]"
    ready = not reason
    scheduled = next((c for c in previous.conditions if c.type == "PodScheduled" and c.status == "True"), None)
    conditions = (
        scheduled or _condition(previous.conditions, "PodScheduled", True, now),
        _condition(previous.conditions, "Initialized", True, now),
        _condition(previous.conditions, "ContainersReady", ready, now, reason, message),
        _condition(previous.conditions, "Ready", ready, now, reason, message),
    )
    return PodStatus(phase=phase, conditions=conditions, container_statuses=tuple(containers), host_ip=host_ip,
                     start_time=previous.start_time or now)
