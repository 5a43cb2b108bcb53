"""A real Prometheus and a real Alertmanager (Debian packages) on free loopback ports, with temp configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dockyard.servers import free_port
from tests.conftest import _short_tmp, require

PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


def _get_json(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WebhookReceiver:
    """Collects Alertmanager's webhook notifications (each: its `status` and `alerts`)."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, status: str) -> list[dict]:
        """Every alert notified with `status` (firing or resolved)."""
        return [alert for n in list(self.notifications) for alert in n["alerts"] if alert["status"] == status]

    def close(self) -> None:
        self.server.shutdown()


class AlertmanagerServer:
    """prometheus-alertmanager routing everything, at once, to a webhook receiver (resolved ones too)."""

    def __init__(self, root: Path, webhook_url: str):
        self.root = root
        self.port = free_port()
        self.webhook_url = webhook_url
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AlertmanagerServer":
        config = self.root / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: test\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 1h\nreceivers:\n- name: test\n  webhook_configs:\n"
            f"  - url: '{self.webhook_url}'\n    send_resolved: true\n")
        log = self.root / "alertmanager.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={self.root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(f"{self.url}/-/ready", self.proc, log, "alertmanager")
        return self

    def alerts(self) -> list[dict]:
        """The alerts it holds now (GET /api/v2/alerts)."""
        return _get_json(f"{self.url}/api/v2/alerts")

    def stop(self) -> None:
        _stop(self.proc)


class PrometheusServer:
    """prometheus scraping `targets` (host:port) every `interval` seconds, storage in a temp dir."""

    def __init__(self, root: Path, targets: list[str], interval: float = 1.0):
        self.root = root
        self.port = free_port()
        self.targets = targets
        self.interval = interval
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "PrometheusServer":
        config = self.root / "prometheus.yml"
        interval = f"{int(self.interval * 1000)}ms"
        config.write_text(
            f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
            "scrape_configs:\n- job_name: dockyard\n  static_configs:\n"
            f"  - targets: {json.dumps(self.targets)}\n")
        log = self.root / "prometheus.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={self.root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(f"{self.url}/-/ready", self.proc, log, "prometheus")
        return self

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector: [{"metric": {...}, "value": [time, "v"]}, ...]."""
        answer = _get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alertmanager(webhook_receiver):
    """A real Alertmanager notifying `webhook_receiver` of every alert, firing and resolved."""
    require(Path(ALERTMANAGER_BIN).exists(),
            "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    root = _short_tmp("dy-am-")
    server = AlertmanagerServer(root, webhook_receiver.url).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def prometheus_server():
    """`start(targets, interval=1.0)` runs a real Prometheus scraping them; stopped afterwards."""
    require(Path(PROMETHEUS_BIN).exists(), "prometheus is not installed (apt-get install prometheus)")
    started: list[tuple[PrometheusServer, Path]] = []

    def start(targets: list[str], interval: float = 1.0) -> PrometheusServer:
        root = _short_tmp("dy-prom-")
        server = PrometheusServer(root, targets, interval).start()
        started.append((server, root))
        return server

    yield start
    for server, root in started:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
