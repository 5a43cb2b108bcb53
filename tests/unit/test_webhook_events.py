"""Which events a webhook (or any subscription) gets: type patterns and the subjects asked for."""

from __future__ import annotations

import pytest

from dockyard.subscribe import filter_subjects, type_matcher, type_patterns


@pytest.mark.parametrize(
    "spec, type_name, wanted",
    [
        ("pod.*", "pod.scheduled.v1", True),
        ("pod.*", "node.registered.v1", False),
        ("pod.scheduled.*", "pod.scheduled.v2", True),
        ("pod.scheduled.*", "pod.status_changed.v1", False),
        ("*", "command.recorded.v2", True),
        ("pod.*,alert.*", "alert.fired.v1", True),
        ("*.deleted.*", "deployment.deleted.v1", True),
    ],
    ids=["kind", "other-kind", "type-any-version", "other-type", "everything", "list", "verb-of-any-kind"],
)
def test_type_patterns_match_event_types(spec, type_name, wanted):
    assert type_matcher(type_patterns(spec))(type_name) is wanted


@pytest.mark.parametrize(
    "spec, subjects",
    [
        ("pod.*", ["dy.evt.pod.>"]),
        ("pod.scheduled.*,alert.*", ["dy.evt.alert.>", "dy.evt.pod.>"]),
        ("*", ["dy.evt.>"]),
        ("pod.*,*.deleted.*", ["dy.evt.>"]),
        ("node.*", ["dy.evt.node.>", "dy.evt.nodeimages.>"]),
        ("node.images_reported.*", ["dy.evt.node.>", "dy.evt.nodeimages.>"]),
    ],
    ids=["one-kind", "two-kinds", "all", "any-kind-wins", "node-events-on-two-kinds", "held-images"],
)
def test_the_server_filters_by_kind_where_the_pattern_names_one(spec, subjects):
    assert filter_subjects(type_patterns(spec)) == subjects


def test_an_empty_pattern_is_refused():
    with pytest.raises(ValueError):
        type_patterns(" , ")


def test_a_kinds_events_include_those_on_other_aggregates():
    from dockyard.eventlog import kind_filters
    # `events --kind node`, `events export --kind node`: a node's image reports are node events too.
    assert kind_filters("node") == ("dy.evt.node.>", "dy.evt.nodeimages.>")
    assert kind_filters("pod") == "dy.evt.pod.>" and kind_filters(None) == "dy.evt.>"
