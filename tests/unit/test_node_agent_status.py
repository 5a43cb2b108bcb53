"""Container transitions and the pod status built from them."""

import pytest

from dockyard.schemas.manifests import Condition, ContainerStatus, PodStatus
from dockyard.services.node_agent.logs import waiting_to_start
from dockyard.services.node_agent.status import (
    backing_off,
    container_created,
    exit_code_of,
    never_ran,
    pod_phase,
    pod_status,
    run_ended,
    run_started,
    waiting,
    with_ready,
)

T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"


def c(name="main", state="running", ready=False, exit_code=None, last_state="", reason=""):
    return ContainerStatus(name=name, state=state, ready=ready, exit_code=exit_code, last_state=last_state,
                           reason=reason)


@pytest.mark.parametrize("containers, expected", [
    ([], "Pending"),
    ([c(state="waiting", reason="ContainerCreating")], "Pending"),
    ([c(), c("b", state="waiting", reason="ContainerCreating")], "Pending"),
    ([c()], "Running"),
    ([c(state="waiting", reason="CrashLoopBackOff", last_state="terminated")], "Running"),
    ([c(), c("b", state="terminated", exit_code=1)], "Running"),
    ([c(state="terminated", exit_code=0), c("b", state="terminated", exit_code=0)], "Succeeded"),
    ([c(state="terminated", exit_code=0), c("b", state="terminated", exit_code=2)], "Failed"),
    ([c(state="terminated", exit_code=None)], "Failed"),
], ids=["no-containers", "creating", "one-creating", "running", "backing-off", "one-ended", "all-succeeded",
        "one-failed", "unknown-exit"])
def test_pod_phase(containers, expected):
    assert pod_phase(containers, "Never") == expected


@pytest.mark.parametrize("policy, exit_codes, expected", [
    ("Always", (0,), "Running"), ("Always", (None,), "Running"), ("Always", (1, 0), "Running"),
    ("OnFailure", (0, 0), "Succeeded"), ("OnFailure", (1,), "Running"), ("OnFailure", (None,), "Running"),
    ("Never", (0,), "Succeeded"), ("Never", (0, 1), "Failed"),
])
def test_containers_that_all_ended_are_the_pods_end_only_when_none_will_start_again(policy, exit_codes, expected):
    # e.g. an agent adopting containers that died while it was away (`dockyard down`, then `up`): a
    # deployment's pod reported Failed in between would be deleted and replaced by its ReplicaSet.
    containers = [c(f"c{i}", state="terminated", exit_code=code) for i, code in enumerate(exit_codes)]
    assert pod_phase(containers, policy) == expected


def conditions(status):
    return {cond.type: (cond.status, cond.reason, cond.last_transition_time) for cond in status.conditions}


def test_a_new_pod_is_scheduled_initialized_and_not_ready():
    status = pod_status([c(state="waiting", reason="ContainerCreating")], PodStatus(), T0, "Never")
    assert status.phase == "Pending" and status.host_ip == "127.0.0.1" and status.start_time == T0
    assert conditions(status) == {
        "PodScheduled": ("True", "", T0), "Initialized": ("True", "", T0),
        "ContainersReady": ("False", "ContainersNotReady", T0), "Ready": ("False", "ContainersNotReady", T0)}
    assert status.conditions[2].message == "containers with unready status: [main]"


def test_transition_times_move_only_when_the_status_does():
    scheduled = PodStatus(conditions=(Condition(type="PodScheduled", status="True", last_transition_time="S"),))
    pending = pod_status([c(ready=False)], scheduled, T0, "Never")
    ready = pod_status([c(ready=True)], pending, T1, "Never")
    still = pod_status([c(ready=True)], ready, T2, "Never")
    assert conditions(ready)["Ready"] == ("True", "", T1) and conditions(ready)["PodScheduled"][2] == "S"
    assert conditions(ready)["Initialized"][2] == T0 and ready.start_time == T0
    assert still == ready


def test_a_finished_pod_is_not_ready_because_it_completed():
    status = pod_status([c(state="terminated", exit_code=0)], PodStatus(), T0, "Never")
    assert status.phase == "Succeeded" and conditions(status)["Ready"] == ("False", "PodCompleted", T0)


def test_ready_needs_every_container():
    status = pod_status([c("a", ready=True), c("b", ready=False)], PodStatus(), T0, "Never")
    assert conditions(status)["ContainersReady"][0] == "False"
    assert status.conditions[3].message == "containers with unready status: [b]"


def test_a_crash_and_restart_as_kubelet_reports_them():
    created = container_created("main", {"http": 31000})
    first = run_started(created, T0, restarted=False)
    assert (first.state, first.started_at, first.restart_count, first.host_ports) == ("running", T0, 0, {"http": 31000})
    crashed = run_ended(with_ready(first, True), 1)
    assert (crashed.state, crashed.reason, crashed.exit_code, crashed.ready) == ("terminated", "Error", 1, False)
    again = run_started(crashed, T1, restarted=True)
    assert (again.state, again.restart_count, again.last_state, again.last_reason, again.last_exit_code) == (
        "running", 1, "terminated", "Error", 1)
    waiting = backing_off(run_ended(again, 137))
    assert (waiting.state, waiting.reason, waiting.exit_code, waiting.last_exit_code) == (
        "waiting", "CrashLoopBackOff", None, 137)
    third = run_started(waiting, T2, restarted=True)
    assert (third.restart_count, third.last_exit_code, third.reason) == (2, 137, "")


@pytest.mark.parametrize("exit_code, reason", [(0, "Completed"), (3, "Error"), (None, "Unknown")],
                         ids=["clean", "failed", "unknown"])
def test_terminated_reasons(exit_code, reason):
    assert run_ended(c(), exit_code).reason == reason


@pytest.mark.parametrize("exit_code, signal", [(0, 0), (3, 0), (128, 0), (137, 9), (143, 15), (255, 0), (None, 0)],
                         ids=["clean", "code", "128", "sigkill", "sigterm", "255", "unknown"])
def test_the_signal_that_ended_a_run(exit_code, signal):
    ended = run_ended(c(), exit_code)

    assert ended.signal == signal
    assert run_started(ended, "2026-01-01T00:00:00Z", restarted=True).signal == 0


@pytest.mark.parametrize("returncode, expected", [(0, 0), (3, 3), (-9, 137), (-15, 143)],
                         ids=["zero", "code", "sigkill", "sigterm"])
def test_exit_code_of(returncode, expected):
    assert exit_code_of(returncode) == expected


def test_only_a_running_container_can_be_ready():
    assert not with_ready(c(state="waiting"), True).ready and with_ready(c(), True).ready


def test_a_waiting_container_says_why_until_it_runs():
    held = waiting(container_created("main", {}), "CreateContainerConfigError", "host port 8080 is in use by default/a")

    assert (held.state, held.reason, held.message) == ("waiting", "CreateContainerConfigError",
                                                       "host port 8080 is in use by default/a")
    assert run_started(held, T1, restarted=False).message == ""
    assert run_ended(held, 1).message == ""
    assert backing_off(run_ended(held, 1)).message == ""


CREATED = container_created("main", {})
PULL_FAILED = waiting(CREATED, "ErrImagePull", "manifest unknown")
RAN = run_ended(run_started(CREATED, T0, restarted=False), 1)


@pytest.mark.parametrize("status, expected", [
    (CREATED, True),
    (PULL_FAILED, True),
    (waiting(PULL_FAILED, "ImagePullBackOff", "Back-off pulling image"), True),
    (waiting(CREATED, "CreateContainerConfigError", "host port 80 is in use by default/web"), True),
    (run_started(PULL_FAILED, T0, restarted=False), False),
    (RAN, False),
    (backing_off(RAN), False),
    (waiting(backing_off(RAN), "ErrImagePull", "manifest unknown"), False),  # it ran before its new image
], ids=["created", "pull-failed", "pull-back-off", "config-error", "running", "ended", "crash-back-off",
        "pull-after-a-run"])
def test_a_container_never_ran_while_it_only_waited(status, expected):
    assert never_ran(status) is expected


def test_its_first_run_after_a_failed_pull_is_no_restart_and_has_no_previous_run():
    first = run_started(waiting(PULL_FAILED, "ImagePullBackOff"), T1, restarted=not never_ran(PULL_FAILED))
    assert first.restart_count == 0 and not first.last_state and first.started_at == T1


@pytest.mark.parametrize("reason, expected", [
    ("ErrImagePull", "trying and failing to pull image"),
    ("ImagePullBackOff", "trying and failing to pull image"),
    ("InvalidImageName", "trying and failing to pull image"),
    ("ContainerCreating", "ContainerCreating"),
    ("CreateContainerConfigError", "CreateContainerConfigError"),
], ids=["err-image-pull", "image-pull-back-off", "invalid-name", "creating", "config-error"])
def test_logs_of_a_container_that_never_ran_say_why_in_kubelets_words(reason, expected):
    said = waiting_to_start(waiting(CREATED, reason, "the details"), "web-abc")
    assert said == f'container "main" in pod "web-abc" is waiting to start: {expected}'
