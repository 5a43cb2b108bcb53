"""The indexer's memory of a registry, folded from the log, and the events a fresh observation calls for.

Subjects: one aggregate per repository, `dy.evt.image.<registry>.<repository>`, and one per
registry, `dy.evt.registry.<registry>`. Tokens are encoded reversibly (`encode_token`): NATS
tokens cannot hold '.', and `subject_for` maps '.' to '_', which repository names also use; so
'_' becomes '_5F' and '.' becomes '_2E' first ('/', '-' and ':' are kept; names are lowercase).

The index also remembers each aggregate's last stream sequence, so its events are appended with
the expected sequence and two indexers of one registry never append the same change twice.
"""

from __future__ import annotations

import re

import msgspec

from dockyard.eventlog import SUBJECT_ROOT, Append, EventRecord, subject_for
from dockyard.schemas.base import Event
from dockyard.schemas.events import (
    ImageDeleted,
    ImageIndexed,
    ImageRejected,
    ImageTagMoved,
    RegistryRecovered,
    RegistryUnreachable,
)
from dockyard.services.registry_indexer.distribution import Resolved

_DECODE = re.compile(r"_(5F|2E)")


def encode_token(name: str) -> str:
    return name.replace("_", "_5F").replace(".", "_2E")


def decode_token(token: str) -> str:
    return _DECODE.sub(lambda m: "_" if m.group(1) == "5F" else ".", token)


def image_subject(registry: str, repository: str) -> str:
    return subject_for("image", encode_token(registry), encode_token(repository))


def registry_subject(registry: str) -> str:
    return subject_for("registry", "", encode_token(registry))


def image_filter(registry: str) -> str:
    return f"{SUBJECT_ROOT}.image.{encode_token(registry)}.*"


class TagState(msgspec.Struct, frozen=True):
    digest: str = ""
    problem: str = ""


class RegistryIndex:
    """What the log says the registry holds: (repository, tag) -> state, and whether it answers."""

    def __init__(self, registry: str):
        self.registry = registry
        self.tags: dict[tuple[str, str], TagState] = {}
        self.reachable = True
        self.seqs: dict[str, int] = {}  # aggregate subject -> the last stream sequence folded in

    def evolve(self, event: Event) -> None:
        if isinstance(event, (ImageIndexed, ImageTagMoved)):
            self.tags[(event.repository, event.tag)] = TagState(digest=event.digest)
        elif isinstance(event, ImageRejected):
            self.tags[(event.repository, event.tag)] = TagState(problem=event.reason)
        elif isinstance(event, ImageDeleted):
            self.tags.pop((event.repository, event.tag), None)
        elif isinstance(event, RegistryUnreachable):
            self.reachable = False
        elif isinstance(event, RegistryRecovered):
            self.reachable = True

    def apply(self, record: EventRecord) -> None:
        """Fold one event read from the log, with its position."""
        self.evolve(record.event)
        self.seqs[record.subject] = record.seq

    def reload(self, subject: str, records: list[EventRecord]) -> None:
        """Forget what the index holds for one aggregate and fold it again from `records` (all of its events)."""
        if subject == registry_subject(self.registry):
            self.reachable = True
        else:
            for key in [k for k in self.tags if image_subject(self.registry, k[0]) == subject]:
                del self.tags[key]
        self.seqs.pop(subject, None)
        for record in records:
            self.apply(record)

    def subject_of(self, event: Event) -> str:
        if event.KIND == "registry":
            return registry_subject(self.registry)
        return image_subject(self.registry, event.repository)

    def repositories(self) -> set[str]:
        return {repository for repository, _ in self.tags}

    def tags_of(self, repository: str) -> set[str]:
        return {tag for repo, tag in self.tags if repo == repository}

    def observe_tag(self, repository: str, tag: str, seen: Resolved | str | None) -> Event | None:
        """The event `seen` (what the tag names, a problem, or None: gone) calls for; None if nothing changed."""
        known = self.tags.get((repository, tag))
        common = {"registry": self.registry, "repository": repository, "tag": tag}
        if seen is None:
            return None if known is None else ImageDeleted(**common, digest=known.digest)
        if isinstance(seen, str):
            if known is not None and known.problem == seen:
                return None
            return ImageRejected(**common, reason=seen)
        if known is not None and known.digest == seen.digest:
            return None
        found = {"digest": seen.digest, "media_type": seen.media_type, "size": seen.size, "platforms": seen.platforms}
        if known is None or not known.digest:
            return ImageIndexed(**common, **found)
        return ImageTagMoved(**common, **found, previous_digest=known.digest)

    def observe_registry(self, reachable: bool, reason: str = "") -> Event | None:
        if reachable == self.reachable:
            return None
        if reachable:
            return RegistryRecovered(registry=self.registry)
        return RegistryUnreachable(registry=self.registry, reason=reason)

    def record(self, events: list[Event]) -> dict[str, list[Append]]:
        """Fold `events` in and return them as appends, grouped by their aggregates' subjects."""
        appends: dict[str, list[Append]] = {}
        for event in events:
            self.evolve(event)
            appends.setdefault(self.subject_of(event), []).append(Append(subject=self.subject_of(event), event=event))
        return appends
