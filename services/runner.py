"""Starts a service by name with the common flags: how `dockyard run NAME` and `-m` both begin.

A service module provides `run(nats_url, database_url, stop, health, args)`; it may also
provide `add_arguments(parser)` for its own flags and `NEEDS_DATABASE = False`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

from dockyard.config import ConfigError, database_url, nats_url
from dockyard.service import run_service

SERVICES = {
    "api": "dockyard.services.api.service",
    "projector": "dockyard.services.projector.service",
    "scheduler": "dockyard.services.scheduler.service",
    "controller": "dockyard.services.controller.service",
    "node-agent": "dockyard.services.node_agent.service",
    "hollow-nodes": "dockyard.services.node_agent.hollow",
    "registry-indexer": "dockyard.services.registry_indexer.service",
    "monitoring": "dockyard.services.monitoring.service",
}


def main(name: str, argv: list[str] | None = None) -> None:
    module = importlib.import_module(SERVICES[name])
    parser = argparse.ArgumentParser(prog=f"dockyard run {name}")
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics and health (0: any free)")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        urls = nats_url(), (database_url() if getattr(module, "NEEDS_DATABASE", True) else "")
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    run_service(name, functools.partial(module.run, *urls, args=args), args.metrics_port)
