"""The scheduler's memory beyond the view: its placements the view has not read yet, and parsed nodes and pods.

Kubernetes' scheduler cache "assumes" a pod on its node the moment it decides, so the next
decisions count it before the binding is even written; this does the same, and builds each
cycle's snapshot from the view plus what it assumes.
"""

from __future__ import annotations

import msgspec

from dockyard.schemas.events import PodBinding
from dockyard.schemas.manifests import Node, Pod
from dockyard.services.scheduler.snapshot import DEPLOYMENT_ANNOTATION, Key, NodeInfo, PodRequest, Snapshot, \
    node_info, pod_request
from dockyard.view import ClusterView

FINISHED_PHASES = ("Succeeded", "Failed")


def is_pending(pod: Pod | None) -> bool:
    """Waiting for a node: not bound, not finished."""
    return pod is not None and not pod.spec.node_name and pod.status.phase not in FINISHED_PHASES


class Assumed(msgspec.Struct, kw_only=True):
    node: str
    binding: PodBinding
    group: str
    seq: int = 0  # the stream sequence that makes it visible to the view; 0 until written


class SchedulerCache:
    def __init__(self, view: ClusterView):
        self.view = view
        self.assumed: dict[Key, Assumed] = {}
        # Sequences of our own appends on node and pod subjects the view may not have read yet:
        # the next append to the same subject expects them.
        self.written_node: dict[str, int] = {}
        self.written_pod: dict[Key, int] = {}
        self._read_at = 0  # the view's position at the last snapshot: what the cycle being decided read
        self._nodes: dict[str, tuple[Node, NodeInfo]] = {}  # name -> (the view's node, parsed)
        self._requests: dict[Key, PodRequest] = {}
        self._groups: dict[Key, str] = {}

    # ------------------------------------------------------------ pods

    def forget(self, key: Key) -> None:
        """The pod changed or went: parse it again next time."""
        self._requests.pop(key, None)
        self._groups.pop(key, None)

    def request_of(self, key: Key, pod: Pod) -> PodRequest:
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = pod_request(pod, self.group_of(key))
        return request

    def group_of(self, key: Key) -> str:
        """The deployment a pod is a replica of ("namespace/name"), "" if none."""
        group = self._groups.get(key)
        if group is None:
            pod = self.view.pods.get(key)
            group = self._groups[key] = self._deployment_of(pod) if pod is not None else ""
        return group

    def _deployment_of(self, pod: Pod) -> str:
        meta = pod.metadata
        name = meta.annotations.get(DEPLOYMENT_ANNOTATION)
        if name is None:  # not marked by the controller: the deployment whose selector matches
            name = next((n for (ns, n), d in sorted(self.view.deployments.items()) if ns == meta.namespace
                         and d.spec.selector.match_labels
                         and d.spec.selector.match_labels.items() <= meta.labels.items()), "")
        return f"{meta.namespace}/{name}" if name else ""

    # ------------------------------------------------------------ placements

    def assume(self, request: PodRequest, node: str) -> None:
        self.assumed[request.key] = Assumed(node=node, binding=request.binding(), group=request.group)

    def confirm(self, keys: list[Key], node: str, node_seq: int, last_seq: int) -> None:
        """A node's batch was written: its PodsBound at `node_seq`, the batch ending at `last_seq`."""
        self.written_node[node] = max(self.written_node.get(node, 0), node_seq)
        for key in keys:
            self._requests.pop(key, None)  # bound: never decided again
            assumed = self.assumed.get(key)
            if assumed is not None:
                assumed.seq = last_seq

    def unassume(self, keys: list[Key]) -> None:
        for key in keys:
            self.assumed.pop(key, None)

    def node_expected_seq(self, node: NodeInfo) -> int:
        """What the node's subject must end at for a decision made on `node` to still hold."""
        return max(node.seq, self.written_node.get(node.name, 0))

    def pod_expected_seq(self, key: Key, read_at: int) -> int:
        return max(read_at, self.written_pod.get(key, 0))

    def prune(self) -> None:
        """Forget what the view has now read for itself.

        Our own writes only once the last snapshot holds them too: the cycle decided on it is planned
        later, and its batches must expect our writes though the view read them in between.
        """
        position = self.view.position
        for key in [k for k, a in self.assumed.items() if a.seq and a.seq <= position]:
            del self.assumed[key]
        read = min(position, self._read_at)
        for node in [n for n, seq in self.written_node.items() if seq <= read]:
            del self.written_node[node]
        for key in [k for k, seq in self.written_pod.items() if seq <= read]:
            del self.written_pod[key]

    # ------------------------------------------------------------ snapshots

    def _node_base(self, name: str) -> NodeInfo:
        node = self.view.nodes[name]
        cached = self._nodes.get(name)
        # The view replaces a node it changes, held images included (which keep the resource version).
        if cached is None or cached[0] is not node:
            cached = self._nodes[name] = (node, node_info(node))
        return cached[1]

    def snapshot(self, groups: set[str]) -> Snapshot:
        """The view's nodes with what is bound and assumed on them, and the replicas of `groups` per node."""
        view = self.view
        self._read_at = view.position
        for gone in self._nodes.keys() - view.nodes.keys():
            del self._nodes[gone]
        extra: dict[str, list[PodBinding]] = {}
        for key, assumed in self.assumed.items():
            if key not in view.bindings.get(assumed.node, {}):
                extra.setdefault(assumed.node, []).append(assumed.binding)
        nodes = []
        for name in view.nodes:
            bound = view.bindings.get(name, {})
            nodes.append(self._node_base(name).with_bindings([*bound.values(), *extra.get(name, ())],
                                                             view.node_seq.get(name, 0)))
        return Snapshot.of(nodes, self._replicas(groups, extra))

    def _replicas(self, groups: set[str], extra: dict[str, list[PodBinding]]) -> dict[str, dict[str, int]]:
        placed: dict[str, dict[str, int]] = {group: {} for group in groups}
        if not groups:
            return placed
        for node, bound in self.view.bindings.items():
            for key in bound:
                counts = placed.get(self.group_of(key))
                if counts is not None:
                    counts[node] = counts.get(node, 0) + 1
        for node, bindings in extra.items():
            for binding in bindings:
                counts = placed.get(self.assumed[(binding.namespace, binding.name)].group)
                if counts is not None:
                    counts[node] = counts.get(node, 0) + 1
        return placed
