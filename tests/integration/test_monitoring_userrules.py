"""Operators' PromQL rules in the running monitoring service: they fire, and `dockyard alerts` lists them."""

from __future__ import annotations

from dockyard.eventlog import subject_for
from dockyard.schemas.events import PodCreated
from tests.builders import make_pod
from tests.integration.test_alerts_read_model import wait_for_alerts
from tests.integration.test_cli import dockyard, ok

RULES = """\
groups:
  - name: pods
    rules:
      - alert: PodsPending
        expr: sum by (namespace) (dockyard_pod_status_phase{phase="Pending"}) >= 1
        labels: {severity: info}
        annotations: {summary: '{{ $value }} pod(s) pending in {{ $labels.namespace }}'}
      - alert: PendingPodsChanged
        expr: changes(dockyard_scheduler_pending_pods[5m]) >= 1
        annotations: {summary: 'pending pods changed {{ $value | humanize }} time(s)'}
"""


def named(alerts: list[dict]) -> dict[str, dict]:
    ours = ("PodsPending", "PendingPodsChanged")
    return {alert["alertname"]: alert for alert in alerts if alert["alertname"] in ours}


async def test_promql_rules_fire_and_are_listed(stack_env, eventlog, services, tmp_path):
    rules = tmp_path / "alert-rules.yaml"
    rules.write_text(RULES)
    services("monitoring", "--rules", str(rules), "--eval-interval", "0.3")
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    pending = wait_for_alerts(stack_env, lambda alerts: "PodsPending" in named(alerts), timeout=60)
    alert = named(pending)["PodsPending"]
    assert alert["labels"] == {"alertname": "PodsPending", "severity": "info", "namespace": "default"}
    assert alert["annotations"] == {"summary": "1 pod(s) pending in default"}

    # An evaluation has seen one pending pod (PodsPending fired on it): a second one is a change.
    await eventlog.append(subject_for("pod", "default", "b"), PodCreated(pod=make_pod("b")))
    both = wait_for_alerts(stack_env, lambda alerts: len(named(alerts)) == 2, timeout=60)
    changed = named(both)["PendingPodsChanged"]
    assert changed["labels"] == {"alertname": "PendingPodsChanged", "severity": "warning"}
    assert changed["annotations"]["summary"].startswith("pending pods changed ")

    table = ok(dockyard(stack_env, "alerts")).splitlines()
    rows = {line.split()[0]: line for line in table[1:]}
    assert rows["PodsPending"].split()[:4] == ["PodsPending", "info", "firing", "namespace=default"]
    assert rows["PodsPending"].endswith("1 pod(s) pending in default")
    assert "PendingPodsChanged" in rows
