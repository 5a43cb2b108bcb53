"""The metrics every service exports through the shared event-log code, in prometheus_client's default registry.

Labels stay bounded: `consumer` is a durable consumer's name or the service's own name (for the
in-memory view it follows the log with), `event_type` one of the known event types.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from dockyard.schemas.events import EVENT_TYPES

OK, ERROR, DEAD_LETTERED, SKIPPED = "ok", "error", "dead_lettered", "skipped"  # skipped: malformed, not for this reader
UNKNOWN_TYPE = "unknown"

EVENTS_HANDLED = Counter("dockyard_events_handled_total",
                         "Events handed to a consumer's handler, by outcome (a failed batch counts on each attempt)",
                         ["consumer", "event_type", "outcome"])
HANDLER_SECONDS = Histogram("dockyard_event_handler_duration_seconds",
                            "Time a consumer's handler took over one batch of events", ["consumer"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CONSUMER_PENDING = Gauge("dockyard_consumer_pending_messages",
                         "Events in the log the consumer has not been delivered yet", ["consumer"])
CONSUMER_ACK_PENDING = Gauge("dockyard_consumer_ack_pending_messages",
                             "Events delivered to the consumer and not acknowledged yet", ["consumer"])
APPEND_CONFLICTS = Counter("dockyard_append_conflicts_total",
                           "Appends refused because the aggregate moved on since it was read")
APPEND_RETRIES = Counter("dockyard_append_retries_total",
                         "Appends decided again and retried after a concurrency conflict")

_service = {"name": "dockyard"}


def set_service_name(name: str) -> None:
    """Name this process's service: the `consumer` label of the view it follows the log with."""
    _service["name"] = name


def service_name() -> str:
    return _service["name"]


def event_type_label(type_name: str) -> str:
    """A stored message's type as a label: only known types, so a garbled header cannot add series."""
    return type_name if type_name in EVENT_TYPES else UNKNOWN_TYPE


def count_handled(consumer: str, type_names: Iterable[str], outcome: str) -> None:
    """Count a batch's events by type: one `inc` per type, not per event, to keep the hot path cheap."""
    for type_name, count in collections.Counter(type_names).items():
        EVENTS_HANDLED.labels(consumer, event_type_label(type_name), outcome).inc(count)
