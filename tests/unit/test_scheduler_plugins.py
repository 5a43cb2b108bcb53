"""Each scheduler plugin on its own: filters' verdicts and reasons, scores' ordering and range."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from dockyard.schemas.manifests import Node, Pod
from dockyard.services.scheduler.plugins import (
    balanced_allocation,
    least_allocated,
    node_affinity,
    node_ports,
    node_ready,
    node_resources_fit,
    node_selector,
    node_unschedulable,
    pod_topology_spread,
    taint_toleration,
)
from dockyard.services.scheduler.snapshot import ZONE_LABEL, NodeInfo, PodRequest, Snapshot, node_info, pod_request
from tests.builders import pod_manifest

# ---------------------------------------------------------------- builders


def make_node(name: str = "n1", cpu: str = "4", memory: str = "8Gi", pods: int = 110, *,
              labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
              unschedulable: bool = False, ready: bool | None = True) -> Node:
    """A node manifest; `ready` None leaves out the Ready condition."""
    allocatable = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    conditions = [] if ready is None else [{"type": "Ready", "status": "True" if ready else "False"}]
    return msgspec.convert({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"capacity": allocatable, "taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": allocatable, "conditions": conditions},
    }, Node)


def make_pod(name: str = "p1", cpu: str | None = "500m", memory: str | None = "256Mi", *, uid: str = "",
             host_ports: tuple[int, ...] = (), deployment: str = "", **spec: Any) -> Pod:
    """A pod manifest with one container asking for `cpu` and `memory`; `spec` in camelCase."""
    manifest = pod_manifest(name, **spec)
    container = manifest["spec"]["containers"][0]
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container["resources"] = {"requests": requests}
    container["ports"] = [{"containerPort": 8000 + i, "hostPort": port} for i, port in enumerate(host_ports)]
    manifest["metadata"]["uid"] = uid or f"uid-{name}"
    if deployment:
        manifest["metadata"]["annotations"] = {"dockyard.io/deployment": deployment}
    return msgspec.convert(manifest, Pod)


def request(pod: Pod | None = None, **fields: Any) -> PodRequest:
    pod = pod or make_pod(**fields)
    group = pod.metadata.annotations.get("dockyard.io/deployment", "")
    return pod_request(pod, f"{pod.metadata.namespace}/{group}" if group else "")


def info(node: Node | None = None, *, placed: tuple[PodRequest, ...] = (), **fields: Any) -> NodeInfo:
    result = node_info(node or make_node(**fields))
    for pod in placed:
        result = result.with_pod(pod)
    return result


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> dict[str, str]:
    return {"key": key, "value": value, "effect": effect}


def term(*expressions: tuple) -> dict:
    return {"matchExpressions": [{"key": k, "operator": op, "values": list(values)} for k, op, *values in expressions]}


def affinity(*terms: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize("ready,expected", [(True, None), (False, node_ready.NOT_READY), (None, node_ready.NOT_READY)],
                         ids=["ready", "not-ready", "no-condition"])
def test_node_ready(ready, expected):
    assert node_ready.filter_node(request(), info(ready=ready)) == expected


@pytest.mark.parametrize("cordoned,tolerations,expected", [
    (False, [], None),
    (True, [], node_unschedulable.CORDONED),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}], None),
    (True, [{"operator": "Exists"}], None),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}],
     node_unschedulable.CORDONED),
], ids=["schedulable", "cordoned", "tolerates-cordon", "tolerates-everything", "wrong-effect"])
def test_node_unschedulable(cordoned, tolerations, expected):
    pod = request(tolerations=tolerations)
    assert node_unschedulable.filter_node(pod, info(unschedulable=cordoned)) == expected


GPU = taint("dedicated", "gpu")


@pytest.mark.parametrize("taints,tolerations,expected", [
    ([], [], None),
    ([GPU], [], "untolerated taint dedicated=gpu"),
    ([GPU], [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], None),
    ([GPU], [{"key": "dedicated", "operator": "Exists"}], None),
    ([GPU], [{"key": "dedicated", "value": "tpu"}], "untolerated taint dedicated=gpu"),
    ([GPU], [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}], "untolerated taint dedicated=gpu"),
    ([taint("dedicated", "gpu", "PreferNoSchedule")], [], None),
    ([taint("evicting", effect="NoExecute")], [], "untolerated taint evicting"),
    ([GPU, taint("zone-b")], [{"key": "dedicated", "operator": "Exists"}], "untolerated taint zone-b"),
], ids=["no-taints", "untolerated", "equal", "exists", "other-value", "other-effect", "prefer-no-schedule",
        "no-execute", "second-taint"])
def test_taint_toleration(taints, tolerations, expected):
    assert taint_toleration.filter_node(request(tolerations=tolerations), info(taints=taints)) == expected


@pytest.mark.parametrize("selector,labels,expected", [
    ({"disk": "ssd"}, {"disk": "ssd", "zone": "a"}, None),
    ({"disk": "ssd"}, {"disk": "hdd"}, node_selector.SELECTOR_MISMATCH),
    ({"disk": "ssd"}, {}, node_selector.SELECTOR_MISMATCH),
    ({"disk": "ssd", "gpu": "yes"}, {"disk": "ssd"}, node_selector.SELECTOR_MISMATCH),
], ids=["match", "other-value", "no-label", "one-of-two"])
def test_node_selector(selector, labels, expected):
    pod = request(nodeSelector=selector)
    assert node_selector.relevant(pod)
    assert node_selector.filter_node(pod, info(labels=labels)) == expected


def test_node_selector_is_skipped_without_one():
    assert not node_selector.relevant(request())


MISMATCH = node_affinity.AFFINITY_MISMATCH


@pytest.mark.parametrize("terms,labels,expected", [
    ([term(("disk", "In", "ssd", "nvme"))], {"disk": "nvme"}, None),
    ([term(("disk", "In", "ssd"))], {"disk": "hdd"}, MISMATCH),
    ([term(("disk", "NotIn", "hdd"))], {"disk": "ssd"}, None),
    ([term(("disk", "NotIn", "hdd"))], {}, None),
    ([term(("gpu", "Exists"))], {"gpu": ""}, None),
    ([term(("gpu", "Exists"))], {}, MISMATCH),
    ([term(("gpu", "DoesNotExist"))], {"gpu": "1"}, MISMATCH),
    ([term(("cores", "Gt", "8"))], {"cores": "16"}, None),
    ([term(("cores", "Gt", "8"))], {"cores": "8"}, MISMATCH),
    ([term(("cores", "Lt", "8"))], {"cores": "4"}, None),
    ([term(("cores", "Gt", "8"))], {"cores": "many"}, MISMATCH),
    ([term(("cores", "Gt", "8"))], {}, MISMATCH),
    ([term(("disk", "In", "ssd"), ("gpu", "Exists"))], {"disk": "ssd"}, MISMATCH),
    ([term(("disk", "In", "ssd")), term(("gpu", "Exists"))], {"gpu": "1"}, None),
    ([term()], {"disk": "ssd"}, MISMATCH),
], ids=["in", "not-in-values", "notin", "notin-missing", "exists", "exists-missing", "does-not-exist", "gt", "gt-equal",
        "lt", "gt-not-a-number", "gt-missing", "and-within-a-term", "or-across-terms", "empty-term-matches-nothing"])
def test_node_affinity(terms, labels, expected):
    pod = request(affinity=affinity(*terms))
    assert node_affinity.relevant(pod)
    assert node_affinity.filter_node(pod, info(labels=labels)) == expected


@pytest.mark.parametrize("wanted,used,expected", [
    ((8080,), (), None),
    ((8080,), (9090,), None),
    ((8080, 9090), (9090,), node_ports.PORT_CONFLICT),
], ids=["free", "other-port-used", "conflict"])
def test_node_ports(wanted, used, expected):
    placed = (request(name="other", host_ports=used),) if used else ()
    pod = request(host_ports=wanted)
    assert node_ports.relevant(pod)
    assert node_ports.filter_node(pod, info(placed=placed)) == expected


def test_node_ports_is_skipped_without_host_ports():
    assert not node_ports.relevant(request())


@pytest.mark.parametrize("pod,node,placed,expected", [
    (dict(cpu="500m"), dict(cpu="1"), [], None),
    (dict(cpu="500m"), dict(cpu="1"), [dict(cpu="500m")], None),
    (dict(cpu="500m"), dict(cpu="1"), [dict(cpu="600m")], node_resources_fit.INSUFFICIENT_CPU),
    (dict(memory="1Gi"), dict(memory="1Gi"), [dict(memory="1Mi")], node_resources_fit.INSUFFICIENT_MEMORY),
    (dict(cpu="2", memory="16Gi"), dict(cpu="1", memory="8Gi"), [], node_resources_fit.INSUFFICIENT_CPU),
    (dict(cpu="100m"), dict(pods=2), [dict(cpu="1m"), dict(cpu="1m")], node_resources_fit.TOO_MANY_PODS),
    (dict(cpu=None, memory=None), dict(cpu="1"), [dict(cpu="1")], None),
], ids=["fits", "fits-exactly", "cpu", "memory", "cpu-reported-first", "pods", "no-requests-fit-a-full-node"])
def test_node_resources_fit(pod, node, placed, expected):
    others = tuple(request(name=f"other-{i}", **p) for i, p in enumerate(placed))
    assert node_resources_fit.filter_node(request(**pod), info(placed=others, **node)) == expected


# ---------------------------------------------------------------- scores


def scores(plugin, pod: PodRequest, nodes: list[NodeInfo], snapshot: Snapshot | None = None) -> list[float]:
    result = plugin.score_nodes(pod, nodes, snapshot or Snapshot.of(nodes))
    assert all(0.0 <= s <= 100.0 for s in result)
    return result


def test_least_allocated_prefers_the_emptier_node():
    pod = request(cpu="1", memory="1Gi")
    busy = info(name="busy", placed=(request(name="x", cpu="2", memory="4Gi"),))
    empty = info(name="empty")
    busy_score, empty_score = scores(least_allocated, pod, [busy, empty])
    assert empty_score > busy_score
    assert empty_score == pytest.approx(((3 / 4) + (7 / 8)) * 50)


def test_least_allocated_counts_requestless_pods_at_the_defaults():
    pod = request(cpu=None, memory=None)
    crowded = info(name="crowded", placed=tuple(request(name=f"x{i}", cpu=None, memory=None) for i in range(5)))
    empty = info(name="empty")
    assert scores(least_allocated, pod, [crowded, empty])[0] < scores(least_allocated, pod, [crowded, empty])[1]


@pytest.mark.parametrize("pod,expected", [
    (dict(cpu="1", memory="2Gi"), 100.0),  # a quarter of each
    (dict(cpu="2", memory="1Gi"), 100.0 - abs(2 / 4 - 1 / 8) * 50),
], ids=["balanced", "cpu-heavy"])
def test_balanced_allocation(pod, expected):
    assert scores(balanced_allocation, request(**pod), [info()]) == [pytest.approx(expected)]


def zoned(name: str, zone: str) -> NodeInfo:
    return info(name=name, labels={ZONE_LABEL: zone})


def test_topology_spread_prefers_nodes_and_zones_with_fewer_replicas():
    nodes = [zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")]
    placed = {"default/web": {"a1": 1}}
    snapshot = Snapshot.of(nodes, placed)
    pod = request(deployment="web")
    a1, a2, b1 = scores(pod_topology_spread, pod, list(snapshot.nodes.values()), snapshot)
    assert b1 == 100.0 and b1 > a2 > a1


def test_topology_spread_ignores_other_deployments_and_loose_pods():
    nodes = [zoned("a1", "a"), zoned("b1", "b")]
    snapshot = Snapshot.of(nodes, {"default/api": {"a1": 5}, "default/web": {}})
    assert scores(pod_topology_spread, request(deployment="web"), nodes, snapshot) == [100.0, 100.0]
    assert scores(pod_topology_spread, request(), nodes, snapshot) == [0.0, 0.0]


def test_pods_of_a_deployment_spread_by_annotation():
    assert request(deployment="web").group == "default/web"
    assert request().group == ""
