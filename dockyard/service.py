"""What every service shares: logging, signals, and the /metrics, /healthz, /readyz endpoints."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app

log = logging.getLogger(__name__)


class Health:
    """Liveness and readiness as the service itself sees them."""

    def __init__(self) -> None:
        self.ready = False
        self.problem = ""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - wsgiref's name
        pass


def serve_http(port: int, health: Health) -> int:
    """Serve /metrics, /healthz and /readyz on 127.0.0.1:`port` from a daemon thread."""
    metrics = make_wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            status = "200 OK" if health.ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [(b"ready\n" if health.ready else f"not ready: {health.problem}\n".encode())]
        return metrics(environ, start_response)

    server = make_server("127.0.0.1", port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server.server_port


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_service(name: str, main: Callable[[asyncio.Event, Health], Awaitable[None]], metrics_port: int) -> None:
    """Run `main(stop, health)` until SIGTERM/SIGINT sets `stop`; then let it finish cleanly."""
    configure_logging()
    health = Health()
    port = serve_http(metrics_port, health)
    log.info("%s serving /metrics, /healthz, /readyz on 127.0.0.1:%s", name, port)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop, health)

    asyncio.run(runner())
    log.info("%s stopped", name)
