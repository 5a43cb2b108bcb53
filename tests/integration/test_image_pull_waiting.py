"""A container that never ran, as kubelet tells it: no restart, no previous run, no lines, `logs` says it waits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.integration.test_cli import refused
from tests.integration.test_pods_run import cluster, dockyard  # noqa: F401
from tests.integration.test_runc import LOOP, apply, get_pod, logs_with, pod, runc_cluster  # noqa: F401
from tests.polling import wait_for
from tests.registry_fixtures import registry_factory  # noqa: F401
from tests.runc_fixtures import busybox_images  # noqa: F401

pytestmark = pytest.mark.slow

NO_PREVIOUS = 'previous terminated container "main" in pod "{pod}" not found'


@pytest.fixture
def runc_node(runc_cluster, busybox_images):  # noqa: F811
    """runc_cluster with its node agent started. Yields (env, image, push), push(tag) putting busybox:1.0 under
    another tag."""
    env, image, start_agent, _ = runc_cluster
    start_agent()
    registry = SimpleNamespace(address=image.split("/", 1)[0])  # the cluster's registry, by its address
    yield env, image, lambda tag: busybox_images.push("1.0", registry, f"busybox:{tag}")


def container_status(env, name: str) -> dict:
    return (get_pod(env, name)["status"].get("containerStatuses") or [{}])[0]


def waiting_as(env, name: str, *reasons: str) -> dict | None:
    status = container_status(env, name)
    return status if status.get("state", "waiting") == "waiting" and status.get("reason") in reasons else None


def assert_never_ran(status: dict) -> None:
    assert status.get("restartCount", 0) == 0, status
    assert not status.get("lastState") and not status.get("startedAt"), status


def test_a_pull_failure_is_a_wait_not_a_run_and_logs_say_so_until_the_tag_exists(runc_node):
    env, image, push = runc_node
    apply(env, pod("late", f"{image}:3.0", LOOP, restart_policy="Always"))

    waiting = wait_for(lambda: waiting_as(env, "late", "ErrImagePull", "ImagePullBackOff"), what="late pulling")
    assert waiting.get("message"), waiting  # the cause stays in the status, where describe shows it
    assert_never_ran(waiting)
    said = refused(dockyard(env, "logs", "late"))
    assert said.strip() == \
        'error: container "main" in pod "late" is waiting to start: trying and failing to pull image'
    assert NO_PREVIOUS.format(pod="late") in refused(dockyard(env, "logs", "late", "-p"))
    # Later attempts (another reason or message) leave it a container that never ran.
    later = wait_for(lambda: (status := waiting_as(env, "late", "ErrImagePull", "ImagePullBackOff"))
                     and status != waiting and status, what="late trying its pull again")
    assert_never_ran(later)

    push("3.0")
    logs = wait_for(lambda: logs_with(env, "late", "tick"), what="late running once its tag exists")
    assert "dockyard:" not in logs and "pulling image" not in logs  # the agent's words are not the container's
    # Its lines can be shipped before its status says it runs: wait for the status too.
    running = wait_for(lambda: (status := container_status(env, "late")).get("state") == "running" and status,
                       what="late's status running")
    assert_never_ran({**running, "startedAt": ""})  # its first run: no restart, no previous run
    assert NO_PREVIOUS.format(pod="late") in refused(dockyard(env, "logs", "late", "-p"))


def test_a_process_container_that_cannot_run_as_given_waits_to_start(cluster):  # noqa: F811
    env, add_node = cluster
    add_node("n1")
    nothing = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idle"},
               "spec": {"containers": [{"name": "main", "image": "busybox:1.0"}]}}  # no command to run
    apply(env, nothing)

    status = wait_for(lambda: waiting_as(env, "idle", "CreateContainerConfigError"), what="idle refused")
    assert "command and args" in status.get("message", ""), status
    assert_never_ran(status)
    said = refused(dockyard(env, "logs", "idle"))
    assert said.strip() == 'error: container "main" in pod "idle" is waiting to start: CreateContainerConfigError'
    assert NO_PREVIOUS.format(pod="idle") in refused(dockyard(env, "logs", "idle", "-p"))
