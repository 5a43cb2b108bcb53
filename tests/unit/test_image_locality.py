"""The image-locality score: nodes holding the pod's images win, scaled by size and by how many nodes hold them."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.manifests import ContainerImage
from dockyard.services.scheduler.framework import schedule_pod
from dockyard.services.scheduler.plugins import image_locality
from dockyard.services.scheduler.snapshot import Snapshot, image_name, node_info
from tests.unit.test_scheduler_plugins import make_node, make_pod, request, scores

MIB = 1024 * 1024
APP = "reg:5000/team/app@sha256:" + "a" * 64


def holding(name: str, *images: tuple[str, int]):
    """A node's info holding `images` (reference, MiB)."""
    node = make_node(name)
    held = tuple(ContainerImage(names=(ref,), size_bytes=mib * MIB) for ref, mib in images)
    return node_info(msgspec.structs.replace(node, status=msgspec.structs.replace(node.status, images=held)))


def pod_running(image: str, name: str = "p1"):
    pod = make_pod(name)
    containers = tuple(msgspec.structs.replace(c, image=image) for c in pod.spec.containers)
    return request(msgspec.structs.replace(pod, spec=msgspec.structs.replace(pod.spec, containers=containers)))


@pytest.mark.parametrize("reference, normalised", [
    ("busybox", "busybox:latest"),
    ("reg:5000/team/app", "reg:5000/team/app:latest"),
    ("reg:5000/team/app:1.0", "reg:5000/team/app:1.0"),
    (APP, APP),
], ids=["bare", "registry-port-bare", "tagged", "digest"])
def test_image_names_are_normalised(reference, normalised):
    assert image_name(reference) == normalised


@pytest.mark.parametrize("held, expected", [
    ((), [0.0, 0.0]),
    (((APP, 500),), [pytest.approx(100 * (250 - 23) / (1000 - 23)), 0.0]),
    (((APP, 10),), [0.0, 0.0]),
    (((APP, 5000),), [100.0, 0.0]),
    ((("other:1", 500),), [0.0, 0.0]),
], ids=["nothing-held", "held-half-the-nodes", "below-the-threshold", "clamped", "another-image"])
def test_a_node_scores_the_size_it_holds_scaled_by_spread(held, expected):
    nodes = [holding("a", *held), holding("b")]
    assert scores(image_locality, pod_running(APP), nodes) == expected


def test_an_image_every_node_holds_scores_more_than_a_rare_one_of_equal_size():
    rare = [holding("a", (APP, 500)), holding("b"), holding("c"), holding("d")]
    common = [holding(n, (APP, 500)) for n in "abcd"]
    assert scores(image_locality, pod_running(APP), common)[0] > scores(image_locality, pod_running(APP), rare)[0]


def test_a_bare_reference_matches_a_node_s_latest():
    nodes = [holding("a", ("busybox:latest", 800)), holding("b")]
    first, second = scores(image_locality, pod_running("busybox"), nodes)
    assert first > 0 and second == 0


def test_the_scheduler_places_the_pod_where_its_image_is():
    nodes = [holding(f"n{i}") for i in range(6)] + [holding("warm", (APP, 900))]
    decision = schedule_pod(pod_running(APP), Snapshot.of(nodes))
    assert decision.node == "warm"
    assert decision.candidates[0].plugins[image_locality.NAME] > 0
