"""Reporting the images each node holds (NodeStatus.images, as Kubernetes' node.status.images), for image locality.

A driver says what a node holds through one of two optional methods: `held_images()` when it
serves one node (runc, process), `held_images_on(node)` when one driver serves many (hollow).
Every few seconds the reporter compares that with the node's status in the view and appends a
NodeImagesReported on the node's own `nodeimages` subject for the nodes whose set changed:
changes within one interval coalesce, and for thousands of nodes a round is a dictionary lookup
per node. A report is an aggregate apart from the node's, so it never moves the sequence the
scheduler's bindings expect: reporting often refuses no binding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from dockyard.eventlog import Append, EventLog, Metadata, subject_for
from dockyard.schemas.events import NodeImagesReported
from dockyard.schemas.manifests import ContainerImage
from dockyard.view import ClusterView

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0  # a report only when the set changed, and one refuses no binding
MAX_IMAGES = 50  # Kubernetes' nodeStatusMaxImages: the largest ones are reported
APPEND_WINDOW = 2000

HeldImages = Callable[[str], tuple[ContainerImage, ...]]


def held_images_of(driver: object, nodes: Iterable[str]) -> HeldImages | None:
    """How to ask `driver` what a node holds; None when it cannot say."""
    per_node = getattr(driver, "held_images_on", None)
    if per_node is not None:
        return per_node
    held = getattr(driver, "held_images", None)
    if held is not None and len(set(nodes)) == 1:
        return lambda _node: held()
    return None


def reported_images(held: tuple[ContainerImage, ...]) -> tuple[ContainerImage, ...]:
    """What goes in the status: the largest MAX_IMAGES, in a stable order (so equal sets compare equal)."""
    return tuple(sorted(held, key=lambda i: (-i.size_bytes, i.names))[:MAX_IMAGES])


class ImageReporter:
    def __init__(self, log_: EventLog, view: ClusterView, nodes: Iterable[str], held: HeldImages | None,
                 meta: Metadata, interval: float = DEFAULT_INTERVAL):
        self.log = log_
        self.view = view
        self.nodes = tuple(nodes)
        self.held = held
        self.meta = meta
        self.interval = interval if held is not None else 0.0
        self.sent: dict[str, tuple[ContainerImage, ...]] = {}  # node -> what we last reported
        self._last: dict[str, tuple[tuple[ContainerImage, ...], tuple[ContainerImage, ...]]] = {}  # raw, reported

    def _reported(self, node: str) -> tuple[ContainerImage, ...]:
        raw = self.held(node)
        last = self._last.get(node)
        if last is not None and last[0] is raw:
            return last[1]  # the driver's cached tuple: nothing to sort again
        self._last[node] = (raw, reported_images(raw))
        return self._last[node][1]

    def changed(self) -> list[Append]:
        """A report for each registered node whose held images differ from what the log says."""
        appends = []
        for name in self.nodes:
            node = self.view.nodes.get(name)
            if node is None:
                continue  # not registered yet: the view says nothing to compare with
            images = self._reported(name)
            if name in self.sent and self.view.node_images.get(name) == self.sent[name]:
                del self.sent[name]  # the view has read it: from now on compare with the view alone
            # What we last sent, until the view reads it: no second report of the same set. (A node
            # deregistered and registered again has lost its report in the view: it is sent anew.)
            if images != node.status.images and images != self.sent.get(name):
                appends.append(Append(subject=subject_for("nodeimages", "", name),
                                      event=NodeImagesReported(node_name=name, images=images)))
        return appends

    async def report(self) -> None:
        appends = self.changed()
        for start in range(0, len(appends), APPEND_WINDOW):
            chunk = appends[start:start + APPEND_WINDOW]
            for append, result in zip(chunk, await self.log.append_many(chunk, self.meta)):
                if isinstance(result, int):
                    self.sent[append.event.node_name] = append.event.images
                # A lost append: the next round compares again and reports again.

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report()
            except Exception as exc:  # the log is unreachable: the next round tries again
                log.warning("reporting held images failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
