"""A pod's image changed in place, end to end: the api accepts only that, the node restarts just that container
(process driver and runc), and imagePullPolicy Always asks the registry again on every restart."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from tests.integration.test_pods_run import cluster, dockyard, ok  # noqa: F401
from tests.integration.test_runc import get_pod, runc_cluster  # noqa: F401
from tests.polling import wait_for
from tests.registry_fixtures import registry_factory  # noqa: F401  (runc_cluster's)
from tests.runc_fixtures import busybox_images  # noqa: F401

pytestmark = pytest.mark.slow

FORBIDDEN = "pod updates may not change fields other than `spec.containers[*].image`"


def apply(env, manifest: dict) -> str:
    return ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(manifest).encode())).strip()


def solo_pod(image: str, command: list[str], restart_policy: str = "Never", **container) -> dict:
    """A bare pod: two containers, `main` (the one whose image changes) and a `side` that must not restart."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"}, "spec": {
        "restartPolicy": restart_policy, "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": image, "command": command, **container},
                       {"name": "side", "command": ["sleep", "3600"]}]}}


def main_logs(env, text: str = "", previous: bool = False) -> str | None:
    """`dockyard logs solo -c main` (-p: the run before), once it holds `text`."""
    result = dockyard(env, "logs", "solo", "-c", "main", *(["-p"] if previous else []))
    if result.returncode and b"is waiting to start" in result.stderr:
        return None  # not started yet: no lines, as kubectl answers
    logs = ok(result)
    return logs if text in logs else None


def statuses(pod: dict) -> dict[str, dict]:
    return {s["name"]: s for s in pod["status"].get("containerStatuses", ())}


def restarted_once(env, name: str = "solo"):
    """The pod once its `main` runs again after one restart, else None."""
    pod = get_pod(env, name)
    main = statuses(pod).get("main", {})
    return pod if main.get("restartCount", 0) == 1 and main.get("state") == "running" else None


def running(env, name: str = "solo"):
    pod = get_pod(env, name)
    return pod if pod["status"].get("phase") == "Running" else None


def test_an_image_change_restarts_only_that_container_and_keeps_the_pod(cluster):  # noqa: F811
    env, add_node = cluster
    add_node("n1")
    # The process driver runs commands, not images; the image is still part of the container's identity.
    show_pid = ["sh", "-c", 'echo "started $$$$"; exec sleep 3600']  # $$ is $ once expanded: the shell's pid
    assert apply(env, solo_pod("busybox:1.0", show_pid)) == "pod/solo created"
    before = wait_for(lambda: running(env), what="solo running")
    first = wait_for(lambda: main_logs(env, "started "), what="the first run's line").split()

    assert apply(env, solo_pod("busybox:2.0", show_pid)) == "pod/solo configured"
    after = wait_for(lambda: restarted_once(env), what="main restarted once with the new image")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"]["nodeName"] == before["spec"]["nodeName"] == "n1"
    assert after["spec"]["containers"][0]["image"] == "busybox:2.0"
    main, side = statuses(after)["main"], statuses(after)["side"]
    assert main["lastState"] == "terminated"  # the old run, stopped by the agent: restartPolicy Never or not
    assert side.get("restartCount", 0) == 0 and side["state"] == "running"

    # Logs are kept per run: the new one now, the old one with -p.
    wait_for(lambda: main_logs(env, "started "), what="the second run's line")
    assert main_logs(env, previous=True).split() == first

    # Anything but an image is refused, in Kubernetes' words, and nothing restarts.
    edited = solo_pod("busybox:2.0", ["sh", "-c", "sleep 60"])
    refused = dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(edited).encode())
    assert refused.returncode != 0
    stderr = refused.stderr.decode()
    assert 'Pod "solo" is invalid: spec: Forbidden: ' + FORBIDDEN in stderr and "container main changed" in stderr
    stored = json.loads(ok(dockyard(env, "get", "pod", "solo", "-o", "json")))
    assert stored["spec"]["containers"][0]["command"] == show_pid


def test_an_image_changed_while_the_agent_was_away_is_applied_when_it_is_back(cluster):  # noqa: F811
    env, add_node = cluster
    agent = add_node("n1")
    show_pid = ["sh", "-c", 'echo "started $$$$"; exec sleep 3600']
    apply(env, solo_pod("busybox:1.0", show_pid))
    first = wait_for(lambda: main_logs(env, "started "), what="the first run's line").split()

    agent.kill()  # its containers run on without it
    assert apply(env, solo_pod("busybox:2.0", show_pid)) == "pod/solo configured"
    add_node("n1")  # adopts the old run, sees it started from another image, and replaces it
    wait_for(lambda: restarted_once(env), what="main replaced after the agent came back")
    wait_for(lambda: main_logs(env, "started "), what="the new run's line")
    # The old run's line (twice, if the killed agent had published it without saving how far it got).
    assert set(main_logs(env, previous=True).splitlines()) == {" ".join(first)}


LOOP = ["sh", "-c", 'while true; do echo "tick v$VERSION"; sleep 0.3; done']


def test_runc_moves_a_bare_pod_from_image_1_0_to_2_0(runc_cluster):  # noqa: F811
    env, image, start_agent, state = runc_cluster
    start_agent()
    assert apply(env, solo_pod(f"{image}:1.0", LOOP)) == "pod/solo created"
    before = wait_for(lambda: running(env), what="solo running")
    wait_for(lambda: main_logs(env, "tick v1"), what="1.0's content (VERSION=1 in its config)")

    assert apply(env, solo_pod(f"{image}:2.0", LOOP)) == "pod/solo configured"
    after = wait_for(lambda: restarted_once(env), what="main restarted on 2.0")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    wait_for(lambda: main_logs(env, "tick v2"), what="2.0's content")
    assert "tick v2" not in main_logs(env, previous=True)
    assert statuses(after)["side"].get("restartCount", 0) == 0


def test_runc_a_failed_pull_of_the_new_image_shows_as_at_creation(runc_cluster):  # noqa: F811
    env, image, start_agent, state = runc_cluster
    start_agent()
    apply(env, solo_pod(f"{image}:1.0", LOOP))
    wait_for(lambda: main_logs(env, "tick v1"), what="1.0 running")
    apply(env, solo_pod(f"{image}:9.9", LOOP))

    def pull_failed():
        main = statuses(get_pod(env, "solo")).get("main", {})
        return main if main.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    main = wait_for(pull_failed, what="main waiting on the missing image")
    assert main.get("message") and main["lastState"] == "terminated"
    # Fixed by another image change: it runs again without waiting out the back-off.
    apply(env, solo_pod(f"{image}:2.0", LOOP))
    wait_for(lambda: main_logs(env, "tick v2"), what="2.0 running after the failed pull")


def test_runc_always_asks_the_registry_again_on_every_restart(runc_cluster, busybox_images):  # noqa: F811
    env, image, start_agent, state = runc_cluster
    registry = SimpleNamespace(address=image.split("/", 1)[0])  # the cluster's registry, by its address
    busybox_images.push("1.0", registry, "busybox:moving")
    start_agent()
    # Each run says which content it got, then ends; restartPolicy Always starts it again.
    once = ["sh", "-c", 'echo "run v$VERSION"; sleep 1; exit 1']
    apply(env, solo_pod(f"{image}:moving", once, restart_policy="Always", imagePullPolicy="Always"))
    before = wait_for(lambda: main_logs(env, "run v1") and get_pod(env, "solo"), what="a run of 1.0")

    busybox_images.push("2.0", registry, "busybox:moving")  # the tag moves; the pod's spec does not
    wait_for(lambda: main_logs(env, "run v2"), what="a restart running what the tag names now")
    # Its lines can be shipped before the status that counts the restart: wait for that too.
    after = wait_for(lambda: (found := get_pod(env, "solo")) and statuses(found)["main"].get("restartCount", 0) >= 1
                     and found, what="the restart counted")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
