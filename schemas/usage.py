"""Resource usage node agents report every few seconds: not history, so a KV bucket, not DY_EVENTS.

Bucket `dy_usage` (dockyard.eventlog.USAGE_BUCKET), key = node name, value = msgspec JSON of
`NodeUsage`. Entries expire with a TTL, so a silent node's figures disappear on their own.
"""

from __future__ import annotations

import msgspec


class ContainerUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    cpu_millis: int = 0  # average over the same interval as its pod's
    memory_bytes: int = 0


class PodUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    namespace: str
    name: str
    cpu_millis: int = 0  # average over the last sampling interval
    memory_bytes: int = 0  # resident (working set)
    # Per container where the driver can tell them apart; empty from older agents.
    containers: tuple[ContainerUsage, ...] = ()


class NodeUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    node: str
    timestamp: str  # RFC 3339, when sampled
    window_seconds: float = 0.0  # the interval the CPU figures average over
    cpu_millis: int = 0
    memory_bytes: int = 0
    pods: tuple[PodUsage, ...] = ()


usage_decoder = msgspec.json.Decoder(NodeUsage)
usage_encoder = msgspec.json.Encoder()
