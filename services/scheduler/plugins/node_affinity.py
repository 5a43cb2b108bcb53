"""Filter: required node affinity: some term must match, and a term matches when all its expressions do."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.schemas.events import NodeRegistered, NodeUpdated
from dockyard.selectors import Requirement, matches
from dockyard.services.scheduler.snapshot import NodeInfo, PodRequest

NAME = "NodeAffinity"
STATIC = True
REQUEUE_ON = (NodeRegistered.type_name(), NodeUpdated.type_name())

AFFINITY_MISMATCH = "node affinity mismatch"

_NUMERIC = {"gt": int.__gt__, "lt": int.__lt__}


def _satisfied(labels: Mapping[str, str], requirement: Requirement) -> bool:
    compare = _NUMERIC.get(requirement.operator)
    if compare is None:  # In, NotIn, Exists, DoesNotExist: the label selectors' own rules
        return matches(labels, (requirement,))
    # Gt and Lt: the label and the one value are integers (Kubernetes refuses anything else).
    try:
        return compare(int(labels[requirement.key]), int(requirement.values[0]))
    except (KeyError, IndexError, ValueError):
        return False


def term_matches(labels: Mapping[str, str], term: tuple[Requirement, ...]) -> bool:
    # Kubernetes: an empty term matches no node.
    return bool(term) and all(_satisfied(labels, r) for r in term)


def relevant(pod: PodRequest) -> bool:
    return pod.affinity_terms is not None


def filter_node(pod: PodRequest, node: NodeInfo) -> str | None:
    terms = pod.affinity_terms or ()
    return None if any(term_matches(node.labels, t) for t in terms) else AFFINITY_MISMATCH
