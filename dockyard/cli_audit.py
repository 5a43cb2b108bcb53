"""`dockyard audit`: who did what, when, from the read model; `audit verify` holds it against the log."""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from dockyard import audit, cli, config, printers
from dockyard.client import ApiClient
from dockyard.db import async_engine
from dockyard.schemas.manifests import KIND_ALIASES

HEADERS = ["TIME", "ACTOR", "VERB", "OBJECT", "RESULT", "SUMMARY/REASON"]


def add_parsers(sub) -> None:
    parser = sub.add_parser("audit", help="the audit trail: every command, accepted or refused; `verify` checks it",
                            usage="dockyard audit [--actor A] [--kind K] [--name N] [--since T] [--until T] "
                                  "[--result R] [-o table|json]\n       dockyard audit verify")
    parser.add_argument("--actor", default="", help="only commands by this actor")
    parser.add_argument("--kind", default="", help="only commands on this kind (deployment, pod, node, ...)")
    parser.add_argument("--name", default="", help="only commands on objects of this name")
    parser.add_argument("--since", help="from this time: a duration ago (10m, 2h) or an RFC 3339 time")
    parser.add_argument("--until", help="up to this time: a duration ago (10m, 2h) or an RFC 3339 time")
    parser.add_argument("--result", default="",
                        help=f"only this result ({audit.REFUSED}, {audit.ACCEPTED}, created, scaled, ...)")
    parser.add_argument("-o", "--output", default="table", choices=["table", "json"])
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION")
    actions.add_parser("verify", help="recompute the hash chain from the log; name every altered, removed "
                                      "or inserted entry")


def cmd_audit(args: argparse.Namespace) -> int:
    if args.audit_action == "verify":
        return asyncio.run(verify_trail())
    return asyncio.run(list_trail(query_of(args), args.output))


def _moment(flag: str, value: str | None):
    if value is None:
        return None
    try:
        return cli.parse_since(value)
    except cli.CliError as exc:
        raise cli.CliError(str(exc).replace("--since", flag, 1)) from exc


def query_of(args: argparse.Namespace) -> audit.AuditQuery:
    kind = KIND_ALIASES.get(args.kind.lower(), args.kind) if args.kind else ""
    return audit.AuditQuery(actor=args.actor, kind=kind, name=args.name, result=args.result,
                            since=_moment("--since", args.since), until=_moment("--until", args.until))


def _short_time(value: str) -> str:
    return value[:19] + "Z"  # to the second: the log keeps the rest


def table_row(row: audit.AuditRow) -> list[str]:
    detail = row.reason if row.result == audit.REFUSED else row.summary
    verb = f"{row.verb} (dry run)" if row.dry_run else row.verb
    return [_short_time(row.time), row.actor, verb, audit.object_name(row), row.result, detail or "-"]


async def list_trail(query: audit.AuditQuery, output: str) -> int:
    engine = async_engine(config.database_url(), pool_size=1)
    try:
        rows = await audit.entries(engine, query)
    finally:
        await engine.dispose()
    if output == "json":
        print(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
    elif rows:
        print(printers.format_table(HEADERS, [table_row(row) for row in rows]))
    else:
        print("No audit entries found.", file=sys.stderr)
    return 0


async def verify_trail() -> int:
    log = await ApiClient.connect_log(config.nats_url())
    engine = async_engine(config.database_url(), pool_size=1)
    try:
        result = await audit.verify(log, engine)
    finally:
        await log.close()
        await engine.dispose()
    if result.undecodable:
        print(f"warning: {result.undecodable} command records in the log cannot be decoded "
              f"(see the dead-letter stream)", file=sys.stderr)
    for finding in result.findings:
        print(finding)
    if result.findings:
        print(f"error: audit trail does not match the log: {len(result.findings)} of {result.entries} "
              f"entries differ (up to seq {result.position})", file=sys.stderr)
        return 1
    print(f"audit trail verified: {result.entries} entries")
    return 0
