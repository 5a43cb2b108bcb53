"""The audit trail: command records as entries, their hash chain, queries, and verification against the log."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from contextlib import aclosing

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dockyard.db import CHECKPOINTS_TABLE, COMMANDS_TABLE
from dockyard.eventlog import EventLog, kind_filter
from dockyard.schemas.events import CommandRecorded

GENESIS = ""  # the prev_hash of the first entry
REFUSED = "refused"
ACCEPTED = "accepted"  # a filter only: every result but refused
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_encoder = msgspec.json.Encoder()


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One command as the trail keeps it, field for column: exactly what its hash covers."""

    seq: int
    command_id: str
    time: str  # RFC 3339, UTC, to the microsecond (see audit_time)
    actor: str
    verb: str
    kind: str
    namespace: str
    name: str
    result: str
    reason: str
    summary: str
    dry_run: bool


class AuditRow(AuditEntry, frozen=True, kw_only=True):
    """An entry with its place in the chain: a row of the `commands` table."""

    prev_hash: str
    hash: str

    def entry(self) -> AuditEntry:
        return AuditEntry(**{field: getattr(self, field) for field in AuditEntry.__struct_fields__})


ROW_COLUMNS = AuditRow.__struct_fields__


def audit_time(value: str | dt.datetime) -> str:
    """A time as it reads the same from the log's string and from PostgreSQL's timestamptz.

    A time that cannot be stored becomes the epoch, so replaying the log always gives the same chain.
    """
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        moment = moment.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        moment = _EPOCH
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _storable(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; the table would refuse the row and stall the projector.
    return value.replace("\x00", "\ufffd")


def entry_of(seq: int, event: CommandRecorded) -> AuditEntry:
    ref = event.object
    return AuditEntry(
        seq=seq, command_id=_storable(event.command_id), time=audit_time(event.time), actor=_storable(event.actor),
        verb=_storable(event.verb), kind=_storable(ref.kind), namespace=_storable(ref.namespace),
        name=_storable(ref.name), result=_storable(event.result), reason=_storable(event.reason),
        summary=_storable(event.summary), dry_run=event.dry_run,
    )


def link(prev_hash: str, entry: AuditEntry) -> str:
    """sha256(prev_hash || canonical(entry)), hex: an entry's hash binds it to all before it."""
    return hashlib.sha256(prev_hash.encode() + _encoder.encode(entry)).hexdigest()


def chain(entries: Iterable[AuditEntry], prev_hash: str = GENESIS) -> list[AuditRow]:
    """Entries in log order, each linked to the one before (the first to `prev_hash`)."""
    rows = []
    for entry in entries:
        current = link(prev_hash, entry)
        rows.append(AuditRow(**msgspec.structs.asdict(entry), prev_hash=prev_hash, hash=current))
        prev_hash = current
    return rows


def object_name(entry: AuditEntry) -> str:
    """`deployment/default/web`, or `node/n1` for a cluster-scoped kind."""
    return "/".join(part for part in (entry.kind.lower(), entry.namespace, entry.name) if part)


def describe(entry: AuditEntry) -> str:
    return f"{entry.verb} {object_name(entry)} by {entry.actor}"


# ---------------------------------------------------------------- verification


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One way the read model departs from the log: altered, removed or inserted."""

    what: str
    entry: AuditEntry  # the log's, except for an inserted row (which the log does not have)
    fields: tuple[str, ...] = ()  # for an altered row: the columns that differ

    def __str__(self) -> str:
        line = f"{self.what}: seq {self.entry.seq} ({describe(self.entry)})"
        return f"{line}: {', '.join(self.fields)} differ" if self.fields else line


def compare(expected: Sequence[AuditRow], stored: Sequence[AuditRow]) -> list[Finding]:
    """Every row of `stored` that is not the log's `expected` row, and every expected row missing, by seq."""
    by_seq = {row.seq: row for row in stored}
    findings = []
    for row in expected:
        found = by_seq.pop(row.seq, None)
        if found is None:
            findings.append(Finding(what="removed", entry=row.entry()))
        elif found != row:
            fields = tuple(f for f in ROW_COLUMNS if getattr(found, f) != getattr(row, f))
            findings.append(Finding(what="altered", entry=row.entry(), fields=fields))
    findings.extend(Finding(what="inserted", entry=row.entry()) for row in by_seq.values())
    return sorted(findings, key=lambda finding: finding.entry.seq)


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    position: int  # the projection's checkpoint: log entries after it are not expected in the table yet
    entries: int
    findings: list[Finding]
    undecodable: int = 0  # command records the log holds but no one can decode (the projector skips them too)


async def log_rows(log: EventLog, until_seq: int) -> tuple[list[AuditRow], int]:
    """The chain as the log says it should be, up to `until_seq`; and how many records were undecodable."""
    entries: list[AuditEntry] = []
    undecodable = []
    if until_seq <= 0:
        return [], 0
    records = log.read(kind_filter("command"),
                       on_malformed=lambda msg, exc: undecodable.append(msg.metadata.sequence.stream))
    async with aclosing(records):
        async for record in records:
            if record.seq > until_seq:
                break
            if isinstance(record.event, CommandRecorded):
                entries.append(entry_of(record.seq, record.event))
    return chain(entries), sum(1 for seq in undecodable if seq <= until_seq)


def _row_from_table(row) -> AuditRow:
    values = dict(row._mapping)
    values["time"] = audit_time(values["time"])
    return AuditRow(**values)


async def table_rows(conn: AsyncConnection, table: str = COMMANDS_TABLE,
                     where: str = "", params: dict | None = None) -> list[AuditRow]:
    rows = await conn.execute(text(f"SELECT {', '.join(ROW_COLUMNS)} FROM {table} {where} ORDER BY seq"),
                              params or {})
    return [_row_from_table(row) for row in rows]


async def verify(log: EventLog, engine: AsyncEngine) -> Verification:
    """Recompute the chain from the log and hold the `commands` table against it."""
    async with engine.connect() as conn:
        # One snapshot for the checkpoint and the rows: the projector writes both in one transaction.
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        position = (await conn.execute(text(f"SELECT position FROM {CHECKPOINTS_TABLE} WHERE name = :n"),
                                       {"n": COMMANDS_TABLE})).scalar() or 0
        stored = await table_rows(conn)
    expected, undecodable = await log_rows(log, position)
    return Verification(position=position, entries=len(expected), findings=compare(expected, stored),
                        undecodable=undecodable)


# ---------------------------------------------------------------- queries


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of `dockyard audit`; empty ones do not filter."""

    actor: str = ""
    kind: str = ""
    name: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    result: str = ""


def _conditions(query: AuditQuery) -> tuple[str, dict]:
    clauses, params = [], {}
    for column in ("actor", "kind", "name"):
        if getattr(query, column):
            clauses.append(f"{column} = :{column}")
            params[column] = getattr(query, column)
    if query.since is not None:
        clauses.append("time >= :since")
        params["since"] = query.since
    if query.until is not None:
        clauses.append("time <= :until")
        params["until"] = query.until
    if query.result == ACCEPTED:
        clauses.append(f"result <> '{REFUSED}'")
    elif query.result:
        clauses.append("result = :result")
        params["result"] = query.result
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


async def entries(engine: AsyncEngine, query: AuditQuery) -> list[AuditRow]:
    """The trail's entries that match, oldest first."""
    where, params = _conditions(query)
    async with engine.connect() as conn:
        return await table_rows(conn, where=where, params=params)
