"""A pod's image changed in place: the api's rule (like Kubernetes, only containers' images may change on an
existing pod) and a hollow node restarting just those containers."""

from __future__ import annotations


import msgspec
import pytest

from dockyard.schemas.events import PodUpdated
from dockyard.services.api.decide import POD_UPDATE_FORBIDDEN, Refusal, decide_apply
from dockyard.services.controller.reconcile import OWNER_ANNOTATION
from dockyard.services.node_agent.hollow import HollowPod
from tests.builders import make_pod
from tests.polling import eventually

NOW = "2026-11-26T10:00:00Z"
_replace = msgspec.structs.replace


def two_containers(app: str = "busybox:1.0", side: str = "busybox:1.0", **app_fields) -> dict:
    return {"containers": [{"name": "app", "image": app, "command": ["sleep", "3600"], **app_fields},
                           {"name": "side", "image": side, "command": ["sleep", "60"]}]}


def bound(pod, node: str = "n1", generation: int = 1):
    """`pod` as the log holds it once created and scheduled."""
    meta = _replace(pod.metadata, uid="uid-1", generation=generation, creation_timestamp="2026-11-25T00:00:00Z")
    return _replace(pod, metadata=meta, spec=_replace(pod.spec, node_name=node))


@pytest.mark.parametrize("change", [two_containers(app="busybox:2.0"),
                                    two_containers(app="busybox:2.0", side="busybox@sha256:" + "a" * 64)],
                         ids=["one-image", "both-images"])
def test_an_image_change_updates_the_pod_in_place(change):
    current = bound(make_pod("p", **two_containers()), generation=2)
    outcome, event = decide_apply(current, make_pod("p", **change), now=NOW, new_uid="unused")
    assert outcome == "configured" and isinstance(event, PodUpdated)
    pod = event.pod
    assert (pod.metadata.uid, pod.metadata.generation, pod.spec.node_name) == ("uid-1", 3, "n1")
    assert [c.image for c in pod.spec.containers] == [c["image"] for c in change["containers"]]


@pytest.mark.parametrize("change,named", [
    (two_containers(app="busybox:2.0", command=["sleep", "1"]), "container app changed"),
    ({"containers": two_containers()["containers"][::-1]}, "containers reordered"),
    ({"containers": two_containers(app="busybox:2.0")["containers"][:1]}, "-container side"),
    ({**two_containers(app="busybox:2.0"), "restartPolicy": "Never"}, "spec changed"),
    ({"containers": [*two_containers()["containers"], {"name": "more", "image": "busybox:1.0"}]},
     "+container more"),
], ids=["image-and-command", "reordered", "container-removed", "image-and-restart-policy", "container-added"])
def test_anything_else_is_refused_with_kubernetes_words(change, named):
    current = bound(make_pod("p", **two_containers()))
    with pytest.raises(Refusal) as refused:
        decide_apply(current, make_pod("p", **change), now=NOW, new_uid="unused")
    message = str(refused.value)
    assert refused.value.code == "Invalid"
    assert message.startswith(f'Pod "p" is invalid: spec: Forbidden: {POD_UPDATE_FORBIDDEN} (')
    assert named in message and "image app" not in message  # what else changed, not the image
    assert message.endswith("delete and re-create the pod, or use a Deployment")


def test_a_deployment_owned_pod_follows_the_same_rule():
    def owned(**spec):
        pod = make_pod("web-abc", **spec)
        annotations = {OWNER_ANNOTATION: "web", **pod.metadata.annotations}
        return _replace(pod, metadata=_replace(pod.metadata, annotations=annotations))

    outcome, event = decide_apply(bound(owned(**two_containers())), owned(**two_containers(side="busybox:2.0")),
                                  now=NOW, new_uid="unused")
    assert outcome == "configured" and event.pod.spec.containers[1].image == "busybox:2.0"


async def test_a_hollow_pod_restarts_the_containers_whose_image_changed():
    changes, pulled = [], []
    current = bound(make_pod("p", **two_containers()))
    worker = HollowPod(current, lambda: changes.append(1), start_delay=0, on_update=pulled.append)
    worker.start()

    async def running() -> bool:
        return all(s.state == "running" for s in worker.container_statuses())
    await eventually(running, timeout=10, interval=0.01, what="the hollow pod to run")
    worker.update(current)  # a status or label change: nothing to do
    assert not pulled and [s.restart_count for s in worker.container_statuses()] == [0, 0]

    updated = bound(make_pod("p", **two_containers(side="busybox:2.0")))
    worker.update(updated)
    assert pulled == [updated]  # the node now holds the new image
    assert [(s.name, s.restart_count, s.state) for s in worker.container_statuses()] == [
        ("app", 0, "running"), ("side", 1, "running")]
    await worker.stop()
