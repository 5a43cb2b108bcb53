"""Events of the cluster's aggregates: deployments, pods, nodes, images, registries, and the command record."""

from __future__ import annotations

from typing import Union

import msgspec

from dockyard.schemas.base import Event
from dockyard.schemas.manifests import (
    ContainerImage,
    Deployment,
    DeploymentStatus,
    Node,
    NodeStatus,
    Pod,
    PodStatus,
    PodTemplateSpec,
)


class NodeScore(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A candidate node's total score and each score plugin's part of it."""

    node: str
    score: float
    plugins: dict[str, float] = {}


class PodBinding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a node gives one pod: the resources and host ports the scheduler counted."""

    namespace: str
    name: str
    uid: str
    cpu_millis: int = 0
    memory_bytes: int = 0
    host_ports: tuple[int, ...] = ()


class DeploymentCreated(Event, frozen=True, kw_only=True, tag="deployment.created.v1"):
    KIND = "deployment"
    deployment: Deployment


class DeploymentUpdated(Event, frozen=True, kw_only=True, tag="deployment.updated.v1"):
    """Metadata or spec changed; the generation moved if the spec did."""

    KIND = "deployment"
    deployment: Deployment


class DeploymentDeleted(Event, frozen=True, kw_only=True, tag="deployment.deleted.v1"):
    KIND = "deployment"


class DeploymentRevisionRecorded(Event, frozen=True, kw_only=True, tag="deployment.revision_recorded.v1"):
    """The controller saw a new pod template: revision N is that template (for history and undo)."""

    KIND = "deployment"
    revision: int
    template_hash: str
    template: PodTemplateSpec
    change_cause: str = ""


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
    reason: str = ""  # "" for a user's delete; ScaledDown, Evicted, Replaced... for the controller's


class PodScheduled(Event, frozen=True, kw_only=True, tag="pod.scheduled.v1"):
    """Bound to a node; the decision's reasons ride along for `dockyard explain`."""

    KIND = "pod"
    node_name: str
    total_nodes: int = 0
    filtered: dict[str, int] = {}  # filter plugin -> nodes it removed
    candidates: tuple[NodeScore, ...] = ()  # the best few, best first


class PodUnschedulable(Event, frozen=True, kw_only=True, tag="pod.unschedulable.v1"):
    """No node fits now; recorded when the reason changes, retried when the cluster does."""

    KIND = "pod"
    message: str
    total_nodes: int = 0
    filtered: dict[str, int] = {}


class PodStatusChanged(Event, frozen=True, kw_only=True, tag="pod.status_changed.v1"):
    KIND = "pod"
    status: PodStatus


class NodeRegistered(Event, frozen=True, kw_only=True, tag="node.registered.v1"):
    KIND = "node"
    node: Node


class NodeUpdated(Event, frozen=True, kw_only=True, tag="node.updated.v1"):
    KIND = "node"
    node: Node


class PodsBound(Event, frozen=True, kw_only=True, tag="node.pods_bound.v1"):
    """Pods placed on this node, appended with the node's expected sequence: no overcommit."""

    KIND = "node"
    pods: tuple[PodBinding, ...]


class NodeDeregistered(Event, frozen=True, kw_only=True, tag="node.deregistered.v1"):
    KIND = "node"


class NodeStatusChanged(Event, frozen=True, kw_only=True, tag="node.status_changed.v1"):
    KIND = "node"
    status: NodeStatus


class NodeImagesReported(Event, frozen=True, kw_only=True, tag="node.images_reported.v1"):
    """The images a node holds (its status.images), on the node's own `nodeimages` subject.

    An aggregate apart from the node's, so a report never moves the sequence a binding expects;
    readers fold the latest report into the node's status (it wins over a status's copy).
    """

    KIND = "nodeimages"
    node_name: str
    images: tuple[ContainerImage, ...] = ()


class ObjectRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The object a command was about; the namespace is empty for cluster-scoped kinds."""

    kind: str
    namespace: str = ""
    name: str = ""


class CommandRecorded(Event, frozen=True, kw_only=True, tag="command.recorded.v2"):
    """One client command, accepted or refused: the audit trail's entry.

    v2 holds the object as one reference and adds a summary of the change (`replicas 3→5`).
    """

    KIND = "command"
    command_id: str
    verb: str
    object: ObjectRef
    actor: str
    result: str
    reason: str = ""
    summary: str = ""
    dry_run: bool = False
    time: str


def command_recorded_from_v1(payload: dict) -> dict:
    """A stored `command.recorded.v1` payload in v2's shape: kind, namespace, name become `object`."""
    upcast = {k: v for k, v in payload.items() if k not in ("kind", "namespace", "name")}
    upcast["type"] = CommandRecorded.type_name()
    upcast["object"] = {"kind": payload["kind"], "namespace": payload.get("namespace", ""),
                        "name": payload.get("name", "")}
    return upcast


# ---------------------------------------------------------------- images (the registry indexer)


class ImagePlatform(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One runnable image: a single-platform manifest and what its config says."""

    digest: str
    media_type: str = ""
    os: str = ""
    architecture: str = ""
    variant: str = ""
    config_digest: str = ""
    layers: int = 0
    size: int = 0  # the layers' compressed bytes
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: dict[str, str] = {}
    created: str = ""


class ImageIndexed(Event, frozen=True, kw_only=True, tag="image.indexed.v1"):
    """A tag the index did not know now names `digest` (a manifest, or an index of `platforms`)."""

    KIND = "image"
    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str
    size: int = 0
    platforms: tuple[ImagePlatform, ...] = ()


class ImageTagMoved(Event, frozen=True, kw_only=True, tag="image.tag_moved.v1"):
    """A known tag now names another digest (a re-push or a retag)."""

    KIND = "image"
    registry: str
    repository: str
    tag: str
    digest: str
    previous_digest: str
    media_type: str
    size: int = 0
    platforms: tuple[ImagePlatform, ...] = ()


class ImageDeleted(Event, frozen=True, kw_only=True, tag="image.deleted.v1"):
    """A tag is gone from the registry (its manifest deleted, or the tag no longer listed)."""

    KIND = "image"
    registry: str
    repository: str
    tag: str
    digest: str = ""


class ImageRejected(Event, frozen=True, kw_only=True, tag="image.rejected.v1"):
    """The registry answered garbage for a tag (truncated JSON, digest mismatch, HTML, a cycle)."""

    KIND = "image"
    registry: str
    repository: str
    tag: str
    reason: str


class RegistryUnreachable(Event, frozen=True, kw_only=True, tag="registry.unreachable.v1"):
    KIND = "registry"
    registry: str
    reason: str


class RegistryRecovered(Event, frozen=True, kw_only=True, tag="registry.recovered.v1"):
    KIND = "registry"
    registry: str


class AlertFired(Event, frozen=True, kw_only=True, tag="alert.fired.v1"):
    """A rule started to hold (after its `for` duration). The aggregate is one alert: rule + labels.

    Subject: `dy.evt.alert.<fingerprint>` (cluster-scoped), the fingerprint a stable hash of the
    rule name and its labels, as Alertmanager's. While it fires, the event is appended again (same
    `active_since`) when its rendered annotations change, at most once a minute by default: the
    latest one is the alert as it is now.
    """

    KIND = "alert"
    alertname: str
    severity: str = "warning"
    labels: dict[str, str] = {}  # alertname and severity included, as Prometheus sends them
    annotations: dict[str, str] = {}  # summary, description
    active_since: str = ""  # RFC 3339: when the condition started to hold
    value: float = 0.0  # the measured value that made it hold, where there is one


def alert_fingerprint(labels: dict[str, str]) -> str:
    """The alert aggregate's name: a stable hash of its labels (alertname included), 16 hex digits."""
    import hashlib

    canonical = "\x1f".join(f"{key}={labels[key]}" for key in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class AlertResolved(Event, frozen=True, kw_only=True, tag="alert.resolved.v1"):
    """A firing alert's condition stopped holding."""

    KIND = "alert"
    alertname: str
    labels: dict[str, str] = {}
    resolved_at: str = ""


AnyEvent = Union[
    DeploymentCreated,
    DeploymentUpdated,
    DeploymentDeleted,
    DeploymentRevisionRecorded,
    DeploymentStatusChanged,
    PodCreated,
    PodUpdated,
    PodDeleted,
    PodScheduled,
    PodUnschedulable,
    PodStatusChanged,
    NodeRegistered,
    NodeUpdated,
    PodsBound,
    NodeDeregistered,
    NodeStatusChanged,
    NodeImagesReported,
    CommandRecorded,
    ImageIndexed,
    ImageTagMoved,
    ImageDeleted,
    ImageRejected,
    RegistryUnreachable,
    RegistryRecovered,
    AlertFired,
    AlertResolved,
]

EVENT_TYPES: dict[str, type[Event]] = {cls.type_name(): cls for cls in AnyEvent.__args__}  # type: ignore[attr-defined]

event_decoder = msgspec.json.Decoder(AnyEvent)
event_encoder = msgspec.json.Encoder()
