"""Requests and replies of the api service (request-reply on `dy.api.<verb>`)."""

from __future__ import annotations

from typing import Any

import msgspec

SUBJECT_APPLY = "dy.api.apply"
SUBJECT_DELETE = "dy.api.delete"
SUBJECT_GET = "dy.api.get"
SUBJECT_LIST = "dy.api.list"
SUBJECT_SCALE = "dy.api.scale"
SUBJECT_ROLLOUT = "dy.api.rollout"
SUBJECT_CORDON = "dy.api.cordon"
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
    reason: str = ""  # e.g. Evicted: why a pod goes, for the controller and the record


class ScaleRequest(_Request, kw_only=True):
    """Set a deployment's replicas."""

    name: str
    namespace: str = ""
    replicas: int
    actor: str
    command_id: str
    dry_run: bool = False


class RolloutRequest(_Request, kw_only=True):
    """restart | undo | pause | resume a deployment's rollout; undo goes to `to_revision` (0: the previous)."""

    action: str
    name: str
    namespace: str = ""
    to_revision: int = 0
    actor: str
    command_id: str
    dry_run: bool = False


class CordonRequest(_Request, kw_only=True):
    """Mark a node unschedulable (cordon) or schedulable again (uncordon)."""

    name: str
    unschedulable: bool
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
    result: str  # created | configured | unchanged | deleted | scaled | restarted | rolled back | cordoned ...
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
