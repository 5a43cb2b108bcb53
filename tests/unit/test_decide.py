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
    outcome, event = decide_apply(current, make_pod("p", restartPolicy="Never"), now=NOW, new_uid="x")
    assert isinstance(event, PodUpdated) and event.pod.spec.node_name == "n1"


def test_delete_needs_something_to_delete():
    assert decide_delete(None, "Deployment") is None
    assert isinstance(decide_delete(stored(make_deployment()), "Deployment"), DeploymentDeleted)
