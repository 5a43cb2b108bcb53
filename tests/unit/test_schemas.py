"""Every event and api schema round-trips: encode -> decode is identity, and encoding is deterministic."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.eventlog import envelope_headers, Metadata, record_from
from dockyard.schemas import api, events
from dockyard.schemas.manifests import (
    Condition,
    ContainerImage,
    ContainerStatus,
    DeploymentStatus,
    NodeStatus,
    PodStatus,
)
from tests.strategies import deployments, nodes, pods

_templates = deployments().map(lambda d: d.spec.template)

text = st.text(max_size=20)
conditions = st.lists(
    st.builds(Condition, type=st.sampled_from(["Ready", "PodScheduled", "Available"]),
              status=st.sampled_from(["True", "False", "Unknown"]), reason=text, message=text,
              last_transition_time=text),
    max_size=3,
).map(tuple)
counts = st.integers(min_value=0, max_value=10_000)
_strings = st.lists(text, max_size=2).map(tuple)
_platforms = st.lists(st.builds(
    events.ImagePlatform, digest=text, media_type=text, os=text, architecture=text, variant=text,
    config_digest=text, layers=counts, size=counts, env=_strings, entrypoint=_strings, cmd=_strings,
    working_dir=text, user=text, exposed_ports=_strings, labels=st.dictionaries(text, text, max_size=2),
    created=text), max_size=2).map(tuple)
_held_images = st.lists(st.builds(
    ContainerImage, names=st.lists(text, min_size=1, max_size=2).map(tuple), size_bytes=counts), max_size=2).map(tuple)

STRATEGIES: dict[type, st.SearchStrategy] = {
    events.DeploymentCreated: st.builds(events.DeploymentCreated, deployment=deployments()),
    events.DeploymentUpdated: st.builds(events.DeploymentUpdated, deployment=deployments()),
    events.DeploymentDeleted: st.just(events.DeploymentDeleted()),
    events.DeploymentStatusChanged: st.builds(events.DeploymentStatusChanged, status=st.builds(
        DeploymentStatus, observed_generation=counts, replicas=counts, updated_replicas=counts,
        ready_replicas=counts, available_replicas=counts, unavailable_replicas=counts, conditions=conditions)),
    events.PodCreated: st.builds(events.PodCreated, pod=pods()),
    events.PodUpdated: st.builds(events.PodUpdated, pod=pods()),
    events.PodDeleted: st.builds(events.PodDeleted, reason=text),
    events.PodScheduled: st.builds(
        events.PodScheduled, node_name=text, total_nodes=counts, filtered=st.dictionaries(text, counts, max_size=3),
        candidates=st.lists(st.builds(events.NodeScore, node=text, score=st.floats(0, 100),
                                      plugins=st.dictionaries(text, st.floats(0, 100), max_size=2)),
                            max_size=3).map(tuple)),
    events.PodStatusChanged: st.builds(events.PodStatusChanged, status=st.builds(
        PodStatus, phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]), conditions=conditions,
        container_statuses=st.lists(st.builds(
            ContainerStatus, name=text, ready=st.booleans(), restart_count=counts,
            state=st.sampled_from(["waiting", "running", "terminated"]), reason=text,
            exit_code=st.none() | st.integers(-255, 255), image=text), max_size=2).map(tuple),
        reason=text, message=text, host_ip=text, start_time=text)),
    events.PodUnschedulable: st.builds(events.PodUnschedulable, message=text, total_nodes=counts,
                                       filtered=st.dictionaries(text, counts, max_size=3)),
    events.DeploymentRevisionRecorded: st.builds(events.DeploymentRevisionRecorded, revision=counts,
                                                 template_hash=text, template=_templates, change_cause=text),
    events.PodsBound: st.builds(events.PodsBound, pods=st.lists(st.builds(
        events.PodBinding, namespace=text, name=text, uid=text, cpu_millis=counts, memory_bytes=counts,
        host_ports=st.lists(st.integers(1, 65535), max_size=2).map(tuple)), min_size=1, max_size=3).map(tuple)),
    events.NodeRegistered: st.builds(events.NodeRegistered, node=nodes()),
    events.NodeUpdated: st.builds(events.NodeUpdated, node=nodes()),
    events.NodeDeregistered: st.just(events.NodeDeregistered()),
    events.NodeStatusChanged: st.builds(events.NodeStatusChanged, status=st.builds(
        NodeStatus, capacity=st.just({"cpu": "4", "memory": "8Gi"}), allocatable=st.just({"cpu": "3"}),
        conditions=conditions, images=_held_images)),
    events.NodeImagesReported: st.builds(events.NodeImagesReported, node_name=text, images=_held_images),
    events.CommandRecorded: st.builds(
        events.CommandRecorded, command_id=text, verb=st.sampled_from(["apply", "delete"]),
        object=st.builds(events.ObjectRef, kind=text, namespace=text, name=text), actor=text, result=text,
        reason=text, summary=text, dry_run=st.booleans(), time=text),
    events.ImageIndexed: st.builds(events.ImageIndexed, registry=text, repository=text, tag=text, digest=text,
                                   media_type=text, size=counts, platforms=_platforms),
    events.ImageTagMoved: st.builds(events.ImageTagMoved, registry=text, repository=text, tag=text, digest=text,
                                    previous_digest=text, media_type=text, size=counts, platforms=_platforms),
    events.ImageDeleted: st.builds(events.ImageDeleted, registry=text, repository=text, tag=text, digest=text),
    events.ImageRejected: st.builds(events.ImageRejected, registry=text, repository=text, tag=text, reason=text),
    events.RegistryUnreachable: st.builds(events.RegistryUnreachable, registry=text, reason=text),
    events.RegistryRecovered: st.builds(events.RegistryRecovered, registry=text),
    events.AlertFired: st.builds(events.AlertFired, alertname=text, severity=text,
                                 labels=st.dictionaries(text, text, max_size=3),
                                 annotations=st.dictionaries(text, text, max_size=2), active_since=text,
                                 value=st.floats(allow_nan=False, allow_infinity=False)),
    events.AlertResolved: st.builds(events.AlertResolved, alertname=text,
                                    labels=st.dictionaries(text, text, max_size=3), resolved_at=text),
}


def test_every_event_type_has_a_round_trip_strategy():
    assert set(STRATEGIES) == set(events.EVENT_TYPES.values())


@settings(max_examples=60, deadline=None)
@given(st.one_of(*STRATEGIES.values()))
def test_events_round_trip_deterministically(event):
    encoded = events.event_encoder.encode(event)
    decoded = events.event_decoder.decode(encoded)
    assert decoded == event
    assert events.event_encoder.encode(decoded) == encoded


@settings(max_examples=30, deadline=None)
@given(st.one_of(*STRATEGIES.values()), st.text(st.characters(exclude_characters="\r\n"), max_size=20),
       st.text(st.characters(exclude_characters="\r\n"), max_size=20), st.integers(1, 2**53))
def test_the_envelope_carries_who_and_why(event, actor, correlation, seq):
    meta = Metadata(actor=actor, correlation_id=correlation, causation_id="cause")
    headers = envelope_headers(event, meta, "cmd:0", "2026-11-26T00:00:00Z")
    record = record_from(seq, "dy.evt.pod.default.p", headers, events.event_encoder.encode(event))
    assert record.event == event and record.type == event.type_name()
    assert (record.seq, record.actor, record.correlation_id, record.causation_id, record.msg_id) == (
        seq, actor, correlation, "cause", "cmd:0")


REQUESTS = st.one_of(
    st.builds(api.ApplyRequest, manifest=st.dictionaries(text, text, max_size=3), actor=text, command_id=text,
              dry_run=st.booleans()),
    st.builds(api.DeleteRequest, kind=text, name=text, namespace=text, actor=text, command_id=text),
    st.builds(api.GetRequest, kind=text, name=text, namespace=text),
    st.builds(api.ListRequest, kind=text, namespace=text, selector=text, limit=st.integers(1, 5000),
              continue_token=text),
    st.builds(api.Reply, error=st.builds(api.ApiError, code=text, message=text,
                                         details=st.lists(text, max_size=3).map(tuple))),
)


@settings(max_examples=60, deadline=None)
@given(REQUESTS)
def test_api_messages_round_trip(message):
    encoded = msgspec.json.encode(message)
    assert msgspec.json.decode(encoded, type=type(message)) == message
    assert msgspec.json.encode(msgspec.json.decode(encoded, type=type(message))) == encoded
