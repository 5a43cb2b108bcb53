"""Held images as their own aggregate: node.images_reported.v1 folded into the node's status by every reader."""

from __future__ import annotations

import msgspec

from dockyard.eventlog import subject_for
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported, NodeRegistered, NodeStatusChanged, PodsBound
from dockyard.schemas.manifests import ContainerImage
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.services.projector.node_images import latest_reports
from dockyard.services.scheduler.cache import SchedulerCache
from dockyard.state import with_held_images
from dockyard.view import ClusterView
from tests.builders import event_record

_replace = msgspec.structs.replace

NODE = subject_for("node", "", "n1")
IMAGES = subject_for("nodeimages", "", "n1")
NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)


def registered(name: str = "n1"):
    return NodeRegistered(node=node_manifest(name, capacity("4", "8Gi", 110)))


def status_with(images: tuple[ContainerImage, ...], node=None) -> NodeStatusChanged:
    node = node or registered().node
    return NodeStatusChanged(status=_replace(node.status, images=images))


def view_of(*pairs) -> ClusterView:
    view = ClusterView()
    for seq, (subject, event) in enumerate(pairs, start=1):
        view.apply(event_record(seq, subject, event))
    return view


def test_a_report_sets_the_nodes_images_without_moving_its_sequence_or_version():
    view = view_of((NODE, registered()), (IMAGES, NodeImagesReported(node_name="n1", images=NGINX)))
    node = view.nodes["n1"]
    assert node.status.images == NGINX
    # A binding expects the node subject's sequence: the report, on a subject of its own, leaves it be.
    assert view.node_seq["n1"] == 1 and node.metadata.resource_version == "1"
    assert view.position == 2


def test_a_report_before_the_node_registers_is_held_until_it_does():
    view = view_of((IMAGES, NodeImagesReported(node_name="n1", images=NGINX)))
    assert "n1" not in view.nodes
    view.apply(event_record(2, NODE, registered()))
    assert view.nodes["n1"].status.images == NGINX


def test_a_status_written_from_an_older_read_does_not_undo_a_report():
    view = view_of((NODE, registered()), (IMAGES, NodeImagesReported(node_name="n1", images=NGINX)),
                   (NODE, status_with(REDIS)))  # e.g. the controller's NotReady, from a view without the report
    assert view.nodes["n1"].status.images == NGINX
    view.apply(event_record(4, IMAGES, NodeImagesReported(node_name="n1", images=REDIS + NGINX)))
    assert view.nodes["n1"].status.images == REDIS + NGINX


def test_an_older_log_with_images_in_the_status_reads_as_before():
    view = view_of((NODE, registered()), (NODE, status_with(NGINX)))
    assert view.nodes["n1"].status.images == NGINX


def test_a_deregistration_forgets_the_nodes_report():
    view = view_of((NODE, registered()), (IMAGES, NodeImagesReported(node_name="n1", images=NGINX)),
                   (NODE, NodeDeregistered()))
    assert "n1" not in view.nodes and "n1" not in view.node_images  # no growth with node-name churn
    view.apply(event_record(4, NODE, registered()))
    assert view.nodes["n1"].status.images == ()  # until its agent says what it holds


def test_reports_of_one_node_leave_the_others_alone():
    other = subject_for("node", "", "n2")
    view = view_of((NODE, registered()), (other, registered("n2")),
                   (IMAGES, NodeImagesReported(node_name="n1", images=NGINX)))
    assert view.nodes["n2"].status.images == ()


def test_the_join_keeps_the_same_node_when_nothing_changes():
    node = registered().node
    assert with_held_images(node, {}) is node
    assert with_held_images(node, {"n1": ()}) is node
    assert with_held_images(None, {"n1": NGINX}) is None
    assert with_held_images(node, {"n1": NGINX}).status.images == NGINX


def test_the_scheduler_sees_a_report_though_the_nodes_version_stays():
    view = view_of((NODE, registered()), (NODE, status_with((), registered().node)))
    cache = SchedulerCache(view)
    assert cache.snapshot(set()).nodes["n1"].images == {}
    view.apply(event_record(3, IMAGES, NodeImagesReported(node_name="n1", images=NGINX)))
    assert cache.snapshot(set()).nodes["n1"].images == {"docker.io/library/nginx:1.27": 70 << 20}


def test_bindings_after_a_report_expect_the_node_subjects_sequence():
    view = view_of((NODE, registered()), (IMAGES, NodeImagesReported(node_name="n1", images=NGINX)))
    cache = SchedulerCache(view)
    assert cache.node_expected_seq(cache.snapshot(set()).nodes["n1"]) == 1
    view.apply(event_record(3, NODE, PodsBound(pods=())))
    assert cache.node_expected_seq(cache.snapshot(set()).nodes["n1"]) == 3


def test_the_projection_keeps_each_nodes_last_report_of_a_batch():
    other = subject_for("nodeimages", "", "n2")
    records = [event_record(1, IMAGES, NodeImagesReported(node_name="n1", images=NGINX)),
               event_record(2, NODE, registered()),
               event_record(3, other, NodeImagesReported(node_name="n2", images=REDIS)),
               event_record(4, IMAGES, NodeImagesReported(node_name="n1", images=REDIS))]
    latest = latest_reports(records)
    assert {name: (r.images, r.seq) for name, r in latest.items()} == {"n1": (REDIS, 4), "n2": (REDIS, 3)}


def test_a_cycle_planned_after_the_view_read_our_last_binding_still_expects_it():
    """Deciding overlaps the previous cycle's write; pruning in between must not make the plan expect too little."""
    view = view_of((NODE, registered()))
    cache = SchedulerCache(view)
    decided_on = cache.snapshot(set()).nodes["n1"]  # this cycle read the node at sequence 1
    cache.confirm([], "n1", node_seq=2, last_seq=2)  # meanwhile the previous cycle's PodsBound landed at 2
    view.apply(event_record(2, NODE, PodsBound(pods=())))
    cache.prune()  # as the scheduler does on every batch the view reads
    assert cache.node_expected_seq(decided_on) == 2  # not 1: that would refuse our own next binding

    cache.prune()
    next_cycle = cache.snapshot(set()).nodes["n1"]
    cache.prune()
    assert cache.written_node == {} and cache.node_expected_seq(next_cycle) == 2
