"""The base event struct and the registry of event types by versioned tag."""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """A fact that happened to one aggregate; its tag (`pod.scheduled.v1`) is its wire name.

    Identity (which aggregate) lives in the subject and the envelope, not in the payload.
    """

    KIND: ClassVar[str] = ""

    @classmethod
    def type_name(cls) -> str:
        return cls.__struct_config__.tag  # type: ignore[return-value]


def event_version(type_name: str) -> int:
    """The schema version encoded in a tag: `pod.scheduled.v2` -> 2."""
    suffix = type_name.rsplit(".", 1)[-1]
    return int(suffix[1:]) if suffix.startswith("v") and suffix[1:].isdigit() else 1
