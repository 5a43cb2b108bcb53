"""Operators' alert rules from a YAML file in Prometheus' shape, parsed strictly, errors with their line.

    groups:
      - name: capacity
        rules:
          - alert: NodeAlmostFull
            expr: 'dockyard_node_status_allocated{resource="cpu"} > 3.5'
            for: 2m
            labels: {severity: page}
            annotations: {summary: 'Node {{ $labels.node }} has {{ $value }} cores requested'}

`expr` is a selector (a metric name, label matchers `=`, `!=`, `=~`, `!~`) compared with a number;
it is evaluated over the monitoring service's own cluster-state samples, one alert per matching series.
"""

from __future__ import annotations

import datetime as dt
import operator
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import yaml

from dockyard.services.monitoring.exposition import Family, cluster_families
from dockyard.services.monitoring.health import ClusterHealth
from dockyard.services.monitoring.rules import Finding, Rule


class RuleFileError(ValueError):
    """A rule file that cannot be used: the message names the line and the reason."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


GROUP_FIELDS = {"name", "interval", "rules"}
RULE_FIELDS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_EXPR = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?:\{{(?P<matchers>.*)\}})?\s*(?P<op>>=|<=|==|!=|>|<)\s*"
                   r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_MATCHER = re.compile(rf'\s*(?P<label>{_NAME})\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
ALERT_NAME = re.compile(rf"^{_NAME}$")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Selector:
    """`name{matchers} op number`: the series of `name` whose labels match and whose value compares true."""

    name: str
    matchers: tuple[Matcher, ...]
    op: str
    threshold: float

    def findings(self, families: list[Family]) -> Iterator[Finding]:
        compare = COMPARISONS[self.op]
        for family in families:
            if family.name != self.name:
                continue
            index = {label: i for i, label in enumerate(family.label_names)}
            for row in family.rows:
                if compare(row[-1], self.threshold) and \
                        all(m.matches(row[index[m.label]] if m.label in index else "") for m in self.matchers):
                    yield Finding(dict(zip(family.label_names, row)), float(row[-1]))


def parse_expr(text: str) -> Selector:
    """Parse `name{label="v",...} > 10`; raises ValueError with the reason."""
    match = _EXPR.match(text)
    if not match:
        raise ValueError(f"expr {text!r} is not `metric{{label=\"value\"}} <op> number`"
                         " (op one of > >= < <= == !=)")
    matchers = []
    rest = match.group("matchers") or ""
    position = 0
    while rest[position:].strip():
        found = _MATCHER.match(rest, position)
        if not found:
            raise ValueError(f"expr {text!r}: cannot read the label matcher at {rest[position:].strip()!r}")
        value = found.group("value").encode().decode("unicode_escape")
        if found.group("op") in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expr {text!r}: bad regular expression {value!r}: {exc}") from None
        matchers.append(Matcher(found.group("label"), found.group("op"), value))
        position = found.end()
    return Selector(match.group("name"), tuple(matchers), match.group("op"), float(match.group("number")))


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


def parse_rules(text: str, default_keep_firing_for: float = 0.0) -> tuple[Rule, ...]:
    """The rules of a file's text; raises RuleFileError with the line of the first problem."""
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
    for group in _sequence(top["groups"][1], "groups"):
        fields = _mapping(group, "a group", GROUP_FIELDS)
        for node in _sequence(fields["rules"][1], "rules") if "rules" in fields else ():
            rule = _rule(node, default_keep_firing_for)
            if rule.name in names:
                raise RuleFileError(_line(node), f"alert {rule.name!r} is defined twice")
            names.add(rule.name)
            rules.append(rule)
    return tuple(rules)


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


def _rule(node: yaml.Node, default_keep_firing_for: float) -> Rule:
    fields = _mapping(node, "a rule", RULE_FIELDS)
    for required in ("alert", "expr"):
        if required not in fields:
            raise RuleFileError(_line(node), f"a rule needs `{required}`")
    name = _scalar(fields["alert"][1], "alert")
    if not ALERT_NAME.match(name):
        raise RuleFileError(_line(fields["alert"][1]), f"alert name {name!r} is not a valid label value name")
    values = {}
    for key in ("expr", "for", "keep_firing_for"):
        if key not in fields:
            continue
        value_node = fields[key][1]
        try:
            text = _scalar(value_node, key)
            values[key] = parse_expr(text) if key == "expr" else parse_duration(text)
        except ValueError as exc:
            raise RuleFileError(_line(value_node), f"`{key}`: {exc}") from None
    labels = _strings(fields["labels"][1], "labels") if "labels" in fields else {}
    annotations = _strings(fields["annotations"][1], "annotations") if "annotations" in fields else {}
    severity = labels.pop("severity", "warning")
    return Rule(name, selector_condition(values["expr"]), values.get("for", 0.0),
                values.get("keep_firing_for", default_keep_firing_for), severity, labels, annotations)


def selector_condition(selector: Selector):
    def condition(health: ClusterHealth, now: dt.datetime) -> Iterator[Finding]:
        return selector.findings(families_of(health))
    return condition


_last: list = [None, []]


def families_of(health: ClusterHealth) -> list[Family]:
    """The cluster families of `health`, built once per health snapshot however many rules read them."""
    if _last[0] is not health:
        _last[0], _last[1] = health, cluster_families(health)
    return _last[1]


class RuleFile:
    """A rule file watched for changes: a good version replaces the rules, a bad one is refused and logged."""

    def __init__(self, path: str, default_keep_firing_for: float = 0.0):
        self.path = path
        self.default_keep_firing_for = default_keep_firing_for
        self.rules: tuple[Rule, ...] = ()
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
            self.rules = parse_rules(text, self.default_keep_firing_for)
        except (RuleFileError, OSError, UnicodeDecodeError) as exc:
            self.error = f"{self.path}: {exc}"
            return False
        self.error = ""
        return True
