"""The alert engine, pure: rules find conditions in a ClusterHealth; `evaluate` applies `for` and keep-firing.

A rule yields findings (labels and a value), one per thing that is wrong. A finding becomes an
alert once it has held for the rule's `for` duration; a firing alert stays firing for
`keep_firing_for` after its condition stops holding, so a flapping condition fires once instead
of flooding the log with fired/resolved pairs (Prometheus' `keep_firing_for`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from dockyard.schemas.events import alert_fingerprint
from dockyard.services.monitoring import templates
from dockyard.services.monitoring.health import ClusterHealth


@dataclass(frozen=True, slots=True)
class Finding:
    labels: dict[str, str]
    value: float = 1.0


Condition = Callable[[ClusterHealth, dt.datetime], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    name: str  # the alertname
    condition: Condition
    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)  # extra labels on every alert of the rule
    annotations: dict[str, str] = field(default_factory=dict)  # templates: {{ $labels.x }}, {{ $value }}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as the engine tracks it: pending until its `for` has passed, then firing."""

    fingerprint: str
    alertname: str
    severity: str
    labels: dict[str, str]  # alertname and severity included
    annotations: dict[str, str]
    value: float
    active_since: dt.datetime  # when the condition started to hold
    last_held: dt.datetime  # the last evaluation it held at
    firing: bool = False


def evaluate(rules: Iterable[Rule], health: ClusterHealth, now: dt.datetime,
             previous: Mapping[str, Alert]) -> dict[str, Alert]:
    """The alerts after this evaluation, by fingerprint: pending ones and firing ones.

    Resolved alerts are those firing in `previous` and absent from the result.
    """
    alerts: dict[str, Alert] = {}
    for rule in rules:
        for finding in rule.condition(health, now):
            alert = _held(rule, finding, now, previous)
            alerts[alert.fingerprint] = alert
    for fingerprint, alert in previous.items():
        if fingerprint not in alerts and alert.firing and _kept(alert, rules, now):
            alerts[fingerprint] = alert
    return alerts


def _held(rule: Rule, finding: Finding, now: dt.datetime, previous: Mapping[str, Alert]) -> Alert:
    extra = {key: expand(text, finding.labels, finding.value) for key, text in rule.labels.items()}
    labels = {**finding.labels, **extra, "alertname": rule.name, "severity": rule.severity}
    fingerprint = alert_fingerprint(labels)
    before = previous.get(fingerprint)
    since = before.active_since if before else now
    firing = (before is not None and before.firing) or (now - since).total_seconds() >= rule.for_seconds
    annotations = {key: expand(text, labels, finding.value) for key, text in rule.annotations.items()}
    return Alert(fingerprint=fingerprint, alertname=rule.name, severity=rule.severity, labels=labels,
                 annotations=annotations, value=finding.value, active_since=since, last_held=now, firing=firing)


def _kept(alert: Alert, rules: Iterable[Rule], now: dt.datetime) -> bool:
    """A firing alert whose condition just stopped: kept while within its rule's keep_firing_for."""
    rule = next((r for r in rules if r.name == alert.alertname), None)
    return rule is not None and (now - alert.last_held).total_seconds() < rule.keep_firing_for


def firing(alerts: Mapping[str, Alert]) -> dict[str, Alert]:
    return {fp: alert for fp, alert in alerts.items() if alert.firing}


def update_due(alert: Alert, logged_annotations: Mapping[str, str], last_appended: dt.datetime | None,
               now: dt.datetime, min_interval: float) -> bool:
    """Whether a firing alert is appended again: its annotations read differently now than in the log, and
    the log's last event on it is at least `min_interval` old (so a value that moves every round does not
    flood the log). A value alone that changed is not worth an event: nobody reads it but the VALUE column.
    """
    if alert.annotations == dict(logged_annotations):
        return False
    return last_appended is None or (now - last_appended).total_seconds() >= min_interval


def adopt(alerts: Mapping[str, Alert], fired: Iterable[Alert], now: dt.datetime) -> dict[str, Alert]:
    """Take over alerts the log says are firing (another instance's, or ours before a restart).

    One we did not know counts as held until now, so it resolves only after its keep_firing_for;
    one still pending here fires, rather than being resolved because our own `for` started later.
    """
    adopted = dict(alerts)
    for alert in fired:
        known = adopted.get(alert.fingerprint)
        if known is None:
            adopted[alert.fingerprint] = replace(alert, firing=True, last_held=now)
        elif not known.firing:
            adopted[alert.fingerprint] = replace(known, firing=True)
    return adopted


def expand(template: str, labels: Mapping[str, str], value: float) -> str:
    """Prometheus' annotation templates, `{{ $labels.name }}`, `{{ $value | humanize }}`: see templates.py."""
    return templates.expand(template, labels, value) if "{{" in template else template
