"""Leader leases in a NATS KV bucket: one active instance of a singleton service, standbys take over."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import nats.js.errors
from nats.js.api import KeyValueConfig

from dockyard.eventlog import EventLog

log = logging.getLogger(__name__)

LEASE_BUCKET = "dy_leases"
LEASE_TTL = 15.0


class Lease:
    """Holds `name` while renewing every ttl/3; `held` says whether this instance may act."""

    def __init__(self, log_: EventLog, name: str, ttl: float = LEASE_TTL):
        self.log = log_
        self.name = name
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}-{os.getpid()}"
        self.held = asyncio.Event()
        self._revision = 0

    async def _bucket(self):
        try:
            return await self.log.js.key_value(LEASE_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return await self.log.js.create_key_value(KeyValueConfig(bucket=LEASE_BUCKET, ttl=self.ttl, history=1))

    async def _try(self, kv) -> bool:
        try:
            if self.held.is_set():
                self._revision = await kv.update(self.name, self.holder.encode(), last=self._revision)
            else:
                self._revision = await kv.create(self.name, self.holder.encode())
            return True
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
            return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Acquire and renew until `stop`; release on the way out so a standby takes over at once."""
        kv = await self._bucket()
        while not stop.is_set():
            if await self._try(kv):
                if not self.held.is_set():
                    log.info("holding lease %s as %s", self.name, self.holder)
                self.held.set()
            elif self.held.is_set():
                log.warning("lost lease %s", self.name)
                self.held.clear()
            try:
                await asyncio.wait_for(stop.wait(), self.ttl / 3)
            except asyncio.TimeoutError:
                pass
        if self.held.is_set():
            try:
                await kv.delete(self.name, last=self._revision)
            except Exception:  # expiry releases it anyway
                pass
