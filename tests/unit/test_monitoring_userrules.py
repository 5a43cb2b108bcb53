"""Operators' rule files: parsed in Prometheus' shape, refused with the line and the reason, reloaded on change."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from dockyard.services.monitoring.health import ClusterHealth, NodeHealth
from dockyard.services.monitoring.rules import evaluate, firing
from dockyard.services.monitoring.userrules import RuleFile, RuleFileError, parse_duration, parse_expr, parse_rules

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
GOOD = """\
groups:
  - name: capacity
    rules:
      - alert: NodeBusy
        expr: 'dockyard_node_status_allocated{resource="cpu", node=~"n.*"} > 3'
        for: 2m
        labels:
          severity: page
          team: infra
        annotations:
          summary: 'Node {{ $labels.node }} has {{ $value }} cores requested'
"""


def health(*allocated: tuple[str, int]) -> ClusterHealth:
    return ClusterHealth(nodes=tuple(NodeHealth(name=name, ready="True", cpu_allocatable=4000, cpu_allocated=millis)
                                     for name, millis in allocated))


def test_a_rule_file_fires_per_matching_series_after_its_for():
    (rule,) = parse_rules(GOOD)
    assert (rule.name, rule.severity, rule.for_seconds, rule.labels) == ("NodeBusy", "page", 120, {"team": "infra"})
    state = health(("n1", 3500), ("n2", 1000), ("m1", 3900))
    alerts = evaluate([rule], state, T0, {})
    assert len(alerts) == 1 and not firing(alerts)
    alerts = evaluate([rule], state, T0 + dt.timedelta(minutes=2), alerts)
    (alert,) = firing(alerts).values()
    assert alert.labels == {"alertname": "NodeBusy", "severity": "page", "team": "infra", "node": "n1",
                            "resource": "cpu", "unit": "core"}
    assert alert.annotations == {"summary": "Node n1 has 3.5 cores requested"}
    assert evaluate([rule], health(("n1", 100)), T0 + dt.timedelta(minutes=3), alerts) == {}


@pytest.mark.parametrize("text,line,reason", [
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: 'up > 1\n", 5, "not valid YAML"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: 'up >'\n", 5, "`expr`"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: 'up{job=\"a} > 1'\n", 5, "`expr`"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: 'up{job=~\"(\"} > 1'\n", 5,
     "bad regular expression"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up > 1\n        fro: 2m\n", 6,
     "unknown field 'fro'"),
    ("groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n", 4, "recording rules"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up > 1\n        for: soon\n", 6, "duration"),
    ("groups:\n  - name: a\n    rules:\n      - expr: up > 1\n", 4, "needs `alert`"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up > 1\n      - alert: X\n"
     "        expr: up > 2\n", 6, "defined twice"),
    ("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up > 1\n        labels: [a]\n", 6,
     "`labels` must be a mapping"),
    ("rules: []\n", 1, "unknown field 'rules' in the file"),
    ("groups: {}\n", 1, "`groups` must be a list"),
], ids=["yaml", "expr-no-number", "expr-unclosed-quote", "expr-bad-regex", "unknown-field", "recording-rule",
        "bad-duration", "no-alert", "duplicate", "labels-not-mapping", "no-groups", "groups-not-list"])
def test_a_bad_rule_file_is_refused_with_line_and_reason(text, line, reason):
    with pytest.raises(RuleFileError) as refused:
        parse_rules(text)
    assert refused.value.line == line, str(refused.value)
    assert reason in str(refused.value)
    assert str(refused.value).startswith(f"line {line}: ")


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("90", 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("expr,name,matchers,op,threshold", [
    ("up == 0", "up", (), "==", 0),
    ('x{a="1",b!="2",c=~"3.*",d!~"4"} >= -1.5', "x", (("a", "=", "1"), ("b", "!=", "2"), ("c", "=~", "3.*"),
                                                      ("d", "!~", "4")), ">=", -1.5),
    ('x{a="q\\"uote"} < 1e3', "x", (("a", "=", 'q"uote'),), "<", 1000),
], ids=["bare", "all-matchers", "escaped-quote"])
def test_expressions(expr, name, matchers, op, threshold):
    selector = parse_expr(expr)
    assert (selector.name, tuple((m.label, m.op, m.value) for m in selector.matchers), selector.op,
            selector.threshold) == (name, matchers, op, threshold)


def test_regex_matchers_are_anchored_as_in_prometheus():
    (matcher,) = parse_expr('x{node=~"n1"} > 0').matchers
    assert matcher.matches("n1") and not matcher.matches("n10")


def test_the_rule_file_keeps_its_last_good_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    rule_file = RuleFile(str(path))
    assert rule_file.reload_if_changed() is True and rule_file.rules == ()  # no file yet: no rules
    path.write_text(GOOD)
    assert rule_file.reload_if_changed() is True and [r.name for r in rule_file.rules] == ["NodeBusy"]
    assert rule_file.reload_if_changed() is None  # unchanged
    path.write_text(GOOD.replace("for: 2m", "for: 2 minutes"))
    os.utime(path, ns=(1, 1))
    assert rule_file.reload_if_changed() is False
    assert "line 6" in rule_file.error and "duration" in rule_file.error
    assert [r.name for r in rule_file.rules] == ["NodeBusy"]
    assert rule_file.rules[0].for_seconds == 120
