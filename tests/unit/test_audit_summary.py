"""change_summary: what a command changed, in one short deterministic line."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.manifests import validate
from dockyard.services.api.decide import RESTARTED_AT, SUMMARY_LIMIT, change_summary
from tests.builders import deployment_manifest, make_deployment, make_pod

_replace = msgspec.structs.replace


def make_node(name: str = "n1", unschedulable: bool = False, taints: tuple = ()):
    return validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                     "spec": {"capacity": {"cpu": 4}, "unschedulable": unschedulable, "taints": list(taints)}})


def with_labels(resource, **labels):
    return _replace(resource, metadata=_replace(resource.metadata, labels=labels))


def with_spec(deployment, **fields):
    return _replace(deployment, spec=_replace(deployment.spec, **fields))


def with_template_annotation(deployment, key: str, value: str):
    template = deployment.spec.template
    meta = _replace(template.metadata, annotations={**template.metadata.annotations, key: value})
    return with_spec(deployment, template=_replace(template, metadata=meta))


def with_containers(deployment, *containers):
    template = deployment.spec.template
    return with_spec(deployment, template=_replace(template, spec=_replace(template.spec, containers=containers)))


WEB = make_deployment("web", replicas=3, image="nginx:1.27")
WEB_CONTAINER = WEB.spec.template.spec.containers[0]
SIDECAR = _replace(WEB_CONTAINER, name="proxy", image="envoy:1.30")
POD = make_pod("solo")

CASES = {
    "created": (None, WEB, "created"),
    "deleted": (WEB, None, "deleted"),
    "nothing-either-side": (None, None, ""),
    "unchanged": (WEB, WEB, ""),
    "scaled-up": (WEB, with_spec(WEB, replicas=5), "replicas 3→5"),
    "scaled-to-zero": (WEB, with_spec(WEB, replicas=0), "replicas 3→0"),
    "new-image": (WEB, make_deployment("web", replicas=3, image="nginx:1.28"), "image web: nginx:1.27→nginx:1.28"),
    "image-and-replicas": (WEB, make_deployment("web", replicas=5, image="nginx:1.28"),
                           "replicas 3→5, image web: nginx:1.27→nginx:1.28"),
    "other-container-field": (WEB, make_deployment("web", replicas=3, cpu="500m"), "container web changed"),
    "container-added": (WEB, with_containers(WEB, WEB_CONTAINER, SIDECAR), "+container proxy"),
    "container-removed": (with_containers(WEB, WEB_CONTAINER, SIDECAR), WEB, "-container proxy"),
    "label-added": (WEB, with_labels(WEB, app="web", tier="web"), "labels +tier=web"),
    "labels-changed-and-removed": (with_labels(WEB, app="web", env="dev", tier="web"),
                                   with_labels(WEB, app="api", tier="web"), "labels app=web→api -env"),
    "paused": (WEB, with_spec(WEB, paused=True), "paused"),
    "resumed": (with_spec(WEB, paused=True), WEB, "resumed"),
    "restarted": (WEB, with_template_annotation(WEB, RESTARTED_AT, "2026-11-26T10:00:00Z"), "restarted"),
    "undo-drops-an-old-restart-stamp": (with_template_annotation(WEB, RESTARTED_AT, "2026-11-26T10:00:00Z"), WEB,
                                        ""),
    "strategy-changed": (WEB, with_spec(WEB, min_ready_seconds=10), "spec changed"),
    "annotations": (WEB, _replace(WEB, metadata=_replace(WEB.metadata, annotations={"note": "x"})),
                    "annotations changed"),
    "pod-image": (POD, make_pod("solo", containers=[{"name": "main", "image": "busybox:1.37"}]),
                  "image main: busybox→busybox:1.37"),
    "pod-other-spec": (POD, make_pod("solo", restartPolicy="Never"), "spec changed"),
    "cordoned": (make_node(), make_node(unschedulable=True), "cordoned"),
    "uncordoned": (make_node(unschedulable=True), make_node(), "uncordoned"),
    "node-taints": (make_node(), make_node(taints=({"key": "gpu", "effect": "NoSchedule"},)), "spec changed"),
}


@pytest.mark.parametrize("current,incoming,expected", CASES.values(), ids=CASES.keys())
def test_change_summary(current, incoming, expected):
    assert change_summary(current, incoming) == expected


def test_a_long_summary_is_cut_to_one_line():
    many = {f"label-{i:03}": "x" * 10 for i in range(40)}
    summary = change_summary(WEB, with_labels(WEB, **many))
    assert len(summary) == SUMMARY_LIMIT and summary.endswith("…")
    assert summary.startswith("labels +label-000=xxxxxxxxxx")


def test_the_summary_does_not_depend_on_label_order():
    forward = with_labels(WEB, a="1", b="2", c="3")
    backward = with_labels(WEB, c="3", b="2", a="1")
    assert change_summary(WEB, forward) == change_summary(WEB, backward) == "labels +a=1 +b=2 +c=3 -app"


def test_a_manifest_that_only_changes_replicas_summarises_as_replicas():
    assert change_summary(WEB, validate(deployment_manifest("web", replicas=4))) == "replicas 3→4"
