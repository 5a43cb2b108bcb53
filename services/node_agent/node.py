"""The node an agent registers: its manifest from flags, and the status it reports. Pure."""

from __future__ import annotations

import msgspec

from dockyard.schemas.manifests import TAINT_EFFECTS, Condition, Node, NodeSpec, NodeStatus, ObjectMeta, Taint
from dockyard.schemas.quantity import cpu_millis, format_cpu, format_memory, memory_bytes

_replace = msgspec.structs.replace

HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
# Taints under this prefix belong to the cluster (the controller's unreachable/not-ready), not to the agent's flags.
SYSTEM_TAINT_PREFIX = "node.kubernetes.io/"

READY_REASON = "KubeletReady"
READY_MESSAGE = "dockyard node agent is posting ready status"


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> {k: v, k2: v2}; ValueError names a malformed entry."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        labels[key] = value
    return labels


def parse_taints(text: str) -> tuple[Taint, ...]:
    """`k=v:NoSchedule,k2:NoExecute` -> taints; ValueError names a malformed entry."""
    taints = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        head, sep, effect = item.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS:
            raise ValueError(f"taint {item!r} is not key[=value]:effect with effect one of {', '.join(TAINT_EFFECTS)}")
        key, _, value = head.partition("=")
        if not key:
            raise ValueError(f"taint {item!r} has no key")
        taints.append(Taint(key=key, value=value, effect=effect))
    return tuple(taints)


def capacity(cpu: str | int | float, memory: str | int, max_pods: int) -> dict[str, str]:
    """Capacity in canonical quantities (`4`, `8Gi`, `110`); ValueError for a bad quantity."""
    return {"cpu": format_cpu(cpu_millis(cpu)), "memory": format_memory(memory_bytes(memory)),
            "pods": str(int(max_pods))}


def node_manifest(name: str, node_capacity: dict[str, str], labels: dict[str, str] | None = None,
                  taints: tuple[Taint, ...] = ()) -> Node:
    meta = ObjectMeta(name=name, labels=dict(sorted({**(labels or {}), HOSTNAME_LABEL: name}.items())))
    return Node(metadata=meta, spec=NodeSpec(capacity=dict(node_capacity), taints=taints))


def merged_with_current(current: Node | None, wanted: Node) -> Node:
    """What re-registering means for a node that exists: the agent's capacity, labels and taints
    over what others added (labels kept, system taints kept, a cordon kept)."""
    if current is None:
        return wanted
    labels = dict(sorted({**current.metadata.labels, **wanted.metadata.labels}.items()))
    system_taints = tuple(t for t in current.spec.taints if t.key.startswith(SYSTEM_TAINT_PREFIX)
                          and all(t.key != own.key for own in wanted.spec.taints))
    spec = _replace(wanted.spec, taints=(*wanted.spec.taints, *system_taints),
                    unschedulable=current.spec.unschedulable)
    return _replace(wanted, metadata=_replace(wanted.metadata, labels=labels), spec=spec)


def ready_status(node_capacity: dict[str, str], previous: NodeStatus | None, now: str) -> NodeStatus:
    """Capacity, allocatable (all of it) and Ready=True, keeping the transition time if it already was."""
    before = next((c for c in previous.conditions if c.type == "Ready"), None) if previous else None
    since = before.last_transition_time if before is not None and before.status == "True" else ""
    ready = Condition(type="Ready", status="True", reason=READY_REASON, message=READY_MESSAGE,
                      last_transition_time=since or now)
    others = tuple(c for c in previous.conditions if c.type != "Ready") if previous else ()
    return NodeStatus(capacity=dict(node_capacity), allocatable=dict(node_capacity), conditions=(ready, *others))


def is_ready(node: Node | None) -> bool:
    return node is not None and any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
