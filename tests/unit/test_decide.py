"""The api's pure decisions: what an apply or delete does to an aggregate."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.events import DeploymentCreated, DeploymentDeleted, DeploymentUpdated, PodUpdated
from dockyard.services.api.decide import decide_apply, decide_delete
from tests.builders import make_deployment, make_pod

NOW = "2026-11-26T10:00:00Z"
_replace = msgspec.structs.replace


def stored(resource, generation: int = 1, uid: str = "uid-1"):
    return _replace(resource, metadata=_replace(resource.metadata, uid=uid, generation=generation,
                                                creation_timestamp="2026-11-25T00:00:00Z"))


def test_create_stamps_uid_generation_and_time():
    result, event = decide_apply(None, make_deployment("web"), now=NOW, new_uid="u-9")
    assert result == "created" and isinstance(event, DeploymentCreated)
    meta = event.deployment.metadata
    assert (meta.uid, meta.generation, meta.creation_timestamp) == ("u-9", 1, NOW)


@pytest.mark.parametrize(
    "change,result,generation",
    [
        ({}, "unchanged", None),
        ({"replicas": 5}, "configured", 3),
        ({"image": "nginx:1.28"}, "configured", 3),
    ],
    ids=["same-manifest", "replicas", "image"],
)
def test_spec_changes_bump_the_generation(change, result, generation):
    current = stored(make_deployment("web"), generation=2)
    outcome, event = decide_apply(current, make_deployment("web", **change), now=NOW, new_uid="unused")
    assert outcome == result
    if generation is None:
        assert event is None
    else:
        assert isinstance(event, DeploymentUpdated)
        assert event.deployment.metadata.generation == generation
        assert event.deployment.metadata.uid == "uid-1"
        assert event.deployment.metadata.creation_timestamp == "2026-11-25T00:00:00Z"


def test_label_change_configures_without_a_new_generation():
    current = stored(make_deployment("web"), generation=4)
    relabelled = make_deployment("web")
    relabelled = _replace(relabelled, metadata=_replace(relabelled.metadata, labels={"app": "web", "tier": "1"}))
    outcome, event = decide_apply(current, relabelled, now=NOW, new_uid="unused")
    assert outcome == "configured" and event.deployment.metadata.generation == 4


def test_apply_keeps_the_node_a_pod_was_scheduled_to():
    current = stored(make_pod("p"))
    current = _replace(current, spec=_replace(current.spec, node_name="n1"))
    assert decide_apply(current, make_pod("p"), now=NOW, new_uid="x") == ("unchanged", None)
    relabelled = make_pod("p")
    relabelled = _replace(relabelled, metadata=_replace(relabelled.metadata, labels={"tier": "web"}))
    outcome, event = decide_apply(current, relabelled, now=NOW, new_uid="x")
    assert isinstance(event, PodUpdated) and event.pod.spec.node_name == "n1"


def _container(**fields):
    return {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"], **fields}]}


@pytest.mark.parametrize("change", [{"restartPolicy": "Never"}, _container(command=["sleep", "60"]),
                                    _container(securityContext={"runAsUser": 1000}), {"nodeName": "n2"}],
                         ids=["restart-policy", "command", "security-context", "node"])
def test_a_pods_spec_cannot_change_once_created(change):
    from dockyard.services.api.decide import Refusal

    current = stored(make_pod("p"))
    with pytest.raises(Refusal, match=r'Pod "p" is invalid: spec: Forbidden: .*delete and re-create the pod') as err:
        decide_apply(current, make_pod("p", **change), now=NOW, new_uid="x")
    assert err.value.code == "Invalid"


def test_a_pods_metadata_can_change_and_its_generation_stays():
    current = stored(make_pod("p"), generation=1)
    annotated = make_pod("p")
    annotated = _replace(annotated, metadata=_replace(annotated.metadata, annotations={"note": "x"}))
    outcome, event = decide_apply(current, annotated, now=NOW, new_uid="x")
    assert outcome == "configured" and event.pod.metadata.generation == 1
    assert event.pod.metadata.annotations == {"note": "x"}


def test_delete_needs_something_to_delete():
    assert decide_delete(None, "Deployment") is None
    assert isinstance(decide_delete(stored(make_deployment()), "Deployment"), DeploymentDeleted)


# ---------------------------------------------------------------- scale, rollout, cordon

from dockyard.eventlog import EventRecord  # noqa: E402
from dockyard.schemas.events import DeploymentRevisionRecorded, NodeUpdated  # noqa: E402
from dockyard.schemas.manifests import Node, NodeSpec, ObjectMeta  # noqa: E402
from dockyard.services.api.decide import (  # noqa: E402
    RESTARTED_AT,
    Refusal,
    decide_cordon,
    decide_rollout,
    decide_scale,
)


def revision_record(seq: int, revision: int, image: str) -> EventRecord:
    template = make_deployment("web", image=image).spec.template
    event = DeploymentRevisionRecorded(revision=revision, template_hash=f"h{revision}", template=template)
    return EventRecord(seq=seq, subject="dy.evt.deployment.default.web", type=event.type_name(), version=1,
                       time=NOW, actor="c", correlation_id="", causation_id="", msg_id="", event=event)


def test_scale_bumps_generation_and_refuses_what_is_not_there():
    outcome, event = decide_scale(stored(make_deployment("web"), generation=3), "web", 7)
    assert outcome == "scaled" and event.deployment.spec.replicas == 7 and event.deployment.metadata.generation == 4
    assert decide_scale(stored(make_deployment("web", replicas=7)), "web", 7) == ("unchanged", None)
    with pytest.raises(Refusal):
        decide_scale(None, "web", 2)


@pytest.mark.parametrize(
    "current_image,to_revision,expected_image",
    [("nginx:3", 0, "nginx:2"), ("nginx:3", 1, "nginx:1")],
    ids=["previous", "to-revision-1"],
)
def test_undo_returns_to_a_recorded_template(current_image, to_revision, expected_image):
    history = [revision_record(1, 1, "nginx:1"), revision_record(2, 2, "nginx:2"), revision_record(3, 3, "nginx:3")]
    current = stored(make_deployment("web", image=current_image))
    outcome, event = decide_rollout(current, "web", "undo", history, NOW, to_revision)
    assert outcome == "rolled back"
    assert event.deployment.spec.template.spec.containers[0].image == expected_image


def test_undo_cannot_reach_past_the_revision_history_limit():
    history = [revision_record(i, i, f"nginx:{i}") for i in range(1, 5)]
    current = stored(make_deployment("web", image="nginx:4"))
    current = _replace(current, spec=_replace(current.spec, revision_history_limit=1))
    with pytest.raises(Refusal):
        decide_rollout(current, "web", "undo", history, NOW, 1)
    assert decide_rollout(current, "web", "undo", history, NOW, 3)[0] == "rolled back"


def test_restart_pause_resume():
    current = stored(make_deployment("web"))
    _, event = decide_rollout(current, "web", "restart", [], NOW)
    assert event.deployment.spec.template.metadata.annotations[RESTARTED_AT] == NOW
    outcome, event = decide_rollout(current, "web", "pause", [], NOW)
    assert outcome == "paused" and event.deployment.spec.paused
    assert decide_rollout(current, "web", "resume", [], NOW) == ("unchanged", None)


def test_cordon_and_uncordon():
    node = Node(metadata=ObjectMeta(name="n1", uid="u", generation=1), spec=NodeSpec(capacity={"cpu": "2"}))
    outcome, event = decide_cordon(node, "n1", True)
    assert outcome == "cordoned" and isinstance(event, NodeUpdated) and event.node.spec.unschedulable
    assert decide_cordon(node, "n1", False) == ("already uncordoned", None)
