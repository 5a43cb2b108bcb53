"""Starts a service by name with the common flags: how `dockyard run NAME` and `-m` both begin."""

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
}


def main(name: str, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"dockyard run {name}")
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics and health (0: any free)")
    args = parser.parse_args(argv)
    try:
        urls = nats_url(), database_url()
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    module = importlib.import_module(SERVICES[name])
    run_service(name, functools.partial(module.run, *urls), args.metrics_port)
