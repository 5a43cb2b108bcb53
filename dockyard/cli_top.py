"""`dockyard top nodes|pods`: CPU and memory usage the node agents report into the dy_usage KV, like kubectl top."""

from __future__ import annotations

import argparse
import sys

import msgspec

from dockyard import cli, printers
from dockyard.client import ApiClient
from dockyard.eventlog import EventLog
from dockyard.schemas.quantity import cpu_millis, memory_bytes
from dockyard.schemas.usage import NodeUsage, usage_decoder

MIB = 1024 * 1024
UNKNOWN = "<unknown>"


def add_parsers(sub, add_namespace) -> None:
    top = sub.add_parser("top", help="CPU and memory usage of nodes or pods (reported every few seconds)")
    which = top.add_subparsers(dest="top_what", metavar="nodes|pods", required=True)
    nodes = which.add_parser("nodes", aliases=["node", "no"], help="each node's usage and its share of allocatable")
    pods = which.add_parser("pods", aliases=["pod", "po"], help="each pod's usage")
    add_namespace(pods)
    pods.add_argument("--containers", action="store_true", help="each container's usage (POD NAME ...)")
    for parser in (nodes, pods):
        parser.add_argument("name", nargs="?", help="only this one (kubectl top pod NAME)")
        parser.add_argument("--sort-by", choices=["cpu", "memory"], default=None, help="largest first")
        parser.add_argument("--no-headers", action="store_true", help="no header line")


def format_cpu(millis: int) -> str:
    return f"{millis}m"


def format_memory(size: int) -> str:
    return f"{size // MIB}Mi"


def percent(used: int, allocatable: int) -> str:
    return f"{round(used * 100 / allocatable)}%" if allocatable > 0 else UNKNOWN


async def read_usage(log: EventLog) -> dict[str, NodeUsage]:
    """The latest report of every node still reporting (the bucket's TTL drops silent ones)."""
    bucket = await log.usage()
    watcher = await bucket.watchall(ignore_deletes=True)
    usages: dict[str, NodeUsage] = {}
    try:
        while (entry := await watcher.updates(timeout=10.0)) is not None:
            try:
                usages[entry.key] = usage_decoder.decode(entry.value)
            except msgspec.DecodeError:
                continue  # a report from a newer agent we cannot read: leave that node out
    finally:
        await watcher.stop()
    return usages


def _largest_first(sort_by: str | None, cpu: int, memory: int) -> int:
    """The key for --sort-by; a stable sort keeps ties (and everything without --sort-by) in name order."""
    return -cpu if sort_by == "cpu" else -memory if sort_by == "memory" else 0


def node_rows(nodes: list[dict], usages: dict[str, NodeUsage], sort_by: str | None = None) -> list[list[str]]:
    """NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%; nodes without a report show <unknown>, as kubectl's do."""
    measured, unknown = [], []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        allocatable = node.get("status", {}).get("allocatable") or node.get("spec", {}).get("capacity", {})
        usage = usages.get(name)
        if usage is None:
            unknown.append([name, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN])
            continue
        cpu_total = cpu_millis(allocatable.get("cpu", "0"))
        memory_total = memory_bytes(allocatable.get("memory", "0"))
        measured.append((usage.cpu_millis, usage.memory_bytes,
                         [name, format_cpu(usage.cpu_millis), percent(usage.cpu_millis, cpu_total),
                          format_memory(usage.memory_bytes), percent(usage.memory_bytes, memory_total)]))
    measured.sort(key=lambda m: _largest_first(sort_by, m[0], m[1]))
    return [row for *_, row in measured] + unknown


def pod_rows(usages: dict[str, NodeUsage], namespace: str, all_namespaces: bool,
             sort_by: str | None = None, containers: bool = False, name: str | None = None) -> list[list[str]]:
    """[NAMESPACE] NAME CPU(cores) MEMORY(bytes) of every pod a node reported; with `containers`,
    [NAMESPACE] POD NAME CPU(cores) MEMORY(bytes) of each of their containers, pods ordered as without
    (a pod from an agent that did not tell its containers apart has no rows, as kubectl shows none);
    with `name`, only that pod's."""
    pods = sorted((p for u in usages.values() for p in u.pods
                   if (all_namespaces or p.namespace == namespace) and name in (None, p.name)),
                  key=lambda p: (p.namespace, p.name))
    pods.sort(key=lambda p: _largest_first(sort_by, p.cpu_millis, p.memory_bytes))
    rows = []
    for pod in pods:
        lines = ([[pod.name, c.name, format_cpu(c.cpu_millis), format_memory(c.memory_bytes)]
                  for c in pod.containers]
                 if containers else [[pod.name, format_cpu(pod.cpu_millis), format_memory(pod.memory_bytes)]])
        rows.extend([pod.namespace, *line] if all_namespaces else line for line in lines)
    return rows


async def cmd_top(client: ApiClient, args: argparse.Namespace) -> int:
    nodes_asked = args.top_what in ("nodes", "node", "no")
    namespace = getattr(args, "namespace", "") or "default"  # nodes take no -n
    named = None
    if args.name:
        # A name that is not there is kubectl's NotFound, whether or not metrics have come in yet.
        named = await client.get("Node" if nodes_asked else "Pod", args.name, "" if nodes_asked else namespace)
    usages = await read_usage(client.log)
    if not usages:
        raise cli.CliError("metrics not available yet (node agents report usage every few seconds)")
    if nodes_asked:
        nodes = [named] if named else (await client.list("Node"))[0]
        rows = node_rows(nodes, usages, args.sort_by)
        print(printers.format_table(["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"], rows,
                                    not args.no_headers))
        return 0
    return _top_pods(usages, namespace, args)


def _top_pods(usages: dict[str, NodeUsage], namespace: str, args: argparse.Namespace) -> int:
    all_namespaces = args.all_namespaces and not args.name  # a name is looked for in -n's namespace, as kubectl
    rows = pod_rows(usages, namespace, all_namespaces, args.sort_by, args.containers, name=args.name)
    if args.name and not rows:
        raise cli.CliError(f"metrics not available for pod {namespace}/{args.name} yet"
                           " (node agents report usage every few seconds)")
    if not rows:
        where = "in any namespace" if all_namespaces else f"in {namespace} namespace"
        print(f"No resources found {where}.", file=sys.stderr)
        return 0
    pod_headers = (["POD"] if args.containers else []) + ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    print(printers.format_table(["NAMESPACE", *pod_headers] if all_namespaces else pod_headers, rows,
                                not args.no_headers))
    return 0
