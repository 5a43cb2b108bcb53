"""CLI commands for replay and integrations: `events export|import` and `integrations webhook`."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path

from dockyard import config
from dockyard.cli import CliError, parse_since, resolve_kind, subject_kind
from dockyard.client import ApiClient
from dockyard.eventlog import STREAM, EventLog
from dockyard.transfer import TransferError, ensure_fresh, export_events, import_events

_KIND_TOKEN = re.compile(r"^[a-z][a-z0-9-]*$")


# ---------------------------------------------------------------- parsers


def add_event_transfer_arguments(events: argparse.ArgumentParser) -> None:
    """`dockyard events [export|import FILE]`: without an action, the listing it always was."""
    actions = events.add_subparsers(dest="action", metavar="[export|import]")
    export = actions.add_parser("export", help="write the log as JSON Lines, one event a line (to stdout)")
    export.add_argument("file", nargs="?", help="write here instead of stdout")
    # SUPPRESS: given before the action (`events --kind pod export`), they are kept, not reset.
    export.add_argument("--since", default=argparse.SUPPRESS, help="events from this time (10m, 2h, RFC 3339)")
    export.add_argument("--until", default=argparse.SUPPRESS, help="events before this time (10m, 2h, RFC 3339)")
    export.add_argument("--kind", default=argparse.SUPPRESS, help="only events of this kind (pod, node, command)")
    load = actions.add_parser("import", help="append an export to a fresh stack's log; the projector catches up")
    load.add_argument("file", help="the JSON Lines file (- for stdin)")
    load.add_argument("--force", action="store_true", help="append even though the log is not empty")


def add_integrations_parser(sub: argparse._SubParsersAction) -> None:
    integrations = sub.add_parser("integrations", help="forward events to other systems")
    integrations_sub = integrations.add_subparsers(dest="integration", required=True)
    webhook = integrations_sub.add_parser("webhook", help="POST matching events to a URL, signed, at least once")
    webhook.add_argument("--url", required=True)
    webhook.add_argument("--events", required=True, help="event type patterns, e.g. 'pod.*,alert.*' or '*'")
    webhook.add_argument("--secret-file", help="a file holding the HMAC-SHA256 signing secret")
    webhook.add_argument("--durable", default="", help="the durable consumer's name (default: from the URL)")
    webhook.add_argument("--max-attempts", type=int, default=8, help="then the event goes to the dead-letter stream")
    webhook.add_argument("--from", dest="deliver", choices=["new", "all"], default="new",
                         help="where a new forwarder starts: events from now on, or the whole log")


# ---------------------------------------------------------------- events export / import


def event_kind(name: str) -> str:
    """A kind as it appears in subjects: manifest kinds by any alias, other kinds (command, alert) as given."""
    if name.lower() in ("command", "commands"):
        return "command"
    try:
        return subject_kind(resolve_kind(name))
    except CliError:
        if _KIND_TOKEN.match(name):
            return name
        raise


async def export_to(client: ApiClient, args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    until = parse_since(args.until) if getattr(args, "until", None) else None
    kind = event_kind(args.kind) if args.kind else None
    if args.file and args.file != "-":
        with open(args.file, "wb") as out:
            count = await export_events(client.log, out, since, until, kind)
    else:
        count = await export_events(client.log, sys.stdout.buffer, since, until, kind)
    print(f"exported {count} events", file=sys.stderr)
    return 0


async def import_from(client: ApiClient, args: argparse.Namespace) -> int:
    await ensure_fresh(client.log, args.force)
    first = await client.log.last_stream_seq() + 1
    if args.file == "-":
        count = await import_events(client.log, sys.stdin.buffer)
    else:
        try:
            with open(args.file, "rb") as lines:
                count = await import_events(client.log, lines)
        except FileNotFoundError as exc:
            raise CliError(f"{args.file}: no such file") from exc
    if not count:
        print("no events to import", file=sys.stderr)
        return 0
    print(f"imported {count} events into {STREAM} (seq {first}..{first + count - 1}); "
          f"the projector catches up from the log", file=sys.stderr)
    return 0


async def cmd_events_transfer(client: ApiClient, args: argparse.Namespace) -> int:
    try:
        return await (export_to if args.action == "export" else import_from)(client, args)
    except TransferError as exc:
        raise CliError(str(exc)) from exc


def wants_transfer(args: argparse.Namespace) -> bool:
    return getattr(args, "action", None) is not None


# ---------------------------------------------------------------- integrations


def read_secret(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from exc
    if not secret:
        raise CliError(f"{path}: the secret file is empty")
    return secret


async def run_webhook(args: argparse.Namespace, secret: bytes | None) -> int:
    from dockyard.webhook import default_durable, forward

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = await EventLog.connect(config.nats_url(), name="dockyard-webhook")
    durable = args.durable or default_durable(args.url)
    print(f"forwarding {args.events} to {args.url} as consumer {durable}"
          f"{'' if secret else ' (unsigned: no --secret-file)'}", file=sys.stderr, flush=True)
    try:
        await forward(log, args.url, args.events, stop, secret=secret, durable=durable,
                      max_attempts=args.max_attempts, deliver=args.deliver)
    finally:
        await log.close()
    return 0


def cmd_integrations(args: argparse.Namespace) -> int:
    from dockyard.subscribe import type_patterns

    try:
        type_patterns(args.events)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if not args.url.startswith(("http://", "https://")):
        raise CliError(f"--url: {args.url} is not an http:// or https:// URL")
    return asyncio.run(run_webhook(args, read_secret(args.secret_file)))
