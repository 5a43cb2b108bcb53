"""Restart policy and back-off."""

import pytest

from dockyard.services.node_agent.restarts import BackOff, crashes_after_run, restart_delay, should_restart


@pytest.mark.parametrize("policy, exit_code, expected", [
    ("Always", 0, True), ("Always", 1, True), ("Always", None, True),
    ("OnFailure", 0, False), ("OnFailure", 3, True), ("OnFailure", None, True),
    ("Never", 0, False), ("Never", 3, False), ("Never", None, False),
], ids=lambda v: str(v))
def test_should_restart(policy, exit_code, expected):
    assert should_restart(policy, exit_code) is expected


@pytest.mark.parametrize("crashes, expected", [
    (0, 0.0), (1, 0.0), (2, 10.0), (3, 20.0), (4, 40.0), (6, 160.0), (7, 300.0), (50, 300.0), (10_000, 300.0),
], ids=lambda v: str(v))
def test_restart_delay_doubles_from_the_second_crash_to_the_cap(crashes, expected):
    assert restart_delay(crashes, 10.0, 300.0) == expected


@pytest.mark.parametrize("crashes, ran_for, expected", [
    (0, 1.0, 1), (3, 1.0, 4), (3, 599.0, 4), (3, 600.0, 1), (7, 3600.0, 1),
], ids=["first", "short-run", "just-short", "long-enough", "very-long"])
def test_a_long_run_forgets_earlier_crashes(crashes, ran_for, expected):
    assert crashes_after_run(crashes, ran_for, BackOff()) == expected
