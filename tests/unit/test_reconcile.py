"""The controller's pure reconcile: table-driven, one expectation object and one assert helper."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import msgspec
import pytest

from dockyard.schemas.manifests import Condition, PodStatus
from services.controller.reconcile import (
    OWNER_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    CreatePod,
    DeletePod,
    RecordRevision,
    Revision,
    SetStatus,
    reconcile_deployment,
    template_hash,
)
from tests.builders import make_deployment, make_pod

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
_replace = msgspec.structs.replace


def deployment(replicas=3, image="nginx:1", max_unavailable=None, max_surge=None, paused=False,
               strategy="RollingUpdate", min_ready=0):
    d = make_deployment("web", replicas=replicas, image=image)
    rolling = d.spec.strategy.rolling_update
    if max_unavailable is not None or max_surge is not None:
        from dockyard.schemas.manifests import RollingUpdate

        rolling = RollingUpdate(max_surge=max_surge if max_surge is not None else "25%",
                                max_unavailable=max_unavailable if max_unavailable is not None else "25%")
    strategy_ = _replace(d.spec.strategy, type=strategy, rolling_update=rolling if strategy == "RollingUpdate" else None)
    spec = _replace(d.spec, strategy=strategy_, paused=paused, min_ready_seconds=min_ready)
    meta = _replace(d.metadata, uid="dep-uid", generation=2)
    return _replace(d, metadata=meta, spec=spec)


def pod_of(d, name, ready=True, phase="Running", image=None, created="2026-11-26T11:00:00Z", ready_since=None):
    template = d.spec.template
    if image:
        containers = tuple(_replace(c, image=image) for c in template.spec.containers)
        template = _replace(template, spec=_replace(template.spec, containers=containers))
    p = make_pod(name)
    labels = {**template.metadata.labels, TEMPLATE_HASH_LABEL: template_hash(template)}
    meta = _replace(p.metadata, labels=labels, annotations={OWNER_ANNOTATION: "web"}, creation_timestamp=created)
    conditions = (Condition(type="Ready", status="True" if ready else "False",
                            last_transition_time=ready_since or created),)
    return _replace(p, metadata=meta, spec=template.spec, status=PodStatus(phase=phase, conditions=conditions))


@dataclass
class Expect:
    created: int = 0
    deleted: tuple[str, ...] = ()
    revision: int | None = None
    ready: int | None = None


def check(actions, expect: Expect) -> None:
    created = [a for a in actions if isinstance(a, CreatePod)]
    deleted = tuple(sorted(a.name for a in actions if isinstance(a, DeletePod)))
    revisions = [a.revision for a in actions if isinstance(a, RecordRevision)]
    status = [a.status for a in actions if isinstance(a, SetStatus)]
    assert len(created) == expect.created
    assert deleted == tuple(sorted(expect.deleted))
    assert revisions == ([] if expect.revision is None else [expect.revision])
    assert len(status) == 1
    if expect.ready is not None:
        assert status[0].ready_replicas == expect.ready
    for action in created:
        assert action.pod.metadata.annotations[OWNER_ANNOTATION] == "web"
        assert action.pod.metadata.labels[TEMPLATE_HASH_LABEL]


def revisions_for(d, *images):
    hashes = []
    for image in images:
        containers = tuple(_replace(c, image=image) for c in d.spec.template.spec.containers)
        t = _replace(d.spec.template, spec=_replace(d.spec.template.spec, containers=containers))
        hashes.append(template_hash(t))
    return [Revision(revision=i + 1, template_hash=h) for i, h in enumerate(hashes)]


CASES = {
    "new deployment creates all replicas and revision 1": (
        lambda: (deployment(3), [], []), Expect(created=3, revision=1, ready=0)),
    "converged does nothing": (
        lambda: (deployment(3), [pod_of(deployment(3), f"p{i}") for i in range(3)],
                 revisions_for(deployment(3), "nginx:1")), Expect(ready=3)),
    "scale down removes unready, then newest": (
        lambda: (deployment(1), [pod_of(deployment(1), "old", created="2026-11-26T10:00:00Z"),
                                 pod_of(deployment(1), "new", created="2026-11-26T11:30:00Z"),
                                 pod_of(deployment(1), "sick", ready=False)],
                 revisions_for(deployment(1), "nginx:1")), Expect(deleted=("new", "sick"))),
    "rolling update of 6 with maxUnavailable 1: surge 2, retire 1": (
        lambda: (deployment(6, image="nginx:2", max_unavailable=1),
                 [pod_of(deployment(6), f"old{i}", image="nginx:1") for i in range(6)],
                 revisions_for(deployment(6), "nginx:1")), Expect(created=2, deleted=("old0",), revision=2)),
    "rolling update waits while new pods are not ready": (
        lambda: (deployment(6, image="nginx:2", max_unavailable=1),
                 [pod_of(deployment(6), f"old{i}", image="nginx:1") for i in range(5)]
                 + [pod_of(deployment(6, image="nginx:2"), f"new{i}", ready=False) for i in range(2)],
                 revisions_for(deployment(6), "nginx:1", "nginx:2")), Expect(created=1)),
    "rolling update retires old as new become ready": (
        lambda: (deployment(6, image="nginx:2", max_unavailable=1),
                 [pod_of(deployment(6), f"old{i}", image="nginx:1") for i in range(5)]
                 + [pod_of(deployment(6, image="nginx:2"), f"new{i}") for i in range(2)],
                 revisions_for(deployment(6), "nginx:1", "nginx:2")),
        Expect(created=1, deleted=("old0", "old1"))),
    "surge before retiring when nothing may be unavailable": (
        lambda: (deployment(3, image="nginx:2", max_unavailable=0, max_surge=1),
                 [pod_of(deployment(3), "old0", image="nginx:1"), pod_of(deployment(3), "old1", image="nginx:1"),
                  pod_of(deployment(3), "old2", image="nginx:1", ready=False)],
                 revisions_for(deployment(3), "nginx:1")), Expect(created=1, revision=2)),
    "unready old pods go first": (
        lambda: (deployment(3, image="nginx:2", max_unavailable=0, max_surge=1),
                 [pod_of(deployment(3), "old0", image="nginx:1"), pod_of(deployment(3), "old1", image="nginx:1"),
                  pod_of(deployment(3), "old2", image="nginx:1", ready=False),
                  pod_of(deployment(3, image="nginx:2"), "new0")],
                 revisions_for(deployment(3), "nginx:1", "nginx:2")), Expect(deleted=("old2",))),
    "failed pods are replaced": (
        lambda: (deployment(2), [pod_of(deployment(2), "ok"), pod_of(deployment(2), "dead", phase="Failed")],
                 revisions_for(deployment(2), "nginx:1")), Expect(created=1, deleted=("dead",))),
    "paused does not roll": (
        lambda: (deployment(3, image="nginx:2", paused=True),
                 [pod_of(deployment(3), f"p{i}", image="nginx:1") for i in range(3)],
                 revisions_for(deployment(3), "nginx:1")), Expect(revision=2)),
    "recreate deletes all old first": (
        lambda: (deployment(2, image="nginx:2", strategy="Recreate"),
                 [pod_of(deployment(2), f"p{i}", image="nginx:1") for i in range(2)],
                 revisions_for(deployment(2), "nginx:1")), Expect(deleted=("p0", "p1"), revision=2)),
    "minReadySeconds holds back availability": (
        lambda: (deployment(2, image="nginx:2", max_unavailable=0, max_surge=1, min_ready=30),
                 [pod_of(deployment(2), "old0", image="nginx:1", ready_since="2026-11-26T11:00:00Z"),
                  pod_of(deployment(2), "old1", image="nginx:1", ready_since="2026-11-26T11:00:00Z"),
                  pod_of(deployment(2, image="nginx:2"), "new0", ready_since="2026-11-26T11:59:50Z")],
                 revisions_for(deployment(2), "nginx:1", "nginx:2")), Expect()),
    "undo to an old template records a new revision": (
        lambda: (deployment(1, image="nginx:1"), [pod_of(deployment(1), "p", image="nginx:1")],
                 revisions_for(deployment(1), "nginx:1", "nginx:2")), Expect(revision=3)),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_reconcile(case):
    build, expect = CASES[case]
    d, pods, revisions = build()
    check(reconcile_deployment(d, pods, revisions, NOW), expect)


def test_status_counts_replicas():
    d = deployment(3)
    pods = [pod_of(d, "a"), pod_of(d, "b"), pod_of(d, "c", ready=False)]
    status = [a for a in reconcile_deployment(d, pods, revisions_for(d, "nginx:1"), NOW)
              if isinstance(a, SetStatus)][0].status
    assert (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas,
            status.unavailable_replicas, status.observed_generation) == (3, 3, 2, 2, 1, 2)


def test_pod_names_are_unique_and_stable_for_the_same_inputs():
    first = reconcile_deployment(deployment(5), [], [], NOW)
    again = reconcile_deployment(deployment(5), [], [], NOW)
    names = [a.pod.metadata.name for a in first if isinstance(a, CreatePod)]
    assert len(set(names)) == 5
    assert names == [a.pod.metadata.name for a in again if isinstance(a, CreatePod)]
