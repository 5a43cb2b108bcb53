"""The CLI's view of the past: `history`, `get`/`describe --at`, `diff`, and `snapshots`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

import msgspec
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from dockyard import cli, config, printers, timetravel
from dockyard.client import ApiClient
from dockyard.config import ConfigError
from dockyard.db import RESOURCE_TABLES, async_engine
from dockyard.eventlog import EventLog
from dockyard.schemas.manifests import KINDS
from dockyard.selectors import matches, parse_selector

OUTPUTS = (None, "table", "json")


# ---------------------------------------------------------------- parsers


def add_time_options(parser: argparse.ArgumentParser) -> None:
    """`--at` / `--at-seq` on `get` and `describe`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--at", help="as it was at this time: RFC 3339, or a duration ago (10m, 2h)")
    group.add_argument("--at-seq", type=int, help="as it was right after this stream sequence")


def add_parsers(sub, add_namespace: Callable[..., None]) -> None:
    history = sub.add_parser("history", help="an object's events: sequence, time, type, actor, what changed")
    history.add_argument("kind")
    history.add_argument("name")
    history.add_argument("-o", "--output", help="table|json")
    add_namespace(history, all_ns=False)

    diff = sub.add_parser("diff", help="what changed between two moments: objects added, removed, changed")
    diff.add_argument("kind", nargs="?", help="one kind (default: deployments, pods and nodes)")
    start = diff.add_mutually_exclusive_group(required=True)
    start.add_argument("--from", dest="from_time", help="RFC 3339 time or a duration ago (1h)")
    start.add_argument("--from-seq", type=int, help="right after this stream sequence")
    end = diff.add_mutually_exclusive_group()
    end.add_argument("--to", dest="to_time", help="RFC 3339 time or a duration ago (default: now)")
    end.add_argument("--to-seq", type=int, help="right after this stream sequence")
    diff.add_argument("-o", "--output", help="table|json")
    diff.add_argument("-n", "--namespace", default="", help="only this namespace (default: all)")

    snapshots = sub.add_parser("snapshots", help="snapshots that spare time travel most of the fold")
    snapshots_sub = snapshots.add_subparsers(dest="action", required=True)
    take = snapshots_sub.add_parser("take", help="snapshot projections where they stand now")
    take.add_argument("kind", nargs="?", help="one kind (default: deployments, pods and nodes)")
    snapshots_sub.add_parser("list", help="the snapshots kept: kind, position, time, objects")


def travels(args: argparse.Namespace) -> bool:
    """Whether a `get` or `describe` asks for the past."""
    return getattr(args, "at", None) is not None or getattr(args, "at_seq", None) is not None


# ---------------------------------------------------------------- helpers


def _kinds(kind: str | None) -> list[str]:
    return [cli.resolve_kind(kind)] if kind else list(RESOURCE_TABLES)


def _moment(value: str, option: str):
    try:
        return cli.parse_since(value)
    except cli.CliError:
        raise cli.CliError(f'{option}: "{value}" is neither a duration (10m, 2h) nor a time '
                           f"(2026-01-02T15:04:05Z)") from None


async def resolve_position(log: EventLog, time_value: str | None, seq: int | None, option: str) -> int:
    """The stream sequence a `--at`-like option names; the end of the log when neither is given."""
    if seq is not None:
        if seq < 0:
            raise cli.CliError(f"{option}-seq: a stream sequence is 0 or more")
        return seq
    if time_value is None:
        return await log.last_stream_seq()
    return await timetravel.position_at(log, _moment(time_value, option))


def _engine() -> AsyncEngine | None:
    try:
        return async_engine(config.database_url(), pool_size=1)
    except ConfigError:
        return None


async def _objects_at(log: EventLog, kind: str, seq: int, namespace: str) -> timetravel.Objects:
    """From the nearest snapshot if the database is there; from the first event if not."""
    engine = _engine()
    if engine is None:
        return await timetravel.objects_at(log, kind, seq, namespace)
    try:
        start, objects = await timetravel.load_snapshot(engine, kind, seq)
    except (SQLAlchemyError, OSError) as exc:
        print(f"note: no snapshots ({exc.__class__.__name__}); folding {kind.lower()}s from the first event",
              file=sys.stderr)
        start, objects = 0, {}
    finally:
        await engine.dispose()
    return await timetravel.fold_from(log, kind, objects, start, seq, namespace)


def _namespace_of(kind: str, args: argparse.Namespace, single: bool) -> str:
    if not KINDS[kind].NAMESPACED:
        return ""
    return (args.namespace or "default") if single else cli._namespace(args)


def _where(kind: str, namespace: str) -> str:
    return " in any namespace" if not namespace else f" in {namespace} namespace"


def _not_found(kind: str, name: str, seq: int) -> cli.CliError:
    return cli.CliError(f'{RESOURCE_TABLES[kind]} "{name}" not found at seq {seq}')


# ---------------------------------------------------------------- get / describe --at


async def cmd_get_at(client: ApiClient, args: argparse.Namespace) -> int:
    kind = cli.resolve_kind(args.kind)
    if args.watch:
        raise cli.CliError("--watch follows the present; it does not go with --at or --at-seq")
    seq = await resolve_position(client.log, args.at, args.at_seq, "--at")
    namespace = _namespace_of(kind, args, single=bool(args.name))
    if args.name:
        obj, _ = await timetravel.aggregate_at(client.log, kind, namespace, args.name, seq)
        if obj is None:
            raise _not_found(kind, args.name, seq)
        objects = [obj]
    else:
        requirements = parse_selector(args.selector or "")
        found = timetravel.ordered(await _objects_at(client.log, kind, seq, namespace))
        objects = [obj for obj in found if matches(obj.metadata.labels, requirements)]
    if not objects:
        print(f"No resources found{_where(kind, namespace)} at seq {seq}.", file=sys.stderr)
        return 0
    cli._print_objects(kind, [msgspec.to_builtins(obj) for obj in objects], args, single=bool(args.name))
    return 0


async def cmd_describe_at(client: ApiClient, args: argparse.Namespace) -> int:
    kind = cli.resolve_kind(args.kind)
    seq = await resolve_position(client.log, args.at, args.at_seq, "--at")
    namespace = _namespace_of(kind, args, single=bool(args.name))
    if args.name:
        keys = [(namespace, args.name)]
    else:
        keys = sorted(await _objects_at(client.log, kind, seq, namespace))
    for index, (ns, name) in enumerate(keys):
        obj, records = await timetravel.aggregate_at(client.log, kind, ns, name, seq)
        if obj is None:
            raise _not_found(kind, name, seq)
        if index:
            print()
        print(printers.describe(msgspec.to_builtins(obj), printers.history_rows(records)))
    return 0


# ---------------------------------------------------------------- history


async def cmd_history(client: ApiClient, args: argparse.Namespace) -> int:
    kind = cli.resolve_kind(args.kind)
    namespace = (args.namespace or "default") if KINDS[kind].NAMESPACED else ""
    _check_output(args.output)
    _, records = await timetravel.aggregate_at(client.log, kind, namespace, args.name)
    if not records:
        raise cli.CliError(f'{RESOURCE_TABLES[kind]} "{args.name}" has no history')
    entries = timetravel.history(records)
    if args.output == "json":
        print(printers.to_json(msgspec.to_builtins(entries)))
        return 0
    rows = [[str(e.seq), e.time, e.type, e.actor or "-", e.detail] for e in entries]
    print(printers.format_table(["SEQ", "TIME", "TYPE", "ACTOR", "DETAIL"], rows))
    return 0


def _check_output(output: str | None) -> None:
    if output not in OUTPUTS:
        raise cli.CliError(f'unable to match a printer suitable for the output format "{output}", '
                           f"allowed formats are: json,table")


# ---------------------------------------------------------------- diff


def _object_name(change: timetravel.ObjectChange) -> str:
    namespace = f"{change.namespace}/" if change.namespace else ""
    return f"{change.kind.lower()}/{namespace}{change.name}"


def _diff_rows(changes: list[timetravel.ObjectChange]) -> list[list[str]]:
    return [[c.change, _object_name(c), ", ".join(timetravel.describe_change(f) for f in c.fields) or "-"]
            for c in changes]


def _diff_summary(changes: list[timetravel.ObjectChange], start: int, end: int) -> str:
    counts = {kind: sum(1 for c in changes if c.change == kind) for kind in ("added", "removed", "replaced",
                                                                             "changed")}
    said = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count) or "no changes"
    return f"{said} between seq {start} and seq {end}"


async def cmd_diff(client: ApiClient, args: argparse.Namespace) -> int:
    _check_output(args.output)
    kinds = _kinds(args.kind)
    start = await resolve_position(client.log, args.from_time, args.from_seq, "--from")
    end = await resolve_position(client.log, args.to_time, args.to_seq, "--to")
    if end < start:
        raise cli.CliError(f"--to (seq {end}) is before --from (seq {start})")
    changes: list[timetravel.ObjectChange] = []
    for kind in kinds:
        before = await _objects_at(client.log, kind, start, args.namespace)
        after = await timetravel.fold_from(client.log, kind, before, start, end, args.namespace)
        changes.extend(timetravel.diff(kind, before, after))
    if args.output == "json":
        print(printers.to_json({"from": start, "to": end, "changes": msgspec.to_builtins(changes)}))
        return 0
    if changes:
        print(printers.format_table(["CHANGE", "OBJECT", "FIELDS"], _diff_rows(changes)))
    print(_diff_summary(changes, start, end), file=sys.stderr)
    return 0


# ---------------------------------------------------------------- snapshots


async def _snapshots(args: argparse.Namespace) -> int:
    engine = async_engine(config.database_url(), pool_size=1)
    try:
        if args.action == "take":
            for kind in _kinds(args.kind):
                position = await timetravel.snapshot_now(engine, kind)
                print(f"{RESOURCE_TABLES[kind]}: " + (f"snapshot at seq {position}" if position
                                                      else "nothing projected yet, no snapshot"))
            return 0
        rows = [[s.kind, str(s.position), s.time.isoformat(timespec="seconds"), str(s.objects)]
                for s in await timetravel.list_snapshots(engine)]
        if rows:
            print(printers.format_table(["KIND", "POSITION", "TAKEN", "OBJECTS"], rows))
        else:
            print("No snapshots.", file=sys.stderr)
        return 0
    finally:
        await engine.dispose()


def cmd_snapshots(args: argparse.Namespace) -> int:
    return asyncio.run(_snapshots(args))


COMMANDS = {"history": cmd_history, "diff": cmd_diff}
