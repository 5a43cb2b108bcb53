"""Why a pod is where it is, or why it is still pending, told from its own events (`dockyard explain pod`)."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.events import NodeScore, PodCreated, PodDeleted, PodScheduled, PodUnschedulable


def explain(records: Sequence[EventRecord]) -> list[str]:
    """Lines to print for one pod, given its aggregate's history (`log.read_aggregate(subject_for("pod", ns, name))`).

    A bound pod: its node, how many nodes each filter removed, the top candidates' scores.
    A pending pod: the scheduler's last word on it ("0/40 nodes fit: 31 insufficient cpu, ...").
    """
    if not records:
        return ["no events for this pod: it does not exist (or never did)"]
    _, namespace, name = parse_subject(records[0].subject)
    lines = [f"Pod {namespace}/{name}"]
    scheduled = _last(records, PodScheduled)
    if scheduled is not None:
        lines += _explain_bound(scheduled)
    else:
        lines += _explain_pending(records)
    deleted = _last(records, PodDeleted)
    if deleted is not None:
        reason = f" ({deleted.event.reason})" if deleted.event.reason else ""
        lines.append(f"Deleted at {deleted.time}{reason}")
    return lines


def _last(records: Sequence[EventRecord], kind: type) -> EventRecord | None:
    return next((r for r in reversed(records) if isinstance(r.event, kind)), None)


def _explain_bound(record: EventRecord) -> list[str]:
    event: PodScheduled = record.event
    lines = [f"Scheduled on {event.node_name} at {record.time} (seq {record.seq}) by {record.actor or 'unknown'}"]
    if event.total_nodes:
        lines.append(f"Nodes: {event.total_nodes} in the cluster")
    lines.append(_filtered_line(event.filtered))
    if event.candidates:
        lines.append("Top candidates:")
        lines += ["  " + row for row in _candidate_table(event.candidates)]
    return lines


def _explain_pending(records: Sequence[EventRecord]) -> list[str]:
    unschedulable = _last(records, PodUnschedulable)
    created = _last(records, PodCreated)
    if unschedulable is None or (created is not None and created.seq > unschedulable.seq):
        return ["Pending: not yet decided by the scheduler"]
    event: PodUnschedulable = unschedulable.event
    return [f"Pending: {event.message}", f"Since {unschedulable.time} (seq {unschedulable.seq})",
            _filtered_line(event.filtered)]


def _filtered_line(filtered: dict[str, int]) -> str:
    if not filtered:
        return "Filtered out: none"
    ranked = sorted(filtered.items(), key=lambda item: (-item[1], item[0]))
    return "Filtered out: " + ", ".join(f"{count} by {plugin}" for plugin, count in ranked)


def _candidate_table(candidates: Sequence[NodeScore]) -> list[str]:
    plugins = list(dict.fromkeys(p for c in candidates for p in c.plugins))
    header = ["NODE", "SCORE", *plugins]
    rows = [[c.node, f"{c.score:g}", *(f"{c.plugins[p]:g}" if p in c.plugins else "-" for p in plugins)]
            for c in candidates]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
