"""Operators' rule files: parsed in Prometheus' shape, refused with the line and the reason, reloaded on change."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from dockyard.services.monitoring.health import ClusterHealth, NodeHealth
from dockyard.services.monitoring.promql import Binary, VectorSelector
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
    tree = parse_expr(expr)
    assert isinstance(tree, Binary) and isinstance(tree.lhs, VectorSelector)
    given = tuple((m.label, m.op, m.value) for m in tree.lhs.matchers if m.label != "__name__")
    assert (tree.lhs.name, given, tree.op, tree.rhs.value) == (name, matchers, op, threshold)


def test_regex_matchers_are_anchored_as_in_prometheus():
    (_, matcher) = parse_expr('x{node=~"n1"} > 0').lhs.matchers
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


# ---------------------------------------------------------------- PromQL expressions and templates

EXAMPLES = """\
groups:
  - name: cluster
    rules:
      - alert: PodsRunningOnNode
        expr: sum by (node) (dockyard_node_status_allocated{resource="cpu"}) >= 1
        labels: {severity: info, node_name: '{{ $labels.node }}'}
        annotations:
          summary: '{{ $labels.node }} has {{ $value | humanize }} cores requested'
          ratio: '{{ humanizePercentage 0.25 }} {{ .Labels.node }} {{ .Value }}'
      - alert: MemoryRequested
        expr: sum(dockyard_node_status_allocated{resource="memory"}) by (node) / 1e9 > 3
        annotations: {summary: '{{ printf "%.1f" $value }} GB on {{ $labels.node | toUpper }}'}
      - alert: NoNodes
        expr: absent(dockyard_node_status_condition{condition="Ready"})
        for: 1m
      - alert: Restarting
        expr: increase(dockyard_pod_container_status_restarts_total[10m]) > 3 or
          rate(dockyard_scheduler_schedule_attempts_total{result="error"}[5m]) > 0
        keep_firing_for: 5m
        annotations: {summary: 'for {{ 90 | humanizeDuration }}'}
      - alert: Flapping
        expr: |
          changes(dockyard_node_spec_unschedulable[15m]) > 4
            unless on (node) max_over_time(dockyard_node_spec_unschedulable[15m]) == 0
"""


def test_an_example_file_fires_with_rendered_templates():
    rules = parse_rules(EXAMPLES)
    assert [r.name for r in rules] == ["PodsRunningOnNode", "MemoryRequested", "NoNodes", "Restarting", "Flapping"]
    state = ClusterHealth(nodes=(NodeHealth(name="n1", ready="True", cpu_allocated=1500, memory_allocated=4e9),
                                 NodeHealth(name="n2", ready="True", cpu_allocated=500)))
    alerts = firing(evaluate(rules, state, T0, {}))
    shown = sorted((a.alertname, a.labels.get("node", ""), a.annotations.get("summary")) for a in alerts.values())
    assert shown == [("MemoryRequested", "n1", "4.0 GB on N1"),
                     ("PodsRunningOnNode", "n1", "n1 has 1.5 cores requested")]
    running = next(a for a in alerts.values() if a.alertname == "PodsRunningOnNode")
    assert running.labels["node_name"] == "n1"
    assert running.annotations["ratio"] == "25% n1 1.5"


def test_absent_fires_when_there_are_no_nodes():
    (rule,) = [r for r in parse_rules(EXAMPLES) if r.name == "NoNodes"]
    (alert,) = evaluate([rule], ClusterHealth(), T0, {}).values()
    assert alert.labels == {"alertname": "NoNodes", "severity": "warning", "condition": "Ready"}


def test_a_reloaded_file_keeps_the_history_of_its_range_selectors(tmp_path):
    path = tmp_path / "rules.yaml"
    rule = "groups:\n  - name: a\n    rules:\n      - alert: Cordoning\n        expr: changes(%s[1m]) >= 1\n"
    path.write_text(rule % "dockyard_node_spec_unschedulable")
    rule_file = RuleFile(str(path))
    rule_file.reload_if_changed()
    for offset, cordoned in ((0, False), (10, True)):
        state = ClusterHealth(nodes=(NodeHealth(name="n1", ready="True", unschedulable=cordoned),))
        alerts = evaluate(rule_file.rules, state, T0 + dt.timedelta(seconds=offset), {})
        if offset == 0:
            path.write_text(rule % "dockyard_node_spec_unschedulable" + "        for: 0s\n")
            os.utime(path, ns=(1, 1))
            assert rule_file.reload_if_changed() is True
    assert [a.labels["node"] for a in alerts.values()] == ["n1"]
    path.write_text(rule % "dockyard_scheduler_pending_pods")
    assert rule_file.reload_if_changed() is True
    assert rule_file.history.series() == 0  # nothing reads the node series any more


def rule_with(expr: str = "up > 1", summary: str = "ok") -> str:
    return ("groups:\n  - name: a\n    rules:\n      - alert: X\n"
            f"        expr: {expr}\n        annotations:\n          summary: {summary}\n")


@pytest.mark.parametrize("text,line,reason", [
    (rule_with(expr="'sum(up{job=\"a\"}})'"), 5, '`expr`: unexpected "}" at column 16: expected ")"'),
    (rule_with(expr="|\n          sum by (node) (\n            up{job=\"a\"}}"), 7,
     '`expr`: unexpected "}" at column 14'),
    (rule_with(expr="rate(up) > 1"), 5, "rate() needs a range vector, not an instant vector at column 6"),
    (rule_with(summary="'{{ $labels.node '"), 7, "`annotations.summary`: template: unclosed action"),
    (rule_with(summary="'{{ .Foo }}'"), 7, "unknown field .Foo"),
    (rule_with(summary="'{{ $value | humanise }}'"), 7, 'function "humanise" not defined'),
    (rule_with(summary="'{{ if $value }}big{{ end }}'"), 7, "{{ if }} is not supported"),
    (rule_with(summary="'{{ $nodes }}'"), 7, "undefined variable $nodes"),
], ids=["expr-column", "block-expr-line", "expr-type", "template-unclosed", "template-unknown-field",
        "template-unknown-function", "template-control", "template-undefined-variable"])
def test_expressions_and_templates_are_checked_at_load(text, line, reason):
    with pytest.raises(RuleFileError) as refused:
        parse_rules(text)
    assert refused.value.line == line, str(refused.value)
    assert reason in str(refused.value)


def test_label_templates_are_checked_too():
    text = "groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up > 1\n        labels:\n" \
           "          node: '{{ $labels.node '\n"
    with pytest.raises(RuleFileError, match=r"^line 7: `labels.node`: template: unclosed action"):
        parse_rules(text)


@pytest.mark.parametrize("template,expected", [
    ("{{ $value }}", "1.234568e+06".replace("1.234568e+06", f"{1234567.0:g}")),
    ("{{ $value | humanize }}", "1.235M"),
    ("{{ humanize 0.0042 }}", "4.2m"),
    ("{{ 2048 | humanize1024 }}", "2ki"),
    ("{{ 0.1234 | humanizePercentage }}", "12.34%"),
    ("{{ 90061 | humanizeDuration }}", "1d 1h 1m 1s"),
    ("{{ 0.25 | humanizeDuration }}", "250ms"),
    ("{{ $labels }}", "node=n1, pod=a"),
    ("{{ printf \"%s/%s=%.2f %d%%\" $labels.node $labels.pod $value 7 }}", "n1/a=1234567.00 7%"),
    ("a {{- \" b \" -}} c", "a b c"),
    ("{{/* a comment */}}x", "x"),
    ("{{ $labels.pod | humanize }}", "<error expanding template: 'a' is not a number>"),
], ids=["value", "humanize", "humanize-small", "humanize1024", "percentage", "duration", "duration-small", "labels",
        "printf", "trim", "comment", "render-error"])
def test_templates_render_as_prometheus_does(template, expected):
    from dockyard.services.monitoring.templates import parse_template, render
    assert render(parse_template(template), {"node": "n1", "pod": "a"}, 1234567.0) == expected


def test_the_builtin_rules_templates_are_valid():
    from dockyard.services.monitoring.builtin import Thresholds, builtin_rules
    from dockyard.services.monitoring.templates import parse_template
    for rule in builtin_rules(Thresholds()):
        for text in rule.annotations.values():
            parse_template(text)


def _promtool(tmp_path, text: str):
    import shutil
    import subprocess

    from tests.conftest import require
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    require(os.path.exists(promtool), "promtool is not installed (apt-get install prometheus)")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


def test_promtool_accepts_the_examples_dockyard_accepts(tmp_path):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    example = readme.split("## Monitoring", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    for text in (GOOD, EXAMPLES, example):
        assert parse_rules(text)
        check = _promtool(tmp_path, text)
        assert check.returncode == 0, check.stdout + check.stderr


# `{{ .Foo }}` is refused here only: promtool parses templates but fails on a missing field when one runs.
@pytest.mark.parametrize("summary", ["'{{ $labels.node '", "'{{ $value | humanise }}'", "'{{ $nodes }}'"],
                         ids=["unclosed", "unknown-function", "undefined-variable"])
def test_promtool_refuses_the_templates_dockyard_refuses(tmp_path, summary):
    text = rule_with(expr="up > 1", summary=summary)
    with pytest.raises(RuleFileError):
        parse_rules(text)
    assert _promtool(tmp_path, text).returncode != 0


def test_rules_read_every_family_the_metrics_endpoint_serves():
    from dockyard.services.monitoring.exposition import cluster_families
    from dockyard.services.monitoring.userrules import FAMILY_GROUPS
    everything = ClusterHealth(nodes=(NodeHealth(name="n1", ready="True"),))
    assert [f.name for f in cluster_families(everything)] == \
        [f.name for group in FAMILY_GROUPS for f in group(everything)]


def test_a_case_insensitive_regex_is_taken_as_re2_takes_it(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(rule_with(expr="'dockyard_node_status_condition{condition=~\"(?i)ready\"} == 1'"))
    rule_file = RuleFile(str(path))
    assert rule_file.reload_if_changed() is True, rule_file.error
    state = ClusterHealth(nodes=(NodeHealth(name="n1", ready="True"),))
    alerts = evaluate(rule_file.rules, state, T0, {})
    assert {a.labels["condition"] for a in alerts.values()} == {"Ready"}


def test_flags_inside_a_regex_are_refused_with_the_column(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(rule_with(expr="'up{job=~\"a(?i)b\"} > 1'"))
    rule_file = RuleFile(str(path))
    assert rule_file.reload_if_changed() is False
    assert "line 5" in rule_file.error and "bad regular expression" in rule_file.error
    assert rule_file.reload_if_changed() is None  # judged once, and the judgement kept


def test_a_huge_printf_width_is_an_expansion_error_not_a_huge_string():
    from dockyard.services.monitoring.templates import parse_template, render
    assert render(parse_template('{{ printf "%300000000d" 1 }}!'), {}, 0.0) == (
        "<error expanding template: printf: width and precision are at most 1000>!")


SEVERAL_BAD = """\
groups:
  - name: a
    rules:
      - alert: Good
        expr: up > 1
      - alert: BadExpr
        expr: 'sum(up}'
      - alert: BadFor
        expr: up > 1
        for: soon
  - name: b
    rules:
      - alert: Good
        expr: up > 2
      - alert: BadSummary
        expr: up > 1
        annotations: {summary: '{{ $labels.node '}
  - name: c
    rules: {}
"""


def test_every_bad_rule_is_reported_with_its_line_and_the_file_is_refused(tmp_path):
    with pytest.raises(RuleFileError) as refused:
        parse_rules(SEVERAL_BAD)
    assert [line for line, _ in refused.value.problems] == [7, 10, 13, 17, 19]
    assert (refused.value.line, refused.value.reason) == refused.value.problems[0]
    message = str(refused.value)
    for piece in ('line 7: `expr`: unexpected "}"', "line 10: `for`:", "line 13: alert 'Good' is defined twice",
                  "line 17: `annotations.summary`: template: unclosed action", "line 19: `rules` must be a list"):
        assert piece in message
    path = tmp_path / "rules.yaml"
    path.write_text(rule_with())
    rule_file = RuleFile(str(path))
    assert rule_file.reload_if_changed() is True
    path.write_text(SEVERAL_BAD)
    assert rule_file.reload_if_changed() is False
    assert [rule.name for rule in rule_file.rules] == ["X"]  # the whole file refused: the old rule stays


def test_promtool_too_refuses_the_file_with_several_bad_rules(tmp_path):
    assert _promtool(tmp_path, SEVERAL_BAD).returncode != 0


def test_a_refused_file_reads_in_status_with_its_problems_and_the_rules_kept(tmp_path):
    from dockyard.cluster_summary import ClusterSummary
    from dockyard.printers import cluster_summary_lines
    from dockyard.services.monitoring.rulestate import state_of

    path = tmp_path / "alert-rules.yaml"
    path.write_text(rule_with())
    rule_file = RuleFile(str(path))
    rule_file.reload_if_changed()
    assert state_of(rule_file).problem == ""
    path.write_text(rule_with(expr="'sum(up}'"))
    rule_file.reload_if_changed()
    refusal = state_of(rule_file).refusal()
    assert refusal == f'{path} refused: line 5: `expr`: unexpected "}}" at column 7: expected ")"' \
                      " (the 1 rule(s) loaded before stay in use)"
    assert cluster_summary_lines(ClusterSummary(rules_refused=[refusal]))[-1] == f"rules:        {refusal}"
