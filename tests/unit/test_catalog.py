"""The committed event catalog matches the code, and its AsyncAPI document hangs together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dockyard.schemas.catalog import ASYNCAPI_FILE, asyncapi, export
from dockyard.schemas.events import EVENT_TYPES

COMMITTED = Path(__file__).resolve().parents[2] / "catalog"
REGENERATE = "run `dockyard schemas export catalog` and commit"


def resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_committed_catalog_is_what_the_code_generates(tmp_path):
    export(tmp_path)
    generated = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir()} if COMMITTED.is_dir() else {}
    missing = sorted(generated.keys() - committed.keys())
    stale = sorted(committed.keys() - generated.keys())
    changed = sorted(name for name in generated.keys() & committed.keys() if generated[name] != committed[name])
    assert not (missing or stale or changed), (
        f"the committed catalog differs from the code: {REGENERATE} "
        f"(new: {missing}, no longer generated, delete them: {stale}, changed: {changed})"
    )


def test_asyncapi_has_a_message_for_every_event_type_on_its_kinds_channel():
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["components"]["messages"]) == set(EVENT_TYPES)
    for tag, cls in EVENT_TYPES.items():
        channel = document["channels"][cls.KIND]
        assert channel["address"] == f"dy.evt.{cls.KIND}.>"
        assert tag in channel["messages"]


def test_every_reference_in_the_asyncapi_document_resolves():
    document = asyncapi()
    for ref in refs(document):
        assert resolve(document, ref), ref


def test_operations_use_their_own_channels_messages():
    document = asyncapi()
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"]
        assert all(m["$ref"].startswith(f"{channel}/messages/") for m in operation["messages"])


@pytest.mark.parametrize("header", ["Dy-Event-Type", "Dy-Schema-Version", "Dy-Actor", "Dy-Time"])
def test_the_written_document_declares_the_envelope_headers(header, tmp_path):
    export(tmp_path)
    document = yaml.safe_load((tmp_path / ASYNCAPI_FILE).read_text())
    envelope = resolve(document, document["components"]["messages"]["pod.created.v1"]["headers"]["$ref"])
    assert header in envelope["required"]
