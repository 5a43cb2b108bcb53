"""Requests and replies of the api service (request-reply on `dy.api.<verb>`)."""

from __future__ import annotations

from typing import Any

import msgspec

SUBJECT_APPLY = "dy.api.apply"
SUBJECT_DELETE = "dy.api.delete"
SUBJECT_GET = "dy.api.get"
SUBJECT_LIST = "dy.api.list"
QUEUE_GROUP = "dy-api"


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ApplyRequest(_Request, kw_only=True):
    """Create or update one object from its manifest (the raw, decoded document)."""

    manifest: dict[str, Any]
    actor: str
    command_id: str
    dry_run: bool = False


class DeleteRequest(_Request, kw_only=True):
    kind: str
    name: str
    namespace: str = ""
    actor: str
    command_id: str
    dry_run: bool = False


class GetRequest(_Request, kw_only=True):
    kind: str
    name: str
    namespace: str = ""


class ListRequest(_Request, kw_only=True):
    kind: str
    namespace: str = ""  # "" means all namespaces
    selector: str = ""
    limit: int = 500
    continue_token: str = ""


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a request failed: `code` is NotFound, Invalid, Conflict, BadRequest or Internal."""

    code: str
    message: str
    details: tuple[str, ...] = ()


class ApplyResult(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    name: str
    namespace: str
    result: str  # created | configured | unchanged | deleted
    seq: int = 0
    object: dict[str, Any] | None = None


class ObjectList(msgspec.Struct, frozen=True, kw_only=True):
    items: tuple[dict[str, Any], ...]
    continue_token: str = ""
    position: int = 0  # the projection's stream position the list reflects


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    error: ApiError | None = None
    applied: ApplyResult | None = None
    object: dict[str, Any] | None = None
    list: ObjectList | None = None
