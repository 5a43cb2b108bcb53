"""What one scheduling cycle decides on: immutable node infos, pod requests, and the snapshot holding them.

A snapshot is never changed: placing a pod returns a new snapshot that shares every
node info but the one the pod went to, so the pods of one cycle see each other's
placements while each decision stays a pure function of its inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import msgspec

from dockyard.image_reference import canonical_name
from dockyard.schemas.events import PodBinding
from dockyard.schemas.manifests import Node, Pod, Taint, Toleration
from dockyard.schemas.quantity import cpu_millis, memory_bytes
from dockyard.selectors import Requirement

ZONE_LABEL = "topology.kubernetes.io/zone"
DEPLOYMENT_ANNOTATION = "dockyard.io/deployment"
DEFAULT_MAX_PODS = 110  # Kubernetes' kubelet default when a node does not say
# What a pod without requests counts as when nodes are scored (Kubernetes' non-zero defaults),
# so that request-less pods still spread instead of piling onto one "empty" node.
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024

Key = tuple[str, str]  # (namespace, name)


@functools.lru_cache(maxsize=4096)
def _cpu(quantity: str) -> int:
    return cpu_millis(quantity)


@functools.lru_cache(maxsize=4096)
def _memory(quantity: str) -> int:
    return memory_bytes(quantity)


_count = _memory  # a plain count ("110" pods) parses as bytes do: a whole number, rounded up


class PodRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A pending pod reduced to what filters and scores read, parsed once."""

    namespace: str
    name: str
    uid: str
    cpu_millis: int = 0
    memory_bytes: int = 0
    host_ports: tuple[int, ...] = ()
    node_selector: tuple[Requirement, ...] = ()
    # Required node affinity: any term matches, all requirements of a term must. None: no affinity.
    affinity_terms: tuple[tuple[Requirement, ...], ...] | None = None
    tolerations: tuple[Toleration, ...] = ()
    group: str = ""  # "namespace/deployment" of the replicas this pod spreads against; "" for none
    shape: bytes = b""  # equal for pods that every static filter treats alike
    images: tuple[str, ...] = ()  # its containers' images, by `canonical_name` (image locality)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def seed(self) -> str:
        """What this pod's decisions are seeded from, so they can be replayed."""
        return self.uid or f"{self.namespace}/{self.name}"

    @property
    def scored_cpu(self) -> int:
        return self.cpu_millis or DEFAULT_CPU_MILLIS

    @property
    def scored_memory(self) -> int:
        return self.memory_bytes or DEFAULT_MEMORY_BYTES

    def binding(self) -> PodBinding:
        return PodBinding(namespace=self.namespace, name=self.name, uid=self.uid, cpu_millis=self.cpu_millis,
                          memory_bytes=self.memory_bytes, host_ports=self.host_ports)


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A node as one cycle sees it: what it offers, what is already placed on it."""

    name: str
    labels: Mapping[str, str] = {}
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    zone: str = ""
    cpu_allocatable: int = 0
    memory_allocatable: int = 0
    pods_allocatable: int = DEFAULT_MAX_PODS
    cpu_requested: int = 0
    memory_requested: int = 0
    pod_count: int = 0
    host_ports: frozenset[int] = frozenset()
    # Requests as scoring counts them (request-less pods at the non-zero defaults).
    cpu_scored: int = 0
    memory_scored: int = 0
    seq: int = 0  # the last event on the node's subject this info reflects (its expected sequence)
    images: Mapping[str, int] = {}  # every name of every image it holds (normalised) -> the image's bytes

    def with_pod(self, pod: PodRequest) -> NodeInfo:
        return msgspec.structs.replace(
            self,
            cpu_requested=self.cpu_requested + pod.cpu_millis,
            memory_requested=self.memory_requested + pod.memory_bytes,
            pod_count=self.pod_count + 1,
            host_ports=self.host_ports.union(pod.host_ports) if pod.host_ports else self.host_ports,
            cpu_scored=self.cpu_scored + pod.scored_cpu,
            memory_scored=self.memory_scored + pod.scored_memory,
        )

    def with_bindings(self, bindings: list[PodBinding], seq: int) -> NodeInfo:
        """This node with its bound pods counted, as of the event at `seq` on its subject."""
        ports = set(self.host_ports)
        cpu = memory = cpu_scored = memory_scored = 0
        for binding in bindings:
            cpu += binding.cpu_millis
            memory += binding.memory_bytes
            cpu_scored += binding.cpu_millis or DEFAULT_CPU_MILLIS
            memory_scored += binding.memory_bytes or DEFAULT_MEMORY_BYTES
            ports.update(binding.host_ports)
        return msgspec.structs.replace(
            self, cpu_requested=self.cpu_requested + cpu, memory_requested=self.memory_requested + memory,
            pod_count=self.pod_count + len(bindings), host_ports=frozenset(ports),
            cpu_scored=self.cpu_scored + cpu_scored, memory_scored=self.memory_scored + memory_scored, seq=seq)


class Snapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The cluster for one cycle: node infos by name, replica counts per spread group.

    `static_verdicts` memoises, per pod shape, the verdicts of filters that read only the
    specs of pod and node; those do not change within a cycle, so every snapshot derived
    from one cycle's first shares it.
    """

    nodes: Mapping[str, NodeInfo]
    order: tuple[str, ...]  # node names in the order filters walk them (rotated per pod)
    replicas_on_node: Mapping[str, Mapping[str, int]] = {}  # group -> node -> replicas
    replicas_in_zone: Mapping[str, Mapping[str, int]] = {}  # group -> zone -> replicas
    image_nodes: Mapping[str, int] = {}  # image name -> how many nodes hold it (image locality's spread)
    static_verdicts: dict = {}

    @classmethod
    def of(cls, nodes: list[NodeInfo], placed: Mapping[str, Mapping[str, int]] | None = None) -> Snapshot:
        """A cycle's first snapshot; `placed` counts each group's replicas per node."""
        by_name = {node.name: node for node in sorted(nodes, key=lambda n: n.name)}
        on_node = {group: dict(counts) for group, counts in (placed or {}).items()}
        in_zone: dict[str, dict[str, int]] = {}
        for group, counts in on_node.items():
            zones = in_zone.setdefault(group, {})
            for node_name, count in counts.items():
                node = by_name.get(node_name)
                if node is not None and node.zone:
                    zones[node.zone] = zones.get(node.zone, 0) + count
        image_nodes: dict[str, int] = {}
        for node in by_name.values():
            for name in node.images:
                image_nodes[name] = image_nodes.get(name, 0) + 1
        return cls(nodes=by_name, order=tuple(by_name), replicas_on_node=on_node, replicas_in_zone=in_zone,
                   image_nodes=image_nodes, static_verdicts={})

    def place(self, pod: PodRequest, node_name: str) -> Snapshot:
        """The snapshot after `pod` is placed on `node_name`."""
        node = self.nodes[node_name]
        nodes = dict(self.nodes)
        nodes[node_name] = node.with_pod(pod)
        on_node, in_zone = self.replicas_on_node, self.replicas_in_zone
        if pod.group:
            on_node = _incremented(on_node, pod.group, node_name)
            if node.zone:
                in_zone = _incremented(in_zone, pod.group, node.zone)
        return Snapshot(nodes=nodes, order=self.order, replicas_on_node=on_node, replicas_in_zone=in_zone,
                        image_nodes=self.image_nodes, static_verdicts=self.static_verdicts)


def _incremented(table: Mapping[str, Mapping[str, int]], group: str, domain: str) -> dict:
    counts = dict(table.get(group, {}))
    counts[domain] = counts.get(domain, 0) + 1
    return {**table, group: counts}


# ---------------------------------------------------------------- from manifests


def node_info(node: Node) -> NodeInfo:
    """A node's offer as a NodeInfo with nothing placed on it yet."""
    offer = node.status.allocatable or node.spec.capacity
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    labels = node.metadata.labels
    return NodeInfo(
        name=node.metadata.name,
        labels=labels,
        taints=node.spec.taints,
        unschedulable=node.spec.unschedulable,
        ready=ready,
        zone=labels.get(ZONE_LABEL, ""),
        cpu_allocatable=_cpu(offer["cpu"]) if "cpu" in offer else 0,
        memory_allocatable=_memory(offer["memory"]) if "memory" in offer else 0,
        pods_allocatable=_count(offer["pods"]) if "pods" in offer else DEFAULT_MAX_PODS,
        images={canonical_name(name): image.size_bytes for image in node.status.images for name in image.names},
    )


_SELECTOR_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists",
                       "Gt": "gt", "Lt": "lt"}


def pod_request(pod: Pod, group: str = "") -> PodRequest:
    """What scheduling reads of a pod: summed requests, host ports, selector, affinity, tolerations."""
    spec = pod.spec
    cpu = memory = 0
    ports: list[int] = []
    for container in spec.containers:
        requests = container.resources.requests
        if "cpu" in requests:
            cpu += _cpu(requests["cpu"])
        if "memory" in requests:
            memory += _memory(requests["memory"])
        ports.extend(p.host_port for p in container.ports if p.host_port)
    selector = tuple(Requirement(key, "=", (value,)) for key, value in sorted(spec.node_selector.items()))
    terms = None
    required = spec.affinity and spec.affinity.node_affinity and \
        spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    if required:
        terms = tuple(
            tuple(Requirement(e.key, _SELECTOR_OPERATORS.get(e.operator, e.operator), tuple(e.values))
                  for e in term.match_expressions)
            for term in required.node_selector_terms)
    shape = msgspec.json.encode((selector, terms, spec.tolerations))
    return PodRequest(namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid,
                      cpu_millis=cpu, memory_bytes=memory, host_ports=tuple(sorted(set(ports))),
                      node_selector=selector, affinity_terms=terms, tolerations=spec.tolerations,
                      group=group, shape=shape, images=tuple(canonical_name(c.image) for c in spec.containers))
