"""What agents report for image locality: the hollow driver's pulled images, and the reporter's appends."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.events import NodeDeregistered, NodeImagesReported, NodeRegistered
from dockyard.schemas.manifests import Condition, ContainerImage
from dockyard.services.node_agent.held_images import MAX_IMAGES, ImageReporter, held_images_of, reported_images
from dockyard.services.node_agent.hollow import HollowDriver, simulated_size
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.view import ClusterView
from tests.builders import event_record, make_pod

_replace = msgspec.structs.replace


def pod_on(node: str, image: str, name: str = "p"):
    pod = make_pod(name)
    containers = tuple(_replace(c, image=image) for c in pod.spec.containers)
    return _replace(pod, spec=_replace(pod.spec, node_name=node, containers=containers))


def view_with(*names: str, images: tuple[ContainerImage, ...] = ()) -> ClusterView:
    view = ClusterView()
    ready = (Condition(type="Ready", status="True"),)
    for seq, name in enumerate(names, start=1):
        node = node_manifest(name, capacity("4", "8Gi", 110))
        view.nodes[name] = _replace(node, status=_replace(node.status, conditions=ready, images=images))
        view.node_seq[name] = seq
    return view


def test_a_hollow_node_holds_the_images_of_the_pods_it_started():
    driver = HollowDriver()
    assert driver.held_images_on("n1") == ()
    driver.worker_for(pod_on("n1", "reg:5000/app:1"), lambda: None)
    driver.worker_for(pod_on("n1", "reg:5000/app:1", "again"), lambda: None)
    held = driver.held_images_on("n1")
    assert held == (ContainerImage(names=("reg:5000/app:1",), size_bytes=simulated_size("reg:5000/app:1")),)
    assert driver.held_images_on("n1") is held  # unchanged: the same tuple, nothing to compare deeply
    assert driver.held_images_on("n2") == ()
    assert 20 * 2**20 <= simulated_size("reg:5000/app:1") <= 520 * 2**20


class OneNodeDriver:
    def held_images(self):
        return (ContainerImage(names=("a",), size_bytes=1),)


@pytest.mark.parametrize("driver, nodes, can_say", [
    (HollowDriver(), ("n1", "n2"), True),
    (OneNodeDriver(), ("n1",), True),
    (OneNodeDriver(), ("n1", "n2"), False),
    (object(), ("n1",), False),
], ids=["per-node", "one-node", "one-node-driver-many-nodes", "no-method"])
def test_which_drivers_can_say_what_a_node_holds(driver, nodes, can_say):
    assert (held_images_of(driver, nodes) is not None) == can_say


def test_the_report_keeps_the_largest_images_in_a_stable_order():
    many = tuple(ContainerImage(names=(f"i{n}",), size_bytes=n) for n in range(MAX_IMAGES + 10))
    reported = reported_images(many[::-1])
    assert len(reported) == MAX_IMAGES and reported == reported_images(many)
    assert reported[0].size_bytes == MAX_IMAGES + 9


def test_only_nodes_whose_images_changed_get_a_report_on_their_own_subject():
    driver = HollowDriver()
    driver.worker_for(pod_on("n1", "app:1"), lambda: None)
    view = view_with("n1", "n2")
    reporter = ImageReporter(None, view, ("n1", "n2"), driver.held_images_on, meta=None)
    (append,) = reporter.changed()
    # Not the node's subject, and no expected sequence: a report never refuses a binding, nor is refused.
    assert append.subject == "dy.evt.nodeimages.n1" and append.expected_seq is None
    assert append.event == NodeImagesReported(node_name="n1", images=driver.held_images_on("n1"))

    view.apply(event_record(9, append.subject, append.event))
    assert view.nodes["n1"].status.images == driver.held_images_on("n1")  # the log now says so
    assert reporter.changed() == []


def test_a_report_on_its_way_is_not_repeated():
    driver = HollowDriver()
    driver.worker_for(pod_on("n1", "app:1"), lambda: None)
    view = view_with("n1")
    reporter = ImageReporter(None, view, ("n1",), driver.held_images_on, meta=None)
    reporter.sent["n1"] = driver.held_images_on("n1")  # appended, not yet read back by the view
    assert reporter.changed() == []


def test_a_node_registered_again_is_told_what_it_holds_again():
    driver = HollowDriver()
    driver.worker_for(pod_on("n1", "app:1"), lambda: None)
    view = view_with("n1")
    reporter = ImageReporter(None, view, ("n1",), driver.held_images_on, meta=None)
    (append,) = reporter.changed()
    reporter.sent["n1"] = append.event.images
    view.apply(event_record(9, append.subject, append.event))
    assert reporter.changed() == [] and "n1" not in reporter.sent  # read back: the view is the reference now
    view.apply(event_record(10, "dy.evt.node.n1", NodeDeregistered()))
    view.apply(event_record(11, "dy.evt.node.n1", NodeRegistered(node=node_manifest("n1", capacity("4", "8Gi", 110)))))
    (again,) = reporter.changed()
    assert again.event == append.event


def test_a_hollow_node_reports_canonical_names_like_a_runc_node():
    driver = HollowDriver()
    driver.worker_for(pod_on("n1", "busybox:1.36"), lambda: None)
    driver.worker_for(pod_on("n1", "docker.io/library/busybox:1.36", "same-image"), lambda: None)
    (held,) = driver.held_images_on("n1")
    assert held.names == ("docker.io/library/busybox:1.36",)
