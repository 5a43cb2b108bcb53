"""A real Alertmanager receives NodeNotReady when a node agent stops, and its resolution when it returns."""

from __future__ import annotations

import time

from dockyard.eventlog import kind_filter, subject_for
from dockyard.schemas.events import AlertFired, AlertResolved, PodCreated
from tests.builders import make_pod
from tests.monitoring_fixtures import alertmanager, webhook_receiver  # noqa: F401 - fixtures
from tests.polling import wait_for

NODE_ARGS = ("--count", "1", "--prefix", "lost-", "--heartbeat-interval", "0.5")


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


PENDING_RULE = ("groups:\n- name: pods\n  rules:\n  - alert: PodsPending\n"
                "    expr: 'sum by (namespace) (dockyard_pod_status_phase{phase=\"Pending\"}) >= 1'\n"
                "    annotations: {summary: '{{ $value }} pod(s) pending in {{ $labels.namespace }}'}\n")


async def test_alertmanager_is_re_posted_the_current_summary(services, eventlog, alertmanager, tmp_path):
    rules = tmp_path / "alert-rules.yaml"
    rules.write_text(PENDING_RULE)
    # Re-sends ten minutes apart: only the changed summary makes it post again within this test.
    services("monitoring", "--rules", str(rules), "--alertmanager-url", alertmanager.url, "--eval-interval", "0.3",
             "--resend-interval", "600", "--alert-update-interval", "0")
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))

    def summaries() -> list[str]:
        return [a["annotations"].get("summary") for a in named(alertmanager.alerts(), "PodsPending")]

    assert wait_for(lambda: summaries() == ["1 pod(s) pending in default"], what="PodsPending at 1")
    await eventlog.append(subject_for("pod", "default", "b"), PodCreated(pod=make_pod("b")))
    assert wait_for(lambda: summaries() == ["2 pod(s) pending in default"], what="PodsPending at 2")
