"""The event catalog: a JSON Schema for every event and manifest kind, for integrations to read."""

from __future__ import annotations

from pathlib import Path

import msgspec

from dockyard.schemas.events import EVENT_TYPES
from dockyard.schemas.manifests import KINDS


def schemas() -> dict[str, dict]:
    """File stem -> JSON Schema: `event.pod.scheduled.v1`, `manifest.Deployment`."""
    result = {f"event.{tag}": msgspec.json.schema(cls) for tag, cls in sorted(EVENT_TYPES.items())}
    result.update({f"manifest.{kind}": msgspec.json.schema(cls) for kind, cls in sorted(KINDS.items())})
    return result


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in schemas().items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": stem, **schema}
        path = directory / f"{stem}.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(schema)) + b"\n")
        written.append(path)
    return written
