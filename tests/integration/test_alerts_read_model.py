"""The alerts read model: alert events on a real log, the projector running, `dockyard alerts` and a rebuild."""

from __future__ import annotations

import json

from dockyard.eventlog import subject_for
from dockyard.schemas.events import AlertFired, AlertResolved, alert_fingerprint
from tests.integration.test_cli import dockyard, ok
from tests.polling import wait_for


def node_not_ready(node: str) -> tuple[str, AlertFired]:
    labels = {"alertname": "NodeNotReady", "severity": "critical", "node": node}
    return subject_for("alert", "", alert_fingerprint(labels)), AlertFired(
        alertname="NodeNotReady", severity="critical", labels=labels,
        annotations={"summary": f"node {node} is not ready"}, active_since="2026-11-26T03:00:00Z", value=1.0)


def resolved(fired: AlertFired) -> AlertResolved:
    return AlertResolved(alertname=fired.alertname, labels=fired.labels, resolved_at="2026-11-26T03:05:00Z")


def alerts_json(env, *args: str) -> list[dict]:
    return json.loads(ok(dockyard(env, "alerts", "-o", "json", *args)))["alerts"]


def wait_for_alerts(env, predicate, *args: str, timeout: float = 20.0) -> list[dict]:
    """The alerts `dockyard alerts ARGS` lists once `predicate` holds for them."""
    def listed():
        alerts = alerts_json(env, *args)
        return alerts if predicate(alerts) else None
    return wait_for(listed, timeout=timeout, interval=0.2, what="the alerts listed")


async def test_fired_and_resolved_alerts_are_listed(stack_env, eventlog):
    (n1_subject, n1), (n2_subject, n2) = node_not_ready("n1"), node_not_ready("n2")
    await eventlog.append(n1_subject, n1, expected_seq=0)
    n2_seq = await eventlog.append(n2_subject, n2, expected_seq=0)
    await eventlog.append(n2_subject, resolved(n2), expected_seq=n2_seq)

    firing = wait_for_alerts(stack_env, lambda alerts: len(alerts) == 1)
    (alert,) = firing
    assert alert["fingerprint"] == n1_subject.rsplit(".", 1)[1]
    assert (alert["alertname"], alert["severity"], alert["state"], alert["value"]) == \
        ("NodeNotReady", "critical", "firing", 1.0)
    assert alert["labels"]["node"] == "n1" and alert["activeSince"] == "2026-11-26T03:00:00Z"
    assert alert["resolvedAt"] is None

    everything = alerts_json(stack_env, "--all")
    assert [(a["labels"]["node"], a["state"]) for a in everything] == [("n1", "firing"), ("n2", "resolved")]
    assert everything[1]["resolvedAt"] == "2026-11-26T03:05:00Z"
    # The resolution keeps what the firing said.
    assert everything[1]["annotations"] == {"summary": "node n2 is not ready"}

    table = ok(dockyard(stack_env, "alerts")).splitlines()
    assert table[0].split() == ["ALERTNAME", "SEVERITY", "STATE", "LABELS", "SINCE", "SUMMARY"]
    assert table[1].split()[:4] == ["NodeNotReady", "critical", "firing", "node=n1"]
    assert table[1].endswith("node n1 is not ready") and len(table) == 2
    assert len(ok(dockyard(stack_env, "alerts", "--all", "-o", "wide")).splitlines()) == 3

    # Firing again after a resolution makes the same row firing again.
    await eventlog.append(n2_subject, n2, expected_seq=n2_seq + 1)
    wait_for_alerts(stack_env, lambda alerts: {a["labels"]["node"] for a in alerts} == {"n1", "n2"})

    rebuilt = ok(dockyard(stack_env, "projections", "rebuild", "alerts"))
    assert "swapped in" in rebuilt
    assert [a["state"] for a in alerts_json(stack_env, "--all")] == ["firing", "firing"]


async def test_a_resolution_without_its_firing_still_makes_a_row(stack_env, eventlog):
    subject, fired = node_not_ready("gone")
    await eventlog.append(subject, resolved(fired), expected_seq=0)
    (alert,) = wait_for_alerts(stack_env, lambda alerts: len(alerts) == 1, "--all")
    assert (alert["state"], alert["severity"], alert["resolvedAt"]) == ("resolved", "critical", "2026-11-26T03:05:00Z")
    assert "No firing alerts." in dockyard(stack_env, "alerts").stderr.decode()


async def test_an_update_of_a_firing_alert_replaces_its_text_and_keeps_its_start(stack_env, eventlog):
    import msgspec

    subject, fired = node_not_ready("n1")
    seq = await eventlog.append(subject, fired, expected_seq=0)
    wait_for_alerts(stack_env, lambda alerts: len(alerts) == 1)
    update = msgspec.structs.replace(fired, annotations={"summary": "node n1 is still not ready"}, value=2.0)
    await eventlog.append(subject, update, expected_seq=seq)
    (alert,) = wait_for_alerts(stack_env, lambda alerts: alerts and alerts[0]["annotations"] == update.annotations)
    assert (alert["state"], alert["value"], alert["activeSince"]) == ("firing", 2.0, "2026-11-26T03:00:00Z")
    assert ok(dockyard(stack_env, "alerts")).splitlines()[1].endswith("node n1 is still not ready")
