"""The node an agent registers: flags, merging with what exists, Ready status."""

import pytest

from dockyard.schemas.manifests import Condition, Node, NodeSpec, NodeStatus, ObjectMeta, Taint
from dockyard.services.node_agent.node import (
    capacity,
    is_ready,
    merged_with_current,
    node_manifest,
    parse_labels,
    parse_taints,
    ready_status,
)


@pytest.mark.parametrize("text, expected", [
    ("", {}), ("a=b", {"a": "b"}), ("a=b, c=d", {"a": "b", "c": "d"}), ("k=", {"k": ""}),
    ("topology.kubernetes.io/zone=z1", {"topology.kubernetes.io/zone": "z1"}),
], ids=["empty", "one", "two", "empty-value", "prefixed"])
def test_parse_labels(text, expected):
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=v"], ids=["no-equals", "no-key"])
def test_bad_labels(text):
    with pytest.raises(ValueError, match="key=value"):
        parse_labels(text)


@pytest.mark.parametrize("text, expected", [
    ("", ()),
    ("dedicated=gpu:NoSchedule", (Taint(key="dedicated", value="gpu", effect="NoSchedule"),)),
    ("spot:PreferNoSchedule,a=b:NoExecute", (Taint(key="spot", effect="PreferNoSchedule"),
                                             Taint(key="a", value="b", effect="NoExecute"))),
], ids=["empty", "key-value", "key-only-and-two"])
def test_parse_taints(text, expected):
    assert parse_taints(text) == expected


@pytest.mark.parametrize("text", ["a=b", "a=b:Sometimes", ":NoSchedule"], ids=["no-effect", "bad-effect", "no-key"])
def test_bad_taints(text):
    with pytest.raises(ValueError, match="taint"):
        parse_taints(text)


def test_capacity_is_canonical():
    assert capacity("4000m", "8192Mi", 110) == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert capacity(2, "1500Mi", 10) == {"cpu": "2", "memory": "1500Mi", "pods": "10"}


def test_manifest_labels_the_hostname():
    node = node_manifest("n1", {"cpu": "1"}, {"disk": "ssd"})
    assert node.metadata.labels == {"disk": "ssd", "kubernetes.io/hostname": "n1"}


def test_re_registering_keeps_what_others_added():
    current = Node(metadata=ObjectMeta(name="n1", labels={"team": "a", "kubernetes.io/hostname": "n1"}),
                   spec=NodeSpec(capacity={"cpu": "1"}, unschedulable=True,
                                 taints=(Taint(key="node.kubernetes.io/unreachable", effect="NoExecute"),
                                         Taint(key="old", effect="NoSchedule"))))
    wanted = node_manifest("n1", {"cpu": "2"}, {"disk": "ssd"}, (Taint(key="new", effect="NoSchedule"),))
    merged = merged_with_current(current, wanted)
    assert merged.metadata.labels == {"disk": "ssd", "kubernetes.io/hostname": "n1", "team": "a"}
    assert merged.spec.unschedulable and merged.spec.capacity == {"cpu": "2"}
    assert [t.key for t in merged.spec.taints] == ["new", "node.kubernetes.io/unreachable"]
    assert merged_with_current(None, wanted) is wanted


def test_ready_status_keeps_its_time_while_ready():
    cap = {"cpu": "2", "pods": "10"}
    first = ready_status(cap, None, "T0")
    assert first.allocatable == first.capacity == cap
    assert [(c.type, c.status, c.reason, c.last_transition_time) for c in first.conditions] == [
        ("Ready", "True", "KubeletReady", "T0")]
    assert ready_status(cap, first, "T1") == first
    not_ready = NodeStatus(capacity=cap, allocatable=cap,
                           conditions=(Condition(type="Ready", status="Unknown", last_transition_time="T1"),))
    assert ready_status(cap, not_ready, "T2").conditions[0].last_transition_time == "T2"


def test_is_ready():
    node = node_manifest("n1", {})
    assert not is_ready(None) and not is_ready(node)
    ready = Node(metadata=node.metadata, status=ready_status({}, None, "T0"))
    assert is_ready(ready)
