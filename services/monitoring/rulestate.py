"""The rule file's state as `dockyard status` reads it: one KV entry per monitoring instance, refreshed under a TTL.

A refused rule file is otherwise only in the service's log and a 0 on a gauge. The entry lives in
the `dy_monitoring` bucket (not the event log: it is current state, not history), keyed by the
instance, so several instances with different files each say their own; the TTL drops the entry
of an instance that died without deleting it.
"""

from __future__ import annotations

import logging
import os
import re
import socket

import msgspec
import nats.js.errors
from nats.js.api import KeyValueConfig

from dockyard.services.monitoring.userrules import RuleFile

log = logging.getLogger(__name__)

BUCKET = "dy_monitoring"
TTL = 120.0  # seconds an entry outlives its last refresh
REFRESH = TTL / 4  # an unchanged entry is put again this often


class RuleFileState(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    problem: str = ""  # why the file on disk is refused ("line 8: ..."); "" while it is in use
    rules_in_use: int = 0  # the rules evaluated: the file's, or while refused those loaded before

    def refusal(self) -> str:
        """`dockyard status`'s words for a refused file."""
        return (f"{self.path} refused: {self.problem} (the {self.rules_in_use} rule(s) loaded before"
                f" stay in use)")


_decoder = msgspec.json.Decoder(RuleFileState)


def state_of(rule_file: RuleFile) -> RuleFileState:
    prefix = f"{rule_file.path}: "
    problem = rule_file.error[len(prefix):] if rule_file.error.startswith(prefix) else rule_file.error
    return RuleFileState(path=rule_file.path, problem=problem, rules_in_use=len(rule_file.rules))


def instance_key() -> str:
    """This process among the monitoring instances: host and pid, in the characters a KV key allows."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{socket.gethostname()}-{os.getpid()}")


class RuleStateReporter:
    """Puts this instance's RuleFileState when it changes and every REFRESH seconds; deletes it on stop."""

    def __init__(self, js, key: str | None = None):
        self.js = js
        self.key = key or instance_key()
        self._bucket = None
        self._put: tuple[RuleFileState, float] | None = None  # what was put, at what monotonic time

    async def report(self, state: RuleFileState, monotonic: float) -> None:
        if self._put is not None and self._put[0] == state and monotonic - self._put[1] < REFRESH:
            return
        if self._bucket is None:
            self._bucket = await _bucket(self.js, create=True)
        await self._bucket.put(self.key, msgspec.json.encode(state))
        self._put = (state, monotonic)

    async def withdraw(self) -> None:
        if self._bucket is not None:
            await self._bucket.delete(self.key)


async def _bucket(js, create: bool):
    try:
        return await js.key_value(BUCKET)
    except (nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
        if not create:
            return None
        return await js.create_key_value(KeyValueConfig(bucket=BUCKET, ttl=TTL, history=1))


async def refused_rule_files(js) -> list[str]:
    """Every refusal the monitoring instances report, each once, for `dockyard status`; [] without any."""
    bucket = await _bucket(js, create=False)
    if bucket is None:
        return []
    refusals: dict[str, None] = {}
    watcher = await bucket.watchall(ignore_deletes=True)
    try:
        while (entry := await watcher.updates(timeout=10.0)) is not None:
            try:
                state = _decoder.decode(entry.value)
            except msgspec.DecodeError:
                continue  # written by a newer monitoring service: not ours to judge
            if state.problem:
                refusals[state.refusal()] = None
    finally:
        await watcher.stop()
    return list(refusals)
