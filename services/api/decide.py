"""Pure decisions of the api: what an apply or a delete does to an aggregate."""

from __future__ import annotations

import msgspec

from dockyard.schemas.base import Event
from dockyard.schemas.events import (
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentUpdated,
    NodeDeregistered,
    NodeRegistered,
    NodeUpdated,
    PodCreated,
    PodDeleted,
    PodUpdated,
)
from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.state import Resource

_replace = msgspec.structs.replace

# kind -> (subject kind token, created, updated, deleted)
LIFECYCLE: dict[str, tuple[str, type[Event], type[Event], type[Event]]] = {
    "Deployment": ("deployment", DeploymentCreated, DeploymentUpdated, DeploymentDeleted),
    "Pod": ("pod", PodCreated, PodUpdated, PodDeleted),
    "Node": ("node", NodeRegistered, NodeUpdated, NodeDeregistered),
}
_PAYLOAD_FIELD = {Deployment: "deployment", Pod: "pod", Node: "node"}

CREATED = "created"
CONFIGURED = "configured"
UNCHANGED = "unchanged"
DELETED = "deleted"


def subject_kind(kind: str) -> str:
    return LIFECYCLE[kind][0]


def _event(cls: type[Event], resource: Resource) -> Event:
    return cls(**{_PAYLOAD_FIELD[type(resource)]: resource})


SERVER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/",)


def _keep_server_fields(current: Resource, incoming: Resource) -> Resource:
    """Fields the cluster sets (a pod's node, a deployment's revision) survive an apply that leaves them out."""
    if isinstance(current, Pod) and not incoming.spec.node_name and current.spec.node_name:
        incoming = _replace(incoming, spec=_replace(incoming.spec, node_name=current.spec.node_name))
    kept = {k: v for k, v in current.metadata.annotations.items() if k.startswith(SERVER_ANNOTATION_PREFIXES)}
    if kept:
        annotations = dict(sorted({**incoming.metadata.annotations, **kept}.items()))
        incoming = _replace(incoming, metadata=_replace(incoming.metadata, annotations=annotations))
    return incoming


def decide_apply(current: Resource | None, incoming: Resource, *, now: str, new_uid: str) -> tuple[str, Event | None]:
    """created / configured / unchanged, and the event that says so (None when unchanged).

    A changed spec bumps metadata.generation; a change of labels or annotations does not.
    """
    _, created, updated, _ = LIFECYCLE[incoming.kind]
    if current is None:
        meta = _replace(incoming.metadata, uid=new_uid, generation=1, creation_timestamp=now, resource_version="")
        return CREATED, _event(created, _replace(incoming, metadata=meta))
    incoming = _keep_server_fields(current, incoming)
    spec_changed = incoming.spec != current.spec
    meta_changed = (incoming.metadata.labels, incoming.metadata.annotations) != (
        current.metadata.labels,
        current.metadata.annotations,
    )
    if not spec_changed and not meta_changed:
        return UNCHANGED, None
    meta = _replace(
        incoming.metadata,
        uid=current.metadata.uid,
        generation=current.metadata.generation + (1 if spec_changed else 0),
        creation_timestamp=current.metadata.creation_timestamp,
        resource_version="",
    )
    return CONFIGURED, _event(updated, _replace(incoming, metadata=meta, status=type(incoming.status)()))


def decide_delete(current: Resource | None, kind: str) -> Event | None:
    """The deletion event, or None if there is nothing to delete."""
    return None if current is None else LIFECYCLE[kind][3]()
