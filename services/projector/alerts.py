"""The alerts projection: one row per alert fingerprint from alert.fired.v1 and alert.resolved.v1.

A fired event replaces the whole row: the one that fired the alert, and each one the monitoring
service appends again while it fires, with the same `active_since` and its annotations current.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.eventlog import EventRecord, kind_filter, parse_subject
from dockyard.schemas.events import AlertFired, AlertResolved

FIRING, RESOLVED = "firing", "resolved"

_encoder = msgspec.json.Encoder()


class _AlertRow(msgspec.Struct, frozen=True):
    """A row of `alerts`, field for column; times stay RFC 3339 strings for PostgreSQL to parse."""

    fingerprint: str
    alertname: str
    severity: str
    state: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    active_since: str
    resolved_at: str | None
    updated_at: str
    last_seq: int


def _fired_row(fingerprint: str, event: AlertFired, record: EventRecord) -> _AlertRow:
    return _AlertRow(fingerprint, event.alertname, event.severity, FIRING, event.labels, event.annotations,
                     event.value, event.active_since or record.time, None, record.time, record.seq)


def _resolved_row(fingerprint: str, event: AlertResolved, record: EventRecord, fired: _AlertRow | None) -> _AlertRow:
    """The alert as resolved: the firing fields it had (when this batch saw them), its end and position."""
    resolved_at = event.resolved_at or record.time
    if fired is not None:
        return msgspec.structs.replace(fired, state=RESOLVED, resolved_at=resolved_at, updated_at=record.time,
                                       last_seq=record.seq)
    # Without a firing in this batch the row has it already; these fields only matter when it
    # does not (a log whose firing was lost), so they are filled from what the resolution says.
    return _AlertRow(fingerprint, event.alertname, event.labels.get("severity", ""), RESOLVED, event.labels, {},
                     0.0, resolved_at, resolved_at, record.time, record.seq)


def fold_alerts(records: Sequence[EventRecord]) -> tuple[list[_AlertRow], list[_AlertRow]]:
    """The batch folded per fingerprint: rows that replace the whole alert, and resolutions of earlier firings."""
    whole: dict[str, _AlertRow] = {}
    resolutions: dict[str, _AlertRow] = {}
    for record in records:
        event, fingerprint = record.event, parse_subject(record.subject)[2]
        if isinstance(event, AlertFired):
            resolutions.pop(fingerprint, None)
            whole[fingerprint] = _fired_row(fingerprint, event, record)
        elif isinstance(event, AlertResolved):
            if fingerprint in whole:
                whole[fingerprint] = _resolved_row(fingerprint, event, record, whole[fingerprint])
            else:
                resolutions[fingerprint] = _resolved_row(fingerprint, event, record, None)
    return list(whole.values()), list(resolutions.values())


_ROWS = ("SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(fingerprint text, alertname text,"
         " severity text, state text, labels jsonb, annotations jsonb, value double precision,"
         " active_since timestamptz, resolved_at timestamptz, updated_at timestamptz, last_seq bigint)")
_COLUMNS = ("fingerprint, alertname, severity, state, labels, annotations, value, active_since, resolved_at,"
            " updated_at, last_seq")


class AlertProjection:
    name = "alerts"
    table = "alerts"
    filter_subject = kind_filter("alert")

    async def apply(self, conn: AsyncConnection, table: str, records: Sequence[EventRecord]) -> None:
        whole, resolutions = fold_alerts(records)
        if whole:
            await conn.execute(text(
                f"INSERT INTO {table} ({_COLUMNS}) {_ROWS} ON CONFLICT (fingerprint) DO UPDATE SET"
                f" alertname = EXCLUDED.alertname, severity = EXCLUDED.severity, state = EXCLUDED.state,"
                f" labels = EXCLUDED.labels, annotations = EXCLUDED.annotations, value = EXCLUDED.value,"
                f" active_since = EXCLUDED.active_since, resolved_at = EXCLUDED.resolved_at,"
                f" updated_at = EXCLUDED.updated_at, last_seq = EXCLUDED.last_seq"
            ), {"rows": _encoder.encode(whole).decode()})
        if resolutions:
            await conn.execute(text(
                f"INSERT INTO {table} ({_COLUMNS}) {_ROWS} ON CONFLICT (fingerprint) DO UPDATE SET"
                f" state = EXCLUDED.state, resolved_at = EXCLUDED.resolved_at, updated_at = EXCLUDED.updated_at,"
                f" last_seq = EXCLUDED.last_seq"
            ), {"rows": _encoder.encode(resolutions).decode()})
