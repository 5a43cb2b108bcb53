"""The scheduling queue: first in first out, parked until a relevant event, backoff, waiting on the view."""

from __future__ import annotations

import pytest

from dockyard.services.scheduler.queue import SchedulingQueue

A, B, C = ("default", "a"), ("default", "b"), ("default", "c")
NODE_ADDED = "node.registered.v1"
POD_GONE = "pod.deleted.v1"


def test_pops_oldest_first_and_never_twice():
    queue = SchedulingQueue()
    for key in (A, B, C, A):
        queue.add(key)
    assert queue.pop(2) == [A, B]
    assert queue.pop(10) == [C]
    assert queue.pop(10) == []


@pytest.mark.parametrize("event,woken", [(NODE_ADDED, True), (POD_GONE, False)], ids=["relevant", "irrelevant"])
def test_parked_pods_wake_only_for_events_that_could_help(event, woken):
    queue = SchedulingQueue(initial_backoff=1.0)
    queue.park(A, frozenset({NODE_ADDED}), now=100.0)
    queue.on_events({event}, now=105.0)
    assert (queue.pop(1) == [A]) is woken
    assert (A in queue) is not woken


def test_a_woken_pod_waits_out_its_backoff():
    queue = SchedulingQueue(initial_backoff=1.0, max_backoff=10.0)
    queue.park(A, frozenset({NODE_ADDED}), now=100.0)
    queue.on_events({NODE_ADDED}, now=100.2)
    assert queue.pop(1) == [] and queue.sizes()["backoff"] == 1
    queue.admit(now=101.0)
    assert queue.pop(1) == [A]


@pytest.mark.parametrize("attempts,expected", [(1, 1.0), (2, 2.0), (3, 4.0), (5, 10.0)],
                         ids=["first", "second", "third", "capped"])
def test_backoff_doubles_per_attempt(attempts, expected):
    queue = SchedulingQueue(initial_backoff=1.0, max_backoff=10.0)
    for _ in range(attempts):
        queue.park(A, frozenset(), now=0.0)
    assert queue.backoff_of(A) == expected


def test_parked_pods_are_retried_after_a_while_without_events():
    queue = SchedulingQueue(parked_retry=30.0)
    queue.park(A, frozenset(), now=0.0)
    queue.park(B, frozenset(), now=20.0)
    queue.admit(now=31.0)
    assert queue.pop(10) == [A]
    assert queue.sizes() == {"active": 0, "backoff": 0, "unschedulable": 1}


def test_conflicted_pods_wait_for_the_view_to_pass_the_conflict():
    queue = SchedulingQueue()
    queue.wait_for_view([A, B], position=500)
    queue.admit(now=0.0, position=499)
    assert queue.pop(10) == []
    queue.admit(now=0.0, position=500)
    assert queue.pop(10) == [A, B]


def test_a_changed_pod_is_tried_at_once_and_a_gone_one_forgotten():
    queue = SchedulingQueue()
    queue.park(A, frozenset({NODE_ADDED}), now=0.0)
    queue.park(B, frozenset({NODE_ADDED}), now=0.0)
    queue.activate(A)
    queue.remove(B)
    assert queue.pop(10) == [A] and len(queue) == 0
