"""The `dockyard` command: kubectl's manners over the api, plus up/down/status for the stack."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats.errors

from dockyard import config, printers, stack
from dockyard import cli_alerts
from dockyard import cli_audit
from dockyard import cli_history
from dockyard import cli_images
from dockyard import cli_top
from dockyard import timetravel
from dockyard.client import ApiCallError, ApiClient, Unreachable
from dockyard.config import ConfigError
from dockyard.eventlog import kind_filters, parse_subject, subject_for
from dockyard.manifests import ManifestError, load_located_documents, validate
from dockyard.schemas.manifests import KINDS, Node, kind_named, subject_kind
from dockyard.selectors import SelectorError, matches, parse_selector
from dockyard.services.registry_indexer.options import registry_url


class CliError(Exception):
    """An error for the user: printed as `error: ...` on stderr, exit code 1."""


DRY_RUN_STRATEGIES = ("none", "server", "client")  # kubectl's --dry-run values


# ---------------------------------------------------------------- helpers


def resolve_kind(kind: str) -> str:
    resolved = kind_named(kind)
    if resolved is None:
        raise CliError(f'the server doesn\'t have a resource type "{kind}"')
    return resolved


async def _client() -> ApiClient:
    return await ApiClient.connect(config.nats_url())


def run_async(coro_fn: Callable[..., Any], *args: Any) -> int:
    async def runner() -> int:
        client = await _client()
        try:
            return await client.while_connected(coro_fn(client, *args)) or 0
        finally:
            await client.close()

    return asyncio.run(runner())


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """`10m`, `2h`, `3d` ago, or an RFC 3339 time."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if match := _DURATION.match(value.strip()):
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - dt.timedelta(seconds=seconds)
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f'--since: "{value}" is neither a duration (10m, 2h) nor a time (2026-01-02T15:04:05Z)') from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _read_source(source: str) -> tuple[bytes, str]:
    if source == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        return Path(source).read_bytes(), source
    except OSError as exc:
        raise CliError(f"{source}: {exc.strerror or exc}") from exc


def manifest_files(paths: list[str], recursive: bool) -> list[str]:
    files: list[str] = []
    for path in paths:
        p = Path(path)
        if path != "-" and p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(str(f) for f in p.glob(pattern) if f.suffix in (".yaml", ".yml", ".json") and f.is_file())
            if not found:
                raise CliError(f"{path}: no .yaml, .yml or .json files in this directory")
            files.extend(found)
        else:
            files.append(path)
    return files


def load_manifests(paths: list[str], recursive: bool, namespace: str) -> list[tuple[str, dict]]:
    """(where, document) for every document in the files, or a CliError naming the first bad one."""
    documents: list[tuple[str, dict]] = []
    for path in manifest_files(paths, recursive):
        data, source = _read_source(path)
        try:
            located = load_located_documents(data, source)
        except ManifestError as exc:
            raise CliError(str(exc)) from exc
        for where, doc in located:
            place = f"{source}: {where}" if len(located) > 1 else source
            if namespace and isinstance(doc.get("metadata"), dict):
                declared = doc["metadata"].get("namespace")
                if declared and declared != namespace:
                    raise CliError(f"{place}: the namespace from the provided object "
                                   f'"{declared}" does not match the namespace "{namespace}"')
                doc["metadata"].setdefault("namespace", namespace)
            documents.append((place, doc))
    if not documents:
        raise CliError("no objects passed to apply")
    return documents


def _api_error(where: str, exc: ApiCallError) -> str:
    if exc.details:
        return "\n".join(f"error: {where}: {d}" for d in exc.details)
    return f"error: {where}: {exc}" if where else f"error: {exc}"


def _namespace(args: argparse.Namespace) -> str:
    return "" if getattr(args, "all_namespaces", False) else (args.namespace or "default")


# ---------------------------------------------------------------- commands


async def cmd_apply(client: ApiClient, args: argparse.Namespace) -> int:
    documents = load_manifests(args.filename, args.recursive, args.namespace or "")
    if args.dry_run == "client":
        return await apply_client_dry_run(client, documents)
    failed = False
    dry_run = args.dry_run == "server"
    suffix = " (server dry run)" if dry_run else ""
    for where, doc in documents:
        try:
            result = await client.apply(doc, dry_run=dry_run)
        except ApiCallError as exc:
            print(_api_error(where, exc), file=sys.stderr)
            failed = True
            continue
        print(f"{result.kind.lower()}/{result.name} {result.result}{suffix}")
    return 1 if failed else 0


async def apply_client_dry_run(client: ApiClient, documents: list[tuple[str, dict]]) -> int:
    """`apply --dry-run=client`, as kubectl: each object validated here and looked up, nothing sent to change."""
    failed = False
    for where, doc in documents:
        try:
            resource = validate(doc, source=where)
        except ManifestError as exc:
            print("\n".join(f"error: {line}" for line in str(exc).splitlines()), file=sys.stderr)
            failed = True
            continue
        meta = resource.metadata
        try:
            await client.get(resource.kind, meta.name, meta.namespace)
            result = "configured"
        except ApiCallError as exc:
            if exc.code != "NotFound":
                raise
            result = "created"
        print(f"{resource.kind.lower()}/{meta.name} {result} (dry run)")
    return 1 if failed else 0


async def cmd_delete(client: ApiClient, args: argparse.Namespace) -> int:
    targets: list[tuple[str, str, str]] = []
    if args.filename:
        for _, doc in load_manifests(args.filename, args.recursive, args.namespace or ""):
            meta = doc.get("metadata") or {}
            targets.append((str(doc.get("kind", "")), str(meta.get("name", "")), meta.get("namespace") or ""))
    elif args.kind and args.names:
        kind = resolve_kind(args.kind)
        targets = [(kind, name, args.namespace or "") for name in args.names]
    else:
        raise CliError("give KIND NAME... or -f FILE")
    failed = False
    for kind, name, namespace in targets:
        try:
            result = await client.delete(kind, name, namespace, dry_run=args.dry_run)
        except ApiCallError as exc:
            print(_api_error("", exc), file=sys.stderr)
            failed = True
            continue
        print(f'{result.kind.lower()} "{result.name}" deleted' + (" (server dry run)" if args.dry_run else ""))
    return 1 if failed else 0


def _print_objects(kind: str, objects: list[dict], args: argparse.Namespace, single: bool,
                   with_headers: bool = True) -> None:
    output = args.output or "table"
    if output in ("json", "yaml"):
        data = printers.kubernetes_order(objects[0]) if single else printers.as_list(objects)
        print(printers.to_json(data) if output == "json" else printers.to_yaml(data))
    elif output == "name":
        for obj in objects:
            print(printers.name_of(obj))
    else:
        headers, rows = printers.table_rows(kind, objects, output == "wide", args.all_namespaces)
        print(printers.format_table(headers, rows, with_headers))


async def cmd_get(client: ApiClient, args: argparse.Namespace) -> int:
    kind = resolve_kind(args.kind)
    if args.output not in (None, "table", "wide", "json", "yaml", "name"):
        raise CliError(f'unable to match a printer suitable for the output format "{args.output}", '
                       f"allowed formats are: json,name,table,wide,yaml")
    if args.more_names and (args.watch or cli_history.travels(args)):
        raise CliError("give one NAME with --watch or a point in time")
    if cli_history.travels(args):
        return await cli_history.cmd_get_at(client, args)
    namespace = _namespace(args)
    if args.more_names:
        return await get_several(client, kind, namespace, [args.name, *args.more_names], args)
    if args.name:
        objects = [await client.get(kind, args.name, namespace)]
        position = int(objects[0]["metadata"].get("resourceVersion") or 0)
    else:
        objects, position = await client.list(kind, namespace, args.selector or "")
    if objects:
        _print_objects(kind, objects, args, single=bool(args.name))
    elif not args.watch:
        where = " in any namespace" if args.all_namespaces or not KINDS[kind].NAMESPACED else \
            f" in {namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
    if args.watch:
        await watch(client, kind, namespace, args, objects, position)
    return 0


async def get_several(client: ApiClient, kind: str, namespace: str, names: list[str],
                      args: argparse.Namespace) -> int:
    """`get KIND A B`, as kubectl: the objects found, then an error line for each name missing; 1 if any is."""
    found, missing = [], []
    for name in dict.fromkeys(names):  # a name given twice is shown once
        try:
            found.append(await client.get(kind, name, namespace))
        except ApiCallError as exc:
            if exc.code != "NotFound":
                raise
            missing.append(exc)
    if found:
        _print_objects(kind, found, args, single=False)
    for exc in missing:
        print(_api_error("", exc), file=sys.stderr)
    return 1 if missing else 0


async def watch(client: ApiClient, kind: str, namespace: str, args: argparse.Namespace,
                objects: list[dict], position: int) -> None:
    """Follow live events after the listed position, printing each object as it changes.

    A node's image report changes the node (its status.images): its row prints again.
    """
    current = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): msgspec.convert(o, KINDS[kind])
               for o in objects}
    requirements = parse_selector(args.selector or "")
    header_shown = bool(objects)
    held = await timetravel.held_images_at(client.log, position) if KINDS[kind] is Node else {}
    namespace = namespace if KINDS[kind].NAMESPACED else ""  # a node is in none: never filter it out by one
    async for record in client.log.read(timetravel.kind_subjects(kind), start_seq=position + 1, follow=True):
        _, ns, name = parse_subject(record.subject)
        if namespace and ns != namespace or (args.name and name != args.name):
            continue
        before = current.get((ns, name))
        after = timetravel.evolve_joined(before, record, held)
        shown = after or before
        if after is None:
            current.pop((ns, name), None)
        else:
            current[(ns, name)] = after
        if shown is None or not matches(shown.metadata.labels, requirements):
            continue
        _print_objects(kind, [msgspec.to_builtins(shown)], args, single=True, with_headers=not header_shown)
        header_shown = True
        sys.stdout.flush()


async def cmd_describe(client: ApiClient, args: argparse.Namespace) -> int:
    if cli_history.travels(args):
        return await cli_history.cmd_describe_at(client, args)
    kind = resolve_kind(args.kind)
    namespace = _namespace(args)
    names = [args.name] if args.name else [o["metadata"]["name"] for o in (await client.list(kind, namespace))[0]]
    for index, name in enumerate(names):
        obj = await client.get(kind, name, namespace)
        meta = obj["metadata"]
        _, records = await timetravel.aggregate_at(client.log, kind, meta.get("namespace", ""), name)
        if index:
            print()
        print(printers.describe(obj, printers.history_rows(records), printers.container_runs(records)))
    return 0


async def cmd_events(client: ApiClient, args: argparse.Namespace) -> int:
    kind = subject_kind(resolve_kind(args.kind)) if args.kind else None
    if args.kind and args.kind.lower() in ("command", "commands"):
        kind = "command"
    since = parse_since(args.since) if args.since else None
    headers = ["SEQ", "AGE", "TYPE", "OBJECT", "ACTOR"]
    widths = [8, 6, 30, 44, 10]  # fixed: rows print as they arrive
    printed_header = False
    async for record in client.log.read(kind_filters(kind), start_time=since, follow=args.follow):
        _, ns, name = parse_subject(record.subject)
        obj = f"{record.subject.split('.')[2]}/{ns + '/' if ns else ''}{name}"
        row = [str(record.seq), printers.age(record.time), record.type, obj, record.actor]
        print(printers.format_table(headers, [row], with_headers=not printed_header, widths=widths))
        printed_header = True
        sys.stdout.flush()
    if not printed_header:
        print("No events found.", file=sys.stderr)
    return 0


async def cmd_scale(client: ApiClient, args: argparse.Namespace) -> int:
    kind = resolve_kind(args.kind)
    if kind != "Deployment":
        raise CliError(f"cannot scale a {kind.lower()}; only deployments scale")
    result = await client.scale(args.name, args.namespace or "default", args.replicas)
    print(f"deployment/{args.name} {'scaled' if result.result == 'unchanged' else result.result}")
    return 0


def _rollout_progress(d: dict) -> tuple[str, bool]:
    """kubectl's rollout status message for a deployment, and whether the rollout is done."""
    name, spec, status = d["metadata"]["name"], d.get("spec") or {}, d.get("status") or {}
    replicas = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if status.get("observedGeneration", 0) < d["metadata"].get("generation", 0):
        return "Waiting for deployment spec update to be observed...", False
    if updated < replicas:
        return waiting + f"{updated} out of {replicas} new replicas have been updated...", False
    if total > updated:
        return waiting + f"{total - updated} old replicas are pending termination...", False
    if available < updated:
        return waiting + f"{available} of {updated} updated replicas are available...", False
    return f'deployment "{name}" successfully rolled out', True


async def rollout_status(client: ApiClient, name: str, namespace: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = ""
    while True:
        message, done = _rollout_progress(await client.get("Deployment", name, namespace))
        if message != last:
            print(message, flush=True)
            last = message
        if done:
            return 0
        if deadline is not None and time.monotonic() > deadline:
            raise CliError("timed out waiting for the condition")
        await asyncio.sleep(0.5)


async def rollout_history(client: ApiClient, name: str, namespace: str) -> int:
    from dockyard.schemas.events import DeploymentRevisionRecorded

    records = await client.log.read_aggregate(subject_for("deployment", namespace, name))
    latest: dict[str, tuple[int, str]] = {}  # a template reused by undo keeps only its newest number
    for record in records:
        if isinstance(record.event, DeploymentRevisionRecorded):
            latest[record.event.template_hash] = (record.event.revision, record.event.change_cause)
    print(f"deployment/{name}")
    deployment = await client.get("Deployment", name, namespace)
    keep = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10)) + 1  # old ones, plus the current
    rows = [[str(rev), cause or "<none>"] for rev, cause in sorted(latest.values())[-keep:]]
    print(printers.format_table(["REVISION", "CHANGE-CAUSE"], rows))
    return 0


async def cmd_rollout(client: ApiClient, args: argparse.Namespace) -> int:
    if resolve_kind(args.kind) != "Deployment":
        raise CliError("rollout works on deployments")
    namespace = args.namespace or "default"
    if args.action == "status":
        return await rollout_status(client, args.name, namespace, args.timeout)
    if args.action == "history":
        return await rollout_history(client, args.name, namespace)
    result = await client.rollout(args.action, args.name, namespace, args.to_revision)
    shown = {"unchanged": f"already {args.action}d"}.get(result.result, result.result)
    print(f"deployment/{args.name} {shown}")
    return 0


async def cmd_cordon(client: ApiClient, args: argparse.Namespace) -> int:
    result = await client.cordon(args.node, unschedulable=args.command == "cordon")
    print(f"node/{args.node} {result.result}")
    return 0


async def cmd_drain(client: ApiClient, args: argparse.Namespace) -> int:
    from dockyard.drain import DrainTimeout, drain_node

    try:
        async for line in drain_node(client, args.node, args.timeout):
            print(line, flush=True)
    except DrainTimeout as exc:
        raise CliError(str(exc)) from None
    return 0


async def cmd_explain(client: ApiClient, args: argparse.Namespace) -> int:
    from dockyard.services.scheduler.explain import explain

    if resolve_kind(args.kind) != "Pod":
        raise CliError("explain works on pods: dockyard explain pod NAME")
    namespace = args.namespace or "default"
    records = await client.log.read_aggregate(subject_for("pod", namespace, args.name))
    if not records:
        raise CliError(f'pods "{args.name}" not found')
    print("\n".join(explain(records)))
    return 0


async def cmd_logs(client: ApiClient, args: argparse.Namespace) -> int:
    from dockyard.services.node_agent.logs import print_logs

    since = parse_since(args.since) if args.since else None
    namespace = args.namespace or "default"
    pod = await pod_for_logs(client, args.pod, namespace)
    try:
        return await print_logs(client.log, namespace, pod, container=args.container,
                                follow=args.follow, tail=args.tail, since=since, timestamps=args.timestamps,
                                previous=args.previous, deleted=args.deleted)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


async def pod_for_logs(client: ApiClient, target: str, namespace: str) -> str:
    """The pod `logs TARGET` reads: NAME or pod/NAME itself; for deployment/NAME one of its pods,
    chosen as kubectl chooses, and said on stderr when there was a choice."""
    if "/" not in target:
        return target
    kind_name, _, name = target.partition("/")
    kind = resolve_kind(kind_name)
    if kind == "Pod":
        return name
    if kind != "Deployment":
        raise CliError(f"cannot get logs of a {kind.lower()}: give a pod or a deployment")
    deployment = await client.get("Deployment", name, namespace)
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods, _ = await client.list("Pod", namespace, ",".join(f"{key}={value}" for key, value in labels.items()))
    if not pods:
        raise CliError(f"deployment/{name} has no pods")
    chosen = printers.pod_for_logs(pods)
    if len(pods) > 1:
        print(f"Found {len(pods)} pods, using pod/{chosen}", file=sys.stderr, flush=True)
    return chosen


def cmd_projections(args: argparse.Namespace) -> int:
    from dockyard.services.projector import admin

    try:
        if args.action == "status":
            return asyncio.run(admin.print_status(config.nats_url(), config.database_url()))
        return asyncio.run(admin.rebuild(config.nats_url(), config.database_url(), args.name))
    except admin.RebuildError as exc:
        raise CliError(str(exc)) from exc


def cmd_schemas(args: argparse.Namespace) -> int:
    from dockyard.schemas.catalog import export

    written = export(Path(args.directory))
    print(f"wrote {len(written)} schemas to {args.directory}")
    return 0


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    from dockyard.services.runner import SERVICES, main as run_main

    known = ", ".join(sorted(SERVICES))
    if args.service is None and rest in (["-h"], ["--help"]):
        print(f"usage: dockyard run SERVICE [--help | FLAG...]\n\nservices: {known}")
        return 0
    if args.service is None:
        raise CliError(f"give a service to run (known: {known})")
    if args.service not in SERVICES:
        raise CliError(f'unknown service "{args.service}" (known: {known})')
    run_main(args.service, rest)
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from dockyard import cli_integrations

    parser = argparse.ArgumentParser(prog="dockyard", description="Container orchestration on an event log.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the platform (NATS, PostgreSQL, services) under DOCKYARD_HOME")
    up.add_argument("-d", "--detach", action="store_true", help="return once everything is ready")
    up.add_argument("--hollow-nodes", type=int, default=0, help="also run this many simulated nodes")
    up.add_argument("--no-local-node", dest="local_node", action="store_false",
                    help="no node agent for this machine (e.g. before `dockyard events import`)")
    up.add_argument("--registry", default="", metavar="URL", type=registry_url,
                    help="also run the registry indexer for this OCI registry (http[s]://host[:port])")
    up.add_argument("--registry-username", default="", metavar="U", help="the registry user (basic or bearer auth)")
    up.add_argument("--registry-password-file", default="", metavar="F", help="a file holding its password")
    up.add_argument("--registry-insecure", action="store_true", help="plain HTTP, or HTTPS without verifying")
    up.add_argument("--registry-webhook-port", type=int, default=0, metavar="PORT",
                    help="serve the registry's notifications on this port (token: $DOCKYARD_WEBHOOK_TOKEN)")
    sub.add_parser("down", help="stop what `up` started; keep the data")
    sub.add_parser("status", help="show each component and whether it is healthy")

    def add_namespace(p: argparse.ArgumentParser, all_ns: bool = True) -> None:
        p.add_argument("-n", "--namespace", default="", help="the namespace (default: default)")
        if all_ns:
            p.add_argument("-A", "--all-namespaces", action="store_true", help="across all namespaces")

    apply = sub.add_parser("apply", help="create or update objects from manifests")
    apply.add_argument("-f", "--filename", action="append", required=True, help="FILE, DIR or - for stdin")
    apply.add_argument("-R", "--recursive", action="store_true", help="walk directories recursively")
    apply.add_argument("--dry-run", nargs="?", const="server", default="none", choices=DRY_RUN_STRATEGIES,
                       metavar="none|server|client",
                       help="change nothing: server (the default for a bare --dry-run) validates and decides"
                            " in the api; client validates here")
    add_namespace(apply, all_ns=False)

    get = sub.add_parser("get", help="list objects or show one")
    get.add_argument("kind")
    get.add_argument("name", nargs="?")
    get.add_argument("more_names", nargs="*", metavar="NAME",
                     help="more names: each found is shown, each missing an error")
    get.add_argument("-o", "--output", help="table|wide|json|yaml|name")
    get.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    get.add_argument("-w", "--watch", action="store_true", help="after listing, follow changes")
    add_namespace(get)
    cli_history.add_time_options(get)

    describe = sub.add_parser("describe", help="show an object in detail, with its recent events")
    describe.add_argument("kind")
    describe.add_argument("name", nargs="?")
    add_namespace(describe)
    cli_history.add_time_options(describe)

    delete = sub.add_parser("delete", help="delete objects by name or by manifest")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("names", nargs="*")
    delete.add_argument("-f", "--filename", action="append", help="FILE, DIR or -")
    delete.add_argument("-R", "--recursive", action="store_true")
    delete.add_argument("--dry-run", action="store_true")
    add_namespace(delete, all_ns=False)

    events = sub.add_parser("events", help="the event log, oldest first")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--kind", help="only events of this kind (pod, deployment, node, command)")
    events.add_argument("--since", help="a duration (10m, 2h) or an RFC 3339 time")
    cli_integrations.add_event_transfer_arguments(events)

    projections = sub.add_parser("projections", help="read models: status and rebuild")
    projections_sub = projections.add_subparsers(dest="action", required=True)
    projections_sub.add_parser("status", help="each projection's position and lag")
    rebuild = projections_sub.add_parser("rebuild", help="rebuild from sequence 1 and swap in")
    rebuild.add_argument("name")

    schemas = sub.add_parser("schemas", help="the event and manifest catalog")
    schemas_sub = schemas.add_subparsers(dest="action", required=True)
    export = schemas_sub.add_parser("export", help="write a JSON Schema for every event and manifest kind")
    export.add_argument("directory")

    scale = sub.add_parser("scale", help="set a deployment's replicas")
    scale.add_argument("kind")
    scale.add_argument("name")
    scale.add_argument("--replicas", type=int, required=True)
    add_namespace(scale, all_ns=False)

    rollout = sub.add_parser("rollout", help="status, history, undo, restart, pause, resume a deployment")
    rollout.add_argument("action", choices=["status", "history", "undo", "restart", "pause", "resume"])
    rollout.add_argument("kind")
    rollout.add_argument("name")
    rollout.add_argument("--to-revision", type=int, default=0, help="undo: the revision to return to")
    rollout.add_argument("--timeout", type=float, default=0, help="status: give up after this many seconds")
    add_namespace(rollout, all_ns=False)

    for verb, text in (("cordon", "mark a node unschedulable"), ("uncordon", "mark a node schedulable")):
        sub.add_parser(verb, help=text).add_argument("node")
    drain = sub.add_parser("drain", help="cordon a node and evict its pods, respecting maxUnavailable")
    drain.add_argument("node")
    drain.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")

    explain = sub.add_parser("explain", help="why a pod is where it is (or why it is pending)")
    explain.add_argument("kind")
    explain.add_argument("name")
    add_namespace(explain, all_ns=False)

    logs = sub.add_parser("logs", help="a pod's container logs")
    logs.add_argument("pod", metavar="POD", help="NAME, pod/NAME, or deployment/NAME (one of its pods)")
    logs.add_argument("-c", "--container")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int, default=None, help="the last N lines")
    logs.add_argument("--since", help="a duration (10m) or an RFC 3339 time")
    logs.add_argument("--timestamps", action="store_true")
    logs.add_argument("-p", "--previous", action="store_true", help="the container's run before its last restart")
    logs.add_argument("--deleted", action="store_true",
                      help="a deleted pod's logs (its last incarnation's), which the log stream keeps")
    add_namespace(logs, all_ns=False)

    cli_audit.add_parsers(sub)
    cli_history.add_parsers(sub, add_namespace)
    cli_images.add_parsers(sub)
    cli_alerts.add_parsers(sub)
    cli_top.add_parsers(sub, add_namespace)
    cli_integrations.add_integrations_parser(sub)

    # No -h of its own: `dockyard run NAME --help` is the service's, which lists its flags.
    run = sub.add_parser("run", help="run one service in the foreground (`run NAME --help`: its flags)",
                         add_help=False)
    run.add_argument("service", nargs="?")

    console = sub.add_parser("console", help="the terminal UI: live views, filters and actions")
    console.add_argument("--readonly", action="store_true", help="refuse every action that changes the cluster")
    return parser


def up_registry(args: argparse.Namespace):
    """`up`'s --registry* flags, checked; None without --registry."""
    from dockyard.services.registry_indexer.options import RegistryOptionError, RegistryOptions

    try:
        return RegistryOptions.checked(args.registry, args.registry_username, args.registry_password_file,
                                       args.registry_insecure, args.registry_webhook_port)
    except RegistryOptionError as exc:
        raise CliError(str(exc)) from None


def dispatch(args: argparse.Namespace, rest: list[str]) -> int:
    from dockyard import cli_integrations

    if args.command == "integrations":
        return cli_integrations.cmd_integrations(args)
    if args.command == "events" and cli_integrations.wants_transfer(args):
        return run_async(cli_integrations.cmd_events_transfer, args)
    if args.command == "up":
        if args.hollow_nodes < 0:
            raise CliError("--hollow-nodes: must be 0 or more")
        return stack.up(config.home(), args.detach, args.hollow_nodes, args.local_node, up_registry(args))
    if args.command == "down":
        return stack.down(config.home())
    if args.command == "status":
        return stack.status(config.home())
    if args.command == "run":
        return cmd_run(args, rest)
    if args.command == "projections":
        return cmd_projections(args)
    if args.command == "schemas":
        return cmd_schemas(args)
    if args.command == "audit":
        return cli_audit.cmd_audit(args)
    if args.command == "images":
        return cli_images.cmd_images(args)
    if args.command == "alerts":
        return cli_alerts.cmd_alerts(args)
    if args.command == "snapshots":
        return cli_history.cmd_snapshots(args)
    if args.command == "console":
        from dockyard.tui.app import run as run_console

        config.nats_url()  # no stack: the usual error, before the screen is taken over
        return run_console(readonly=args.readonly)
    commands = {"apply": cmd_apply, "get": cmd_get, "describe": cmd_describe, "delete": cmd_delete,
                "events": cmd_events, "scale": cmd_scale, "rollout": cmd_rollout, "cordon": cmd_cordon,
                "uncordon": cmd_cordon, "drain": cmd_drain, "explain": cmd_explain, "logs": cmd_logs}
    commands["top"] = cli_top.cmd_top
    commands.update(cli_history.COMMANDS)
    return run_async(commands[args.command], args)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code = dispatch(args, rest)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `dockyard get pods | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except ApiCallError as exc:
        print(_api_error("", exc), file=sys.stderr)
        code = 1
    except (CliError, ConfigError, Unreachable, SelectorError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        if os.environ.get("DOCKYARD_DEBUG"):
            raise
        print(f"error: unexpected {exc.__class__.__name__}: {exc} (DOCKYARD_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        code = 1
    sys.exit(code)
