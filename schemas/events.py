"""Events of the cluster's aggregates: deployments, pods, nodes, and the command record."""

from __future__ import annotations

from typing import Union

import msgspec

from dockyard.schemas.base import Event
from dockyard.schemas.manifests import (
    Deployment,
    DeploymentStatus,
    Node,
    NodeStatus,
    Pod,
    PodStatus,
)


class DeploymentCreated(Event, frozen=True, kw_only=True, tag="deployment.created.v1"):
    KIND = "deployment"
    deployment: Deployment


class DeploymentUpdated(Event, frozen=True, kw_only=True, tag="deployment.updated.v1"):
    """Metadata or spec changed; the generation moved if the spec did."""

    KIND = "deployment"
    deployment: Deployment


class DeploymentDeleted(Event, frozen=True, kw_only=True, tag="deployment.deleted.v1"):
    KIND = "deployment"


class DeploymentStatusChanged(Event, frozen=True, kw_only=True, tag="deployment.status_changed.v1"):
    KIND = "deployment"
    status: DeploymentStatus


class PodCreated(Event, frozen=True, kw_only=True, tag="pod.created.v1"):
    KIND = "pod"
    pod: Pod


class PodUpdated(Event, frozen=True, kw_only=True, tag="pod.updated.v1"):
    KIND = "pod"
    pod: Pod


class PodDeleted(Event, frozen=True, kw_only=True, tag="pod.deleted.v1"):
    KIND = "pod"


class PodScheduled(Event, frozen=True, kw_only=True, tag="pod.scheduled.v1"):
    KIND = "pod"
    node_name: str


class PodStatusChanged(Event, frozen=True, kw_only=True, tag="pod.status_changed.v1"):
    KIND = "pod"
    status: PodStatus


class NodeRegistered(Event, frozen=True, kw_only=True, tag="node.registered.v1"):
    KIND = "node"
    node: Node


class NodeUpdated(Event, frozen=True, kw_only=True, tag="node.updated.v1"):
    KIND = "node"
    node: Node


class NodeDeregistered(Event, frozen=True, kw_only=True, tag="node.deregistered.v1"):
    KIND = "node"


class NodeStatusChanged(Event, frozen=True, kw_only=True, tag="node.status_changed.v1"):
    KIND = "node"
    status: NodeStatus


class CommandRecorded(Event, frozen=True, kw_only=True, tag="command.recorded.v1"):
    """One client command, accepted or refused: the audit trail's entry."""

    KIND = "command"
    command_id: str
    verb: str
    kind: str
    namespace: str = ""
    name: str = ""
    actor: str
    result: str
    reason: str = ""
    dry_run: bool = False
    time: str


AnyEvent = Union[
    DeploymentCreated,
    DeploymentUpdated,
    DeploymentDeleted,
    DeploymentStatusChanged,
    PodCreated,
    PodUpdated,
    PodDeleted,
    PodScheduled,
    PodStatusChanged,
    NodeRegistered,
    NodeUpdated,
    NodeDeregistered,
    NodeStatusChanged,
    CommandRecorded,
]

EVENT_TYPES: dict[str, type[Event]] = {cls.type_name(): cls for cls in AnyEvent.__args__}  # type: ignore[attr-defined]

event_decoder = msgspec.json.Decoder(AnyEvent)
event_encoder = msgspec.json.Encoder()
