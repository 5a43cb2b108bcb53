"""The image-locality score: nodes holding the pod's images win, scaled by size and by how many nodes hold them."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.manifests import ContainerImage
from dockyard.services.scheduler.framework import schedule_pod
from dockyard.services.scheduler.plugins import image_locality
from dockyard.image_reference import canonical_name
from dockyard.services.scheduler.snapshot import Snapshot, node_info
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


BUSYBOX = "docker.io/library/busybox"
DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize("reference, canonical", [
    ("busybox", f"{BUSYBOX}:latest"),
    ("busybox:1.36", f"{BUSYBOX}:1.36"),
    ("library/busybox:1.36", f"{BUSYBOX}:1.36"),
    (f"{BUSYBOX}:1.36", f"{BUSYBOX}:1.36"),
    (f"busybox:1.36@{DIGEST}", f"{BUSYBOX}@{DIGEST}"),
    ("team/app:1", "docker.io/team/app:1"),
    ("reg:5000/team/app", "reg:5000/team/app:latest"),
    ("localhost/app:1", "localhost/app:1"),
    ("reg:5000/team/app:1.0", "reg:5000/team/app:1.0"),
    (APP, APP),
    ("@" + DIGEST, "@" + DIGEST),
], ids=["bare", "tagged", "library", "canonical", "tag-and-digest", "hub-namespace", "registry-port-bare",
        "localhost", "registry-tagged", "digest", "not-a-reference"])
def test_image_names_are_canonical(reference, canonical):
    assert canonical_name(reference) == canonical


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


@pytest.mark.parametrize("pod_image, node_name", [
    ("busybox:1.36", f"{BUSYBOX}:1.36"),
    (f"busybox@{DIGEST}", f"{BUSYBOX}@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"{BUSYBOX}@{DIGEST}"),
    (f"{BUSYBOX}:1.36", "busybox:1.36"),
], ids=["tag-on-a-runc-node", "digest-on-a-runc-node", "tag-and-digest", "canonical-pod-short-node-name"])
def test_a_pod_s_image_matches_the_canonical_name_a_node_reports(pod_image, node_name):
    nodes = [holding("a", (node_name, 800)), holding("b")]
    first, second = scores(image_locality, pod_running(pod_image), nodes)
    assert first > 0 and second == 0


@pytest.mark.parametrize("reference", ["busybox", "busybox:1.36", "team/app:1", "reg:5000/team/app:1.0",
                                       f"busybox@{DIGEST}", f"reg:5000/team/app:1.0@{DIGEST}"])
def test_the_scheduler_spells_an_image_as_the_runc_node_s_cache_reports_it(reference):
    from dockyard.services.node_agent.images import parse_reference

    pulled = parse_reference(reference)  # the cache reports `repo@digest` for a digest, else the reference
    reported = pulled.by_digest(pulled.digest) if pulled.digest else str(pulled)
    assert canonical_name(reference) == reported
