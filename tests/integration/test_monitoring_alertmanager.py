"""A real Alertmanager receives NodeNotReady when a node agent stops, and its resolution when it returns."""

from __future__ import annotations

import time

from dockyard.eventlog import kind_filter
from dockyard.schemas.events import AlertFired, AlertResolved
from tests.monitoring_fixtures import alertmanager, webhook_receiver  # noqa: F401 - fixtures

NODE_ARGS = ("--count", "1", "--prefix", "lost-", "--heartbeat-interval", "0.5")


def wait_for(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


async def alert_events(eventlog) -> list:
    return [r.event async for r in eventlog.read(kind_filter("alert"))]


def named(alerts: list[dict], alertname: str) -> list[dict]:
    return [a for a in alerts if a["labels"].get("alertname") == alertname]


async def test_alertmanager_hears_node_not_ready_and_its_resolution(services, eventlog, alertmanager,
                                                                    webhook_receiver):
    services("controller", "--node-grace", "2", "--tick", "0.3")
    services("monitoring", "--alertmanager-url", alertmanager.url, "--eval-interval", "0.3",
             "--node-not-ready-for", "0", "--keep-firing-for", "0", "--resend-interval", "2")
    agent = services("hollow-nodes", *NODE_ARGS)
    time.sleep(1)  # a few heartbeats: the node is Ready and nothing fires
    assert named(alertmanager.alerts(), "NodeNotReady") == []

    agent.kill()
    fired = wait_for(lambda: named(webhook_receiver.alerts("firing"), "NodeNotReady"),
                     what="Alertmanager to notify NodeNotReady")
    assert fired[0]["labels"]["node"] == "lost-0"
    assert fired[0]["labels"]["severity"] == "critical"
    assert "lost-0" in fired[0]["annotations"]["summary"]
    held = named(alertmanager.alerts(), "NodeNotReady")
    assert [a["labels"]["node"] for a in held] == ["lost-0"] and held[0]["status"]["state"] == "active"

    services("hollow-nodes", *NODE_ARGS)  # the agent returns: the node heartbeats and is Ready again
    resolved = wait_for(lambda: named(webhook_receiver.alerts("resolved"), "NodeNotReady"),
                        what="Alertmanager to notify the resolution")
    assert resolved[0]["labels"] == fired[0]["labels"]
    assert resolved[0]["endsAt"] >= resolved[0]["startsAt"]
    events = [e for e in await alert_events(eventlog) if e.alertname == "NodeNotReady"]
    assert [type(e) for e in events] == [AlertFired, AlertResolved]
