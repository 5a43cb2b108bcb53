"""The console against a real stack: views, filter, a live scale, a refused action, logs."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from dockyard.client import ApiClient
from dockyard.eventlog import subject_for
from dockyard.tui.app import ConsoleApp
from dockyard.tui.client import ConsoleClient
from dockyard.services.api.decide import RESTARTED_AT
from dockyard.tui.screens.confirm import ConfirmScreen, ScaleScreen
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
        if time.monotonic() > deadline:
            notes = getattr(pilot.app, "told", None) or [n.message for n in pilot.app._notifications]
            raise AssertionError(f"timed out waiting for {what} (notifications: {notes})")
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
        await wait_until(pilot, lambda: len(table_keys(app)) == 1, what="the pod row")
        await pilot.press("ctrl+d")  # delete a pod
        await pilot.press("2")
        await wait_until(pilot, lambda: table_keys(app) == ["default/web"], what="the deployment row")
        await pilot.press("s", "ctrl+d", "r", "z")  # scale, delete, rollout restart, rollout undo
        await pilot.press("3")
        await wait_until(pilot, lambda: len(table_keys(app)) == 1, what="the node row")
        await pilot.press("c", "u", "D")  # cordon, uncordon, drain
        await pilot.pause(0.2)
        assert app.screen is app.screen_stack[0]  # no dialog ever opened
        refusals = [n.message for n in app._notifications if "refused" in n.message]
        assert [m.split(": ")[1] for m in refusals] == [
            "delete refused", "scale refused", "delete refused", "restart refused", "undo refused",
            "cordon refused", "uncordon refused", "drain refused"]
        assert app.stores["Node"].objects[table_keys(app)[0]]["spec"].get("unschedulable") is not True


async def confirm(pilot, app, key: str, yes: bool) -> None:
    """Press an action's key; the dialog opens on Cancel: Enter alone cancels, Tab then Enter confirms."""
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what=f"the dialog of {key}")
    assert app.screen.focused.id == "cancel"
    await pilot.press(*(("tab", "enter") if yes else ("enter",)))
    await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the dialog closed")


def select(app: ConsoleApp, key: str) -> None:
    app.table.move_cursor(row=table_keys(app).index(key))


def spec_of(app: ConsoleApp, kind: str, key: str) -> dict:
    return app.stores[kind].objects.get(key, {}).get("spec") or {}


REPLICAS = 4  # maxUnavailable 25% lets a drain evict one pod at a time


async def test_actions_are_confirmed_and_cancel_is_the_default(platform, services):
    services("hollow-nodes", "--count", "2", "--heartbeat-interval", "0.5")
    await apply(platform, deployment("web", REPLICAS))
    app = console(platform)
    told = app.told = []  # every notification, kept (the app's own expire)
    notify = app.notify
    app.notify = lambda message, **kwargs: (told.append(message), notify(message, **kwargs))
    async with app.run_test(size=SIZE) as pilot:
        pods, deployments, nodes = app.stores["Pod"], app.stores["Deployment"], app.stores["Node"]
        web_pods = lambda: sorted(k for k, o in pods.objects.items()  # noqa: E731
                                  if k.startswith("default/web-") and (o.get("spec") or {}).get("nodeName"))
        await wait_until(pilot, lambda: len(web_pods()) == REPLICAS and len(nodes.objects) == 2, what="bound pods")

        # delete a pod: cancelled, then confirmed; the deployment replaces it
        victim = web_pods()[0]
        select(app, victim)
        await confirm(pilot, app, "ctrl+d", yes=False)
        await pilot.pause(0.5)
        assert victim in pods.objects
        await confirm(pilot, app, "ctrl+d", yes=True)
        await wait_until(pilot, lambda: f"pod/{victim.split('/')[1]}: delete deleted" in told, what="the delete's result")
        await wait_until(pilot, lambda: victim not in pods.objects, what="the pod deleted")
        await wait_until(pilot, lambda: len(web_pods()) == REPLICAS, what="a replacement pod")

        # rollout restart, then undo it
        template = lambda: (spec_of(app, "Deployment", "default/web").get("template") or {})  # noqa: E731
        restarted = lambda: RESTARTED_AT in ((template().get("metadata") or {}).get("annotations") or {})  # noqa: E731
        await pilot.press("2")
        await wait_until(pilot, lambda: table_keys(app) == ["default/web"], what="the deployment row")
        await confirm(pilot, app, "r", yes=False)
        await pilot.pause(0.5)
        assert not restarted()
        before = set(web_pods())
        await confirm(pilot, app, "r", yes=True)
        await wait_until(pilot, lambda: "deployment/web: restart restarted" in told, what="the restart's result")
        await wait_until(pilot, restarted, what="the restart recorded")
        await wait_until(pilot, lambda: len(web_pods()) == REPLICAS and not set(web_pods()) & before, timeout=60,
                         what="the pods replaced by the restart")
        await confirm(pilot, app, "z", yes=False)
        await pilot.pause(0.5)
        assert restarted()
        await confirm(pilot, app, "z", yes=True)
        await wait_until(pilot, lambda: "deployment/web: undo rolled back" in told, what="the undo's result")
        await wait_until(pilot, lambda: not restarted(), what="the rollback to revision 1")

        # cordon and uncordon a node
        await pilot.press("3")
        await wait_until(pilot, lambda: len(table_keys(app)) == 2, what="the node rows")
        node = table_keys(app)[0]  # "/NAME": nodes have no namespace
        select(app, node)
        await confirm(pilot, app, "c", yes=False)
        await pilot.pause(0.5)
        assert not spec_of(app, "Node", node).get("unschedulable")
        await confirm(pilot, app, "c", yes=True)
        await wait_until(pilot, lambda: f"node/{node[1:]}: cordon cordoned" in told, what="the cordon's result")
        await wait_until(pilot, lambda: spec_of(app, "Node", node).get("unschedulable"), what="cordoned")
        assert "SchedulingDisabled" in app.table.get_cell(node, "STATUS").plain
        await confirm(pilot, app, "u", yes=True)
        await wait_until(pilot, lambda: f"node/{node[1:]}: uncordon uncordoned" in told, what="the uncordon's result")
        await wait_until(pilot, lambda: not spec_of(app, "Node", node).get("unschedulable"), what="uncordoned")

        # drain: cordoned, its pods evicted (within maxUnavailable) and replaced on the other node
        on_node = lambda name: [k for k, o in pods.objects.items()  # noqa: E731
                                if (o.get("spec") or {}).get("nodeName") == name]
        await wait_until(pilot, lambda: len(web_pods()) == REPLICAS, what="bound pods again")
        busy = node if on_node(node) else table_keys(app)[1]
        select(app, busy)
        await confirm(pilot, app, "D", yes=False)
        await pilot.pause(0.5)
        assert not spec_of(app, "Node", busy).get("unschedulable")
        await confirm(pilot, app, "D", yes=True)
        await wait_until(pilot, lambda: spec_of(app, "Node", busy).get("unschedulable"), what="drain cordons")
        # each eviction waits for the deployment to be whole again, as `dockyard drain` does
        await wait_until(pilot, lambda: f"node/{busy[1:]} drained" in told, timeout=120, what="the drain's last line")
        assert told.index(f"node/{busy[1:]} cordoned") < told.index(f"node/{busy[1:]} drained")
        await wait_until(pilot, lambda: not on_node(busy) and len(web_pods()) == REPLICAS,
                         what="its pods placed on the other node")


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

        # search as less does: every match highlighted, n / N step between them
        screen = app.screen
        await wait_until(pilot, lambda: len(screen.lines) >= 3, what="three lines")
        await pilot.press("slash", *"TICK [02]$", "enter")  # capitals: exact case, so nothing
        assert screen.search.hits == []
        await pilot.press("slash", *"tick [02]$", "enter")  # lower case matches either case
        assert screen.search.hits == [0, 2] and screen.search.current == 0
        assert "match 1 of 2" in str(screen.query_one("#log-title").render())
        await pilot.press("n")
        assert screen.search.current == 2 and not screen.follow  # a match on show stays on show
        await pilot.press("N")
        assert screen.search.current == 0
        highlighted = [span for strip in log.lines for span in strip if "reverse" in str(span.style)]
        assert [seg.text for seg in highlighted] == ["tick 0", "tick 2"]
        await pilot.press("f")  # follow again
        assert screen.follow


async def test_images_and_alerts_views_from_the_read_models(eventlog, platform):
    """Image events reach the view through the projector's `image_tags`; alerts come from the `alerts`
    table at start and then live from the log (fired, then resolved)."""
    from dockyard.schemas.events import AlertFired, AlertResolved, ImageIndexed, ImagePlatform, alert_fingerprint
    from dockyard.services.registry_indexer.index import image_subject

    labels = {"alertname": "NodeNotReady", "severity": "critical", "node": "n1"}
    fingerprint = alert_fingerprint(labels)
    await eventlog.append(subject_for("alert", "", fingerprint), AlertFired(
        alertname="NodeNotReady", severity="critical", labels=labels, annotations={"summary": "n1 is not ready"},
        active_since="2026-01-01T00:00:00Z", value=1.0))
    client = await ConsoleClient.connect(*platform)
    try:
        deadline = time.monotonic() + 30
        while not await client.alerts():  # the projector has written the row
            assert time.monotonic() < deadline, "the alerts row never appeared"
            await asyncio.sleep(0.2)
        assert [(a["alertname"], a["state"], a["activeSince"]) for a in await client.alerts()] == \
            [("NodeNotReady", "firing", "2026-01-01T00:00:00Z")]
    finally:
        await client.close()

    app = console(platform)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await wait_until(pilot, lambda: table_keys(app) == [fingerprint], what="the firing alert's row")
        assert app.table.get_cell(fingerprint, "STATE").plain == "firing"
        assert "Alerts 1 firing" in str(app.query_one("#dashboard").render())
        await eventlog.append(subject_for("alert", "", fingerprint),
                              AlertResolved(alertname="NodeNotReady", labels=labels, resolved_at="2026-01-01T00:05:00Z"))
        await wait_until(pilot, lambda: app.table.get_cell(fingerprint, "STATE").plain == "resolved",
                         what="the alert resolved, live")

        await pilot.press("6")
        digest = "sha256:" + "d" * 64
        await eventlog.append(image_subject("127.0.0.1:5000", "team/web"), ImageIndexed(
            registry="127.0.0.1:5000", repository="team/web", tag="v1", digest=digest,
            media_type="application/vnd.oci.image.manifest.v1+json", size=1234,
            platforms=(ImagePlatform(digest=digest, os="linux", architecture="amd64", size=2_000_000, layers=2),)))
        key = "127.0.0.1:5000/team/web:v1"
        await wait_until(pilot, lambda: table_keys(app) == [key], what="the indexed image's row")
        assert app.table.get_cell(key, "PLATFORMS").plain == "linux/amd64"
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, TextScreen), what="the image described")
        assert digest in app.screen.body
