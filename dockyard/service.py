"""What every service shares: logging, signals, and the /metrics, /healthz, /readyz endpoints."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import zlib
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, make_wsgi_app

from dockyard.metrics import set_service_name

log = logging.getLogger(__name__)


class Health:
    """Liveness and readiness as the service itself sees them."""

    def __init__(self) -> None:
        self.ready = False
        self.problem = ""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - wsgiref's name
        pass


# Text a service renders itself, served on /metrics after the registry's: for more series than
# prometheus_client can format within a scrape (the monitoring service's cluster state).
EXTRA_METRICS: list[Callable[[], list[bytes]]] = []  # each renders its text as chunks, sent as they are


def _metrics_with_extra(environ, start_response):
    chunks = [generate_latest(), *(chunk for render in EXTRA_METRICS for chunk in render())]
    headers = [("Content-Type", CONTENT_TYPE_LATEST)]
    if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        # Level 1, chunk by chunk: the default level takes seconds on 30 MB, and a join would copy it.
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)
        chunks = [*(packer.compress(chunk) for chunk in chunks), packer.flush()]
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(sum(len(chunk) for chunk in chunks))))
    start_response("200 OK", headers)
    return chunks


def serve_http(port: int, health: Health) -> int:
    """Serve /metrics, /healthz and /readyz on 127.0.0.1:`port` (or DOCKYARD_METRICS_HOST) from a daemon thread."""
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
        if EXTRA_METRICS and path == "/metrics":
            return _metrics_with_extra(environ, start_response)
        return metrics(environ, start_response)

    # Loopback unless told otherwise: in a container (compose/) Prometheus scrapes from outside it.
    host = os.environ.get("DOCKYARD_METRICS_HOST", "127.0.0.1")
    server = make_server(host, port, app, handler_class=_QuietHandler)
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
    set_service_name(name)
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
