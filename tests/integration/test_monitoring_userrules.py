"""Operators' PromQL rules in the running monitoring service: they fire, and `dockyard alerts` lists them."""

from __future__ import annotations


from dockyard.eventlog import subject_for
from dockyard.schemas.events import PodCreated
from tests.builders import make_pod
from tests.integration.test_alerts_read_model import wait_for_alerts
from tests.integration.test_cli import dockyard, ok
from tests.polling import eventually

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


async def test_a_firing_alerts_summary_follows_its_value(stack_env, eventlog, services, tmp_path):
    rules = tmp_path / "alert-rules.yaml"
    rules.write_text(RULES)
    services("monitoring", "--rules", str(rules), "--eval-interval", "0.3", "--alert-update-interval", "0")
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    first = named(wait_for_alerts(stack_env, lambda alerts: "PodsPending" in named(alerts), timeout=60))
    assert first["PodsPending"]["annotations"] == {"summary": "1 pod(s) pending in default"}

    for name in ("b", "c"):
        await eventlog.append(subject_for("pod", "default", name), PodCreated(pod=make_pod(name)))
    summary_is = lambda text: lambda alerts: named(alerts).get("PodsPending", {}).get("annotations") == \
        {"summary": text}  # noqa: E731
    now = named(wait_for_alerts(stack_env, summary_is("3 pod(s) pending in default"), timeout=60))["PodsPending"]
    assert (now["fingerprint"], now["activeSince"], now["value"]) == \
        (first["PodsPending"]["fingerprint"], first["PodsPending"]["activeSince"], 3)
    table = ok(dockyard(stack_env, "alerts", "-o", "wide")).splitlines()
    row = next(line for line in table[1:] if line.startswith("PodsPending "))
    assert "3 pod(s) pending in default" in row
    assert row[table[0].index("VALUE"):].split()[0] == "3"


async def test_a_refused_rule_file_shows_in_status(stack_env, eventlog, services, tmp_path, nats_server,
                                                   database_url):
    from dockyard.cluster_summary import cluster_summary
    from dockyard.printers import cluster_summary_lines

    rules = tmp_path / "alert-rules.yaml"

    async def refusals() -> list[str]:  # of this file: the NATS server (and its KV) is the session's
        summary = await cluster_summary(nats_server.url, database_url)
        assert not summary.problem, summary.problem
        return [line for line in summary.rules_refused if line.startswith(f"{rules} ")]

    rules.write_text(RULES)
    services("monitoring", "--rules", str(rules), "--eval-interval", "0.3")
    await eventlog.append(subject_for("pod", "default", "a"), PodCreated(pod=make_pod("a")))
    wait_for_alerts(stack_env, lambda alerts: "PodsPending" in named(alerts), timeout=60)  # the rules are in use
    assert await refusals() == []

    rules.write_text(RULES.replace("expr: changes(dockyard_scheduler_pending_pods[5m]) >= 1", "expr: 'up >'")
                     .replace("labels: {severity: info}", "labels: {severity: [info]}"))
    [refusal] = await eventually(refusals, what="the refusal to show in status")
    assert refusal.startswith(f"{rules} refused: line 6: `labels.severity` must be a single value;"
                              " line 9: `expr`: unexpected end of expression at column 5")
    assert refusal.endswith(" (the 2 rule(s) loaded before stay in use)")
    summary = await cluster_summary(nats_server.url, database_url)
    assert f"rules:        {refusal}" in cluster_summary_lines(summary)

    rules.write_text(RULES)

    async def none_refused() -> bool:
        return not await refusals()
    await eventually(none_refused, what="the refusal to go with a good file")
