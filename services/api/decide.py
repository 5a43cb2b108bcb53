"""Pure decisions of the api: what an apply or a delete does to an aggregate."""

from __future__ import annotations

import msgspec

from dockyard.schemas.base import Event
from dockyard.schemas.events import (
    DeploymentCreated,
    DeploymentDeleted,
    DeploymentUpdated,
    NodeDeregistered,
    NodeRegistered,
    NodeUpdated,
    PodCreated,
    PodDeleted,
    PodUpdated,
)
from dockyard.schemas.manifests import Deployment, Node, Pod
from dockyard.state import Resource

_replace = msgspec.structs.replace

# kind -> (subject kind token, created, updated, deleted)
LIFECYCLE: dict[str, tuple[str, type[Event], type[Event], type[Event]]] = {
    "Deployment": ("deployment", DeploymentCreated, DeploymentUpdated, DeploymentDeleted),
    "Pod": ("pod", PodCreated, PodUpdated, PodDeleted),
    "Node": ("node", NodeRegistered, NodeUpdated, NodeDeregistered),
}
_PAYLOAD_FIELD = {Deployment: "deployment", Pod: "pod", Node: "node"}

CREATED = "created"
CONFIGURED = "configured"
UNCHANGED = "unchanged"
DELETED = "deleted"


def subject_kind(kind: str) -> str:
    return LIFECYCLE[kind][0]


def _event(cls: type[Event], resource: Resource) -> Event:
    return cls(**{_PAYLOAD_FIELD[type(resource)]: resource})


SERVER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/",)


def _keep_server_fields(current: Resource, incoming: Resource) -> Resource:
    """Fields the cluster sets (a pod's node, a deployment's revision) survive an apply that leaves them out."""
    if isinstance(current, Pod) and not incoming.spec.node_name and current.spec.node_name:
        incoming = _replace(incoming, spec=_replace(incoming.spec, node_name=current.spec.node_name))
    kept = {k: v for k, v in current.metadata.annotations.items() if k.startswith(SERVER_ANNOTATION_PREFIXES)}
    if kept:
        annotations = dict(sorted({**incoming.metadata.annotations, **kept}.items()))
        incoming = _replace(incoming, metadata=_replace(incoming.metadata, annotations=annotations))
    return incoming


def decide_apply(current: Resource | None, incoming: Resource, *, now: str, new_uid: str) -> tuple[str, Event | None]:
    """created / configured / unchanged, and the event that says so (None when unchanged).

    A changed spec bumps metadata.generation; a change of labels or annotations does not.
    """
    _, created, updated, _ = LIFECYCLE[incoming.kind]
    if current is None:
        meta = _replace(incoming.metadata, uid=new_uid, generation=1, creation_timestamp=now, resource_version="")
        return CREATED, _event(created, _replace(incoming, metadata=meta))
    incoming = _keep_server_fields(current, incoming)
    spec_changed = incoming.spec != current.spec
    meta_changed = (incoming.metadata.labels, incoming.metadata.annotations) != (
        current.metadata.labels,
        current.metadata.annotations,
    )
    if not spec_changed and not meta_changed:
        return UNCHANGED, None
    meta = _replace(
        incoming.metadata,
        uid=current.metadata.uid,
        generation=current.metadata.generation + (1 if spec_changed else 0),
        creation_timestamp=current.metadata.creation_timestamp,
        resource_version="",
    )
    return CONFIGURED, _event(updated, _replace(incoming, metadata=meta, status=type(incoming.status)()))


def decide_delete(current: Resource | None, kind: str, reason: str = "") -> Event | None:
    """The deletion event, or None if there is nothing to delete."""
    if current is None:
        return None
    return PodDeleted(reason=reason) if kind == "Pod" else LIFECYCLE[kind][3]()


class Refusal(Exception):
    """A command that cannot apply to the aggregate as it is (the api turns it into an error)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _updated_deployment(current: Deployment, spec, result: str) -> tuple[str, Event]:
    """A spec change to a deployment: generation + 1, status kept out of the event."""
    meta = _replace(current.metadata, generation=current.metadata.generation + 1, resource_version="")
    return result, DeploymentUpdated(deployment=_replace(current, metadata=meta, spec=spec,
                                                         status=type(current.status)()))


def _require_deployment(current: Resource | None, name: str) -> Deployment:
    if not isinstance(current, Deployment):
        raise Refusal("NotFound", f'deployments "{name}" not found')
    return current


def decide_scale(current: Resource | None, name: str, replicas: int) -> tuple[str, Event | None]:
    deployment = _require_deployment(current, name)
    if replicas < 0:
        raise Refusal("Invalid", "--replicas must be 0 or more")
    if deployment.spec.replicas == replicas:
        return UNCHANGED, None
    return _updated_deployment(deployment, _replace(deployment.spec, replicas=replicas), "scaled")


def revision_templates(history) -> dict[int, object]:
    """Revision number -> pod template, from a deployment's recorded revisions."""
    from dockyard.schemas.events import DeploymentRevisionRecorded

    return {r.event.revision: r.event.template for r in history if isinstance(r.event, DeploymentRevisionRecorded)}


def decide_rollout(current: Resource | None, name: str, action: str, history, now: str,
                   to_revision: int = 0) -> tuple[str, Event | None]:
    """restart, pause, resume, or undo (to `to_revision`, or the one before the current)."""
    deployment = _require_deployment(current, name)
    spec = deployment.spec
    if action == "restart":
        template = spec.template
        annotations = dict(sorted({**template.metadata.annotations, RESTARTED_AT: now}.items()))
        template = _replace(template, metadata=_replace(template.metadata, annotations=annotations))
        return _updated_deployment(deployment, _replace(spec, template=template), "restarted")
    if action in ("pause", "resume"):
        paused = action == "pause"
        if spec.paused == paused:
            return UNCHANGED, None
        return _updated_deployment(deployment, _replace(spec, paused=paused), f"{action}d")
    if action != "undo":
        raise Refusal("BadRequest", f'unknown rollout action "{action}" (restart, undo, pause, resume)')
    templates = revision_templates(history)
    # Like Kubernetes keeping revisionHistoryLimit old ReplicaSets: older revisions are gone.
    kept = sorted(templates)[-(spec.revision_history_limit + 1):]
    templates = {revision: templates[revision] for revision in kept}
    current_revision = max(templates, default=0)
    target = to_revision or max((r for r in templates if r < current_revision), default=0)
    if target not in templates:
        raise Refusal("NotFound", f"unable to find specified revision {to_revision}" if to_revision
                      else f'no rollout history found for deployment "{name}"')
    if templates[target] == spec.template:
        return "skipped rollback (current template already matches revision " + str(target) + ")", None
    return _updated_deployment(deployment, _replace(spec, template=templates[target]), "rolled back")


def decide_cordon(current: Resource | None, name: str, unschedulable: bool) -> tuple[str, Event | None]:
    if not isinstance(current, Node):
        raise Refusal("NotFound", f'nodes "{name}" not found')
    verb = "cordoned" if unschedulable else "uncordoned"
    if current.spec.unschedulable == unschedulable:
        return f"already {verb}", None
    meta = _replace(current.metadata, resource_version="")
    node = _replace(current, metadata=meta, spec=_replace(current.spec, unschedulable=unschedulable),
                    status=type(current.status)())
    return verb, NodeUpdated(node=node)
