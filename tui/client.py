"""The console's client layer: every NATS and database call the console makes, run from workers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from typing import Any


from dockyard import config, printers, timetravel
from dockyard.client import ApiClient
from dockyard.eventlog import EventLog, EventRecord, kind_filter, subject_for
from dockyard.schemas.manifests import KINDS
from dockyard.state import HeldImages

Obj = dict[str, Any]




class LineSink(io.TextIOBase):
    """A text stream that hands each written line to a callback: how `print_logs` feeds a widget."""

    def __init__(self, on_line: Callable[[str], None]):
        self._on_line = on_line

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self._on_line(line)
        return len(text)


class ConsoleClient:
    """One reconnecting NATS connection; the API, the log and (optionally) the read models."""

    def __init__(self, api: ApiClient, database_url: str = ""):
        self.api = api
        self.log = api.log
        self.database_url = database_url
        self._engine = None

    @classmethod
    async def connect(cls, nats_url: str | None = None, database_url: str | None = None,
                      on_disconnect: Callable[[], None] | None = None,
                      on_reconnect: Callable[[], None] | None = None) -> ConsoleClient:
        async def disconnected() -> None:
            if on_disconnect:
                on_disconnect()

        async def reconnected() -> None:
            if on_reconnect:
                on_reconnect()

        log = await EventLog.connect(nats_url or config.nats_url(), name="dockyard-console",
                                     disconnected_cb=disconnected, reconnected_cb=reconnected,
                                     connect_timeout=3)
        if database_url is None:
            try:
                database_url = config.database_url()
            except config.ConfigError:
                database_url = ""
        return cls(ApiClient(log, timeout=10.0), database_url)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        await self.log.close()

    # ------------------------------------------------------------ reads

    async def list(self, kind: str, namespace: str = "") -> tuple[list[Obj], int]:
        return await self.api.list(kind, namespace, chunk=5000)

    async def list_page(self, kind: str, limit: int, continue_token: str = ""):
        return await self.api.list_page(kind, "", "", limit, continue_token)

    def follow(self, kind: str | None, start_seq: int) -> AsyncIterator[EventRecord]:
        return self.log.read(kind_filter(kind), start_seq=max(start_seq, 1), follow=True)

    async def last_seq(self) -> int:
        return await self.log.last_stream_seq()

    async def held_images(self, position: int) -> HeldImages:
        """Each node's last image report at or before `position`: what the nodes view joins on as it follows."""
        return await timetravel.held_images_at(self.log, position)

    async def describe(self, kind: str, name: str, namespace: str) -> str:
        obj = await self.api.get(kind, name, namespace)
        _, records = await timetravel.aggregate_at(self.log, kind, namespace, name)
        return printers.describe(obj, printers.history_rows(records))

    async def yaml(self, kind: str, name: str, namespace: str) -> str:
        return printers.to_yaml(printers.kubernetes_order(await self.api.get(kind, name, namespace)))

    async def explain(self, name: str, namespace: str) -> str:
        from dockyard.services.scheduler.explain import explain

        records = await self.log.read_aggregate(subject_for("pod", namespace, name))
        return "\n".join(explain(records)) if records else f'pods "{name}" not found'

    async def history(self, kind: str, name: str, namespace: str) -> str:
        _, records = await timetravel.aggregate_at(self.log, kind, namespace, name)
        headers = ["SEQ", "TIME", "TYPE", "ACTOR"]
        rows = [[str(r.seq), r.time, r.type, r.actor] for r in records]
        return printers.format_table(headers, rows) if rows else "no events"

    async def logs(self, namespace: str, pod: str, on_line: Callable[[str], None], follow: bool = True,
                   tail: int | None = 200, timestamps: bool = False, previous: bool = False) -> None:
        """A container's lines, as `dockyard logs` prints them; with `previous` the run before the current
        one (never followed). Raises ValueError, in kubectl's words, when there is no such run."""
        from dockyard.services.node_agent.logs import print_logs

        await print_logs(self.log, namespace, pod, follow=follow, tail=tail, timestamps=timestamps,
                         previous=previous, out=LineSink(on_line))

    def _database(self):
        if self._engine is None:
            from sqlalchemy.ext.asyncio import create_async_engine

            self._engine = create_async_engine(config.normalise_database_url(self.database_url))
        return self._engine

    async def projection_lag(self) -> int | None:
        """The largest lag of any projection, or None without a database."""
        if not self.database_url:
            return None
        from dockyard.services.projector.admin import status_rows

        rows = await asyncio.wait_for(status_rows(self.log, self._database()), 5)
        return max((int(row[3]) for row in rows), default=0)

    async def images(self) -> list[Obj]:
        """The image index's tags, as `dockyard images` reads them; none without a database."""
        if not self.database_url:
            return []
        from dockyard.cli_images import list_rows

        images, _ = await list_rows("", config.normalise_database_url(self.database_url))
        return images

    async def alerts(self) -> list[Obj]:
        """Every row of the alerts read model (firing and resolved), as `dockyard alerts --all` reads it;
        none without a database or the table."""
        if not self.database_url:
            return []
        from sqlalchemy.exc import ProgrammingError

        from dockyard.cli_alerts import list_alerts

        try:
            database_url = config.normalise_database_url(self.database_url)
            return await list_alerts(include_resolved=True, database_url=database_url)
        except ProgrammingError:  # no `alerts` table yet: an older schema
            return []

    # ------------------------------------------------------------ actions

    async def scale(self, name: str, namespace: str, replicas: int) -> str:
        return (await self.api.scale(name, namespace, replicas)).result

    async def delete(self, kind: str, name: str, namespace: str) -> str:
        return (await self.api.delete(kind, name, namespace if KINDS[kind].NAMESPACED else "")).result

    async def rollout(self, action: str, name: str, namespace: str) -> str:
        return (await self.api.rollout(action, name, namespace)).result

    async def cordon(self, node: str, unschedulable: bool) -> str:
        return (await self.api.cordon(node, unschedulable)).result

    def drain(self, node: str, timeout: float = 0) -> AsyncIterator[str]:
        """Cordon, then evict the node's pods within each deployment's maxUnavailable: the CLI's drain."""
        from dockyard.drain import drain_node

        return drain_node(self.api, node, timeout)
