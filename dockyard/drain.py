"""Draining a node: cordon it, then evict its pods while each deployment stays within maxUnavailable.

Shared by `dockyard drain` and the console: both report the same progress lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec

from dockyard.client import ApiCallError, ApiClient


class DrainTimeout(Exception):
    """The node still had pods when the drain's time ran out."""


async def _pods_on(client: ApiClient, node: str) -> list[dict]:
    pods, _ = await client.list("Pod")
    return [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]


async def eviction_allowed(client: ApiClient, pod: dict, recovering: set[tuple[str, str]]) -> bool:
    """A deployment's pod may go if one fewer available replica keeps within its maxUnavailable."""
    from dockyard.schemas.manifests import Deployment
    from dockyard.services.controller.reconcile import OWNER_ANNOTATION, rolling_limits

    owner = (pod["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION)
    if not owner:
        return True
    key = (pod["metadata"]["namespace"], owner)
    try:
        raw = await client.get("Deployment", owner, key[0])
    except ApiCallError:
        return True
    deployment = msgspec.convert(raw, Deployment)
    available = deployment.status.available_replicas
    if key in recovering:  # one of its pods was just evicted: wait until it is whole again
        if available < deployment.spec.replicas:
            return False
        recovering.discard(key)
    _, max_unavailable = rolling_limits(deployment)
    if available - 1 < deployment.spec.replicas - max_unavailable:
        return False
    recovering.add(key)
    return True


async def drain_node(client: ApiClient, node: str, timeout: float = 0,
                     poll: float = 1.0) -> AsyncIterator[str]:
    """Cordon `node` and evict its pods; yields a line per step, the last `node/NAME drained`.

    Raises DrainTimeout when `timeout` (seconds, 0 for never) passes with pods left.
    """
    result = await client.cordon(node, unschedulable=True)
    yield f"node/{node} {result.result}"
    deadline = time.monotonic() + timeout if timeout > 0 else None
    recovering: set[tuple[str, str]] = set()
    waiting_told: set[str] = set()
    while pods := await _pods_on(client, node):
        for pod in pods:
            meta = pod["metadata"]
            if not await eviction_allowed(client, pod, recovering):
                if meta["name"] not in waiting_told:
                    yield (f"evicting pod {meta['namespace']}/{meta['name']}: waiting, its deployment is at "
                           f"maxUnavailable")
                    waiting_told.add(meta["name"])
                continue
            yield f"evicting pod {meta['namespace']}/{meta['name']}"
            try:
                await client.delete("Pod", meta["name"], meta["namespace"], reason="Evicted")
                yield f"pod/{meta['name']} evicted"
            except ApiCallError as exc:
                if exc.code != "NotFound":
                    raise
        if deadline is not None and time.monotonic() > deadline:
            raise DrainTimeout(f"drain did not complete within {timeout:g}s")
        await asyncio.sleep(poll)
    yield f"node/{node} drained"
