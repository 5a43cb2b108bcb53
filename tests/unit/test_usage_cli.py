"""How usage and health print: `dockyard top` rows and `dockyard status`'s summary lines."""

from __future__ import annotations

import pytest

from dockyard.cli_top import node_rows, pod_rows
from dockyard.cluster_summary import ClusterSummary
from dockyard.printers import cluster_summary_lines
from dockyard.schemas.usage import ContainerUsage, NodeUsage, PodUsage

MI = 1024 * 1024


def node(name: str, cpu: str = "2", memory: str = "4Gi") -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


USAGES = {
    "n1": NodeUsage(node="n1", timestamp="t", cpu_millis=500, memory_bytes=1024 * MI, pods=(
        PodUsage(namespace="default", name="web-1", cpu_millis=250, memory_bytes=64 * MI),
        PodUsage(namespace="team", name="job-1", cpu_millis=900, memory_bytes=8 * MI),
    )),
    "n2": NodeUsage(node="n2", timestamp="t", cpu_millis=1500, memory_bytes=512 * MI, pods=(
        PodUsage(namespace="default", name="api-1", cpu_millis=5, memory_bytes=300 * MI),
    )),
}


def test_nodes_show_usage_and_share_of_allocatable_and_unknown_without_a_report():
    assert node_rows([node("n2"), node("n1"), node("n3")], USAGES) == [
        ["n1", "500m", "25%", "1024Mi", "25%"],
        ["n2", "1500m", "75%", "512Mi", "12%"],
        ["n3", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
    ]
    assert [row[0] for row in node_rows([node("n1"), node("n2")], USAGES, sort_by="cpu")] == ["n2", "n1"]


@pytest.mark.parametrize(("namespace", "all_namespaces", "sort_by", "expected"), [
    ("default", False, None, [["api-1", "5m", "300Mi"], ["web-1", "250m", "64Mi"]]),
    ("team", False, None, [["job-1", "900m", "8Mi"]]),
    ("default", True, "cpu", [["team", "job-1", "900m", "8Mi"], ["default", "web-1", "250m", "64Mi"],
                              ["default", "api-1", "5m", "300Mi"]]),
    ("default", False, "memory", [["api-1", "5m", "300Mi"], ["web-1", "250m", "64Mi"]]),
], ids=["namespace", "other-namespace", "all-by-cpu", "by-memory"])
def test_pods(namespace, all_namespaces, sort_by, expected):
    assert pod_rows(USAGES, namespace, all_namespaces, sort_by) == expected


CONTAINER_USAGES = {
    "n1": NodeUsage(node="n1", timestamp="t", pods=(
        PodUsage(namespace="default", name="web-1", cpu_millis=250, memory_bytes=64 * MI, containers=(
            ContainerUsage(name="app", cpu_millis=200, memory_bytes=48 * MI),
            ContainerUsage(name="proxy", cpu_millis=50, memory_bytes=16 * MI))),
        PodUsage(namespace="default", name="old-1", cpu_millis=900, memory_bytes=8 * MI),  # an older agent's
        PodUsage(namespace="team", name="job-1", cpu_millis=300, memory_bytes=8 * MI, containers=(
            ContainerUsage(name="main", cpu_millis=300, memory_bytes=8 * MI),)),
    )),
}


@pytest.mark.parametrize(("all_namespaces", "sort_by", "expected"), [
    (False, None, [["web-1", "app", "200m", "48Mi"], ["web-1", "proxy", "50m", "16Mi"]]),
    (True, "cpu", [["team", "job-1", "main", "300m", "8Mi"], ["default", "web-1", "app", "200m", "48Mi"],
                   ["default", "web-1", "proxy", "50m", "16Mi"]]),
], ids=["namespace", "all-by-pod-cpu"])
def test_pods_with_containers(all_namespaces, sort_by, expected):
    assert pod_rows(CONTAINER_USAGES, "default", all_namespaces, sort_by, containers=True) == expected


def test_the_status_summary():
    summary = ClusterSummary(nodes=3, nodes_ready=2, pods_by_phase={"Pending": 1, "Running": 4},
                             firing={"NodeNotReady (critical)": 1}, projection_lag={"pods": 0, "nodes": 12})
    assert cluster_summary_lines(summary) == [
        "nodes:        2 ready of 3",
        "pods:         Pending 1, Running 4",
        "alerts:       1 firing: NodeNotReady (critical) 1",
        "projections:  12 events behind: nodes 12",
    ]
    assert cluster_summary_lines(ClusterSummary(problem="OSError: refused")) == ["cluster:      unknown (OSError: refused)"]
