"""The console's nodes view folds a node's image reports (`dy.evt.nodeimages.<node>`) into its row."""

from __future__ import annotations

import msgspec

from dockyard.eventlog import subject_for
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported, NodeStatusChanged, PodCreated
from dockyard.schemas.manifests import ContainerImage
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.tui.rows import ResourceRows
from tests.builders import event_record, make_pod

_replace = msgspec.structs.replace

NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)
NODE = node_manifest("n1", capacity("4", "8Gi", 110))


def report(seq: int, images) -> object:
    return event_record(seq, subject_for("nodeimages", "", "n1"), NodeImagesReported(node_name="n1", images=images))


def status(seq: int, images) -> object:
    return event_record(seq, subject_for("node", "", "n1"),
                        NodeStatusChanged(status=_replace(NODE.status, images=images)))


def node_rows(held=None) -> ResourceRows:
    rows = ResourceRows("Node")
    rows.load([msgspec.to_builtins(_replace(NODE, status=_replace(NODE.status, images=NGINX)))], position=10)
    rows.held = dict(held or {})
    return rows


def images_of(rows: ResourceRows) -> list:
    return rows.objects["/n1"]["status"]["images"]


def test_the_nodes_view_takes_its_nodes_and_their_image_reports():
    assert ResourceRows("Node").subject_kinds == ("node", "nodeimages")
    assert ResourceRows("Pod").subject_kinds == ("pod",)
    pod = event_record(12, subject_for("pod", "default", "p"), PodCreated(pod=make_pod("p")))
    by_kind = {"node": [status(11, ()), status(14, ())], "nodeimages": [report(13, REDIS)], "pod": [pod]}
    assert [r.seq for r in ResourceRows("Node").records_of(by_kind)] == [11, 13, 14]
    assert ResourceRows("Pod").records_of(by_kind) == [pod]
    assert ResourceRows("Deployment").records_of(by_kind) == []


def test_a_report_changes_the_nodes_row():
    rows = node_rows(held={"n1": NGINX})
    assert rows.absorb([report(11, REDIS)]) == {"/n1"} and not rows.structural
    assert images_of(rows) == msgspec.to_builtins(REDIS)
    assert rows.objects["/n1"]["metadata"] == msgspec.to_builtins(NODE.metadata)  # the node's own version stays


def test_a_later_status_does_not_undo_a_report_read_before_the_list():
    rows = node_rows(held={"n1": NGINX})
    assert rows.absorb([status(11, REDIS)]) == {"/n1"}
    assert images_of(rows) == msgspec.to_builtins(NGINX)


def test_a_node_never_reported_for_shows_its_statuss_images():
    rows = node_rows()
    rows.absorb([status(11, REDIS)])
    assert images_of(rows) == msgspec.to_builtins(REDIS)


def test_a_report_at_or_before_the_listed_position_is_not_folded_twice():
    rows = node_rows(held={"n1": NGINX})
    assert rows.absorb([report(9, REDIS)]) == set()
    assert images_of(rows) == msgspec.to_builtins(NGINX)


def test_a_deregistration_forgets_the_report():
    rows = node_rows(held={"n1": NGINX})
    rows.absorb([event_record(11, subject_for("node", "", "n1"), NodeDeregistered())])
    assert rows.held == {} and rows.objects == {}


def test_clearing_the_rows_forgets_the_reports():
    rows = node_rows(held={"n1": NGINX})
    rows.clear()
    assert rows.held == {} and rows.objects == {}
