"""The event catalog: a JSON Schema for every event and manifest kind, and an AsyncAPI 3.0 document
of every subject and event type, for integrations to read.

The generated catalog is committed under `catalog/` and a test regenerates it and compares, so a
schema change shows up in review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from dockyard.eventlog import (
    H_ACTOR,
    H_CAUSATION,
    H_CORRELATION,
    H_MSG_ID,
    H_TIME,
    H_TYPE,
    H_VERSION,
    STREAM,
    SUBJECT_ROOT,
)
from dockyard.schemas.base import Event
from dockyard.schemas.events import EVENT_TYPES
from dockyard.schemas.manifests import KINDS

ASYNCAPI_FILE = "asyncapi.yaml"
ENVELOPE = "Envelope"


def schemas() -> dict[str, dict]:
    """File stem -> JSON Schema: `event.pod.scheduled.v1`, `manifest.Deployment`."""
    result = {f"event.{tag}": msgspec.json.schema(cls) for tag, cls in sorted(EVENT_TYPES.items())}
    result.update({f"manifest.{kind}": msgspec.json.schema(cls) for kind, cls in sorted(KINDS.items())})
    return result


# ---------------------------------------------------------------- AsyncAPI


def envelope_schema() -> dict[str, Any]:
    """The headers every event carries; the payload is the event's JSON."""
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "The event's envelope, carried in NATS headers.",
        "properties": {
            H_TYPE: {**text, "description": "The versioned event type, e.g. pod.scheduled.v1."},
            H_VERSION: {**text, "pattern": "^[0-9]+$", "description": "The schema version (the type's vN)."},
            H_ACTOR: {**text, "description": "Who caused it: a user, or a service such as scheduler."},
            H_TIME: {**text, "format": "date-time", "description": "When it was appended (RFC 3339, UTC)."},
            H_CORRELATION: {**text, "description": "Shared by every event that one request led to."},
            H_CAUSATION: {**text, "description": "The command or event that caused this one."},
            H_MSG_ID: {**text, "description": "Idempotency key of the append (command id and index)."},
        },
        "required": [H_TYPE, H_VERSION, H_ACTOR, H_TIME],
    }


def _event_kinds() -> dict[str, list[str]]:
    """Subject kind -> its event types, both sorted."""
    kinds: dict[str, list[str]] = {}
    for tag, cls in sorted(EVENT_TYPES.items()):
        kinds.setdefault(cls.KIND, []).append(tag)
    return dict(sorted(kinds.items()))


def _channel(kind: str, tags: list[str]) -> dict[str, Any]:
    manifest = {name.lower(): cls for name, cls in KINDS.items()}.get(kind)
    form = f"{SUBJECT_ROOT}.{kind}.<namespace>.<name>" if manifest and manifest.NAMESPACED \
        else f"{SUBJECT_ROOT}.{kind}.<name>"
    return {
        "address": f"{SUBJECT_ROOT}.{kind}.>",
        "title": f"{kind} events",
        "description": f"Stream {STREAM}, one subject per {kind}: `{form}` ('.' in a name becomes '_').",
        "messages": {tag: {"$ref": f"#/components/messages/{tag}"} for tag in tags},
    }


def _message(tag: str, cls: type[Event]) -> dict[str, Any]:
    message = {"name": tag, "title": cls.__name__, "contentType": "application/json",
               "headers": {"$ref": f"#/components/schemas/{ENVELOPE}"},
               "payload": {"$ref": f"#/components/schemas/{cls.__name__}"}}
    if cls.__doc__:
        message["summary"] = " ".join(cls.__doc__.split("\n\n")[0].split())
    return message


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document: a channel per subject kind, a message per event type."""
    kinds = _event_kinds()
    _, components = msgspec.json.schema_components(list(EVENT_TYPES.values()),
                                                   ref_template="#/components/schemas/{name}")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Dockyard events",
            "version": "1.0.0",
            "description": f"Every change to a Dockyard cluster is an event in the JetStream stream {STREAM}. "
                           f"Subscribe with a durable consumer on the channel's address; the envelope is in "
                           f"the headers, the payload is JSON tagged with its type. Events stored under an "
                           f"older version of their type are upcast to the version listed here when read "
                           f"through the SDK (dockyard.client).",
        },
        "defaultContentType": "application/json",
        "channels": {kind: _channel(kind, tags) for kind, tags in kinds.items()},
        "operations": {
            f"{kind}Events": {
                "action": "send",
                "title": f"Dockyard appends {kind} events",
                "channel": {"$ref": f"#/channels/{kind}"},
                "messages": [{"$ref": f"#/channels/{kind}/messages/{tag}"} for tag in tags],
            }
            for kind, tags in kinds.items()
        },
        "components": {
            "schemas": {ENVELOPE: envelope_schema(), **dict(sorted(components.items()))},
            "messages": {tag: _message(tag, cls) for tag, cls in sorted(EVENT_TYPES.items())},
        },
    }


def asyncapi_yaml() -> bytes:
    return yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=120).encode()


# ---------------------------------------------------------------- files


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in schemas().items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": stem, **schema}
        path = directory / f"{stem}.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(schema)) + b"\n")
        written.append(path)
    path = directory / ASYNCAPI_FILE
    path.write_bytes(asyncapi_yaml())
    written.append(path)
    return written
