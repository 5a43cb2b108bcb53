"""Posting alerts to an Alertmanager's v2 API, as Prometheus does: firing ones re-sent, resolved ones with endsAt."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import httpx

from dockyard.services.monitoring.tally import rfc3339

log = logging.getLogger(__name__)

RESOLVED_KEPT = 1000  # resolved alerts waiting for an unreachable Alertmanager; older ones are dropped


@dataclass(frozen=True, slots=True)
class Notice:
    """An alert as the log has it: firing (ends_at "") or resolved."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str  # RFC 3339
    ends_at: str = ""


def payload(notices: list[Notice], now: dt.datetime, resend_interval: float, generator_url: str = "") -> list[dict]:
    """The JSON body for POST /api/v2/alerts.

    A firing alert ends, unless re-sent, after four resend intervals: Alertmanager then resolves
    it by itself if this service dies (Prometheus' rule).
    """
    expires = rfc3339(now + dt.timedelta(seconds=4 * resend_interval))
    body = []
    for notice in notices:
        alert = {"labels": notice.labels, "annotations": notice.annotations, "startsAt": notice.starts_at,
                 "endsAt": notice.ends_at or expires}
        if generator_url:
            alert["generatorURL"] = generator_url
        body.append(alert)
    return body


class Alertmanager:
    """Sends the firing set when it changed (an alert came or went, or its annotations changed) or every
    `resend_interval`, and each resolution once it is known."""

    def __init__(self, url: str, resend_interval: float = 60.0, timeout: float = 10.0):
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend_interval = resend_interval
        self.client = httpx.AsyncClient(timeout=timeout)
        self.resolved: list[Notice] = []
        self._last_sent: tuple[float, dict[str, Notice]] | None = None  # (monotonic time, what was sent)

    def queue_resolved(self, notice: Notice) -> None:
        self.resolved = [*self.resolved, notice][-RESOLVED_KEPT:]

    def due(self, firing: dict[str, Notice], monotonic: float) -> bool:
        if self.resolved:
            return True
        if self._last_sent is None:
            return bool(firing)
        sent_at, sent = self._last_sent
        return sent != firing or (bool(firing) and monotonic - sent_at >= self.resend_interval)

    async def send(self, firing: dict[str, Notice], now: dt.datetime, monotonic: float) -> None:
        """Post what is due; a failure is logged and the same goes again next time."""
        if not self.due(firing, monotonic):
            return
        resolved = self.resolved
        body = payload([*firing.values(), *resolved], now, self.resend_interval)
        if not body:
            self._last_sent = (monotonic, {})
            return
        try:
            response = await self.client.post(self.url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("posting %d alert(s) to %s failed: %s", len(body), self.url, exc)
            return
        # By identity: while the post was out, queue_resolved may have added notices and trimmed the list.
        sent = set(map(id, resolved))
        self.resolved = [notice for notice in self.resolved if id(notice) not in sent]
        self._last_sent = (monotonic, dict(firing))

    async def close(self) -> None:
        await self.client.aclose()
