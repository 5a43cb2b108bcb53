"""State from events: the pure fold every projection, query and replay shares."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from dockyard.eventlog import EventRecord
from dockyard.schemas.events import (
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentRevisionRecorded,
    DeploymentStatusChanged,
    DeploymentUpdated,
    NodeDeregistered,
    NodeRegistered,
    NodeStatusChanged,
    NodeUpdated,
    PodCreated,
    PodDeleted,
    PodScheduled,
    PodStatusChanged,
    PodUnschedulable,
    PodUpdated,
)
from dockyard.schemas.manifests import Condition, ContainerImage, Deployment, Node, Pod

Resource = Deployment | Pod | Node

_replace = msgspec.structs.replace


def _stamped(resource: Resource, seq: int) -> Resource:
    return _replace(resource, metadata=_replace(resource.metadata, resource_version=str(seq)))


def _with_spec_of(current: Resource | None, incoming: Resource, seq: int) -> Resource:
    """The incoming metadata and spec, the current status (status is never applied)."""
    if current is not None:
        incoming = _replace(incoming, status=current.status)
    return _stamped(incoming, seq)


def evolve(current: Resource | None, record: EventRecord) -> Resource | None:
    """The resource after one event; None once it is deleted (or before it exists)."""
    event = record.event
    match event:
        case DeploymentCreated(deployment=obj) | DeploymentUpdated(deployment=obj):
            return _with_spec_of(current, obj, record.seq)
        case PodCreated(pod=obj) | PodUpdated(pod=obj):
            return _with_spec_of(current, obj, record.seq)
        case NodeRegistered(node=obj) | NodeUpdated(node=obj):
            return _with_spec_of(current, obj, record.seq)
        case DeploymentDeleted() | PodDeleted() | NodeDeregistered():
            return None
    if current is None:
        return None  # a status event for something deleted or never created
    match event:
        case DeploymentStatusChanged(status=status) | PodStatusChanged(status=status) | NodeStatusChanged(
            status=status
        ):
            return _stamped(_replace(current, status=status), record.seq)
        case PodScheduled(node_name=node_name):
            condition = Condition(type="PodScheduled", status="True", last_transition_time=record.time)
            scheduled = _replace(current, spec=_replace(current.spec, node_name=node_name))
            return _stamped(_with_condition(scheduled, condition), record.seq)
        case PodUnschedulable(message=message):
            condition = Condition(type="PodScheduled", status="False", reason="Unschedulable", message=message,
                                  last_transition_time=record.time)
            return _stamped(_with_condition(current, condition), record.seq)
        case DeploymentRevisionRecorded(revision=revision):
            annotations = {**current.metadata.annotations, REVISION_ANNOTATION: str(revision)}
            meta = _replace(current.metadata, annotations=dict(sorted(annotations.items())))
            return _stamped(_replace(current, metadata=meta), record.seq)
    return current


REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


def _with_condition(pod: Pod, condition: Condition) -> Pod:
    others = tuple(c for c in pod.status.conditions if c.type != condition.type)
    return _replace(pod, status=_replace(pod.status, conditions=(condition, *others)))


def fold(records: Iterable[EventRecord], current: Resource | None = None) -> Resource | None:
    for record in records:
        current = evolve(current, record)
    return current


HeldImages = dict[str, tuple[ContainerImage, ...]]  # node name -> its last node.images_reported


def with_held_images(node: Node | None, held: HeldImages) -> Node | None:
    """The node with the images its own `nodeimages` aggregate last reported, when it reported any.

    The report wins over the copy in a NodeStatusChanged, whoever wrote that status and when: a
    status is written from what its writer read, which may predate the report. A node never
    reported for keeps its status's images (an older log, where the status carried them).
    """
    if node is None or node.metadata.name not in held:
        return node
    images = held[node.metadata.name]
    if node.status.images == images:
        return node
    # The resource version stays the node subject's: a report is no change of the node's own.
    return _replace(node, status=_replace(node.status, images=images))
