"""Reconcile with a registry index: revisions pin tags to digests, and a missing image is ImageNotFound."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.events import ImageIndexed
from dockyard.services.controller.reconcile import (
    CreatePod,
    RecordRevision,
    Revision,
    SetStatus,
    reconcile_deployment,
    template_hash,
)
from dockyard.services.registry_indexer.pinning import IMAGE_NOT_FOUND, TagDigests
from tests.unit.test_reconcile import NOW, deployment, pod_of

REF = "reg:5000/team/web:1.0"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
_replace = msgspec.structs.replace


def index_with(digest: str) -> TagDigests:
    digests = TagDigests()
    digests.evolve(ImageIndexed(registry="reg:5000", repository="team/web", tag="1.0", digest=digest, media_type="x"))
    return digests


def with_image(template, image: str):
    containers = tuple(_replace(c, image=image) for c in template.spec.containers)
    return _replace(template, spec=_replace(template.spec, containers=containers))


def recorded(d, digest: str) -> list[Revision]:
    """Revision 1 of `d`, recorded when the tag named `digest`."""
    pinned = with_image(d.spec.template, f"reg:5000/team/web@{digest}")
    return [Revision(revision=1, template_hash=template_hash(d.spec.template), template=pinned)]


def of_type(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def created_images(actions) -> set[str]:
    return {c.image for a in of_type(actions, CreatePod) for c in a.pod.spec.containers}


def test_a_new_revision_runs_its_pods_on_the_digest_the_tag_names():
    d = deployment(2, image=REF)
    actions = reconcile_deployment(d, [], [], NOW, index_with(D1))
    (revision,) = of_type(actions, RecordRevision)
    assert revision.template_hash == template_hash(d.spec.template)  # the hash names the deployment's template
    assert [c.image for c in revision.template.spec.containers] == [f"reg:5000/team/web@{D1}"]
    assert created_images(actions) == {f"reg:5000/team/web@{D1}"}


@pytest.mark.parametrize("pods", [0, 1], ids=["scale-up", "replace-one"])
def test_a_re_pushed_tag_does_not_change_the_revision_s_pods(pods):
    d = deployment(2, image=REF)
    running = [pod_of(d, f"p{i}", image=f"reg:5000/team/web@{D1}") for i in range(pods)]
    running = [_replace(p, metadata=_replace(p.metadata, labels={**p.metadata.labels,
                                                                 "pod-template-hash": template_hash(d.spec.template)}))
               for p in running]
    actions = reconcile_deployment(d, running, recorded(d, D1), NOW, index_with(D2))
    assert of_type(actions, RecordRevision) == []
    assert created_images(actions) == {f"reg:5000/team/web@{D1}"}


def test_a_restart_is_a_new_revision_and_picks_up_the_new_digest():
    d = deployment(1, image=REF)
    template = d.spec.template
    restarted = _replace(template, metadata=_replace(template.metadata, annotations={"restartedAt": "now"}))
    d2 = _replace(d, spec=_replace(d.spec, template=restarted))
    actions = reconcile_deployment(d2, [], recorded(d, D1), NOW, index_with(D2))
    assert [r.revision for r in of_type(actions, RecordRevision)] == [2]
    assert created_images(actions) == {f"reg:5000/team/web@{D2}"}


def test_an_image_the_index_lacks_is_image_not_found_and_creates_nothing():
    d = deployment(3, image="reg:5000/team/web:9.9")
    old = [pod_of(d, f"old{i}", image=f"reg:5000/team/web@{D1}") for i in range(3)]
    actions = reconcile_deployment(d, old, recorded(deployment(3, image=REF), D1), NOW, index_with(D1))
    (status,) = [a.status for a in actions]  # nothing but the status: no revision, no pods, no deletes
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", IMAGE_NOT_FOUND)
    assert "reg:5000/team/web:9.9" in progressing.message
    assert status.replicas == 3 and status.updated_replicas == 0


def test_images_in_no_indexed_registry_run_as_written():
    d = deployment(2, image="nginx:1")
    with_index = reconcile_deployment(d, [], [], NOW, index_with(D1))
    assert created_images(with_index) == {"nginx:1"}
    assert of_type(with_index, SetStatus) == of_type(reconcile_deployment(d, [], [], NOW), SetStatus)
