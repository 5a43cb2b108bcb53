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

# kind -> (created, updated, deleted)
LIFECYCLE: dict[str, tuple[type[Event], type[Event], type[Event]]] = {
    "Deployment": (DeploymentCreated, DeploymentUpdated, DeploymentDeleted),
    "Pod": (PodCreated, PodUpdated, PodDeleted),
    "Node": (NodeRegistered, NodeUpdated, NodeDeregistered),
}
_PAYLOAD_FIELD = {Deployment: "deployment", Pod: "pod", Node: "node"}

CREATED = "created"
CONFIGURED = "configured"
UNCHANGED = "unchanged"
DELETED = "deleted"


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


POD_UPDATE_FORBIDDEN = "pod updates may not change fields other than `spec.containers[*].image`"


def with_images_of(current: Pod, incoming: Pod) -> Pod:
    """`incoming` with `current`'s image for each container the two have by the same name."""
    images = {c.name: c.image for c in current.spec.containers}
    containers = tuple(_replace(c, image=images.get(c.name, c.image)) for c in incoming.spec.containers)
    return _replace(incoming, spec=_replace(incoming.spec, containers=containers))


def _refuse_pod_spec_change(current: Pod, incoming: Pod) -> None:
    """Like Kubernetes: only containers' images may change on a pod (its node restarts those containers);
    any other edit would silently not apply to containers that are already running."""
    images_kept = with_images_of(current, incoming)
    if images_kept.spec == current.spec:
        return
    what = ", ".join(_spec_changes(current, images_kept)) or "containers reordered"
    raise Refusal("Invalid", f'Pod "{current.metadata.name}" is invalid: spec: Forbidden: {POD_UPDATE_FORBIDDEN}'
                             f" ({what}); delete and re-create the pod, or use a Deployment")


def decide_apply(current: Resource | None, incoming: Resource, *, now: str, new_uid: str) -> tuple[str, Event | None]:
    """created / configured / unchanged, and the event that says so (None when unchanged).

    A changed spec bumps metadata.generation; a change of labels or annotations does not.
    A pod's spec is fixed once created (its node is set by scheduling, not by apply), but for its containers'
    images: changing anything else is a Refusal.
    """
    created, updated, _ = LIFECYCLE[incoming.kind]
    if current is None:
        meta = _replace(incoming.metadata, uid=new_uid, generation=1, creation_timestamp=now, resource_version="")
        return CREATED, _event(created, _replace(incoming, metadata=meta))
    incoming = _keep_server_fields(current, incoming)
    spec_changed = incoming.spec != current.spec
    if spec_changed and isinstance(current, Pod):
        _refuse_pod_spec_change(current, incoming)
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
    return PodDeleted(reason=reason) if kind == "Pod" else LIFECYCLE[kind][2]()


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


# ---------------------------------------------------------------- the audit trail's summary

SUMMARY_LIMIT = 200  # a line in `dockyard audit`, not a diff


def change_summary(current: Resource | None, incoming: Resource | None) -> str:
    """What a command changes, short and in a fixed order: `replicas 3→5, image web: a→b, labels +tier=web`.

    `incoming` is the object after the command (None once deleted); "" when nothing changes.
    """
    if current is None:
        return "" if incoming is None else CREATED
    if incoming is None:
        return DELETED
    parts = [*_spec_changes(current, incoming), *_metadata_changes(current.metadata, incoming.metadata)]
    summary = ", ".join(parts)
    return summary if len(summary) <= SUMMARY_LIMIT else summary[:SUMMARY_LIMIT - 1] + "…"


def _spec_changes(current: Resource, incoming: Resource) -> list[str]:
    if isinstance(current, Deployment) and isinstance(incoming, Deployment):
        return _deployment_changes(current.spec, incoming.spec)
    if isinstance(current, Pod) and isinstance(incoming, Pod):
        parts = _container_changes(current.spec.containers, incoming.spec.containers)
        unexplained = _replace(current.spec, containers=()) != _replace(incoming.spec, containers=())
        return parts + (["spec changed"] if unexplained else [])
    if isinstance(current, Node) and isinstance(incoming, Node):
        parts = [] if current.spec.unschedulable == incoming.spec.unschedulable else [
            "cordoned" if incoming.spec.unschedulable else "uncordoned"]
        unexplained = _replace(current.spec, unschedulable=False) != _replace(incoming.spec, unschedulable=False)
        return parts + (["spec changed"] if unexplained else [])
    return [] if current.spec == incoming.spec else ["spec changed"]


def _deployment_changes(current, incoming) -> list[str]:
    parts = []
    if current.replicas != incoming.replicas:
        parts.append(f"replicas {current.replicas}→{incoming.replicas}")
    if current.paused != incoming.paused:
        parts.append("paused" if incoming.paused else "resumed")
    # Only a new restart stamp is a restart; an undo dropping an old stamp is not.
    restarted_at = incoming.template.metadata.annotations.get(RESTARTED_AT)
    if restarted_at and restarted_at != current.template.metadata.annotations.get(RESTARTED_AT):
        parts.append("restarted")
    parts.extend(_container_changes(current.template.spec.containers, incoming.template.spec.containers))
    if _deployment_rest(current) != _deployment_rest(incoming):
        parts.append("spec changed")
    return parts


def _deployment_rest(spec):
    """The parts of a deployment spec the summary does not name one by one."""
    template = spec.template
    annotations = {k: v for k, v in template.metadata.annotations.items() if k != RESTARTED_AT}
    template = _replace(template, metadata=_replace(template.metadata, annotations=annotations),
                        spec=_replace(template.spec, containers=()))
    return _replace(spec, replicas=0, paused=False, template=template)


def _container_changes(current, incoming) -> list[str]:
    before = {c.name: c for c in current}
    after = {c.name: c for c in incoming}
    parts = []
    for name, container in after.items():
        old = before.get(name)
        if old is None:
            parts.append(f"+container {name}")
        elif old.image != container.image:
            parts.append(f"image {name}: {old.image}→{container.image}")
        elif old != container:
            parts.append(f"container {name} changed")
    parts.extend(f"-container {name}" for name in before if name not in after)
    return parts


def _metadata_changes(current, incoming) -> list[str]:
    parts = []
    labels = _label_changes(current.labels, incoming.labels)
    if labels:
        parts.append("labels " + " ".join(labels))
    if current.annotations != incoming.annotations:
        parts.append("annotations changed")
    return parts


def _label_changes(current: dict[str, str], incoming: dict[str, str]) -> list[str]:
    changes = []
    for key, value in sorted(incoming.items()):
        if key not in current:
            changes.append(f"+{key}={value}")
        elif current[key] != value:
            changes.append(f"{key}={current[key]}→{value}")
    changes.extend(f"-{key}" for key in sorted(current) if key not in incoming)
    return changes
