"""How objects print: kubectl's tables, `-o wide|json|yaml|name`, and `describe`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec
import yaml

Obj = dict[str, Any]


def age(timestamp: str, now: dt.datetime | None = None) -> str:
    """kubectl's short age: 42s, 5m, 3h, 7d."""
    if not timestamp:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = max(0, int(((now or dt.datetime.now(dt.timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Deployment":
        spec = (spec.get("template") or {}).get("spec") or {}
    return spec.get("containers") or []


def _condition(obj: Obj, kind: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition.get("status", "Unknown")
    return "Unknown"


def _pod_row(obj: Obj) -> dict[str, str]:
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        if s.get("reason") and not s.get("ready"):
            reason = s["reason"]
    return {
        "READY": f"{ready}/{len(_containers(obj))}",
        "STATUS": reason,
        "RESTARTS": str(sum(int(s.get("restartCount", 0)) for s in statuses)),
        "AGE": age(_meta(obj).get("creationTimestamp", "")),
        "IP": status.get("hostIP") or "<none>",
        "NODE": (obj.get("spec") or {}).get("nodeName") or "<none>",
    }


def _deployment_row(obj: Obj) -> dict[str, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    selector = ((spec.get("selector") or {}).get("matchLabels")) or {}
    return {
        "READY": f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        "UP-TO-DATE": str(status.get("updatedReplicas", 0)),
        "AVAILABLE": str(status.get("availableReplicas", 0)),
        "AGE": age(_meta(obj).get("creationTimestamp", "")),
        "CONTAINERS": ",".join(c.get("name", "") for c in containers),
        "IMAGES": ",".join(c.get("image", "") or "<none>" for c in containers),
        "SELECTOR": ",".join(f"{k}={v}" for k, v in selector.items()),
    }


def _node_row(obj: Obj) -> dict[str, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = "Ready" if _condition(obj, "Ready") == "True" else "NotReady"
    if spec.get("unschedulable"):
        ready += ",SchedulingDisabled"
    capacity = status.get("capacity") or spec.get("capacity") or {}
    taints = spec.get("taints") or []
    return {
        "STATUS": ready,
        "AGE": age(_meta(obj).get("creationTimestamp", "")),
        "CPU": str(capacity.get("cpu", "<none>")),
        "MEMORY": str(capacity.get("memory", "<none>")),
        "PODS": str(capacity.get("pods", "<none>")),
        "TAINTS": ",".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in taints) or "<none>",
    }


# kind -> (row builder, columns, wide-only columns)
TABLES: dict[str, tuple[Callable[[Obj], dict[str, str]], list[str], list[str]]] = {
    "Pod": (_pod_row, ["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"]),
    "Deployment": (_deployment_row, ["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"]),
    "Node": (_node_row, ["STATUS", "AGE"], ["CPU", "MEMORY", "PODS", "TAINTS"]),
}


def table_rows(kind: str, objects: Iterable[Obj], wide: bool, all_namespaces: bool) -> tuple[list[str], list[list[str]]]:
    builder, columns, extra = TABLES[kind]
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + columns + (extra if wide else [])
    rows = []
    for obj in objects:
        cells = {"NAMESPACE": _meta(obj).get("namespace", ""), "NAME": _meta(obj).get("name", ""), **builder(obj)}
        rows.append([cells[h] for h in headers])
    return headers, rows


def format_table(headers: list[str], rows: list[list[str]], with_headers: bool = True,
                 widths: list[int] | None = None) -> str:
    """Columns padded to their widest cell (or to fixed `widths`, for rows printed as they come)."""
    widths = widths or [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [headers] if with_headers else []
    lines.extend(rows)
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


_TOP_ORDER = ("apiVersion", "kind", "metadata", "spec", "status")
_META_ORDER = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "labels",
               "annotations")


def _ordered(mapping: Obj, order: tuple[str, ...]) -> Obj:
    return {**{k: mapping[k] for k in order if k in mapping}, **{k: v for k, v in mapping.items() if k not in order}}


def kubernetes_order(obj: Obj) -> Obj:
    """Keys in the order kubectl prints them: apiVersion, kind, metadata (name first), spec, status."""
    obj = _ordered(obj, _TOP_ORDER)
    if obj.get("kind") == "Pod" and isinstance(obj.get("status"), dict):
        obj["status"] = {"phase": "Pending", **obj["status"]}  # encoding omits the default; jq wants it
    if isinstance(obj.get("metadata"), dict):
        obj["metadata"] = _ordered(obj["metadata"], _META_ORDER)
    return obj


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "items": [kubernetes_order(i) for i in items],
            "metadata": {"resourceVersion": ""}}


def to_json(data: Any) -> str:
    return json.dumps(data, indent=4, ensure_ascii=False)


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n")


def name_of(obj: Obj) -> str:
    return f"{obj.get('kind', '').lower()}/{_meta(obj).get('name', '')}"


# ---------------------------------------------------------------- describe


def _labels(mapping: dict[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in (mapping or {}).items()] or ["<none>"]


def _block(title: str, values: list[str], width: int = 20) -> list[str]:
    head = f"{title + ':':<{width}}"
    return [head + values[0]] + [" " * width + v for v in values[1:]]


class ContainerRun(NamedTuple):
    """One ended run of a container, as the pod's events tell it: when it started and when it was seen ended."""

    started: str
    finished: str


def container_runs(records) -> dict[str, list[ContainerRun]]:
    """Each container's ended runs, oldest first, from a pod's events: the status keeps only the
    latest run's start, so the times of the run before (kubectl's Last State) come from the log."""
    runs: dict[str, dict[str, ContainerRun]] = {}
    for record in records:
        status = getattr(record.event, "status", None)
        for container in getattr(status, "container_statuses", ()):
            ended = runs.setdefault(container.name, {})
            if container.state == "terminated" and container.started_at not in ended:
                ended[container.started_at] = ContainerRun(container.started_at, record.time)
    return {name: list(ended.values()) for name, ended in runs.items()}


def _state_lines(title: str, indent: str, name: str, reason: str = "", message: str = "", exit_code: Any = None,
                 signal: int = 0, started: str = "", finished: str = "") -> list[str]:
    lines = [f"{indent}  {title + ':':<16}{name.capitalize() if name else 'Waiting'}"]
    for label, value in (("Reason", reason), ("Message", message), ("Exit Code", exit_code), ("Signal", signal),
                         ("Started", started), ("Finished", finished)):
        if value not in ("", None, 0) or (label == "Exit Code" and value == 0):
            lines.append(f"{indent}    {label + ':':<14}{value}")
    return lines


def _container_state(status: Obj, indent: str, runs: list[ContainerRun] | None = None) -> list[str]:
    """A container's state, last state, readiness and restarts, as `kubectl describe pod` shows them:
    Started under a running or terminated state, never a waiting one (whose startedAt is the last run's)."""
    state, started = status.get("state", "waiting"), status.get("startedAt", "")
    ran = state in ("running", "terminated")
    this_run = next((run for run in reversed(runs or []) if ran and run.started == started), None)
    earlier = [run for run in runs or [] if not ran or run.started != started]
    lines = _state_lines("State", indent, state, status.get("reason", ""), status.get("message", ""),
                         status.get("exitCode"), status.get("signal", 0), started if ran else "",
                         this_run.finished if this_run and state == "terminated" else "")
    if status.get("lastState"):
        last = earlier[-1] if earlier else ContainerRun("" if ran else started, "")
        lines += _state_lines("Last State", indent, status["lastState"], status.get("lastReason", ""),
                              exit_code=status.get("lastExitCode"), started=last.started, finished=last.finished)
    lines.append(f"{indent}  {'Ready:':<16}{'True' if status.get('ready') else 'False'}")
    lines.append(f"{indent}  {'Restart Count:':<16}{status.get('restartCount', 0)}")
    return lines


def _describe_containers(containers: list[Obj], indent: str, statuses: list[Obj] | None = None,
                         runs: dict[str, list[ContainerRun]] | None = None) -> list[str]:
    by_name = {s.get("name"): s for s in statuses or []}
    lines = []
    for c in containers:
        lines.append(f"{indent}{c.get('name')}:")
        lines.append(f"{indent}  Image:      {c.get('image') or '<none>'}")
        if c.get("name") in by_name:
            lines += _container_state(by_name[c["name"]], indent, (runs or {}).get(c["name"]))
        if c.get("command"):
            lines.append(f"{indent}  Command:    {' '.join(c['command'])}")
        if c.get("args"):
            lines.append(f"{indent}  Args:       {' '.join(c['args'])}")
        for port in c.get("ports") or []:
            lines.append(f"{indent}  Port:       {port.get('containerPort')}/{port.get('protocol', 'TCP')}")
        resources = c.get("resources") or {}
        for section in ("limits", "requests"):
            if resources.get(section):
                lines.append(f"{indent}  {section.capitalize()}:")
                lines.extend(f"{indent}    {k}: {v}" for k, v in resources[section].items())
        env = c.get("env") or []
        if env:
            lines.append(f"{indent}  Environment:")
            lines.extend(f"{indent}    {e.get('name')}: {e.get('value', '')}" for e in env)
    return lines


def pod_for_logs(pods: list[Obj]) -> str:
    """The pod `logs deployment/NAME` reads, as kubectl's ByLogging orders them: one on a node, running,
    ready, with the most restarts, the oldest; then by name, so the choice is the same every time."""
    def preference(pod: Obj) -> tuple:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        ready = bool(statuses) and all(s.get("ready") for s in statuses)
        restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
        return (not spec.get("nodeName"), status.get("phase") != "Running", not ready, -restarts,
                _meta(pod).get("creationTimestamp", ""), _meta(pod).get("name", ""))

    return _meta(min(pods, key=preference))["name"]


def history_rows(records) -> list[tuple[str, str, str, str]]:
    """The last events of an aggregate as describe shows them: (age, type, actor, fields)."""
    from dockyard.timetravel import shown  # `history`'s way to show a value: a list of structs as JSON, cut short

    rows = []
    for record in records[-20:]:
        event = msgspec.to_builtins(record.event)
        event.pop("type", None)
        # A whole object (pod=...) is left out, as before; a list of scores is shown, readably.
        detail = ", ".join(f"{k}={shown(v)}" for k, v in event.items() if not isinstance(v, dict) and v != ())
        rows.append((age(record.time), record.type, record.actor, detail or "-"))
    return rows


def describe(obj: Obj, history: list[tuple[str, str, str, str]],
             runs: dict[str, list[ContainerRun]] | None = None) -> str:
    """kubectl-style description; `history` is (age, type, actor, detail) from the aggregate's events,
    `runs` a pod's containers' ended runs from them (container_runs), for the times of a Last State."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    lines = [f"{'Name:':<20}{meta.get('name', '')}"]
    if meta.get("namespace"):
        lines.append(f"{'Namespace:':<20}{meta['namespace']}")
    lines += _block("Labels", _labels(meta.get("labels")))
    lines += _block("Annotations", _labels(meta.get("annotations")))
    lines.append(f"{'CreationTimestamp:':<20}{meta.get('creationTimestamp', '')}")
    lines.append(f"{'UID:':<20}{meta.get('uid', '')}")
    lines.append(f"{'Generation:':<20}{meta.get('generation', 0)}")
    lines.append(f"{'ResourceVersion:':<20}{meta.get('resourceVersion', '')}")
    kind = obj.get("kind")
    if kind == "Deployment":
        lines.append(f"{'Replicas:':<20}{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated"
                     f" | {status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available")
        selector = (spec.get("selector") or {}).get("matchLabels")
        lines.append(f"{'Selector:':<20}{','.join(_labels(selector))}")
        strategy = spec.get("strategy") or {}
        lines.append(f"{'StrategyType:':<20}{strategy.get('type', 'RollingUpdate')}")
        template = spec.get("template") or {}
        lines.append("Pod Template:")
        lines += ["  " + line for line in _block("Labels", _labels((template.get("metadata") or {}).get("labels")), 18)]
        lines.append("  Containers:")
        lines += _describe_containers(_containers(obj), "   ")
    elif kind == "Pod":
        lines.append(f"{'Node:':<20}{spec.get('nodeName') or '<none>'}")
        lines.append(f"{'Status:':<20}{status.get('phase', 'Pending')}")
        lines.append(f"{'Restart Policy:':<20}{spec.get('restartPolicy', 'Always')}")
        lines.append("Containers:")
        lines += _describe_containers(_containers(obj), "  ", status.get("containerStatuses"), runs)
    elif kind == "Node":
        lines.append(f"{'Unschedulable:':<20}{str(bool(spec.get('unschedulable'))).lower()}")
        taints = [f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in spec.get("taints") or []]
        lines += _block("Taints", taints or ["<none>"])
        lines.append("Capacity:")
        lines += [f"  {k}: {v}" for k, v in (spec.get("capacity") or {}).items()]
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("Conditions:")
        headers = ["Type", "Status", "Reason"] + (["Message"] if any(c.get("message") for c in conditions) else [])
        rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")][:len(headers)]
                for c in conditions]
        lines += ["  " + line for line in format_table(headers, rows).splitlines()]
    lines.append("Events:")
    if history:
        table = format_table(["AGE", "TYPE", "ACTOR", "DETAIL"], [list(h) for h in history])
        lines += ["  " + line for line in table.splitlines()]
    else:
        lines.append("  <none>")
    return "\n".join(lines)


def cluster_summary_lines(summary: Any) -> list[str]:
    """`dockyard status`'s health summary (a dockyard.cluster_summary.ClusterSummary) as aligned lines."""
    if summary.problem:
        return [f"{'cluster:':<13} unknown ({summary.problem})"]
    pods = ", ".join(f"{phase} {count}" for phase, count in summary.pods_by_phase.items())
    firing = sum(summary.firing.values())
    alerts = "none firing" if not firing else \
        f"{firing} firing: " + ", ".join(f"{name} {count}" for name, count in summary.firing.items())
    behind = {name: lag for name, lag in summary.projection_lag.items() if lag}
    lag = "caught up" if not behind else \
        f"{sum(behind.values())} events behind: " + ", ".join(f"{name} {n}" for name, n in behind.items())
    return [f"{'nodes:':<13} {summary.nodes_ready} ready of {summary.nodes}",
            f"{'pods:':<13} {pods}",
            f"{'alerts:':<13} {alerts}",
            f"{'projections:':<13} {lag}",
            *(f"{'rules:':<13} {refusal}" for refusal in summary.rules_refused)]
