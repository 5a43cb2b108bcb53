"""The framework: filters then scores, the reasons it keeps, its message, and its seeded choices."""

from __future__ import annotations

import pytest

from dockyard.schemas.events import NodeRegistered, PodDeleted
from dockyard.services.scheduler.framework import (
    Profile,
    schedule_pod,
    unschedulable_message,
)
from dockyard.services.scheduler.snapshot import Snapshot
from tests.unit.test_scheduler_plugins import info, request, taint


def cluster(*nodes) -> Snapshot:
    return Snapshot.of(list(nodes))


def test_unschedulable_message_names_each_reason_with_its_count():
    small = [info(name=f"small-{i}", cpu="1") for i in range(31)]
    gpu = [info(name=f"gpu-{i}", cpu="64", taints=[taint("dedicated", "gpu")]) for i in range(9)]
    decision = schedule_pod(request(cpu="2"), cluster(*small, *gpu))
    assert decision.node is None
    assert decision.message == "0/40 nodes fit: 31 insufficient cpu, 9 untolerated taint dedicated=gpu"
    assert decision.filtered == {"NodeResourcesFit": 31, "TaintToleration": 9}
    assert NodeRegistered.type_name() in decision.requeue_on
    assert PodDeleted.type_name() in decision.requeue_on


@pytest.mark.parametrize("total,reasons,expected", [
    (0, {}, "0/0 nodes fit: no nodes registered"),
    (3, {"not ready": 1, "cordoned": 1, "too many pods": 1},
     "0/3 nodes fit: 1 cordoned, 1 not ready, 1 too many pods"),
    (5, {"insufficient memory": 2, "host port conflict": 3},
     "0/5 nodes fit: 3 host port conflict, 2 insufficient memory"),
], ids=["no-nodes", "ties-alphabetical", "most-first"])
def test_unschedulable_message(total, reasons, expected):
    assert unschedulable_message(total, reasons) == expected


def test_a_node_counts_under_the_first_filter_that_rejects_it():
    node = info(name="n", cpu="1", ready=False, taints=[taint("dedicated", "gpu")])
    decision = schedule_pod(request(cpu="2"), cluster(node))
    assert decision.filtered == {"NodeReady": 1}
    assert decision.message == "0/1 nodes fit: 1 not ready"


def test_bound_decision_records_filters_and_top_three_candidates():
    nodes = [info(name=f"n{i}", cpu=str(i + 1)) for i in range(5)] + [info(name="tainted", taints=[taint("x")])]
    decision = schedule_pod(request(cpu="1500m"), cluster(*nodes))
    assert decision.node == "n4"  # the most room left
    assert decision.filtered == {"NodeResourcesFit": 1, "TaintToleration": 1}
    assert [c.node for c in decision.candidates] == ["n4", "n3", "n2"]
    assert set(decision.candidates[0].plugins) == {"LeastAllocated", "BalancedAllocation", "PodTopologySpread",
                                                  "ImageLocality"}
    first = decision.candidates[0]
    assert first.score == pytest.approx(sum(first.plugins[p] * w for p, w in
                                            (("LeastAllocated", 1), ("BalancedAllocation", 1),
                                             ("PodTopologySpread", 2))), abs=0.05)


def test_the_same_pod_and_snapshot_give_the_same_node():
    snapshot = cluster(*(info(name=f"n{i}") for i in range(20)))
    pod = request(uid="0f8a")
    assert len({schedule_pod(pod, snapshot).node for _ in range(5)}) == 1
    assert schedule_pod(pod, cluster(*(info(name=f"n{i}") for i in range(20)))).node == schedule_pod(pod, snapshot).node


def test_ties_are_broken_by_the_pod_uid_not_by_node_order():
    snapshot = cluster(*(info(name=f"n{i:02d}") for i in range(20)))
    chosen = {schedule_pod(request(name=f"p{i}", uid=f"uid-{i}"), snapshot).node for i in range(40)}
    assert len(chosen) > 5  # identical nodes: pods land all over, not all on n00


def test_placements_within_a_cycle_are_seen_by_the_next_pod():
    snapshot = cluster(info(name="a", cpu="1"), info(name="b", cpu="1"))
    first = schedule_pod(request(name="p1", cpu="800m"), snapshot)
    snapshot = snapshot.place(first.pod, first.node)
    second = schedule_pod(request(name="p2", cpu="800m"), snapshot)
    assert {first.node, second.node} == {"a", "b"}
    snapshot = snapshot.place(second.pod, second.node)
    third = schedule_pod(request(name="p3", cpu="800m"), snapshot)
    assert third.node is None and third.message == "0/2 nodes fit: 2 insufficient cpu"


def test_placing_returns_a_new_snapshot_and_leaves_the_old_one():
    before = cluster(info(name="a"))
    after = before.place(request(cpu="1"), "a")
    assert before.nodes["a"].cpu_requested == 0 and after.nodes["a"].cpu_requested == 1000


def test_replicas_spread_across_zones():
    nodes = [info(name=f"{zone}{i}", labels={"topology.kubernetes.io/zone": zone}) for zone in "abc" for i in range(3)]
    snapshot = cluster(*nodes)
    zones = []
    for i in range(6):
        decision = schedule_pod(request(name=f"web-{i}", deployment="web"), snapshot)
        snapshot = snapshot.place(decision.pod, decision.node)
        zones.append(decision.node[0])
    assert sorted(zones) == ["a", "a", "b", "b", "c", "c"]


@pytest.mark.parametrize("nodes,percentage,expected", [
    (50, 10, 50), (1000, 10, 100), (5000, 10, 500), (1000, 0, 420), (1000, 100, 1000), (10000, 0, 500),
], ids=["small-cluster-all", "floor-of-100", "ten-percent", "kubernetes-adaptive", "all", "adaptive-floor-5%"])
def test_how_many_feasible_nodes_are_enough(nodes, percentage, expected):
    assert Profile(percentage_of_nodes_to_score=percentage).nodes_to_find(nodes) == expected


def test_filtering_stops_once_enough_nodes_are_feasible_but_static_filters_count_all():
    nodes = [info(name=f"n{i:04d}") for i in range(1000)] + [info(name=f"t{i}", taints=[taint("x")]) for i in range(7)]
    decision = schedule_pod(request(), cluster(*nodes), Profile(percentage_of_nodes_to_score=10))
    assert decision.node is not None and decision.total_nodes == 1007
    assert decision.filtered == {"TaintToleration": 7}
