"""Manifest kinds (Deployment, Pod, Node) as msgspec structs, in Kubernetes' camelCase wire shape."""

from typing import Annotated, ClassVar, Literal

import msgspec

from dockyard.schemas.quantity import Quantity

API_VERSION = "dockyard.io/v1"

RESTART_POLICIES = ("Always", "OnFailure", "Never")
IMAGE_PULL_POLICIES = ("", "Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
HTTP_SCHEMES = ("HTTP", "HTTPS")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Equal", "Exists")
STRATEGY_TYPES = ("RollingUpdate", "Recreate")
RESOURCE_NAMES = ("cpu", "ephemeral-storage", "memory", "pods")
CONDITION_STATUSES = ("True", "False", "Unknown")
CONTAINER_STATES = ("waiting", "running", "terminated")
NODE_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
# A uid names log subjects and state directories: letters, digits and '-' (a UUID), nothing a
# subject wildcard or a path could make more of (an imported event is decoded against this too).
Uid = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]*$", max_length=64)]


class ManifestStruct(
    msgspec.Struct,
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename="camel",
):
    """Base of every manifest struct: immutable, strict, camelCase on the wire.

    msgspec inherits every option here except kw_only, so each subclass repeats it.
    """


# Nested structs default through a factory, never a shared instance: msgspec's
# omit_defaults omits by identity, so a shared default would make two equal
# objects encode differently.
def _default(struct: type):
    return msgspec.field(default_factory=struct)


class ObjectMeta(ManifestStruct, kw_only=True):
    name: str
    namespace: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    uid: Uid = ""
    generation: int = 0
    resource_version: str = ""
    creation_timestamp: str = ""  # RFC 3339


class TemplateMeta(ManifestStruct, kw_only=True):
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class EnvVar(ManifestStruct, kw_only=True):
    name: str
    value: str = ""


class ContainerPort(ManifestStruct, kw_only=True):
    container_port: int
    name: str = ""
    protocol: str = "TCP"
    host_port: int = 0


class ResourceRequirements(ManifestStruct, kw_only=True):
    requests: dict[str, Quantity] = msgspec.field(default_factory=dict)
    limits: dict[str, Quantity] = msgspec.field(default_factory=dict)


class ExecAction(ManifestStruct, kw_only=True):
    command: tuple[str, ...]


class HTTPGetAction(ManifestStruct, kw_only=True):
    path: str = "/"
    port: int | str
    scheme: str = "HTTP"


class TCPSocketAction(ManifestStruct, kw_only=True):
    port: int | str


class Probe(ManifestStruct, kw_only=True):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class SecurityContext(ManifestStruct, kw_only=True):
    """What the runc driver applies of a container's securityContext."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root_filesystem: bool = False
    allow_privilege_escalation: bool | None = None  # None: Kubernetes' default, allowed


class VolumeMount(ManifestStruct, kw_only=True):
    name: str  # a volume of the pod
    mount_path: str
    read_only: bool = False


class Container(ManifestStruct, kw_only=True):
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    resources: ResourceRequirements = _default(ResourceRequirements)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    working_dir: str = ""
    image_pull_policy: str = ""
    security_context: SecurityContext | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()


class Toleration(ManifestStruct, kw_only=True):
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


class Taint(ManifestStruct, kw_only=True):
    key: str
    value: str = ""
    effect: str


class NodeSelectorRequirement(ManifestStruct, kw_only=True):
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist, Gt, Lt
    values: tuple[str, ...] = ()


class NodeSelectorTerm(ManifestStruct, kw_only=True):
    match_expressions: tuple[NodeSelectorRequirement, ...] = ()


class NodeSelector(ManifestStruct, kw_only=True):
    node_selector_terms: tuple[NodeSelectorTerm, ...]


class NodeAffinity(ManifestStruct, kw_only=True):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None


class Affinity(ManifestStruct, kw_only=True):
    node_affinity: NodeAffinity | None = None


class EmptyDirVolumeSource(ManifestStruct, kw_only=True):
    medium: str = ""  # "" (the node's disk) or "Memory" (tmpfs)


class Volume(ManifestStruct, kw_only=True):
    name: str
    empty_dir: EmptyDirVolumeSource | None = None


class PodSpec(ManifestStruct, kw_only=True):
    containers: tuple[Container, ...]
    restart_policy: str = "Always"
    node_selector: dict[str, str] = msgspec.field(default_factory=dict)
    node_name: str = ""
    affinity: Affinity | None = None
    tolerations: tuple[Toleration, ...] = ()
    termination_grace_period_seconds: int = 30
    host_network: bool = False
    volumes: tuple[Volume, ...] = ()


class PodTemplateSpec(ManifestStruct, kw_only=True):
    metadata: TemplateMeta = _default(TemplateMeta)
    spec: PodSpec


class LabelSelector(ManifestStruct, kw_only=True):
    match_labels: dict[str, str] = msgspec.field(default_factory=dict)


class RollingUpdate(ManifestStruct, kw_only=True):
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"


class DeploymentStrategy(ManifestStruct, kw_only=True):
    type: str = "RollingUpdate"
    rolling_update: RollingUpdate | None = None


class DeploymentSpec(ManifestStruct, kw_only=True):
    replicas: int = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = _default(DeploymentStrategy)
    min_ready_seconds: int = 0
    revision_history_limit: int = 10
    paused: bool = False


class NodeSpec(ManifestStruct, kw_only=True):
    capacity: dict[str, Quantity] = msgspec.field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False


class Condition(ManifestStruct, kw_only=True):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""


class ContainerStatus(ManifestStruct, kw_only=True):
    name: str
    ready: bool = False
    restart_count: int = 0
    state: str = "waiting"
    reason: str = ""
    message: str = ""  # why it waits, in words (kubectl's state.waiting.message); "" once it runs
    exit_code: int | None = None
    signal: int = 0  # the signal that ended the run: exit code 128 + N, as runc and Docker report a signal
    started_at: str = ""
    last_state: str = ""  # the previous run: "" or "terminated"
    last_reason: str = ""
    last_exit_code: int | None = None
    image: str = ""
    host_ports: dict[str, int] = msgspec.field(default_factory=dict)  # port name -> host port given


class PodStatus(ManifestStruct, kw_only=True):
    phase: str = "Pending"
    conditions: tuple[Condition, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    reason: str = ""
    message: str = ""
    host_ip: str = msgspec.field(default="", name="hostIP")  # Kubernetes spells it hostIP
    start_time: str = ""


class DeploymentStatus(ManifestStruct, kw_only=True):
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    conditions: tuple[Condition, ...] = ()


class ContainerImage(ManifestStruct, kw_only=True):
    """An image a node holds, as Kubernetes' `status.images` shows it: its references and size."""

    names: tuple[str, ...] = ()  # `repo@sha256:...` first, then any `repo:tag` it was pulled as
    size_bytes: int = 0


class NodeStatus(ManifestStruct, kw_only=True):
    capacity: dict[str, Quantity] = msgspec.field(default_factory=dict)
    allocatable: dict[str, Quantity] = msgspec.field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    images: tuple[ContainerImage, ...] = ()  # reported by the agent; the scheduler's image-locality score reads it


# The kinds always carry apiVersion, kind and status on the wire, as kubectl shows them.
class Deployment(ManifestStruct, kw_only=True, omit_defaults=False):
    NAMESPACED: ClassVar[bool] = True

    api_version: str = API_VERSION
    kind: Literal["Deployment"] = "Deployment"
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus = _default(DeploymentStatus)


class Pod(ManifestStruct, kw_only=True, omit_defaults=False):
    NAMESPACED: ClassVar[bool] = True

    api_version: str = API_VERSION
    kind: Literal["Pod"] = "Pod"
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus = _default(PodStatus)


class Node(ManifestStruct, kw_only=True, omit_defaults=False):
    NAMESPACED: ClassVar[bool] = False

    api_version: str = API_VERSION
    kind: Literal["Node"] = "Node"
    metadata: ObjectMeta
    spec: NodeSpec = _default(NodeSpec)
    status: NodeStatus = _default(NodeStatus)


Resource = Deployment | Pod | Node

KINDS: dict[str, type[Resource]] = {"Deployment": Deployment, "Node": Node, "Pod": Pod}

KIND_ALIASES: dict[str, str] = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "pod": "Pod",
    "pods": "Pod",
    "po": "Pod",
    "node": "Node",
    "nodes": "Node",
    "no": "Node",
}


def kind_named(name: str) -> str | None:
    """The kind a user means by `name` (kubectl's plurals and short names), or None."""
    return KIND_ALIASES.get(name.lower()) or (name if name in KINDS else None)


def subject_kind(kind: str) -> str:
    """The kind's token in event subjects: `dy.evt.<token>.…`."""
    return kind.lower()
