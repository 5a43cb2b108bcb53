"""Snapshots of the console's main views over fixed data (a client double: no ages, no clock, no stack).

Update after a deliberate change with `pytest tests/unit/test_console_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio

import pytest

from dockyard.schemas.events import alert_fingerprint
from dockyard.tui.app import ConsoleApp

SIZES = {"wide": (120, 40), "small": (80, 24)}


def make_pod(name: str, app: str, node: str, phase: str = "Running") -> dict:
    return {"apiVersion": "dockyard.io/v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": phase, "hostIP": "10.0.0.1"}}


def make_deployment(name: str, replicas: int, ready: int) -> dict:
    return {"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
            "status": {"readyReplicas": ready, "updatedReplicas": ready, "availableReplicas": ready}}


def make_node(name: str) -> dict:
    return {"apiVersion": "dockyard.io/v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def make_image(repository: str, tag: str, digest: str, problem: str = "") -> dict:
    platform = {"digest": digest, "os": "linux", "architecture": "amd64", "size": 2_150_000, "layers": 3}
    return {"registry": "127.0.0.1:5000", "repository": repository, "tag": tag, "digest": digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 2_150_000,
            "platforms": [] if problem else [platform], "problem": problem, "updated": ""}


def make_alert(name: str, severity: str, state: str, **labels: str) -> dict:
    labels = {"alertname": name, "severity": severity, **labels}
    return {"fingerprint": alert_fingerprint(labels), "alertname": name, "severity": severity, "state": state,
            "labels": labels, "annotations": {"summary": f"{name} on {labels.get('node', 'the cluster')}"},
            "value": 1.0, "activeSince": "", "resolvedAt": None}


IMAGES = [make_image("library/busybox", "1.36", "sha256:" + "a" * 64),
          make_image("library/busybox", "latest", "sha256:" + "a" * 64),
          make_image("team/web", "v2", "", problem="manifest digest mismatch")]
ALERTS = [make_alert("NodeNotReady", "critical", "firing", node="n1"),
          make_alert("PodCrashLooping", "warning", "resolved", namespace="default", pod="web-1")]

OBJECTS = {
    "Pod": [make_pod(f"web-{i}", "web", f"n{i % 2}") for i in range(3)] + [make_pod("db-0", "db", "n1", "Pending")],
    "Deployment": [make_deployment("web", 3, 3), make_deployment("db", 1, 0)],
    "Node": [make_node("n0"), make_node("n1")],
}


class Page:
    def __init__(self, items):
        self.items, self.continue_token, self.position = items, "", 0


class FixedClient:
    """Serves OBJECTS and no events."""

    async def list_page(self, kind, limit, continue_token=""):
        return Page(OBJECTS[kind])

    async def last_seq(self):
        return 0

    async def held_images(self, position):
        return {}

    async def follow(self, kind, start_seq):
        await asyncio.Event().wait()
        yield  # pragma: no cover

    async def projection_lag(self):
        return 0

    async def images(self):
        return IMAGES

    async def logs(self, namespace, pod, on_line, follow=True, tail=200, timestamps=False, previous=False):
        for i in range(40):
            on_line(f"tick {i} {'error: disk full' if i % 7 == 0 else 'ok'}")
        await asyncio.Event().wait()

    async def alerts(self):
        return ALERTS

    async def close(self):
        pass


async def fixed_client(**callbacks):
    return FixedClient()


def console(readonly: bool = False) -> ConsoleApp:
    app = ConsoleApp(readonly=readonly, client_factory=fixed_client)
    app.rate.rate = lambda now: 0.0
    return app


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("keys", [(), ("2",), ("3",), ("3", "w"), ("slash", "w", "e", "b", "enter"), ("question_mark",),
                                  ("6",), ("7",), ("colon", *"alerts", "enter", "slash", *"-l severity=critical",
                                                   "enter")],
                         ids=["pods", "deployments", "nodes", "nodes-wide", "pods-filtered", "help", "images",
                              "alerts", "alerts-filtered"])
def test_views(snap_compare, keys, size):
    async def loaded(pilot):
        await pilot.app.loaded.wait()
        await pilot.pause()

    assert snap_compare(console(), press=keys, terminal_size=SIZES[size], run_before=loaded)


async def test_a_failed_connection_shows_a_banner_then_recovers():
    attempts = []

    async def flaky(**callbacks):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("connection refused")
        return FixedClient()

    app = ConsoleApp(client_factory=flaky)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        banner = app.query_one("#banner")
        assert banner.display and "connection lost" in str(banner.render())
        await asyncio.wait_for(app.loaded.wait(), 5)
        await pilot.pause()
        assert not banner.display
        assert app.table.row_count == 4


async def test_readonly_refuses_without_a_dialog():
    app = ConsoleApp(readonly=True, client_factory=fixed_client)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.loaded.wait()
        await pilot.press("2", "s", "ctrl+d", "r")
        assert len(app.screen_stack) == 1
        assert sum("refused" in n.message for n in app._notifications) == 3


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_log_search(snap_compare, size):
    """`/error`, then `n`: every match highlighted; as in less, the search starts at the top line on show
    (the log was following, so near its end) and `n` steps on, `match K of 6` in the title."""
    async def searched(pilot):
        await pilot.app.loaded.wait()
        await pilot.press("l")
        while not len(getattr(pilot.app.screen, "lines", ())) == 40:
            await pilot.pause(0.05)
        await pilot.press("slash", *"error", "enter", "n")
        await pilot.pause()

    assert snap_compare(console(), terminal_size=SIZES[size], run_before=searched)


async def test_keys_typed_right_after_colon_go_to_the_prompt():
    """`:dp` typed fast is the deployments view, not `d`escribe then `p`: keys already queued behind `:`
    reach the prompt (Widget.focus would move the focus only on the next turn)."""
    from textual import events

    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.loaded.wait()
        for key, character in (("colon", ":"), ("d", "d"), ("p", "p"), ("enter", None)):
            event = events.Key(key, character)  # as a terminal sends them: all queued before any is handled
            event.set_sender(app)
            app._driver.send_message(event)
        await pilot.pause()
        assert app.view == "deploy" and len(app.screen_stack) == 1


async def test_a_namespace_that_cannot_be_one_is_refused():
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.loaded.wait()
        await pilot.press("colon", *"ns Kube_System", "enter")
        assert all(store.namespace == "" for store in app.stores.values())
        assert any("is not a namespace name" in n.message for n in app._notifications)
