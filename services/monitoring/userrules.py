"""Operators' alert rules from a YAML file in Prometheus' shape, parsed strictly, errors with their line.

    groups:
      - name: capacity
        rules:
          - alert: NodeAlmostFull
            expr: 'sum by (node) (dockyard_node_status_allocated{resource="cpu"}) > 3.5'
            for: 2m
            labels: {severity: page}
            annotations: {summary: 'Node {{ $labels.node }} has {{ $value | humanize }} cores requested'}

`expr` is PromQL (the subset in promql.py: selectors, sum/min/max/avg/count by/without, rate, increase,
changes, *_over_time, absent, arithmetic, comparisons, and/or/unless) evaluated over the monitoring
service's own cluster-state samples at each evaluation, one alert per resulting series. Range selectors
read a History the rule file keeps across reloads, for the series they select only. Label and
annotation templates are checked when the file loads (templates.py). A bad file is refused whole, and
the refusal names every bad rule with its line, and for `expr` the column, as promtool lists them:
`line 7: `expr`: unexpected "}" at column 24; line 12: `for`: 'soon' is not a duration ...`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from dockyard.services.monitoring import promql
from dockyard.services.monitoring.exposition import (
    deployment_families,
    health_families,
    node_families,
    pod_families,
    scheduler_families,
)
from dockyard.services.monitoring.promql import History, PromQLError
from dockyard.services.monitoring.templates import TemplateError, parse_template
from dockyard.services.monitoring.health import ClusterHealth
from dockyard.services.monitoring.rules import Finding, Rule


log = logging.getLogger(__name__)


class RuleFileError(ValueError):
    """A rule file that cannot be used: the message names the line and the reason."""

    def __init__(self, line: int, reason: str, *more: tuple[int, str]):
        self.line = line  # the first problem's
        self.reason = reason
        self.problems = ((line, reason), *more)  # every problem found, in file order, as promtool lists them
        super().__init__("; ".join(f"line {n}: {why}" for n, why in self.problems))

    @classmethod
    def of_all(cls, errors: list[RuleFileError]) -> RuleFileError:
        """One error that reports each of `errors`."""
        problems = [problem for error in errors for problem in error.problems]
        return cls(*problems[0], *problems[1:])


GROUP_FIELDS = {"name", "interval", "rules"}
RULE_FIELDS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
ALERT_NAME = re.compile(rf"^{_NAME}$")


def parse_expr(text: str):
    """The PromQL syntax tree of `text`; raises PromQLError with the reason and the offset."""
    return promql.parse(text)


def parse_duration(text: object) -> float:
    """Prometheus durations: `30s`, `2m`, `1h30m`, `500ms`; a bare number is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str) and re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not isinstance(text, str) or not text or _DURATION.sub("", text):
        raise ValueError(f"{text!r} is not a duration like 30s, 2m or 1h30m")
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))


# ---------------------------------------------------------------- the file


def parse_rules(text: str, default_keep_firing_for: float = 0.0, history: History | None = None) -> tuple[Rule, ...]:
    """The rules of a file's text; raises RuleFileError naming every bad rule and group with its line.

    A problem in the file's outline (not YAML, no `groups` list) stops the reading there; past it,
    each group and each rule is judged on its own, so one look at the error shows all that is wrong.
    `history` keeps the samples range selectors read; rules parsed with the same one share it.
    """
    history = history if history is not None else History()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RuleFileError(*_yaml_problem(exc, text)) from None
    if root is None:
        return ()
    top = _mapping(root, "the file", {"groups"})
    if "groups" not in top:
        raise RuleFileError(_line(root), "the file needs a `groups` list")
    rules: list[Rule] = []
    names: set[str] = set()
    problems: list[RuleFileError] = []
    for group in _sequence(top["groups"][1], "groups"):
        rules += _group_rules(group, names, problems, default_keep_firing_for, history)
    if problems:
        raise RuleFileError.of_all(problems)
    return tuple(rules)


def _group_rules(group: yaml.Node, names: set[str], problems: list[RuleFileError], default_keep_firing_for: float,
                 history: History) -> list[Rule]:
    """A group's good rules, their names added to `names`; each bad rule (or the group) goes to `problems`."""
    try:
        fields = _mapping(group, "a group", GROUP_FIELDS)
        nodes = _sequence(fields["rules"][1], "rules") if "rules" in fields else ()
    except RuleFileError as exc:
        problems.append(exc)
        return []
    rules = []
    for node in nodes:
        try:
            rule = _rule(node, default_keep_firing_for, history)
            if rule.name in names:
                raise RuleFileError(_line(node), f"alert {rule.name!r} is defined twice")
        except RuleFileError as exc:
            problems.append(exc)
            continue
        names.add(rule.name)
        rules.append(rule)
    return rules


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int, str]:
    """The line and reason of a YAML error; an unclosed construct is reported where it opened."""
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if context is not None and (mark is None or mark.index >= len(text.rstrip())):
        mark = context
    reason = " ".join(part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    return (mark.line + 1 if mark else 1), f"not valid YAML: {reason or exc}"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, what: str, allowed: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise RuleFileError(_line(node), f"{what} must be a mapping")
    fields = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else ""
        if name not in allowed:
            hint = " (recording rules are not supported)" if name == "record" else ""
            raise RuleFileError(_line(key), f"unknown field {name!r} in {what}{hint};"
                                            f" allowed: {', '.join(sorted(allowed))}")
        fields[name] = (key, value)
    return fields


def _sequence(node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise RuleFileError(_line(node), f"`{what}` must be a list")
    return node.value


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise RuleFileError(_line(node), f"`{what}` must be a single value")
    return node.value


def _strings(node: yaml.Node, what: str) -> dict[str, str]:
    fields = {}
    if not isinstance(node, yaml.MappingNode):
        raise RuleFileError(_line(node), f"`{what}` must be a mapping of names to text")
    for key, value in node.value:
        fields[_scalar(key, what)] = _scalar(value, f"{what}.{key.value}")
    return fields


def _rule(node: yaml.Node, default_keep_firing_for: float, history: History) -> Rule:
    fields = _mapping(node, "a rule", RULE_FIELDS)
    for required in ("alert", "expr"):
        if required not in fields:
            raise RuleFileError(_line(node), f"a rule needs `{required}`")
    name = _scalar(fields["alert"][1], "alert")
    if not ALERT_NAME.match(name):
        raise RuleFileError(_line(fields["alert"][1]), f"alert name {name!r} is not a valid label value name")
    expr = _expr(fields["expr"][1])
    values = {}
    for key in ("for", "keep_firing_for"):
        if key not in fields:
            continue
        value_node = fields[key][1]
        try:
            values[key] = parse_duration(_scalar(value_node, key))
        except ValueError as exc:
            raise RuleFileError(_line(value_node), f"`{key}`: {exc}") from None
    labels = _templates(fields, "labels")
    annotations = _templates(fields, "annotations")
    severity = labels.pop("severity", "warning")
    return Rule(name, ExprCondition(expr, history), values.get("for", 0.0),
                values.get("keep_firing_for", default_keep_firing_for), severity, labels, annotations)


def _expr(node: yaml.Node):
    text = _scalar(node, "expr")
    try:
        return parse_expr(text)
    except PromQLError as exc:
        line, column = _place(node, text, exc.position)
        hint = f": {exc.hint}" if exc.hint else ""
        raise RuleFileError(line, f"`expr`: {exc.reason} at column {column}{hint}") from None


def _place(node: yaml.ScalarNode, text: str, position: int) -> tuple[int, int]:
    """The file line of `position` in a scalar's text, and its column in that line of the text."""
    before = text[:position]
    block = node.style in ("|", ">")  # a block scalar's text starts on the line after its indicator
    return _line(node) + block + before.count("\n"), position - (before.rfind("\n") + 1) + 1


def _templates(fields: dict, what: str) -> dict[str, str]:
    """The labels' or annotations' templates, each checked now so a broken one refuses the file."""
    if what not in fields:
        return {}
    texts = _strings(fields[what][1], what)
    for key_node, value_node in fields[what][1].value:
        try:
            parse_template(value_node.value)
        except TemplateError as exc:
            raise RuleFileError(_line(value_node), f"`{what}.{key_node.value}`: template: {exc}") from None
    return texts


@dataclass(frozen=True)
class ExprCondition:
    """A rule's condition: its expression at `now`, one finding per series (the name left out, as Prometheus)."""

    expr: object
    history: History

    def __call__(self, health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        context = promql.Context(samples_of(health), self.history, now.timestamp())
        try:
            result = promql.evaluate(self.expr, context)
        except promql.EvaluationError as exc:
            log.warning("alert rule expression failed: %s", exc)
            return
        if isinstance(result, float):
            yield Finding({}, result)
            return
        for labels, value in result.items():
            yield Finding({name: value for name, value in labels if name != promql.NAME}, value)


_last: list = [None, None]
FAMILY_GROUPS = (node_families, pod_families, deployment_families, scheduler_families, health_families)
GROUP_NAMES = tuple(frozenset(family.name for family in group(ClusterHealth())) for group in FAMILY_GROUPS)


def samples_of(health: ClusterHealth) -> promql.Samples:
    """The cluster samples of `health`, once per health snapshot however many rules read them.

    A group of families (nodes', pods', ...) is built only if a rule reads one of its names: the
    pods' alone are 300,000 rows at 50,000 pods.
    """
    if _last[0] is not health:
        lazy = [(names, functools.partial(group, health)) for group, names in zip(FAMILY_GROUPS, GROUP_NAMES)]
        _last[0], _last[1] = health, promql.Samples(lazy=lazy)
    return _last[1]


class RuleFile:
    """A rule file watched for changes: a good version replaces the rules, a bad one is refused and logged."""

    def __init__(self, path: str, default_keep_firing_for: float = 0.0):
        self.path = path
        self.default_keep_firing_for = default_keep_firing_for
        self.rules: tuple[Rule, ...] = ()
        self.history = History()  # kept across reloads: a changed file does not restart rate()'s window
        self.error = ""  # why the file on disk is not in use; "" when it is
        self._stamp: tuple[int, int] | None = None

    def reload_if_changed(self) -> bool | None:
        """None when the file has not changed; else whether its new version was taken."""
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            text = open(self.path, encoding="utf-8").read() if stamp != (0, 0) else ""
            self.rules = parse_rules(text, self.default_keep_firing_for, self.history)
        except (RuleFileError, OSError, UnicodeDecodeError) as exc:
            self.error = f"{self.path}: {exc}"
            return False
        except Exception as exc:  # a file we failed to judge is refused too: the old rules go on working
            log.exception("rule file %s could not be read", self.path)
            self.error = f"{self.path}: cannot be used: {exc}"
            return False
        self.history.keep_only(selector.key for rule in self.rules
                               for selector in promql.matrix_selectors(rule.condition.expr))
        self.error = ""
        return True
