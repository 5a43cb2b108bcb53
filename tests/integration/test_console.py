"""The console against a real stack: views, filter, a live scale, a refused action, logs."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from dockyard.client import ApiClient
from dockyard.tui.app import ConsoleApp
from dockyard.tui.client import ConsoleClient
from dockyard.tui.screens.confirm import ScaleScreen
from dockyard.tui.screens.logs import LogScreen
from dockyard.tui.screens.text import TextScreen

pytestmark = pytest.mark.slow
SIZE = (120, 40)


def deployment(name: str = "web", replicas: int = 2, command: list[str] | None = None) -> dict:
    container = {"name": "main", "command": command or ["sleep", "600"],
                 "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}
    return {"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


async def wait_until(pilot, predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.1)


def table_keys(app: ConsoleApp) -> list[str]:
    return [row.key.value for row in app.table.ordered_rows]


@pytest.fixture
def platform(services, nats_server, database_url):
    services("projector")
    services("api")
    services("scheduler")
    services("controller", "--tick", "0.5")
    return nats_server.url, database_url


def console(platform, readonly: bool = False) -> ConsoleApp:
    nats_url, database_url = platform
    return ConsoleApp(readonly=readonly,
                      client_factory=functools.partial(ConsoleClient.connect, nats_url, database_url))


async def apply(platform, manifest: dict) -> None:
    api = await ApiClient.connect(platform[0])
    try:
        await api.apply(manifest)
    finally:
        await api.close()


async def test_navigate_filter_and_scale_live(platform, services):
    services("hollow-nodes", "--count", "3", "--heartbeat-interval", "0.5")
    await apply(platform, deployment("web", 2))
    await apply(platform, deployment("db", 1))
    app = console(platform)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(app.stores["Pod"].objects) == 3, what="3 pods listed")
        await wait_until(pilot, lambda: len(table_keys(app)) == 3, what="3 pod rows")

        await pilot.press("3")
        await wait_until(pilot, lambda: len(table_keys(app)) == 3, what="3 node rows")
        await pilot.press("4")
        await wait_until(pilot, lambda: app.table.row_count > 0, what="event rows")
        assert app.table.headers[0] == "SEQ"
        await pilot.press("5")
        await wait_until(pilot, lambda: app.table.row_count >= 2, what="the two applies in the audit view")
        await pilot.press("colon", *"dp", "enter")
        assert app.view == "deploy"
        assert sorted(table_keys(app)) == ["default/db", "default/web"]
        await pilot.press("colon", "up")  # command history
        assert app.query_one("#prompt").value == "dp"
        await pilot.press("escape")

        await pilot.press("colon", *"po", "enter")
        await pilot.press("slash", *"-l app=web", "enter")
        await wait_until(pilot, lambda: len(table_keys(app)) == 2, what="the filtered pods")
        assert all(key.startswith("default/web-") for key in table_keys(app))
        await pilot.press("slash", *"^default db-", "enter")  # a regex
        assert len(table_keys(app)) == 1
        await pilot.press("slash", *"db-", "enter")
        assert [k.split("-")[0] for k in table_keys(app)] == ["default/db"]
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, TextScreen), what="describe")
        await pilot.press("escape")
        await pilot.press("slash", "enter")  # clear the filter

        await pilot.press("2")
        app.table.move_cursor(row=table_keys(app).index("default/web"))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ScaleScreen), what="the scale dialog")
        await pilot.pause()
        app.screen.query_one("#replicas").value = "4"
        await pilot.click("#replicas")
        await pilot.press("enter")  # in the box: back to Cancel, it does not scale
        assert isinstance(app.screen, ScaleScreen)
        await pilot.press("tab", "enter")  # Scale
        await pilot.press("1")
        pods = app.stores["Pod"]
        await wait_until(pilot, lambda: sum(k.startswith("default/web-") for k in pods.objects) == 4,
                         what="4 web pods arrived live")
        await wait_until(pilot, lambda: sum(k.startswith("default/web-") for k in table_keys(app)) == 4,
                         what="4 web pod rows")
        await pilot.press("question_mark")
        assert isinstance(app.screen, TextScreen)
        await pilot.press("escape")


async def test_readonly_refuses_actions(platform, services):
    services("hollow-nodes", "--count", "1", "--heartbeat-interval", "0.5")
    await apply(platform, deployment("web", 1))
    app = console(platform, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: table_keys(app) == ["default/web"], what="the deployment row")
        await pilot.press("s")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ScaleScreen)
        assert any("refused" in n.message for n in app._notifications)
        await pilot.press("3", "c")
        await pilot.pause(0.2)
        assert app.screen is app.screen_stack[0]


async def test_follow_logs(platform, services, tmp_path):
    services("node-agent", "--name", "n1", "--driver", "process", "--state-dir", str(tmp_path / "n1"),
             "--heartbeat-interval", "0.5")
    script = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n"
    await apply(platform, deployment("talker", 1, ["python3", "-u", "-c", script]))
    app = console(platform)
    async with app.run_test(size=SIZE) as pilot:
        pods = app.stores["Pod"]
        await wait_until(pilot, lambda: any((o.get("status") or {}).get("phase") == "Running"
                                            for o in pods.objects.values()), timeout=60, what="a running pod")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log screen")
        log = app.screen.query_one("#log")
        await wait_until(pilot, lambda: any("tick" in line.text for line in log.lines), timeout=30,
                         what="log lines")
        seen = len(log.lines)
        await wait_until(pilot, lambda: len(log.lines) > seen, timeout=10, what="more lines, followed")
