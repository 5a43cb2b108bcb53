"""Pure reconciliation of a deployment: from desired state, observed pods and the clock, the actions to take.

Kubernetes' rolling-update arithmetic (maxSurge rounds up, maxUnavailable rounds down, old
unhealthy replicas go first, availability never below replicas - maxUnavailable), without
ReplicaSets: pods carry their template's hash and revisions are recorded on the deployment.
A revision records the template its pods run, with its images pinned to digests from the
registry index when it was recorded: the hash names the deployment's template, the pods run
the revision's, so a re-pushed tag changes nothing until a new revision (`rollout restart`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable

import msgspec

from dockyard.schemas.manifests import (
    Condition,
    Deployment,
    DeploymentStatus,
    ObjectMeta,
    Pod,
    PodTemplateSpec,
)
from dockyard.services.registry_indexer.pinning import IMAGE_NOT_FOUND, Pinned, TagDigests, pin_template

TEMPLATE_HASH_LABEL = "pod-template-hash"
OWNER_ANNOTATION = "dockyard.io/deployment"
OWNER_UID_ANNOTATION = "dockyard.io/deployment-uid"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"

_encoder = msgspec.json.Encoder(order="sorted")
_replace = msgspec.structs.replace


class CreatePod(msgspec.Struct, frozen=True):
    pod: Pod


class DeletePod(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    reason: str


class RecordRevision(msgspec.Struct, frozen=True):
    revision: int
    template_hash: str
    template: PodTemplateSpec


class SetStatus(msgspec.Struct, frozen=True):
    status: DeploymentStatus


Action = CreatePod | DeletePod | RecordRevision | SetStatus


class Revision(msgspec.Struct, frozen=True):
    revision: int
    template_hash: str
    template: PodTemplateSpec | None = None  # what its pods run (images pinned); None: the deployment's


NO_INDEX = TagDigests()


def template_hash(template: PodTemplateSpec) -> str:
    """A short, stable name for a pod template (Kubernetes' pod-template-hash)."""
    return hashlib.sha256(_encoder.encode(template)).hexdigest()[:10]


def scaled_value(value: int | str, replicas: int, round_up: bool) -> int:
    """maxSurge / maxUnavailable: an absolute count or a percentage of replicas."""
    if isinstance(value, int):
        return value
    fraction = float(value.rstrip("%")) / 100 * replicas
    return math.ceil(fraction) if round_up else math.floor(fraction)


def rolling_limits(deployment: Deployment) -> tuple[int, int]:
    """(max surge, max unavailable) for this deployment; never both zero."""
    replicas = deployment.spec.replicas
    rolling = deployment.spec.strategy.rolling_update
    surge = scaled_value(rolling.max_surge if rolling else "25%", replicas, round_up=True)
    unavailable = scaled_value(rolling.max_unavailable if rolling else "25%", replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _parse_time(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_ready(pod: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def is_available(pod: Pod, min_ready_seconds: int, now: dt.datetime) -> bool:
    """Ready, and for at least minReadySeconds."""
    for condition in pod.status.conditions:
        if condition.type == "Ready" and condition.status == "True":
            if min_ready_seconds <= 0:
                return True
            since = _parse_time(condition.last_transition_time)
            return since is not None and (now - since).total_seconds() >= min_ready_seconds
    return False


def is_finished(pod: Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def owned_by(pod: Pod, deployment: Deployment) -> bool:
    return (pod.metadata.namespace == deployment.metadata.namespace
            and pod.metadata.annotations.get(OWNER_ANNOTATION) == deployment.metadata.name)


def _pod_name(deployment: Deployment, hash_: str, now: dt.datetime, index: int, taken: set[str]) -> str:
    attempt = 0
    while True:
        seed = f"{deployment.metadata.uid}/{hash_}/{now.isoformat()}/{index}/{attempt}"
        name = f"{deployment.metadata.name}-{hash_[:5]}-{hashlib.sha1(seed.encode()).hexdigest()[:5]}"
        if name not in taken:
            return name
        attempt += 1


def new_pod(deployment: Deployment, template: PodTemplateSpec, hash_: str, name: str) -> Pod:
    labels = dict(sorted({**template.metadata.labels, TEMPLATE_HASH_LABEL: hash_}.items()))
    annotations = dict(sorted({**template.metadata.annotations, OWNER_ANNOTATION: deployment.metadata.name,
                               OWNER_UID_ANNOTATION: deployment.metadata.uid}.items()))
    meta = ObjectMeta(name=name, namespace=deployment.metadata.namespace, labels=labels, annotations=annotations)
    return Pod(metadata=meta, spec=template.spec)


def _unready_first(pods: Iterable[Pod], min_ready: int, now: dt.datetime) -> list[Pod]:
    """Deletion order: not available first, then the newest (as Kubernetes picks)."""
    newest_first = sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name), reverse=True)
    return sorted(newest_first, key=lambda p: is_available(p, min_ready, now))


def reconcile_deployment(deployment: Deployment, pods: list[Pod], revisions: list[Revision],
                         now: dt.datetime, images: TagDigests = NO_INDEX) -> list[Action]:
    """What to do so `pods` converge on `deployment`; a pure function of its arguments."""
    spec = deployment.spec
    hash_ = template_hash(spec.template)
    actions: list[Action] = []
    if revisions and revisions[-1].template_hash == hash_:
        template = revisions[-1].template or spec.template
    else:
        pinned = pin_template(spec.template, images)
        if isinstance(pinned, Pinned):  # no revision, so no pods, until the index holds the image
            live = [p for p in pods if p.status.phase != "Failed"]
            return [SetStatus(status=image_not_found_status(deployment, live, hash_, now, pinned.message))]
        template = pinned
        revision = max((r.revision for r in revisions), default=0) + 1
        actions.append(RecordRevision(revision=revision, template_hash=hash_, template=template))

    failed = [p for p in pods if p.status.phase == "Failed"]
    actions += [DeletePod(p.metadata.namespace, p.metadata.name, "Failed") for p in failed]
    live = [p for p in pods if p.status.phase != "Failed"]
    new = [p for p in live if p.metadata.labels.get(TEMPLATE_HASH_LABEL) == hash_]
    old = [p for p in live if p.metadata.labels.get(TEMPLATE_HASH_LABEL) != hash_]

    if not spec.paused:
        if spec.strategy.type == "Recreate":
            actions += _recreate(deployment, template, new, old, hash_, now, pods)
        else:
            actions += _rolling(deployment, template, new, old, hash_, now, pods)
    actions.append(SetStatus(status=deployment_status(deployment, live, hash_, now)))
    return actions


def _create(deployment: Deployment, template: PodTemplateSpec, count: int, hash_: str, now: dt.datetime,
            pods: list[Pod]) -> list[Action]:
    taken = {p.metadata.name for p in pods}
    created = []
    for index in range(count):
        name = _pod_name(deployment, hash_, now, index, taken)
        taken.add(name)
        created.append(CreatePod(new_pod(deployment, template, hash_, name)))
    return created


def _delete(pods: Iterable[Pod], reason: str) -> list[Action]:
    return [DeletePod(p.metadata.namespace, p.metadata.name, reason) for p in pods]


def _recreate(deployment: Deployment, template: PodTemplateSpec, new: list[Pod], old: list[Pod], hash_: str,
              now: dt.datetime, pods: list[Pod]) -> list[Action]:
    if old:
        return _delete(old, "Replaced")
    return _scale(deployment, template, new, hash_, now, pods)


def _scale(deployment: Deployment, template: PodTemplateSpec, new: list[Pod], hash_: str, now: dt.datetime,
           pods: list[Pod]) -> list[Action]:
    replicas = deployment.spec.replicas
    if len(new) < replicas:
        return _create(deployment, template, replicas - len(new), hash_, now, pods)
    extra = _unready_first(new, deployment.spec.min_ready_seconds, now)[: len(new) - replicas]
    return _delete(extra, "ScaledDown")


def _rolling(deployment: Deployment, template: PodTemplateSpec, new: list[Pod], old: list[Pod], hash_: str,
             now: dt.datetime, pods: list[Pod]) -> list[Action]:
    replicas, min_ready = deployment.spec.replicas, deployment.spec.min_ready_seconds
    if not old:
        return _scale(deployment, template, new, hash_, now, pods)
    surge, max_unavailable = rolling_limits(deployment)
    total = len(new) + len(old)
    actions: list[Action] = []

    # Scale the new revision up, as far as surge allows.
    room = min(replicas + surge - total, replicas - len(new))
    if room > 0:
        actions += _create(deployment, template, room, hash_, now, pods)
    elif len(new) > replicas:
        actions += _delete(_unready_first(new, min_ready, now)[: len(new) - replicas], "ScaledDown")

    # Scale the old revisions down, never below replicas - maxUnavailable available; pods
    # just created count as there but unavailable, as a scaled-up ReplicaSet's would.
    created = max(room, 0)
    min_available = replicas - max_unavailable
    new_unavailable = sum(1 for p in new if not is_available(p, min_ready, now)) + created
    budget = total + created - min_available - new_unavailable
    if budget <= 0:
        return actions
    unhealthy = [p for p in old if not is_available(p, min_ready, now)]
    doomed = unhealthy[:budget]
    available = sum(1 for p in new + old if is_available(p, min_ready, now))
    healthy_budget = min(budget - len(doomed), available - min_available)
    healthy = sorted((p for p in old if is_available(p, min_ready, now)),
                     key=lambda p: p.metadata.creation_timestamp)
    doomed += healthy[: max(0, healthy_budget)]
    return actions + _delete(doomed, "Replaced")


def deployment_status(deployment: Deployment, pods: list[Pod], hash_: str, now: dt.datetime) -> DeploymentStatus:
    spec, min_ready = deployment.spec, deployment.spec.min_ready_seconds
    updated = [p for p in pods if p.metadata.labels.get(TEMPLATE_HASH_LABEL) == hash_]
    ready = sum(1 for p in pods if is_ready(p))
    available = sum(1 for p in pods if is_available(p, min_ready, now))
    _, max_unavailable = rolling_limits(deployment)
    complete = (len(updated) == spec.replicas == len(pods)
                and sum(1 for p in updated if is_available(p, min_ready, now)) == spec.replicas)
    conditions = (
        Condition(type="Available", status="True" if available >= spec.replicas - max_unavailable else "False",
                  reason="MinimumReplicasAvailable" if available >= spec.replicas - max_unavailable
                  else "MinimumReplicasUnavailable"),
        Condition(type="Progressing", status="True",
                  reason="NewReplicaSetAvailable" if complete else "ReplicaSetUpdated"),
    )
    return DeploymentStatus(
        observed_generation=deployment.metadata.generation,
        replicas=len(pods),
        updated_replicas=len(updated),
        ready_replicas=ready,
        available_replicas=available,
        unavailable_replicas=max(0, spec.replicas - available),
        conditions=conditions,
    )


def image_not_found_status(deployment: Deployment, pods: list[Pod], hash_: str, now: dt.datetime,
                           message: str) -> DeploymentStatus:
    """The status while the template's image is not in the index: Progressing=False, ImageNotFound."""
    status = deployment_status(deployment, pods, hash_, now)
    stuck = Condition(type="Progressing", status="False", reason=IMAGE_NOT_FOUND, message=message)
    return _replace(status, conditions=tuple(stuck if c.type == "Progressing" else c for c in status.conditions))


def same_status(a: DeploymentStatus, b: DeploymentStatus) -> bool:
    """Equal but for transition times: the controller appends a status only when it changed."""
    strip = lambda s: _replace(s, conditions=tuple(_replace(c, last_transition_time="") for c in s.conditions))  # noqa: E731
    return strip(a) == strip(b)
