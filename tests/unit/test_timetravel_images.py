"""Time travel's fold of held images: a node in the past shows its last image report at or before that point."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.eventlog import subject_for
from dockyard.schemas.events import NodeDeregistered, NodeImagesReported, NodeRegistered, NodeStatusChanged, PodsBound
from dockyard.schemas.manifests import ContainerImage
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.timetravel import aggregate_subjects, history, kind_subjects, learn_held_images, replay
from dockyard.view import ClusterView
from tests.builders import event_record

_replace = msgspec.structs.replace

NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)
NODES = ("n1", "n2")


def registered(name: str) -> NodeRegistered:
    return NodeRegistered(node=node_manifest(name, capacity("4", "8Gi", 110)))


def status_with(name: str, images) -> NodeStatusChanged:
    return NodeStatusChanged(status=_replace(registered(name).node.status, images=images))


def node_subject(name: str) -> str:
    return subject_for("node", "", name)


def images_subject(name: str) -> str:
    return subject_for("nodeimages", "", name)


def reported(name: str, images) -> tuple:
    return images_subject(name), NodeImagesReported(node_name=name, images=images)


def records_of(*pairs):
    return [event_record(seq, subject, event) for seq, (subject, event) in enumerate(pairs, start=1)]


def images_of(objects, name: str):
    return objects[("", name)].status.images


def test_nodes_are_folded_from_their_own_subjects_and_their_image_reports():
    assert kind_subjects("Node") == ("dy.evt.node.>", "dy.evt.nodeimages.>")
    assert kind_subjects("Pod", "team") == "dy.evt.pod.team.*"
    assert aggregate_subjects("Node", "", "n1") == ("dy.evt.node.n1", "dy.evt.nodeimages.n1")
    assert aggregate_subjects("Pod", "team", "p") == "dy.evt.pod.team.p"


@pytest.mark.parametrize("pairs, expected", [
    ([(node_subject("n1"), registered("n1")), reported("n1", NGINX)], NGINX),
    ([reported("n1", NGINX), (node_subject("n1"), registered("n1"))], NGINX),
    ([(node_subject("n1"), registered("n1")), reported("n1", NGINX),
      (node_subject("n1"), status_with("n1", REDIS))], NGINX),
    ([(node_subject("n1"), registered("n1")), (node_subject("n1"), status_with("n1", REDIS))], REDIS),
    ([(node_subject("n1"), registered("n1")), reported("n1", NGINX),
      (node_subject("n1"), NodeDeregistered()), (node_subject("n1"), registered("n1"))], ()),
    ([(node_subject("n1"), registered("n1")), reported("n1", NGINX), (node_subject("n1"), NodeDeregistered()),
      reported("n1", REDIS), (node_subject("n1"), registered("n1"))], REDIS),
    ([(node_subject("n1"), registered("n1")), reported("n1", NGINX),
      reported("n1", REDIS)], REDIS),
], ids=["report after registration", "report before registration", "report wins over a later status",
        "never reported: the status's images", "a deregistration forgets the report", "a report after the deregistration", "the last report wins"])
def test_a_nodes_images_are_its_last_report(pairs, expected):
    assert images_of(replay({}, records_of(*pairs)), "n1") == expected


def test_a_report_keeps_the_nodes_resource_version():
    records = records_of((node_subject("n1"), registered("n1")), reported("n1", NGINX))
    assert replay({}, records)[("", "n1")].metadata.resource_version == "1"


def test_reports_are_carried_across_batches_in_held():
    records = records_of(reported("n1", NGINX), (node_subject("n1"), registered("n1")))
    held: dict = {}
    first = replay({}, records[:1], held)
    assert first == {} and held == {"n1": NGINX}
    assert images_of(replay(first, records[1:], held), "n1") == NGINX
    assert images_of(replay(first, records[1:]), "n1") == ()  # without what came before, the report is lost


def test_history_lists_a_report_with_the_images_it_moved():
    entries = history(records_of(
        (node_subject("n1"), registered("n1")),
        reported("n1", NGINX),
        reported("n1", NGINX),
    ))
    assert [e.type for e in entries] == ["node.registered.v1", "node.images_reported.v1", "node.images_reported.v1"]
    assert entries[1].detail.startswith("status.images[0] <none>→{")
    assert "nginx" in entries[1].detail
    assert entries[2].detail.startswith("node_name=n1, images=[{")  # the same images again: what it carried


# ---------------------------------------------------------------- any log: a snapshot, the view and a fold agree

EVENTS = st.one_of(
    st.builds(lambda n: (node_subject(n), registered(n)), st.sampled_from(NODES)),
    st.builds(lambda n, i: (node_subject(n), status_with(n, i)), st.sampled_from(NODES),
              st.sampled_from(((), NGINX, REDIS))),
    st.builds(lambda n: (node_subject(n), NodeDeregistered()), st.sampled_from(NODES)),
    st.builds(lambda n: (node_subject(n), PodsBound(pods=())), st.sampled_from(NODES)),
    st.builds(reported, st.sampled_from(NODES),
              st.sampled_from(((), NGINX, REDIS, NGINX + REDIS))),
)


def realistic(pairs):
    """The log without status events for nodes not registered at the time (no writer appends those)."""
    registered_now, kept = set(), []
    for subject, event in pairs:
        name = subject.rsplit(".", 1)[1]
        if isinstance(event, NodeRegistered):
            registered_now.add(name)
        elif isinstance(event, NodeDeregistered):
            registered_now.discard(name)
        elif isinstance(event, (NodeStatusChanged, PodsBound)) and name not in registered_now:
            continue
        kept.append((subject, event))
    return kept


def view_nodes(records):
    view = ClusterView()
    for record in records:
        view.apply(record)
    return {("", name): node for name, node in view.nodes.items()}


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=14), st.data())
def test_a_snapshot_plus_the_fold_after_it_gives_the_full_fold_and_the_views_nodes(pairs, data):
    records = records_of(*realistic(pairs))
    whole = replay({}, records)
    assert whole == view_nodes(records)

    # A snapshot holds the nodes at `at`, images joined; the fold after it starts from the
    # held images up to `at` (what `held_images_at` learns), as `fold_from` does.
    at = data.draw(st.integers(0, len(records)))
    snapshot = replay({}, records[:at])
    held: dict = {}
    for record in records[:at]:
        learn_held_images(held, record)
    assert replay(snapshot, records[at:], held) == whole
