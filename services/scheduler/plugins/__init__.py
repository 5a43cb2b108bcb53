"""Scheduler plugins, one module each: a NAME, reason strings, and the events that requeue.

A filter plugin module provides:
    NAME: str                       the name decisions count removed nodes under
    STATIC: bool                    True when the verdict reads only the pod's and the node's
                                    specs (never what is placed this cycle): the framework then
                                    decides it once per pod shape per cycle
    REQUEUE_ON: tuple[str, ...]     event types that can make a pod it rejected schedulable
    reason constants                what `filter_node` returns, as `dockyard explain` prints them
    relevant(pod) -> bool           False when the plugin has nothing to check for this pod
    filter_node(pod, node) -> str | None   the reason the node cannot take the pod, or None

A score plugin module provides:
    NAME: str, WEIGHT: int
    score_nodes(pod, nodes, snapshot) -> list[float]   one score per node, normalised to 0..100
"""
