"""`dockyard alerts`: firing (and with --all, resolved) alerts from the alerts read model, like amtool."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sqlalchemy import text

from dockyard import config, printers
from dockyard.db import async_engine

HEADERS = ["ALERTNAME", "SEVERITY", "STATE", "LABELS", "SINCE", "SUMMARY"]
WIDE_HEADERS = [*HEADERS, "VALUE", "FINGERPRINT", "RESOLVED"]
# Shown in their own columns: no need to repeat them among the labels.
_SHOWN_LABELS = ("alertname", "severity")
_SUMMARY_WIDTH = 60
DESCRIPTION = (
    "Firing alerts, as the alerts read model has them. SUMMARY is current: the monitoring service appends a"
    " firing alert again when its annotations change (at most once per --alert-update-interval, 60 s by"
    " default). VALUE is the value at that last append (when it fired, or when its text last changed): a value"
    " that moves while the text stays the same is not logged, so it may lag the metric it was read from.")


def add_parsers(sub) -> None:
    parser = sub.add_parser("alerts", help="firing alerts (--all: resolved ones too)", description=DESCRIPTION)
    parser.add_argument("--all", action="store_true", help="resolved alerts too")
    parser.add_argument("-o", "--output", default="table", choices=["table", "wide", "json", "yaml"],
                        help="wide adds VALUE (see above), FINGERPRINT and RESOLVED")


def _rfc3339(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _alert_dict(row: Any) -> dict[str, Any]:
    fingerprint, alertname, severity, state, labels, annotations, value, since, resolved, updated, seq = row
    return {"fingerprint": fingerprint, "alertname": alertname, "severity": severity, "state": state,
            "labels": labels, "annotations": annotations, "value": value, "activeSince": _rfc3339(since),
            "resolvedAt": _rfc3339(resolved), "updatedAt": _rfc3339(updated), "seq": seq}


async def list_alerts(include_resolved: bool = False, database_url: str | None = None) -> list[dict[str, Any]]:
    """Alerts, firing first, oldest first: what `dockyard alerts` and `dockyard status` show."""
    where = "" if include_resolved else "WHERE state = 'firing'"
    engine = async_engine(database_url or config.database_url(), pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT fingerprint, alertname, severity, state, labels, annotations, value, active_since,"
                f" resolved_at, updated_at, last_seq FROM alerts {where}"
                " ORDER BY state = 'firing' DESC, active_since, alertname, fingerprint"))
            return [_alert_dict(r) for r in rows]
    finally:
        await engine.dispose()


def _labels_text(labels: dict[str, str]) -> str:
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SHOWN_LABELS]
    return ",".join(shown) or "-"


def _summary(annotations: dict[str, str]) -> str:
    summary = annotations.get("summary") or annotations.get("description") or "-"
    return summary if len(summary) <= _SUMMARY_WIDTH else summary[:_SUMMARY_WIDTH - 3] + "..."


def table_row(alert: dict[str, Any], wide: bool) -> list[str]:
    row = [alert["alertname"], alert["severity"] or "-", alert["state"], _labels_text(alert["labels"]),
           printers.age(alert["activeSince"] or ""), _summary(alert["annotations"])]
    if wide:
        row += [f"{alert['value']:g}", alert["fingerprint"], alert["resolvedAt"] or "-"]
    return row


def print_alerts(alerts: list[dict[str, Any]], output: str, include_resolved: bool) -> None:
    if output == "json":
        print(printers.to_json({"alerts": alerts}))
    elif output == "yaml":
        print(printers.to_yaml({"alerts": alerts}))
    elif alerts:
        wide = output == "wide"
        print(printers.format_table(WIDE_HEADERS if wide else HEADERS, [table_row(a, wide) for a in alerts]))
    else:
        print("No alerts." if include_resolved else "No firing alerts.", file=sys.stderr)


def cmd_alerts(args: argparse.Namespace) -> int:
    alerts = asyncio.run(list_alerts(args.all))
    print_alerts(alerts, args.output, args.all)
    return 0
