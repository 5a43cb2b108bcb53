"""The monitoring service's ClusterView, keeping of each pod only what health and metrics read.

A pod as the log carries it (template, labels, probes, conditions) is some 3 KB in memory; at
50,000 pods that alone is most of the service's memory. The fold is the shared one (`evolve`);
after it, a pod is cut down to its name, creation time, node, phase and container restarts.
"""

from __future__ import annotations

import sys

from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.manifests import ContainerStatus, ObjectMeta, Pod, PodSpec, PodStatus
from dockyard.view import ClusterView

_NO_CONTAINERS: tuple = ()


def slim_pod(pod: Pod) -> Pod:
    """The pod with what monitoring reads, the rest left at defaults (shared, so nearly free)."""
    meta = pod.metadata
    restarts = tuple(ContainerStatus(name=sys.intern(c.name), restart_count=c.restart_count)
                     for c in pod.status.container_statuses)
    return Pod(metadata=ObjectMeta(name=meta.name, namespace=sys.intern(meta.namespace),
                                   creation_timestamp=meta.creation_timestamp),
               spec=PodSpec(containers=_NO_CONTAINERS, node_name=sys.intern(pod.spec.node_name)),
               status=PodStatus(phase=sys.intern(pod.status.phase), container_statuses=restarts))


class SlimView(ClusterView):
    """A ClusterView whose pods are slim (see `slim_pod`); deployments and nodes are kept whole."""

    def apply(self, record: EventRecord) -> None:
        super().apply(record)
        if record.subject.startswith("dy.evt.pod."):
            key = parse_subject(record.subject)[1:]
            pod = self.pods.get(key)
            if pod is not None:
                self.pods[key] = slim_pod(pod)
