"""Rows of the views over read models that are not API kinds: the image index and the alerts.

Pure, like rows.py: objects are the read models' rows as dicts; the stores reuse ResourceRows' filter,
sort and paging and only say how a row is keyed, drawn and folded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dockyard import cli_images, printers
from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.events import AlertFired, AlertResolved
from dockyard.tui.rows import Key, Obj, ResourceRows

ALERT_HEADERS = ["ALERTNAME", "SEVERITY", "STATE", "SINCE", "LABELS", "SUMMARY"]
ALERT_STATE_COLUMN = 2
ALERT_WIDE_HEADERS = [*ALERT_HEADERS, "VALUE", "RESOLVED", "FINGERPRINT"]
_ALERT_OWN_LABELS = ("alertname", "severity")


class RecordRows(ResourceRows):
    """A store whose rows come from a read model: a whole list replaces them, or events fold in."""

    namespaced = False
    HEADERS: list[str] = []
    WIDE_HEADERS: list[str] = []

    @property
    def headers(self) -> list[str]:
        return self.WIDE_HEADERS if self.wide else self.HEADERS

    def row_key(self, obj: Obj) -> Key:
        raise NotImplementedError

    def row_cells(self, obj: Obj) -> list[str]:
        raise NotImplementedError

    def row_labels(self, obj: Obj) -> dict[str, str]:
        return {}

    def _set(self, key: Key, obj: Obj) -> None:
        self._store(key, obj, self.row_cells(obj), self.row_labels(obj))

    def load(self, objects: Iterable[Obj], position: int = 0) -> None:
        for obj in objects:
            self._set(self.row_key(obj), obj)
        self.position = max(self.position, position)

    def replace(self, objects: Iterable[Obj]) -> set[Key]:
        """Show exactly `objects` (a fresh read of the read model); the keys that came, went or changed."""
        fresh = {self.row_key(obj): obj for obj in objects}
        gone = set(self.objects) - set(fresh)
        changed = {key for key, obj in fresh.items() if self.objects.get(key) != obj}
        self.structural = bool(gone) or any(key not in self.objects for key in fresh)
        for key in gone:
            self._forget(key)
        for key in changed:
            self._set(key, fresh[key])
        return changed | gone

    def absorb(self, records: Iterable[EventRecord]) -> set[Key]:
        self.structural = False
        return set()


class ImageRows(RecordRows):
    """The image index (`image_tags`): one row a tag, drawn as `dockyard images` draws it."""

    HEADERS = cli_images.HEADERS
    WIDE_HEADERS = cli_images.WIDE_HEADERS

    def __init__(self, wide: bool = False):
        super().__init__("Image", wide=wide)

    def row_key(self, obj: Obj) -> Key:
        return f"{obj['registry']}/{obj['repository']}:{obj['tag']}"

    def row_cells(self, obj: Obj) -> list[str]:
        return cli_images.table_row(obj, self.wide)


class AlertRows(RecordRows):
    """The alerts read model: one row a fingerprint, folded live from alert.fired / alert.resolved."""

    HEADERS = ALERT_HEADERS
    WIDE_HEADERS = ALERT_WIDE_HEADERS

    def __init__(self, wide: bool = False):
        super().__init__("Alert", wide=wide)
        self.sort_column = ALERT_STATE_COLUMN  # firing before resolved

    def row_key(self, obj: Obj) -> Key:
        return obj["fingerprint"]

    def row_labels(self, obj: Obj) -> dict[str, str]:
        return obj.get("labels") or {}

    def row_cells(self, obj: Obj) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in sorted((obj.get("labels") or {}).items())
                          if k not in _ALERT_OWN_LABELS)
        summary = (obj.get("annotations") or {}).get("summary", "")
        cells = [obj["alertname"], obj.get("severity", ""), obj.get("state", ""),
                 printers.age(obj.get("activeSince") or ""), labels or "-", summary or "-"]
        if self.wide:
            cells += [f"{obj.get('value') or 0:g}", obj.get("resolvedAt") or "-", obj["fingerprint"]]
        return cells

    @property
    def firing(self) -> int:
        return sum(1 for obj in self.objects.values() if obj.get("state") == "firing")

    def absorb(self, records: Iterable[EventRecord]) -> set[Key]:
        changed: set[Key] = set()
        self.structural = False
        for record in records:
            if record.seq <= self.position:
                continue
            self.position = record.seq
            fingerprint = parse_subject(record.subject)[2]
            before = self.objects.get(fingerprint)
            after = fold_alert(before, fingerprint, record.event, record.time)
            if after is not None:
                self.structural = self.structural or before is None
                self._set(fingerprint, after)
                changed.add(fingerprint)
        return changed


def fold_alert(row: Obj | None, fingerprint: str, event: Any, time: str) -> Obj | None:
    """An alerts row after one event (as the projector's row would read), or None to leave it."""
    if isinstance(event, AlertFired):
        return {"fingerprint": fingerprint, "alertname": event.alertname, "severity": event.severity,
                "state": "firing", "labels": dict(event.labels), "annotations": dict(event.annotations),
                "value": event.value, "activeSince": event.active_since or time, "resolvedAt": None}
    if isinstance(event, AlertResolved):
        base = row or {"fingerprint": fingerprint, "alertname": event.alertname, "severity": "",
                       "labels": dict(event.labels), "annotations": {}, "value": 0.0, "activeSince": ""}
        return {**base, "state": "resolved", "resolvedAt": event.resolved_at or time}
    return None
