"""Builders for test objects: valid manifests with the one field a test cares about changed."""

from __future__ import annotations

from typing import Any

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
