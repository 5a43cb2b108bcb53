"""Builders for test objects: valid manifests with the one field a test cares about changed."""

from __future__ import annotations

from typing import Any

from dockyard.eventlog import EventRecord
from dockyard.manifests import validate
from dockyard.schemas.manifests import Deployment, Pod


def pod_manifest(name: str = "web-1", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dockyard.io/v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}], **spec},
    }


def deployment_manifest(name: str = "web", namespace: str = "default", replicas: int = 3,
                        image: str = "nginx:1.27", cpu: Any = "250m") -> dict[str, Any]:
    return {
        "apiVersion": "dockyard.io/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image,
                                         "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
            },
        },
    }


def make_pod(name: str = "web-1", namespace: str = "default", **spec: Any) -> Pod:
    return validate(pod_manifest(name, namespace, **spec))


def make_deployment(name: str = "web", namespace: str = "default", **fields: Any) -> Deployment:
    return validate(deployment_manifest(name, namespace, **fields))


def event_record(seq: int, subject: str, event: Any, time: str = "2026-11-26T10:00:00Z") -> EventRecord:
    """`event` as the log hands it back: at stream sequence `seq` on `subject`."""
    return EventRecord(seq=seq, subject=subject, type=event.type_name(), version=1, time=time, actor="test",
                       correlation_id="", causation_id="", msg_id="", event=event)
