"""The alert engine: each built-in rule fires and resolves, `for` and keep-firing, with the clock passed in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import pytest

from dockyard.services.monitoring.builtin import Thresholds, builtin_rules
from dockyard.services.monitoring.health import (
    ClusterHealth,
    ConsumerHealth,
    DeploymentHealth,
    NodeHealth,
    PodHealth,
)
from dockyard.services.monitoring.rules import Finding, Rule, adopt, evaluate, expand, firing, update_due

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
THRESHOLDS = Thresholds(node_not_ready_for=60, crashloop_restarts=3, crashloop_window=600, pod_pending_for=300,
                        node_capacity_ratio=0.9, node_capacity_for=0, rollout_stuck_for=600,
                        projection_lag_events=1000, projection_lag_for=0, consumer_stalled_for=300,
                        keep_firing_for=0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def node(name="n1", ready="True", cpu=(0, 4000), memory=(0, 8 << 30)) -> NodeHealth:
    return NodeHealth(name=name, ready=ready, cpu_allocated=cpu[0], cpu_allocatable=cpu[1],
                      memory_allocated=memory[0], memory_allocatable=memory[1])


def pod(name="web-1", phase="Running", created=0.0, restarts_at=()) -> PodHealth:
    return PodHealth(namespace="default", name=name, phase=phase, created_at=at(created),
                     restart_times=tuple(at(s) for s in restarts_at))


def deployment(replicas=3, updated=3, available=3, progressing="True") -> DeploymentHealth:
    return DeploymentHealth(namespace="default", name="web", replicas=replicas, updated=updated,
                            available=available, progressing=progressing)


@dataclass(frozen=True)
class Case:
    """A rule's condition holding (`bad`) and not (`good`); `held_at` is when, with `for`, it fires."""

    alertname: str
    bad: ClusterHealth
    good: ClusterHealth
    labels: dict[str, str]
    held_at: float = 0.0  # the evaluation time at which the bad state must fire


CASES = [
    Case("NodeNotReady", ClusterHealth(nodes=(node(ready="Unknown"),)), ClusterHealth(nodes=(node(),)),
         {"node": "n1", "status": "unknown"}, held_at=60),
    Case("PodCrashLooping", ClusterHealth(pods=(pod(restarts_at=(10, 20, 30)),)),
         ClusterHealth(pods=(pod(restarts_at=(10, 20)),)), {"namespace": "default", "pod": "web-1"}, held_at=30),
    Case("PodPendingTooLong", ClusterHealth(pods=(pod(phase="Pending"),)),
         ClusterHealth(pods=(pod(phase="Running"),)), {"namespace": "default", "pod": "web-1"}, held_at=300),
    Case("NodeCapacityHigh", ClusterHealth(nodes=(node(cpu=(3900, 4000)),)), ClusterHealth(nodes=(node(),)),
         {"node": "n1", "resource": "cpu"}),
    Case("DeploymentRolloutStuck", ClusterHealth(deployments=(deployment(updated=1, available=2),)),
         ClusterHealth(deployments=(deployment(),)), {"namespace": "default", "deployment": "web"}, held_at=600),
    Case("ProjectionLagHigh", ClusterHealth(projection_lag={"pods": 5000}), ClusterHealth(projection_lag={"pods": 3}),
         {"projection": "pods"}),
    Case("ConsumerStalled", ClusterHealth(consumers=(ConsumerHealth(name="dy-projector-pods", pending=10,
                                                                    last_progress=at(0)),)),
         ClusterHealth(consumers=(ConsumerHealth(name="dy-projector-pods", pending=0, last_progress=at(0)),)),
         {"consumer": "dy-projector-pods"}, held_at=300),
]


def only_firing(alerts) -> dict[str, dict[str, str]]:
    return {a.alertname: a.labels for a in firing(alerts).values()}


@pytest.mark.parametrize("case", CASES, ids=[c.alertname for c in CASES])
def test_builtin_rule_fires_after_its_for_and_resolves(case: Case):
    rules = builtin_rules(THRESHOLDS)
    alerts = evaluate(rules, case.bad, at(0), {})
    if case.held_at:
        assert only_firing(alerts) == {}, "fired before its time"
        alerts = evaluate(rules, case.bad, at(case.held_at - 1), alerts)
        assert only_firing(alerts) == {}
    alerts = evaluate(rules, case.bad, at(case.held_at), alerts)
    severity = next(r.severity for r in rules if r.name == case.alertname)
    assert only_firing(alerts) == {case.alertname: {**case.labels, "alertname": case.alertname,
                                                    "severity": severity}}
    alert = next(iter(alerts.values()))
    assert alert.annotations["summary"] and "{{" not in alert.annotations["summary"]

    alerts = evaluate(rules, case.good, at(case.held_at + 10), alerts)
    assert alerts == {}, "resolved"


def test_the_good_state_of_every_case_is_quiet():
    rules = builtin_rules(THRESHOLDS)
    for case in CASES:
        assert evaluate(rules, case.good, at(10_000), {}) == {}, case.alertname


def test_crash_loop_counts_only_restarts_within_the_window():
    rules = builtin_rules(THRESHOLDS)
    looping = ClusterHealth(pods=(pod(restarts_at=(0, 100, 200)),))
    assert only_firing(evaluate(rules, looping, at(300), {})) == {"PodCrashLooping": {
        "namespace": "default", "pod": "web-1", "alertname": "PodCrashLooping", "severity": "warning"}}
    assert evaluate(rules, looping, at(601), {}) == {}  # the first restart has left the window


def flapping_rule(keep: float) -> Rule:
    def condition(health: ClusterHealth, now: dt.datetime):
        return [Finding({"node": n.name}) for n in health.nodes if n.ready != "True"]
    return Rule("Flappy", condition, for_seconds=0, keep_firing_for=keep)


def test_keep_firing_for_rides_out_a_flapping_condition():
    rules = [flapping_rule(keep=30)]
    bad, good = ClusterHealth(nodes=(node(ready="False"),)), ClusterHealth(nodes=(node(),))
    alerts = evaluate(rules, bad, at(0), {})
    started = firing(alerts)
    assert len(started) == 1
    for second, state in ((10, good), (20, bad), (35, good), (45, bad)):
        alerts = evaluate(rules, state, at(second), alerts)
        assert firing(alerts).keys() == started.keys(), f"one alert throughout, at {second}s"
        assert next(iter(alerts.values())).active_since == at(0)
    alerts = evaluate(rules, good, at(74), alerts)
    assert firing(alerts).keys() == started.keys()  # held last at 45: kept until 75
    assert evaluate(rules, good, at(75), alerts) == {}


def test_without_keep_firing_a_flap_resolves_at_once():
    rules = [flapping_rule(keep=0)]
    alerts = evaluate(rules, ClusterHealth(nodes=(node(ready="False"),)), at(0), {})
    assert evaluate(rules, ClusterHealth(nodes=(node(),)), at(1), alerts) == {}


def test_a_pending_alert_that_stops_holding_is_forgotten():
    rules = builtin_rules(replace(THRESHOLDS, keep_firing_for=600))
    alerts = evaluate(rules, ClusterHealth(nodes=(node(ready="False"),)), at(0), {})
    assert alerts and not firing(alerts)
    assert evaluate(rules, ClusterHealth(nodes=(node(),)), at(10), alerts) == {}


def test_adopted_alerts_resolve_when_their_condition_is_gone():
    rules = builtin_rules(THRESHOLDS)
    fired = evaluate(rules, ClusterHealth(nodes=(node(ready="False"),)), at(60),
                     evaluate(rules, ClusterHealth(nodes=(node(ready="False"),)), at(0), {}))
    restarted = adopt({}, fired.values(), at(100))  # a new instance learns from the log what fires
    assert firing(restarted).keys() == fired.keys()
    still = evaluate(rules, ClusterHealth(nodes=(node(ready="False"),)), at(101), restarted)
    assert firing(still).keys() == fired.keys(), "no `for` wait again for what already fires"
    assert evaluate(rules, ClusterHealth(nodes=(node(),)), at(102), restarted) == {}


@pytest.mark.parametrize("template,expected", [
    ("Node {{ $labels.node }} is down", "Node n1 is down"),
    ("value {{$value}}", "value 0.95"),
    ("{{ $labels.missing }}!", "!"),
    ("{{ $labels }}", "node=n1, resource=cpu"),
    ("{{ .Unknown }}", "{{ .Unknown }}"),
], ids=["label", "value", "missing-label", "all-labels", "unknown-kept"])
def test_annotation_templates(template, expected):
    assert expand(template, {"node": "n1", "resource": "cpu"}, 0.95) == expected


def test_a_silent_node_is_not_ready_even_while_the_log_says_ready():
    rules = builtin_rules(replace(THRESHOLDS, node_not_ready_for=0, heartbeat_grace=40))
    heard = ClusterHealth(nodes=(node(),), heartbeats={"n1": at(0)}, watching_since=at(-100))
    assert evaluate(rules, heard, at(40), {}) == {}
    alerts = evaluate(rules, heard, at(41), {})
    assert only_firing(alerts) == {"NodeNotReady": {"node": "n1", "status": "unknown", "alertname": "NodeNotReady",
                                                    "severity": "critical"}}
    assert evaluate(rules, replace(heard, heartbeats={"n1": at(41)}), at(42), alerts) == {}
    never_heard = ClusterHealth(nodes=(node(),), watching_since=at(0))  # counts from when watching began
    assert evaluate(rules, never_heard, at(40), {}) == {}
    assert only_firing(evaluate(rules, never_heard, at(41), {}))
    assert evaluate(rules, ClusterHealth(nodes=(node(),)), at(1000), {}) == {}  # heartbeats not watched


def test_an_alert_pending_here_and_firing_in_the_log_fires_here_too():
    rules = builtin_rules(replace(THRESHOLDS, node_not_ready_for=600))
    down = ClusterHealth(nodes=(node(ready="False"),))
    pending = evaluate(rules, down, at(0), {})
    assert not firing(pending)
    elsewhere = {fp: replace(alert, firing=True) for fp, alert in pending.items()}  # another instance fired it
    assert firing(adopt(pending, elsewhere.values(), at(1))).keys() == pending.keys()


def test_a_crash_loop_alert_re_renders_its_summary_with_the_restarts_now():
    rules = builtin_rules(THRESHOLDS)
    alerts = evaluate(rules, ClusterHealth(pods=(pod(restarts_at=(0, 100, 200)),)), at(300), {})
    more = evaluate(rules, ClusterHealth(pods=(pod(restarts_at=(0, 100, 200, 250, 290)),)), at(320), alerts)
    [before], [after] = alerts.values(), more.values()
    assert after.fingerprint == before.fingerprint and after.active_since == before.active_since
    assert "restarted 3 times" in before.annotations["summary"]
    assert "restarted 5 times" in after.annotations["summary"]


def running_alert(value: float, summary: str = "{{ $value }} running"):
    rule = Rule("Running", lambda health, now: [Finding({"namespace": "default"}, value)],
                annotations={"summary": summary})
    return next(iter(evaluate([rule], ClusterHealth(), at(0), {}).values()))


@pytest.mark.parametrize("alert,last_appended,seconds,due", [
    (running_alert(6.0), at(0), 60, True),
    (running_alert(6.0), at(0), 59, False),
    (running_alert(6.0), None, 0, True),
    (running_alert(6.0, summary="7 running"), at(0), 3600, False),
    (running_alert(7.0), at(0), 3600, False),
], ids=["text-changed", "too-soon", "never-appended", "value-only", "nothing-changed"])
def test_a_firing_alert_is_appended_again_when_its_text_changed_and_not_too_often(alert, last_appended, seconds,
                                                                                   due):
    in_the_log = {"summary": "7 running"}  # as it fired, at 7
    assert update_due(alert, in_the_log, last_appended, at(seconds), min_interval=60) is due
